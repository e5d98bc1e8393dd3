"""Agents' storefronts for end buyers, at /s/<slug>/: browse, buy, the shop's logo, and who
runs the shop (its operator's public information and business licence, /s/<slug>/operator/).

Anyone may browse and buy, with an account or as a guest (an email, an optional query
password: ``orders.views.orders.guest_fields``). Prices
are the storefront's retail prices resolved on the server (``agents.selectors``); the order
is placed by ``orders.services.orders.order_place`` with the storefront, so it is an ordinary order
on the platform: the buyer pays through the official channels and keeps every protection.
"""

from django.conf import settings
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
from catalog import topup as catalog_topup
from marketing.services.coupons import CouponError
from marketplace.errors import PASS_THROUGH, ServiceError
from marketplace.http import client_ip
from marketplace.pagecache import anonymous_page
from risk.captcha import FIELD as CAPTCHA_FIELD
from risk.captcha import CaptchaRequired
from risk.middleware import device_id

from ..forms import CheckoutForm, new_idempotency_key
from ..selectors import orders as selectors
from ..services import orders as services
from .limits import checkout_limited
from .orders import (
    APPLY_COUPON,
    TOPUP_ACK,
    channel_chosen,
    coupon_context,
    coupon_typed,
    guest_fields,
    guest_form_kept,
    placed,
    realname_context,
    topup_ack_refusal,
    topup_context,
    topup_posted,
)
from .share import landing_note, landing_source

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


def _top(category):
    return category.parent if category.parent_id else category


@anonymous_page  # a few seconds per process for anonymous visitors; ?src= still noted
def home(request, slug):
    try:
        sf = _shop(slug)
    except _Closed:
        return _closed(request, slug)
    landing_note(request, sf)  # a visit from the shop's poster (?src=s)
    unlisted = agent_selectors.storefront_unlisted_ids(storefront=sf)
    products = [p for p in catalog.products_on_sale().select_related("category__parent") if p.pk not in unlisted]
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
    # Prices and stock for this page only: one price resolution, one stock count.
    infos = selectors.purchase_infos(page.object_list, viewer=request.user, storefront=sf)
    return render(
        request,
        "storefront/home.html",
        {
            "shop": sf,
            "infos": [info for info in infos if info.listed],
            "page": page,
            "categories": categories,
            "current": current,
            "query": query,
            "total": len(products),
            "operator": agent_selectors.storefront_operator_public(storefront=sf),
        },
    )


def _product_context(
    sf: Storefront,
    info: selectors.PurchaseInfo,
    form: CheckoutForm,
    error: str | None = None,
    guest_form=None,
    channel: str = "",
) -> dict:
    quantity = form.quantity_within(info.stock)
    return {
        "guest_form": guest_form,
        "shop": sf,
        "product": info.product,
        "info": info,
        "quantity": quantity,
        "quantity_max": selectors.quantity_max(product=info.product, stock=info.stock),
        "estimated_total": info.price * quantity,
        "idempotency_key": new_idempotency_key(),  # a fixed form is a new attempt
        "error": error,
        "hold_minutes": settings.ORDER_PAYMENT_MINUTES,
        "channel": channel,
        "operator": agent_selectors.storefront_operator_public(storefront=sf),
    }


def _offer(request, sf: Storefront, product_slug: str) -> selectors.PurchaseInfo | None:
    """The product at ``product_slug`` as this shop offers it to this visitor, or None when the
    shop does not sell it."""
    product = catalog.products_on_sale().select_related("category__parent").filter(slug=product_slug).first()
    if product is None:
        return None
    info = selectors.purchase_info(product=product, viewer=request.user, storefront=sf)
    return info if info.listed else None


def product(request, slug, product_slug):
    try:
        sf = _shop(slug)
    except _Closed:
        return _closed(request, slug)
    info = _offer(request, sf, product_slug)
    if info is None:
        return _not_sold(request, sf)
    landing_note(request, sf, listed_ids=[info.product.pk])  # from a poster (?src=s or p<id>)
    form = CheckoutForm(request.GET, product=info.product)
    guest_form, _error, _who = guest_fields(request)
    context = _product_context(sf, info, form, guest_form=guest_form, channel=channel_chosen(request))
    context["restock_subscribed"] = not info.stock and catalog.restock_member_subscribed(
        product_id=info.product.pk, user=request.user
    )
    return render(
        request,
        "storefront/product.html",
        {**context, **realname_context(request, info.product), **topup_context(request, info.product)},
    )


@checkout_limited
def buy(request, slug, product_slug):
    """POST: place the order at the storefront's retail price, then choose how to pay."""
    try:
        sf = _shop(slug)
    except _Closed:
        return _closed(request, slug)
    info = _offer(request, sf, product_slug)
    if info is None:
        return _not_sold(request, sf)
    item = info.product
    page_url = reverse("storefront:product", args=[sf.slug, item.slug])
    if request.method != "POST":
        return redirect(page_url)
    form = CheckoutForm(request.POST, product=item)
    guest_form, guest_error, who = guest_fields(request)
    applying = APPLY_COUPON in request.POST  # "使用优惠券": show the discount, place nothing
    error = None if applying else form.error or guest_error
    topup_errors: dict[str, str] = {}  # a direct top-up's refused fields, shown at each field
    if error is None and not applying and (ack := topup_ack_refusal(request, item)):
        error, topup_errors = ack, {TOPUP_ACK: ack}
    if applying:
        guest_form = guest_form_kept(request, guest_form)
    captcha = False  # a risk rule asks for a solved challenge: the form shows it (risk/captcha.py)
    coupon_refused = None  # the coupon's own refusal at placing: shown next to its field
    if error is None and not applying:
        try:
            # Only the product, quantity and the form's token are read: the price is the server's.
            order = services.order_place(
                product=item,
                quantity=form.cleaned_data["quantity"],
                idempotency_key=form.cleaned_data["idempotency_key"],
                ip=client_ip(request),
                device=device_id(request),
                storefront=sf,
                captcha=request.POST.get(CAPTCHA_FIELD, ""),
                # Where the buyer came from: the server's signed note of their landing, never a field.
                source=landing_source(request, sf),
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
    context = _product_context(sf, info, form, error, guest_form, channel_chosen(request))
    coupon = coupon_context(request, product=item, quantity=context["quantity"], unit_price=info.price, storefront=sf)
    if coupon_refused:
        coupon.update(coupon_error=coupon_refused, coupon=None)
    context.update(
        realname_context(request, item), captcha=captcha, **topup_context(request, item, topup_errors), **coupon
    )
    failed = error or coupon.get("coupon_error")
    return render(request, "storefront/product.html", context, status=400 if failed else 200)


@require_GET
def logo(request, slug):
    sf = storefronts.storefronts_public().defer("logo").filter(slug=slug).first()
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


@require_GET
def operator(request, slug):
    """Who runs this shop, in full as far as it is public (电子商务法 第十五条; 网络交易监督管理办法
    第十二条): the operator's licence information, or an exempt individual's statement. Only the
    public fields (``agents.selectors.OperatorPublicInfo``) reach the page; 404 unless the shop is
    public (open, its operator verified)."""
    try:
        sf = _shop(slug)
    except _Closed:
        return _closed(request, slug)
    info = agent_selectors.storefront_operator_public(storefront=sf)
    if info is None:  # verified between the two reads no longer: as closed
        return _closed(request, slug)
    return render(request, "storefront/operator.html", {"shop": sf, "operator": info})


@require_GET
def operator_licence(request, slug):
    """The business licence image of a public storefront's operator (电子商务法 第十五条: shown on
    the shop). Served from the database only while the shop is public and its operator verified
    as a business; never an individual's document. Not in shared caches: a shop closed or an
    identity changed must stop being served at once."""
    sf = storefronts.storefront_for_slug(slug)
    found = agent_selectors.storefront_operator_licence(storefront=sf) if sf is not None else None
    if found is None:
        return HttpResponse(status=404)
    data, version = found
    etag = quote_etag(f"{sf.pk}-{version}")
    response = get_conditional_response(request, etag=etag)
    if response is None:
        response = HttpResponse(data, content_type="image/jpeg")
        response["Content-Length"] = str(len(data))
    response["ETag"] = etag
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    patch_cache_control(response, private=True, no_cache=True)
    return response
