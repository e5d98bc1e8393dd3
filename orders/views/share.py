"""Agents' share tools: the "推广海报" page of the agent centre (the storefront's poster and one per
product it sells, each with a QR code to the shop's page carrying a share source), the posters
themselves (PNG, or SVG), and the storefront side of attribution (``landing_note`` and
``landing_source``: a visit that arrived with ``?src=`` is remembered until the buyer orders).

Prices on the posters are the storefront's retail prices as a visitor sees them, resolved by
the same selector as the shop's pages (``orders.selectors.orders.purchase_infos``), at the
moment the poster is drawn; nothing is typed or stored.
"""

from __future__ import annotations

from django.core import signing
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from agents import selectors as agent_selectors
from agents.models import Storefront
from agents.services import storefronts
from agents.views.dashboard import agent_required
from catalog import selectors as catalog
from catalog.models import Product
from marketplace.posters import Poster, poster_render
from marketplace.templatetags.display import money_format

from ..selectors import orders as selectors
from ..selectors import share

SESSION_KEY = "share_source"
SALT = "orders.share.source"
MAX_AGE = 7 * 24 * 3600  # a poster's visit counts for an order within a week
PAGE_SIZE = 24

# --- attribution on the storefront ----------------------------------------------------------


def landing_note(request, storefront: Storefront, *, listed_ids=()) -> None:
    """Remember the share source of this visit (``?src=``), if it names one this shop offers.

    Kept in the session (server-side), signed with the shop it was for and when, so nothing the
    client sends later can set or alter it; the same source again writes nothing."""
    raw = request.GET.get(share.PARAM)
    if not raw:
        return
    source = share.source_from_param(raw, listed_ids=set(listed_ids))
    if not source:
        return
    current = landing_source(request, storefront)
    if current == source:
        return
    request.session[SESSION_KEY] = signing.dumps({"sf": storefront.pk, "src": source}, salt=SALT, compress=False)


def landing_source(request, storefront: Storefront) -> str:
    """The share source remembered for an order at ``storefront``, or "" (none, another shop's,
    older than ``MAX_AGE``, or not signed by us)."""
    value = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    if not isinstance(value, str):
        return ""
    try:
        data = signing.loads(value, salt=SALT, max_age=MAX_AGE)
    except signing.BadSignature:
        return ""
    if not isinstance(data, dict) or data.get("sf") != storefront.pk:
        return ""
    source = data.get("src")
    return source if isinstance(source, str) and share.source_valid(source) else ""


# --- the posters page ------------------------------------------------------------------------


def _own_storefront(agent) -> Storefront | None:
    return Storefront.objects.filter(agent=agent).select_related("agent").defer("logo").first()


def _share_url(request, storefront: Storefront, product: Product | None) -> str:
    if product is None:
        path = reverse("storefront:home", args=[storefront.slug])
    else:
        path = reverse("storefront:product", args=[storefront.slug, product.slug])
    return request.build_absolute_uri(f"{path}?{share.PARAM}={share.param_for(product)}")


def _listed(storefront: Storefront, products) -> list[selectors.PurchaseInfo]:
    """What a visitor of the shop is offered, at the shop's price (the shop pages' selector)."""
    return [
        info
        for info in selectors.purchase_infos(products, viewer=None, storefront=storefront)
        if info.listed and info.price is not None
    ]


@agent_required
@require_GET
def posters(request):
    sf = _own_storefront(request.agent)
    context: dict = {"section": "storefront", "tab": "posters", "storefront": sf}
    if sf is None:
        return render(request, "agents/posters.html", context)
    unlisted = agent_selectors.storefront_unlisted_ids(storefront=sf)
    products = catalog.products_on_sale().select_related("category__parent").exclude(pk__in=unlisted)
    query = (request.GET.get("q") or "").strip()[:100]
    if query:
        products = products.filter(name__icontains=query)
    page = Paginator(products.order_by("name", "pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    infos = _listed(sf, page.object_list)
    context.update(
        public=storefronts.storefront_for_slug(sf.slug) is not None,
        page=page,
        query=query,
        shop_url=_share_url(request, sf, None),
        rows=[{"info": info, "url": _share_url(request, sf, info.product)} for info in infos],
    )
    return render(request, "agents/posters.html", context)


@agent_required
@require_GET
def poster(request, kind: str, product_id: int | None = None):
    """One poster, drawn now: ``kind`` "png" (an SVG where the machine has no CJK font) or "svg";
    ``?download=1`` to save it. 404 for a product the shop does not sell."""
    sf = _own_storefront(request.agent)
    if sf is None or kind not in ("png", "svg"):
        raise Http404("no storefront")
    product = None
    if product_id is None:
        title = (sf.notice.strip().splitlines() or [""])[0][:40] or _("Game cards and gift cards, delivered at once")
        price = ""
    else:
        product = catalog.products_on_sale().select_related("category__parent").filter(pk=product_id).first()
        found = _listed(sf, [product]) if product is not None else []
        if not found:
            raise Http404("not sold here")
        title = product.name
        price = money_format(found[0].price)
    url = _share_url(request, sf, product)
    data, content_type = poster_render(
        Poster(
            url=url,
            heading=sf.name,
            title=title,
            price=price,
            caption=_("Scan to buy") if product is not None else _("Scan to visit the shop"),
            footer=url.split("://", 1)[-1].split("?", 1)[0],
        ),
        kind=kind,
    )
    response = HttpResponse(data, content_type=content_type)
    extension = "png" if content_type == "image/png" else "svg"
    name = f"poster-{sf.slug}-{product.pk if product is not None else 'shop'}.{extension}"
    disposition = "attachment" if request.GET.get("download") else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    patch_cache_control(response, private=True, no_cache=True)  # the price is today's
    return response
