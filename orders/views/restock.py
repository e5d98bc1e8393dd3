"""Restock alerts (到货通知) on the product pages, the platform's and storefronts': a member asks
with one click, a guest leaves an email and confirms it by the emailed link; the alert's
unsubscribe link. The subscriptions and the sending are catalog's (``catalog.services``).

Here, above risk, because guests' addresses at disposable-mail services are refused with
``risk.services.email_disposable``, which catalog (below risk) cannot import.

The confirmation and unsubscribe links answer a GET with a page and a button, and act only on
the POST: link scanners and previews fetch links, and a page view never writes.
"""

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from agents.services import storefronts
from catalog import selectors as catalog
from catalog import services as catalog_services
from catalog.models import Product
from marketplace.errors import PASS_THROUGH, ServiceError
from marketplace.http import client_ip
from marketplace.ratelimit import member_subject, rate_limited
from marketplace.text import email_normalise
from risk.services import email_disposable

from ..selectors import orders as selectors


def _subject(request, *args, **kwargs) -> str | None:
    """The account asking; for a guest, the address each request emails a link to."""
    member = member_subject(request)
    if member:
        return member
    email = email_normalise(request.POST.get("email") or "")
    return f"email:{email}" if email else None


restock_limited = rate_limited(
    "restock",
    subject=_subject,
    reason=gettext_lazy(
        "There were too many restock alert requests from your network or for this address in a short time."
    ),
    hint=gettext_lazy("Alerts you have already asked for are kept."),
)

OUTCOMES = {
    "subscribed": gettext_lazy("Done: we will email you once when it is back in stock."),
    "already": gettext_lazy("You already asked: we will email you once when it is back in stock."),
    "confirm_sent": gettext_lazy(
        "Almost done: we emailed you a link. Open it to confirm, and we will tell you when it is back."
    ),
}


def _subscribe(request, product: Product, page: str) -> HttpResponse:
    email = request.POST.get("email", "")
    if not request.user.is_authenticated and email_disposable(email):
        messages.error(request, _("Addresses of disposable-mail services cannot be used for alerts."))
        return redirect(page + "#restock")
    try:
        _sub, outcome = catalog_services.restock_subscribe(
            product=product, user=request.user, email=email, ip=client_ip(request), page_path=page
        )
    except PASS_THROUGH:
        raise
    except ServiceError as exc:  # in stock again, not an address
        messages.error(request, str(exc))
    else:
        messages.success(request, str(OUTCOMES[outcome]))
    return redirect(page + "#restock")


@require_POST
@restock_limited
def subscribe(request, slug):
    product = get_object_or_404(catalog.products_on_sale(), slug=slug)
    return _subscribe(request, product, reverse("catalog:product", args=[product.slug]))


@require_POST
@restock_limited
def storefront_subscribe(request, slug, product_slug):
    sf = storefronts.storefront_for_slug(slug)
    product = catalog.products_on_sale().filter(slug=product_slug).first()
    if sf is None or product is None:
        raise Http404
    if not selectors.purchase_info(product=product, viewer=request.user, storefront=sf).listed:
        raise Http404
    return _subscribe(request, product, reverse("storefront:product", args=[sf.slug, product.slug]))


def _link_page(request, sub, *, action: str, done: bool = False, status: int = 200) -> HttpResponse:
    response = render(request, "catalog/restock_link.html", {"sub": sub, "action": action, "done": done}, status=status)
    response["X-Robots-Tag"] = "noindex"
    return response


@require_http_methods(["GET", "POST"])
def confirm(request, token):
    """A guest's confirmation link: GET shows the button, POST confirms."""
    sub = catalog.restock_subscription_from_confirm_link(token)
    if sub is None:
        return _link_page(request, None, action="confirm", status=404)
    done = False
    if request.method == "POST":
        catalog_services.restock_confirm(subscription=sub)
        sub.refresh_from_db()
        done = True
    return _link_page(request, sub, action="confirm", done=done)


# Exempt from CSRF: mail apps' one-click unsubscribe (RFC 8058) POSTs to the List-Unsubscribe
# address without a form token. The unguessable token in the address is the authority, and
# the only thing a forged POST could do is end this one alert.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    """The alert's unsubscribe link: GET shows the button, POST unsubscribes."""
    sub = catalog.restock_subscription_for_token(token)
    if sub is None:
        return _link_page(request, None, action="unsubscribe", status=404)
    done = False
    if request.method == "POST":
        catalog_services.restock_unsubscribe(subscription=sub)
        sub.refresh_from_db()
        done = True
    return _link_page(request, sub, action="unsubscribe", done=done)
