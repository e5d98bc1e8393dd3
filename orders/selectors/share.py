"""Share sources: where a storefront order's buyer came from (``Order.source``), the links that
carry one, and how the reports name them.

A source is a short string, at most ``Order.source``'s 40 characters, "<kind>:<what>":
``poster:storefront`` (the shop's poster), ``poster:<product id>`` (a product's poster), and
``coupon:<code>`` (a coupon, recorded by the coupons' checkout). The link a poster's QR code opens
carries ``?src=`` (``s`` for the shop, ``p<product id>`` for a product); the storefront turns it
into a source only when the shop sells that product (``source_from_param``), and remembers it
server-side, signed (``orders.views.share``), until the buyer orders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.translation import gettext as _

from catalog.models import Product
from marketing.models import CouponCode

SOURCE_MAX = 40
POSTER = "poster"
COUPON = "coupon"
POSTER_STOREFRONT = "poster:storefront"
PARAM = "src"
_PARAM = re.compile(r"^(?:s|p([1-9][0-9]{0,17}))$")


def param_for(product: Product | None = None) -> str:
    """The ``?src=`` value of a poster: ``s`` (the shop's), ``p<id>`` (a product's)."""
    return "s" if product is None else f"p{product.pk}"


def source_for(product: Product | None = None) -> str:
    return POSTER_STOREFRONT if product is None else f"{POSTER}:{product.pk}"


def source_from_param(value: str, *, listed_ids) -> str:
    """The source a landing's ``?src=`` names, or "" for anything else: a product poster only for
    a product in ``listed_ids`` (what the shop sells now). Unknown or forged values are ignored."""
    match = _PARAM.match((value or "").strip())
    if match is None:
        return ""
    if match.group(1) is None:
        return POSTER_STOREFRONT
    pk = int(match.group(1))
    return f"{POSTER}:{pk}" if pk in listed_ids else ""


def source_valid(source: str) -> bool:
    """A well-formed source (``order_place`` refuses anything else)."""
    if not source:
        return True
    if len(source) > SOURCE_MAX or not source.isprintable():
        return False
    kind, sep, what = source.partition(":")
    return bool(sep and what and kind.isalpha() and kind.islower() and " " not in source)


@dataclass(frozen=True)
class SourceName:
    kind: str  # "poster", "coupon", ... ; "" for no source
    label: str


def source_names(sources) -> dict[str, SourceName]:
    """How the reports name each source: a product poster by its product's current name (one
    query for all), a coupon by its code and its coupon's name (one query); anything else as it is."""
    sources = set(sources)
    product_ids = {
        int(what) for kind, _sep, what in (s.partition(":") for s in sources) if kind == POSTER and what.isdigit()
    }
    names = dict(Product.objects.filter(pk__in=product_ids).values_list("pk", "name")) if product_ids else {}
    codes = {what for kind, _sep, what in (s.partition(":") for s in sources) if kind == COUPON and what}
    coupon_names = dict(CouponCode.objects.filter(code__in=codes).values_list("code", "coupon__name")) if codes else {}
    out = {}
    for source in sources:
        kind, _sep, what = source.partition(":")
        if not source:
            out[source] = SourceName("", _("No share source (direct visits)"))
        elif source == POSTER_STOREFRONT:
            out[source] = SourceName(POSTER, _("Storefront poster"))
        elif kind == POSTER and what.isdigit():
            name = names.get(int(what)) or _("product #%(id)s") % {"id": what}
            out[source] = SourceName(POSTER, _("Product poster: %(name)s") % {"name": name})
        elif kind == COUPON:
            label = _("Coupon %(code)s") % {"code": what}
            if coupon_names.get(what):
                label = f"{label} · {coupon_names[what]}"
            out[source] = SourceName(COUPON, label)
        else:
            out[source] = SourceName(kind, source)
    return out
