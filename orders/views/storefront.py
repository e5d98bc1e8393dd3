"""Agents' storefronts for end buyers, at /s/<slug>/: browse, buy, the shop's logo.

Anyone may browse; buying needs an account (back to the product after logging in). Prices
are the storefront's retail prices resolved on the server (``agents.selectors``); the order
is placed by ``orders.services.orders.order_place`` with the storefront, so it is an ordinary order
on the platform: the buyer pays through the official channels and keeps every protection.
"""

import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import http_date, quote_etag
from django.views.decorators.http import require_GET

from agents import selectors as agent_selectors
from agents.models import Storefront
from agents.services import storefronts
from catalog import selectors as catalog
from catalog.models import Product
from marketplace.http import client_ip

from ..services import orders as services

PAGE_SIZE = 24


class _Closed(Exception):
    pass


def _shop(slug: str) -> Storefront:
    sf = storefronts.storefront_for_slug(slug)
    if sf is None:
        raise _Closed
    return sf


def _closed(request, slug: str):
    return render(request, "storefront/closed.html", {"slug": slug}, status=404)


def _not_sold(request, sf: Storefront):
    return render(request, "storefront/not_sold.html", {"shop": sf}, status=404)


def _listed(sf: Storefront, products) -> list[Product]:
    """The products the storefront sells, each with ``retail`` (and ``cost`` left off)."""
    products = list(products)
    prices = agent_selectors.storefront_prices(storefront=sf, products=products)
    out = []
    for p in products:
        if p.pk in prices:
            p.retail = prices[p.pk][1]
            out.append(p)
    return out


def _top(category):
    return category.parent if category.parent_id else category


def home(request, slug):
    try:
        sf = _shop(slug)
    except _Closed:
        return _closed(request, slug)
    products = _listed(sf, catalog.products_on_sale().select_related("category__parent"))
    # Categories of what the shop sells, for the chips (top level only).
    categories = {}
    for p in products:
        top = _top(p.category)
        categories.setdefault(top.pk, top)
    categories = sorted(categories.values(), key=lambda c: (c.sort_order, c.pk))
    current = None
    cat_slug = request.GET.get("c") or ""
    if cat_slug:
        current = next((c for c in categories if c.slug == cat_slug), None)
        if current is not None:
            products = [p for p in products if _top(p.category).pk == current.pk]
    query = (request.GET.get("q") or "").strip()[:100]
    if query:
        needle = query.casefold()
        products = [p for p in products if needle in p.name.casefold() or needle in p.category.name.casefold()]
    page = Paginator(products, PAGE_SIZE).get_page(request.GET.get("page"))
    items = catalog.with_stock(page.object_list)
    return render(
        request,
        "storefront/home.html",
        {
            "shop": sf,
            "products": items,
            "page": page,
            "categories": categories,
            "current": current,
            "query": query,
            "total": len(products),
        },
    )


def _product_context(sf: Storefront, product: Product, *, quantity, token: str, error: str | None = None) -> dict:
    product.stock = catalog.stock_count(product.pk)
    try:
        qty = max(product.min_per_order, int(quantity))
    except (TypeError, ValueError):
        qty = product.min_per_order
    return {
        "shop": sf,
        "product": product,
        "quantity": qty,
        "estimated_total": product.retail * qty,
        "idempotency_key": token,
        "error": error,
        "hold_minutes": settings.ORDER_PAYMENT_MINUTES,
    }


def _product(sf: Storefront, product_slug: str) -> Product | None:
    product = catalog.products_on_sale().select_related("category__parent").filter(slug=product_slug).first()
    if product is None:
        return None
    listed = _listed(sf, [product])
    return listed[0] if listed else None


def product(request, slug, product_slug):
    try:
        sf = _shop(slug)
    except _Closed:
        return _closed(request, slug)
    item = _product(sf, product_slug)
    if item is None:
        return _not_sold(request, sf)
    context = _product_context(sf, item, quantity=request.GET.get("quantity"), token=uuid.uuid4().hex)
    return render(request, "storefront/product.html", context)


def buy(request, slug, product_slug):
    """POST: place the order at the storefront's retail price, then choose how to pay."""
    try:
        sf = _shop(slug)
    except _Closed:
        return _closed(request, slug)
    item = _product(sf, product_slug)
    if item is None:
        return _not_sold(request, sf)
    page_url = reverse("storefront:product", args=[sf.slug, item.slug])
    if request.method != "POST":
        return redirect(page_url)
    quantity = request.POST.get("quantity") or item.min_per_order
    if not request.user.is_authenticated:
        # Log in (or sign up), then back to this product with the chosen quantity.
        return redirect_to_login(f"{page_url}?{urlencode({'quantity': quantity})}")
    token = request.POST.get("idempotency_key") or uuid.uuid4().hex
    try:
        # Only the product, quantity and the form's token are read: the price is the server's.
        order = services.order_place(
            buyer=request.user,
            product=item,
            quantity=quantity,
            idempotency_key=token,
            ip=client_ip(request),
            storefront=sf,
        )
    except services.OrderError as exc:
        context = _product_context(sf, item, quantity=quantity, token=uuid.uuid4().hex, error=str(exc))
        return render(request, "storefront/product.html", context, status=400)
    return redirect(reverse("payments:choose", args=[order.number]))


@require_GET
def logo(request, slug):
    sf = Storefront.objects.defer("logo").filter(slug=slug, is_open=True).first()
    if sf is None or sf.logo_updated_at is None:
        return HttpResponse(status=404)
    stamp = sf.logo_updated_at
    etag = quote_etag(f"{sf.pk}-{int(stamp.timestamp() * 1000)}")
    last_modified = int(stamp.timestamp())
    response = get_conditional_response(request, etag=etag, last_modified=last_modified)
    if response is None:
        data = Storefront.objects.filter(pk=sf.pk).values_list("logo", flat=True).first()
        if not data:
            return HttpResponse(status=404)
        response = HttpResponse(bytes(data), content_type="image/png")
        response["Content-Length"] = str(len(data))
    response["ETag"] = etag
    response["Last-Modified"] = http_date(last_modified)
    # Cached for a while; a changed logo gets a new ETag (pages link it with ?v=<stamp>).
    patch_cache_control(response, public=True, max_age=3600)
    response["Content-Security-Policy"] = "default-src 'none'"
    return response
