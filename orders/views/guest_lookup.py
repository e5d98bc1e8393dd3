"""The order lookup for guests (/orders/lookup/): find guest orders by number or email with
the query password, or have a one-time link emailed; and this browser's recent guest orders.

What a lookup proves is granted to this browser as after a proof on the order page: view and
reveal in the session, and the orders remembered by the browser's cookie (view only, later).
Refusals say nothing about what exists (``orders.services.guest_lookup``).
"""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from marketplace.errors import ServiceError
from marketplace.ratelimit import too_many_requests

from ..forms import GuestLookupForm
from ..selectors import guest as selectors
from ..services import guest_lookup as services
from .guest import SESSION_KEY, guest_allow_reveal
from .guest_browser import browser_forget, browser_remember, browser_token


def _page(request, form, *, status=200, error=None):
    recent = selectors.guest_browser_orders(token=browser_token(request), limit=settings.GUEST_BROWSER_MAX_ORDERS)
    context = {"form": form, "error": error, "recent": recent, "link_minutes": settings.GUEST_LOOKUP_LINK_MINUTES}
    return render(request, "orders/guest_lookup.html", context, status=status)


def _throttled(request, exc: services.LookupThrottled):
    reason = _(
        "There were too many order lookups from your network, or for the order number or email you "
        "entered. To protect buyers' orders, lookups are paused for a while."
    )
    hint = _("The link in your order's email still opens the order at any time.")
    return too_many_requests(request, exc.throttled, context={"reason": reason, "hint": hint})


def _found(request, orders):
    """A proof for ``orders`` in this browser: their page (one), or the list on this page."""
    guest_allow_reveal(request, [order.number for order in orders])
    if len(orders) == 1:
        messages.success(request, _("Thank you. You can reveal your codes now."))
        response = redirect("orders:guest_detail", number=orders[0].number)
    else:
        messages.success(
            request,
            ngettext("We found %(n)d order.", "We found %(n)d orders.", len(orders)) % {"n": len(orders)},
        )
        response = redirect("orders:guest_lookup")
    return browser_remember(request, response, orders)


@never_cache
def lookup(request):
    if request.method != "POST":
        return _page(request, GuestLookupForm())
    form = GuestLookupForm(request.POST)
    if form.error is not None:
        return _page(request, form, status=400, error=form.error)
    query = form.cleaned_data["query"]
    password = form.cleaned_data["query_password"]
    try:
        if password and "send_link" not in request.POST:
            orders = services.guest_lookup_password(query=query, password=password, request=request)
        else:
            services.guest_lookup_link_request(query=query, request=request)
            orders = None
    except services.LookupThrottled as exc:
        return _throttled(request, exc)
    except ServiceError as exc:
        again = GuestLookupForm(initial={"query": request.POST.get("query", "")})
        return _page(request, again, status=400, error=str(exc))
    if orders is not None:
        return _found(request, orders)
    messages.info(
        request,
        _(
            "If there are orders for what you entered, we have sent a one-time link to the order's email. "
            "It works once, for %(minutes)d minutes."
        )
        % {"minutes": settings.GUEST_LOOKUP_LINK_MINUTES},
    )
    return redirect("orders:guest_lookup")


@never_cache
def link(request, token):
    """The emailed one-time link. GET only asks to confirm (mail scanners open links: a GET must
    not use it up); the POST uses it and shows the orders."""
    if request.method != "POST":
        live = selectors.guest_lookup_link_live(token=token)
        return render(request, "orders/guest_lookup_link.html", {"live": live}, status=200 if live else 404)
    try:
        orders = services.guest_lookup_link_use(token=token, request=request)
    except ServiceError as exc:
        return render(request, "orders/guest_lookup_link.html", {"live": False, "error": str(exc)}, status=404)
    if not orders:  # its orders went (a member's since): nothing to show
        return render(request, "orders/guest_lookup_link.html", {"live": False}, status=404)
    return _found(request, orders)


@require_POST
def forget(request):
    """This browser forgets its guest orders (a shared or borrowed device)."""
    request.session.pop(SESSION_KEY, None)
    messages.success(request, _("This browser no longer remembers your orders."))
    return browser_forget(request, redirect("orders:guest_lookup"))
