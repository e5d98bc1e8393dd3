"""A guest's order pages (no account): the signed link from the delivery email, the order
page, the proofs (query password, emailed one-time code) and revealing codes.

What a browser may do with a guest order is kept in its session: ``view`` once it placed the
order here or opened the signed link, ``reveal`` until a time after a proof. Anything else is
404, the same as an order that does not exist (order numbers cannot be probed).
"""

import time

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from marketplace.errors import ServiceError
from marketplace.http import client_ip, found_or_404

from ..models import Order, OrderCode
from ..selectors import guest as guest_selectors
from ..selectors import orders as selectors
from ..services import guest as guest_services
from ..services import orders as services
from .guest_browser import browser_remember, browser_token
from .limits import guest_reveal_limited
from .polling import status_badge_or_refresh

SESSION_KEY = "guest_orders"
SESSION_MAX_ORDERS = 20


def _grants(request) -> dict:
    return request.session.get(SESSION_KEY) or {}


def guest_allow_view(request, number: str) -> None:
    """This browser placed the order or opened its signed link: it may see it (no codes)."""
    grants = dict(_grants(request))
    grants.setdefault(number, 0)
    while len(grants) > SESSION_MAX_ORDERS:
        grants.pop(next(iter(grants)))
    request.session[SESSION_KEY] = grants


def guest_may_view(request, number: str) -> bool:
    """Granted in this session, or remembered by this browser's cookie (then granted here too)."""
    if number in _grants(request):
        return True
    if guest_selectors.guest_browser_has_order(token=browser_token(request), number=number):
        guest_allow_view(request, number)
        return True
    return False


PLACED_KEY = "guest_placed"


def guest_mark_placed(request, number: str) -> None:
    """This browser placed the guest order ``number`` (its session, not the long-lived browser
    cookie): what lets it set a query password when the order's address is refused
    (``password_set``)."""
    placed = dict(request.session.get(PLACED_KEY) or {})
    placed.pop(number, None)
    placed[number] = int(time.time())
    while len(placed) > SESSION_MAX_ORDERS:
        placed.pop(next(iter(placed)))
    request.session[PLACED_KEY] = placed


def _placed_here(request, number: str) -> bool:
    """This session placed the order within DELIVERY_EMAIL_MAX_AGE_HOURS (the delivery email's
    own window: the time a refusal can come in and the buyer be told of it)."""
    at = (request.session.get(PLACED_KEY) or {}).get(number)
    return at is not None and time.time() - at < settings.DELIVERY_EMAIL_MAX_AGE_HOURS * 3600


def guest_allow_reveal(request, numbers: list[str]) -> None:
    """A fresh proof for these orders (query password, emailed code or link): this browser may
    see them and reveal their codes for GUEST_PROOF_MINUTES."""
    grants = dict(_grants(request))
    until = int(time.time()) + settings.GUEST_PROOF_MINUTES * 60
    for number in numbers:
        grants.pop(number, None)  # to the end: the newest are kept when the session trims
        grants[number] = until
    while len(grants) > max(SESSION_MAX_ORDERS, len(numbers)):
        grants.pop(next(iter(grants)))
    request.session[SESSION_KEY] = grants
    request.session.cycle_key()  # a proof: a new session key, as at a login


def _allow_reveal(request, number: str) -> None:
    guest_allow_reveal(request, [number])


def _may_reveal(request, number: str) -> bool:
    return _grants(request).get(number, 0) > time.time()


def guest_may_reveal(request, number: str) -> bool:
    """This browser proved the guest order a short while ago: it may reveal its codes and use
    its after-sales (``aftersales.views.guest``)."""
    return _may_reveal(request, number)


def email_hint(email: str) -> str:
    """An address as the page shows it to whoever holds the link: ``gu***@example.net``."""
    local, _at, domain = email.partition("@")
    return f"{local[:2]}***@{domain}"


def _order(request, number: str) -> Order:
    if not guest_may_view(request, number):
        raise Http404
    return found_or_404(selectors.order_for_guest(number))  # a member's order is never a guest's


def link(request, token):
    """The signed link of the delivery email: this browser may see the order, then its page.
    An order that joined its buyer's account since is on the member's page (after login)."""
    number, attached = guest_services.guest_link_resolve(token=token)  # NotFound: tampered or expired
    if attached:
        return redirect("orders:detail", number=number)
    guest_allow_view(request, number)
    return redirect("orders:guest_detail", number=number)


@never_cache
def detail(request, number):
    order = _order(request, number)
    confirming = bool(request.GET.get("returned")) and order.status == Order.Status.PENDING
    return render(
        request,
        "orders/guest_order.html",
        {
            "order": order,
            "confirming": confirming,
            "unlocked": _may_reveal(request, number),
            "email_hint": email_hint(order.guest_email),
            "placed_here": _placed_here(request, number),
        },
    )


@never_cache
def status(request, number):
    """Polled by the guest order page while payment or delivery is under way."""
    if not guest_may_view(request, number):
        raise Http404
    return status_badge_or_refresh(request, selectors.order_status_for_guest(number))


@require_POST
def unlock(request, number):
    """Prove the order with its query password."""
    order = _order(request, number)
    try:
        guest_services.guest_password_check(
            order=order, password=request.POST.get("query_password", ""), request=request
        )
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        _allow_reveal(request, number)
        messages.success(request, _("Thank you. You can reveal your codes now."))
        return browser_remember(request, redirect("orders:guest_detail", number=number), [order])
    return redirect("orders:guest_detail", number=number)


@require_POST
def password_set(request, number):
    """Set the order's query password from the browser that placed it, when the mail server
    refused its address (``orders.services.guest.guest_password_set``): then a proof, as the
    password would be."""
    order = _order(request, number)
    if not _placed_here(request, number):
        raise Http404  # the same as an order this browser may not act on
    try:
        guest_services.guest_password_set(order=order, password=request.POST.get("query_password", ""), request=request)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("orders:guest_detail", number=number)
    _allow_reveal(request, number)
    messages.success(
        request, _("Query password set. With the order number and this password, the order lookup finds this order.")
    )
    return browser_remember(request, redirect("orders:guest_detail", number=number), [order])


@require_POST
def code_send(request, number):
    """Email a one-time code to the order's guest address."""
    order = _order(request, number)
    try:
        guest_services.guest_code_send(order=order)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("We sent a one-time code to the email address of this order."))
    return redirect("orders:guest_detail", number=number)


@require_POST
def code_check(request, number):
    """Prove the order with the emailed one-time code."""
    order = _order(request, number)
    try:
        guest_services.guest_code_check(order=order, code=request.POST.get("code", ""), request=request)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        _allow_reveal(request, number)
        messages.success(request, _("Thank you. You can reveal your codes now."))
        return browser_remember(request, redirect("orders:guest_detail", number=number), [order])
    return redirect("orders:guest_detail", number=number)


@require_POST
def cancel(request, number):
    order = _order(request, number)
    if services.order_cancel(order_id=order.pk, buyer=None):
        messages.success(request, _("Order cancelled; its codes went back to stock."))
    return redirect(order)


@require_POST
@never_cache
@guest_reveal_limited
def code_reveal(request, number, code_id):
    """One code of a proved guest order, logged like a member's reveal (IP, user agent)."""
    order = _order(request, number)
    if not _may_reveal(request, number):
        raise guest_services.guest_reveal_refused(order=order, request=request)
    try:
        card_number, secret = services.order_code_reveal(
            buyer=None,
            order_number=number,
            order_code_id=code_id,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
    except OrderCode.DoesNotExist:
        raise Http404 from None
    context = {"card_number": card_number, "secret": secret, "code_id": code_id}
    if request.headers.get("HX-Request"):
        # The code, and the no-reason refund offer updated in place (one code fewer to refund).
        order = found_or_404(selectors.order_codes_for_guest(number))
        return render(request, "orders/_reveal_response.html", {**context, "order": order})
    order = found_or_404(selectors.order_for_guest(number))
    for oc in order.live_codes:
        oc.revealed = context if oc.pk == code_id else None
    return render(
        request,
        "orders/guest_order.html",
        {
            "order": order,
            "unlocked": True,
            "email_hint": email_hint(order.guest_email),
            "placed_here": _placed_here(request, number),
        },
    )
