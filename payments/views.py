import csv
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from catalog.models import Product
from ledger import services as ledger
from ledger.selectors import balance_of
from marketplace.celery import tasks_run_in_place
from marketplace.db import retry_once_if_connection_lost
from marketplace.errors import PASS_THROUGH, ServiceError
from marketplace.http import client_ip, found_or_404
from marketplace.ratelimit import rate_limits_hit, request_limits, too_many_requests
from orders.models import Order
from orders.views.guest import guest_may_view

from . import qr, selectors
from .gateways import Device, enabled_gateways, get_gateway
from .models import Recharge
from .services import payments as services

MOBILE_HINTS = ("Mobile", "Android", "iPhone", "iPad", "MicroMessenger")


def _device(request) -> Device:
    agent = request.headers.get("User-Agent", "")
    return Device.MOBILE if any(hint in agent for hint in MOBILE_HINTS) else Device.DESKTOP


def member_or_guest(view):
    """``login_required`` that also lets in a guest's browser for the guest order it placed or
    opened (``orders.views.guest``). Any other visitor goes to the login page, whatever the
    number, as before: nothing tells a number that exists from one that does not."""

    @wraps(view)
    def wrapped(request, number, *args, **kwargs):
        if not request.user.is_authenticated and not guest_may_view(request, number):
            return redirect_to_login(request.get_full_path())
        return view(request, number, *args, **kwargs)

    return wrapped


def _payable(request, number: str):
    """The member's own order or recharge, or a guest order this browser placed or opened
    (``orders.views.guest``); otherwise 404, alike for every other number."""
    if request.user.is_authenticated:
        return services.payable_for(user=request.user, number=number)
    return services.guest_payable_for(number=number, allowed=guest_may_view(request, number))


def _subject(payable) -> str:
    if isinstance(payable, Recharge):
        return _("Balance recharge")
    return f"{payable.product_name} × {payable.quantity}"


@member_or_guest
@never_cache
def choose(request, number):
    """Choose how to pay. Lives here, not in orders: paying is this app's concern. A guest
    pays through the gateways only (paying from a balance needs an account)."""
    order = _payable(request, number)
    if not order.is_payable:
        return redirect(order)
    return render(
        request,
        "payments/choose.html",
        {
            "order": order,
            "gateways": enabled_gateways().values(),
            # A guest pays through the gateways only: paying from a balance needs an account.
            "balance": None if getattr(order, "is_guest", False) else balance_of(ledger.wallet(request.user)),
            "on_phone": _device(request) == Device.MOBILE,  # a phone cannot scan its own screen
        },
    )


@member_or_guest
@require_POST
def start(request, number, gateway):
    """Send the buyer to the gateway's cashier, or show its QR code on our page."""
    payable = _payable(request, number)
    if gateway not in enabled_gateways():  # e.g. chosen on a checkout page before it went off
        messages.error(request, _("This payment method is not available right now. Please choose another."))
        return redirect("payments:choose", number=number)
    try:
        begun = services.payment_start(
            gateway_code=gateway,
            payable=payable,
            device=Device.QR if request.POST.get("mode") == "qr" else _device(request),
            client_ip=client_ip(request),
            subject=_subject(payable),
        )
    except PASS_THROUGH:
        raise
    except ServiceError as exc:  # PaymentError, GatewayError
        messages.error(request, _("The payment could not be started: %(reason)s") % {"reason": exc})
        return redirect(payable)
    if begun.redirect_url:
        return redirect(begun.redirect_url)
    return render(
        request,
        "payments/qr.html",
        {
            "payable": payable,
            "gateway": get_gateway(gateway),
            "qr": _qr(begun.qr_text, 5),
            "subject": _subject(payable),
        },
    )


def _qr(text: str, scale: int) -> dict:
    """What ``payments/_qr.html`` shows: the text the browser draws, and the address of the same
    code drawn here for a browser without JavaScript (signed: ``payments.qr``)."""
    return {"text": text, "scale": scale, "fallback": reverse("payments:qr", args=[qr.fallback_token(text, scale)])}


def qr_image(request, token):
    """The cashier's QR code as an SVG image, for the ``<noscript>`` of a browser without
    JavaScript. Only a text this server signed for a cashier page in the last hours is drawn
    (404 for anything else), and drawn once (``payments.qr``'s caches); per client network,
    at most ``RATE_LIMITS["qr_image"]``."""
    drawn = found_or_404(qr.fallback_read(token))
    throttled = rate_limits_hit(request_limits(request, "qr_image"))
    if throttled is not None:
        return too_many_requests(request, throttled)
    response = HttpResponse(qr.qr_svg(*drawn), content_type="image/svg+xml")
    patch_cache_control(response, private=True, max_age=qr.CACHE_SECONDS)
    return response


@member_or_guest
@never_cache
def payable_status(request, number):
    """Polled by the QR page: once the channel has told us (verified), go to the result."""
    payable = _payable(request, number)
    response = JsonResponse({"status": payable.status})
    if payable.status != payable.Status.PENDING:
        response["HX-Redirect"] = payable.get_absolute_url()
    return response


@login_required
@never_cache
def pay_with_balance(request, number):
    """GET: the confirmation (the amount, the balance before and after); POST: pay. A second
    post of the same confirmation (a double click) finds the order paid and goes to it."""
    if request.method != "POST":
        order = services.payable_for(user=request.user, number=number)
        if isinstance(order, Recharge) or not order.is_payable:
            return redirect(order)
        balance = balance_of(ledger.wallet(request.user))
        return render(
            request,
            "payments/balance_confirm.html",
            {"order": order, "balance": balance, "balance_after": balance - order.total},
        )
    try:
        services.balance_pay(order_number=number, buyer=request.user)
    except services.PaymentError as exc:
        if selectors.paid_from_balance(request.user, number):
            return redirect("orders:detail", number=number)
        messages.error(request, str(exc))
        return redirect("payments:choose", number=number)
    if Order.objects.filter(number=number, product__kind=Product.Kind.DIRECT_TOPUP).exists():
        messages.success(request, _("Paid from your balance. We are topping up the account you gave."))
    else:
        messages.success(request, _("Paid from your balance. Your codes are being delivered."))
    return redirect("orders:detail", number=number)


@member_or_guest
@never_cache
def sandbox_cashier(request, number):
    get_gateway("sandbox")  # 404 when disabled (always in production)
    payable = _payable(request, number)
    if request.method == "POST":
        result = services.sandbox_pay(order_number=payable.number, remote_addr=client_ip(request), payable=payable)
        status, topup = "", False
        if not isinstance(payable, Recharge):
            # The status the pipeline locked and moved (it refreshes this very instance) and the
            # product's kind, read with the order: no statement after the commit. A worker takes
            # milliseconds to deliver (the order page says what it finds then); only a delivery run
            # in place by the commit (eager Celery: the tests) is done already, so then it is read.
            if tasks_run_in_place():
                status, topup = selectors.order_status_and_topup(order_id=payable.pk)
            else:
                status, topup = payable.status, payable.product_kind == Product.Kind.DIRECT_TOPUP
        if not result.ok:
            messages.error(request, _("The payment was refused: %(reason)s") % {"reason": result.reason})
        elif isinstance(payable, Recharge):
            messages.success(request, _("¥%(amount)s added to your balance.") % {"amount": payable.amount})
        elif topup:
            messages.success(request, _("Payment received. We are topping up the account you gave."))
        elif status == Order.Status.DELIVERED and payable.is_guest:
            messages.success(request, _("Payment received. Confirm it is you below to see your codes."))
        elif status == Order.Status.DELIVERED:
            messages.success(request, _("Payment received. Your codes are ready below."))
        else:
            messages.success(request, _("Payment received. Your codes are being delivered."))
        return redirect(payable)
    if not payable.is_payable:
        return redirect(payable)
    pay_url = request.build_absolute_uri(reverse("payments:sandbox", args=[payable.number]))
    return render(
        request, "payments/sandbox.html", {"payable": payable, "qr": _qr(pay_url, 4), "subject": _subject(payable)}
    )


@login_required
@never_cache
def wallet(request):
    error = None
    amount = request.POST.get("amount", "")
    if request.method == "POST":
        try:
            recharge = services.recharge_create(user=request.user, amount=amount)
        except services.PaymentError as exc:
            error = str(exc)
        else:
            # The channel is chosen on the same form; starting it is the same as for an order.
            return start(request, recharge.number, request.POST.get("gateway", ""))
    return render(
        request,
        "payments/wallet.html",
        {
            "balance": balance_of(ledger.wallet(request.user)),
            "gateways": enabled_gateways().values(),
            "movements": selectors.wallet_movements_page(request.user, request.GET.get("page")),
            "payments": selectors.user_payments_page(request.user, request.GET.get("payments_page")),
            "refunds": selectors.user_refunds(request.user, limit=50),
            "error": error,
            "amount": amount,
            "presets": (50, 100, 200, 500),
        },
        status=400 if error else 200,
    )


@login_required
@never_cache  # the user's transactions: no shared or browser cache keeps a copy
def wallet_export(request):
    """Every payment and balance movement of the user, as CSV (UTF-8 with BOM for Excel)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="transactions-{timezone.localdate():%Y%m%d}.csv"'
    response.write("\ufeff")
    wallet_csv_write(response, request.user)
    return response


@csrf_exempt
@require_POST
def notify(request, gateway):
    """Gateways' asynchronous notifications: verified by signature, applied once.

    The answer is what has committed: success once the payment is recorded (queuing its
    delivery after the commit cannot fail the request), and the pipeline, safe to repeat,
    runs once more if the database connection was dropped under it."""
    gw = get_gateway(gateway)  # 404 for an unknown or disabled channel
    result = retry_once_if_connection_lost(services.notification_receive)(
        gateway_code=gateway, headers=request.headers, body=request.body, remote_addr=client_ip(request)
    )
    return gw.reply(ok=result.ok)


# --- A user's transactions as a CSV file, in the user's language (``payments.views.wallet_export``).
# Headers, kinds and statuses are translated; times are local, to the second; amounts stay plain
# numbers (``-12.30``) so a spreadsheet can add them up.
def _when(at) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")


def movement_label(kind: str) -> str:
    """A wallet movement's kind (a ledger entry kind) as the wallet page names it."""
    labels = {
        "recharge": pgettext("wallet export", "recharge"),
        "balance_payment": pgettext("wallet export", "order paid from balance"),
        "refund_paid": pgettext("wallet export", "refund to balance"),
    }
    return labels.get(kind, pgettext("wallet export", "balance adjustment"))


def wallet_csv_write(response, user) -> None:
    """Every payment, refund and balance movement of ``user``, as CSV rows into ``response``."""
    writer = csv.writer(response)
    writer.writerow(
        [
            pgettext("wallet export", "time"),
            pgettext("wallet export", "type"),
            pgettext("wallet export", "reference"),
            pgettext("wallet export", "channel"),
            pgettext("wallet export", "gateway trade number"),
            pgettext("wallet export", "amount"),
            pgettext("wallet export", "status"),
        ]
    )
    for p in selectors.user_payments(user, limit=None):
        kind = pgettext("wallet export", "payment") if p.order_id else pgettext("wallet export", "recharge")
        writer.writerow([_when(p.created_at), kind, p.number, p.gateway, p.trade_no, p.amount, p.get_status_display()])
    for r in selectors.user_refunds(user, limit=None):
        reference = r.order.number if r.order_id else r.number
        writer.writerow(
            [
                _when(r.created_at),
                pgettext("wallet export", "refund"),
                reference,
                r.payment.gateway,
                r.payment.trade_no,
                -r.amount,
                r.get_status_display(),
            ]
        )
    balance = _("balance")
    for m in selectors.wallet_movements(user, limit=None):
        writer.writerow([_when(m.at), f"{balance}:{movement_label(m.kind)}", m.reference, "", "", m.amount, ""])
