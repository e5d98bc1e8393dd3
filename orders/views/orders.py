import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from catalog import selectors as catalog
from catalog import topup as catalog_topup
from compliance import rating, realname
from legal import selectors as legal_selectors
from legal import services as legal
from marketing.services.coupons import CouponError
from marketplace.db import retry_once_if_connection_lost
from marketplace.errors import PASS_THROUGH, ServiceError
from marketplace.http import client_ip, found_or_404
from risk.captcha import FIELD as CAPTCHA_FIELD
from risk.captcha import CaptchaRequired
from risk.middleware import device_id

from ..forms import CheckoutForm, GuestForm, new_idempotency_key
from ..models import Order, OrderCode
from ..selectors import orders as selectors
from ..services import orders as services
from .guest import guest_allow_view, guest_mark_placed
from .guest_browser import browser_remember
from .limits import checkout_limited, reveal_limited
from .polling import StatusOnly, status_badge_or_refresh


@login_required
def profile(request):
    """The account's profile page (/accounts/profile/): it shows the buyer's orders, so it lives
    here and not in accounts, which sits below orders."""
    return render(
        request,
        "accounts/profile.html",
        {
            "counts": selectors.order_counts_for_buyer(request.user),
            # The credit level, what it limits and the events behind it (compliance.rating).
            "credit": rating.credit_rating(user=request.user),
        },
    )


def guest_fields(request) -> tuple[GuestForm | None, str | None, dict]:
    """A visitor's guest fields (email twice, optional query password) for ``order_place``:
    the form to show again, its first error, and the keyword arguments (``buyer=None`` ...).
    A member has none: ``(None, None, {"buyer": user})``."""
    if request.user.is_authenticated:
        return None, None, {"buyer": request.user}
    form = GuestForm(request.POST if request.method == "POST" else None)
    if request.method != "POST":
        return form, None, {}
    error = form.error
    if error is not None:
        return form, error, {}
    data = form.cleaned_data
    who = {"buyer": None, "guest_email": data["guest_email"], "query_password": data["query_password"]}
    if data.get("real_name") or data.get("id_number"):  # products that need a verified real name
        who.update(real_name=data["real_name"], id_number=data["id_number"])
    return form, None, who


def realname_context(request, product) -> dict:
    """What the checkout shows about real names for ``product``: whether it needs one, the
    member's verification (shown masked), and the link to verify (back to this page after)."""
    if not realname.product_needs_real_name(product):
        return {"realname_needed": False}
    verification = realname.realname_of(user=request.user)
    verify_url = reverse("realname") + "?" + urlencode({"next": request.get_full_path()})
    return {"realname_needed": True, "realname_verification": verification, "realname_verify_url": verify_url}


TOPUP_PREFIX = "topup_"
TOPUP_ACK = "topup_ack"


def topup_posted(request) -> dict:
    """A direct top-up's fields as the checkout form posted them (``topup_<name>`` and each
    ``topup_<name>__confirm``), for ``order_place``, which checks them (``catalog.topup``)."""
    if request.method != "POST":
        return {}
    return {
        k: v[: catalog_topup.MAX_LENGTH + 1]
        for k, v in request.POST.items()
        if k.startswith(TOPUP_PREFIX) and k != TOPUP_ACK
    }


def topup_ack_refusal(request, product) -> str | None:
    """A direct top-up is bought with the buyer's confirmation that it cannot be returned without
    reason once topped up (消费者权益保护法 第二十五条: goods unsuitable for return by their
    nature, so confirmed by the consumer at purchase); None when confirmed or not a top-up."""
    if not product.is_direct_topup or request.POST.get(TOPUP_ACK):
        return None
    return _("Confirm the top-up details and that a completed top-up cannot be returned without reason.")


def topup_context(request, product, errors: dict | None = None) -> dict:
    """The checkout's top-up fields for ``product`` (none unless a direct top-up): each with the
    value posted and its error (and its confirmation's)."""
    if not product.is_direct_topup:
        return {"topup_fields": []}
    try:
        specs = catalog_topup.product_fields(product)
    except ValidationError:
        specs = []
    errors = errors or {}
    posted = request.POST if request.method == "POST" else {}
    rows = [
        {
            "spec": spec,
            "value": (posted.get(spec.input_name) or "")[: spec.max_length],
            "confirm_value": (posted.get(spec.confirm_input_name) or "")[: spec.max_length],
            "error": errors.get(spec.name),
            "confirm_error": errors.get(spec.name + catalog_topup.CONFIRM_SUFFIX),
        }
        for spec in specs
    ]
    return {"topup_fields": rows, "topup_ack": bool(posted.get(TOPUP_ACK)), "topup_ack_error": errors.get(TOPUP_ACK)}


COUPON_FIELD = "coupon_code"
APPLY_COUPON = "apply_coupon"


def coupon_typed(request) -> str:
    """The coupon code the checkout form carries (what the buyer typed, trimmed)."""
    return (request.POST.get(COUPON_FIELD) or "").strip()[:40] if request.method == "POST" else ""


def coupon_context(request, *, product, quantity: int, unit_price, storefront=None) -> dict:
    """What the checkout shows about the coupon typed in: the code, and either what it takes off
    (``coupon``: subtotal, discount, total, from ``order_coupon_preview``, nothing taken) or the
    service's reason it does not apply (``coupon_error``). ``order_place`` checks it again. Both
    are always in the context (None when not shown): a name missing from it costs the templates'
    every lookup a VariableDoesNotExist raised and caught."""
    code = coupon_typed(request)
    if not code:
        return {"coupon_code": "", "coupon": None, "coupon_error": None}
    buyer = request.user if request.user.is_authenticated else None
    try:
        offer = services.order_coupon_preview(
            code=code,
            product=product,
            quantity=quantity,
            buyer=buyer,
            guest_email="" if buyer is not None else (request.POST.get("guest_email") or "")[:254],
            storefront=storefront,
        )
    except PASS_THROUGH:
        raise
    except ServiceError as exc:  # CouponError, or a refused quantity
        return {"coupon_code": code, "coupon": None, "coupon_error": str(exc)}
    subtotal = unit_price * quantity
    return {
        "coupon_code": offer.code.code,
        "coupon": {"subtotal": subtotal, "discount": offer.discount, "total": subtotal - offer.discount},
        "coupon_error": None,
    }


def guest_form_kept(request, guest_form):
    """The guest fields as typed, without their errors: applying a coupon is not placing."""
    if guest_form is None:
        return None
    kept = GuestForm()
    kept.data = request.POST
    return kept


CHANNEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def channel_chosen(request) -> str:
    """The channel the checkout form shows as chosen: the one posted (a form shown again), or
    ``?channel=`` of a link; empty for the first live one."""
    return (request.POST.get("channel") or request.GET.get("channel") or "")[:32]


def placed(request, order, *, channel: str = ""):
    """After placing: a guest's browser may see its order (and pay it) and keeps it in "my
    recent orders"; then pay the way the checkout chose. The balance goes to its confirmation
    page; a gateway gets the same post again (307 keeps the method and body, so its CSRF token)
    at ``payments:start``, which checks the channel and starts the payment; without a choice,
    the page to choose one."""
    if channel == "balance" and not order.is_guest:
        response = redirect("payments:balance", number=order.number)
    elif channel and channel != "balance" and CHANNEL_RE.match(channel):
        response = HttpResponseRedirect(
            reverse("payments:start", kwargs={"number": order.number, "gateway": channel}), status=307
        )
    else:
        response = redirect("payments:choose", number=order.number)
    if order.is_guest:
        # The guest ticked the agreements in force (orders.forms.GuestForm): recorded against
        # the order and its email. Members accepted theirs at sign-up (legal.middleware asks
        # again for new versions); API orders are covered by the agent's acceptance of the
        # agent agreement, so api.views records nothing per order.
        legal.agreements_accept(
            versions=legal_selectors.required_for(kinds=legal_selectors.GUEST_KINDS),
            email=order.guest_email,
            order=order,
            request=request,
        )
        guest_allow_view(request, order.number)
        guest_mark_placed(request, order.number)
        browser_remember(request, response, [order])  # "my recent orders" in this browser
    return response


@checkout_limited
@retry_once_if_connection_lost  # placing is idempotent (the form's token): safe to run again
def checkout(request, slug):
    """The checkout, for a member or a guest (email and optional query password): one path."""
    # A GET shows the stock: read with the product, in one statement (a POST counts it only to
    # show the form again).
    product = found_or_404(catalog.product_on_sale(slug, counted=request.method != "POST"))
    form = CheckoutForm(request.POST if request.method == "POST" else request.GET, product=product)
    guest_form, guest_error, who = guest_fields(request)
    error = None
    captcha = False  # a risk rule asks for a solved challenge: the form shows it (risk/captcha.py)
    coupon_refused = None  # the coupon's own refusal at placing: shown next to its field
    applying = request.method == "POST" and APPLY_COUPON in request.POST  # "使用优惠券": preview only
    topup_errors: dict[str, str] = {}  # a direct top-up's refused fields, shown at each field
    if request.method == "POST" and not applying:
        error = form.error or guest_error
        if error is None and (ack := topup_ack_refusal(request, product)):
            error, topup_errors = ack, {TOPUP_ACK: ack}
        if error is None:
            try:
                # Only product, quantity and the form's token are read: a posted price is ignored.
                order = services.order_place(
                    product=product,
                    quantity=form.cleaned_data["quantity"],
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    ip=client_ip(request),
                    device=device_id(request),
                    captcha=request.POST.get(CAPTCHA_FIELD, ""),
                    coupon_code=coupon_typed(request),
                    topup=topup_posted(request),
                    **who,
                )
            except PASS_THROUGH:
                raise
            except CouponError as exc:
                coupon_refused = str(exc)
            except catalog_topup.TopupValuesError as exc:
                error, topup_errors = str(exc), exc.errors
            except ServiceError as exc:  # OrderError, OutOfStock, NotForSale, CaptchaRequired
                error = str(exc)
                captcha = isinstance(exc, CaptchaRequired)
            else:
                return placed(request, order, channel=request.POST.get("channel", ""))
    # What order_place will charge this buyer: the public price, or an agent's own cost.
    info = selectors.purchase_info(product=product, viewer=request.user)
    quantity = form.quantity_within(info.stock)
    if applying:
        guest_form = guest_form_kept(request, guest_form)
    coupon = coupon_context(request, product=product, quantity=quantity, unit_price=info.price)
    if coupon_refused:
        coupon.update(coupon_error=coupon_refused, coupon=None)
    return render(
        request,
        "orders/checkout.html",
        {
            "product": product,
            "info": info,
            "quantity": quantity,
            "quantity_max": selectors.quantity_max(product=product, stock=info.stock),
            "unit_price": info.price,
            "estimated_total": info.price * quantity,
            "idempotency_key": new_idempotency_key(),  # a fixed form is a new attempt
            "error": error,
            "guest_form": guest_form,
            "hold_minutes": settings.ORDER_PAYMENT_MINUTES,
            "channel": channel_chosen(request),
            "captcha": captcha,
            **realname_context(request, product),
            **topup_context(request, product, topup_errors),
            **coupon,
        },
        status=400 if error or coupon.get("coupon_error") else 200,
    )


@login_required
def order_list(request):
    page = Paginator(selectors.orders_for_buyer_paged(request.user), 20).get_page(request.GET.get("page"))
    return render(request, "orders/order_list.html", {"page": page})


@login_required
@never_cache
def order_detail(request, number):
    order = found_or_404(selectors.order_for_buyer(request.user, number))
    # Back from a gateway's cashier: its return link proves nothing, so the page only waits
    # (polling) for the verified notification or the active query to mark the order paid.
    confirming = bool(request.GET.get("returned")) and order.status == Order.Status.PENDING
    return render(request, "orders/order_detail.html", {"order": order, "confirming": confirming})


@login_required
@never_cache
def order_status(request, number):
    """Polled by the order page while payment or delivery is under way."""
    status = selectors.order_status_for_buyer(request.user, number)
    if request.headers.get("HX-Request"):
        return status_badge_or_refresh(request, status)
    return JsonResponse({"status": status, "label": StatusOnly(status).get_status_display()})


@login_required
@require_POST
def order_cancel(request, number):
    order = found_or_404(selectors.order_for_buyer(request.user, number))
    if services.order_cancel(order_id=order.pk, buyer=request.user):
        messages.success(request, _("Order cancelled; its codes went back to stock."))
    return redirect(order)


@login_required
@require_POST
@never_cache
@reveal_limited
def code_reveal(request, number, code_id):
    try:
        card_number, secret = services.order_code_reveal(
            buyer=request.user,
            order_number=number,
            order_code_id=code_id,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
    except OrderCode.DoesNotExist:
        raise Http404 from None
    context = {"card_number": card_number, "secret": secret, "code_id": code_id}
    if request.headers.get("HX-Request"):
        # The code, and the no-reason refund offer updated in place (one code fewer to refund):
        # the order and its codes, not its history.
        order = found_or_404(selectors.order_codes_for_buyer(request.user, number))
        return render(request, "orders/_reveal_response.html", {**context, "order": order})
    order = found_or_404(selectors.order_for_buyer(request.user, number))
    for oc in order.live_codes:
        oc.revealed = context if oc.pk == code_id else None
    return render(request, "orders/order_detail.html", {"order": order})
