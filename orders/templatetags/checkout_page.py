"""Parts of the checkout page drawn once per process for each set of values they show (issue 17):
the product head, the quantity field with its limits, the choice of how to pay and the "Before
you buy" card.

Each is the same HTML for everyone who sees the same values, and drawing them through the
template engine on every request (an include or some thirty nodes each, ``{% blocktranslate %}``
with counts, the channels' loop) was most of the checkout's own work. As on the product page
(``catalog/templatetags/catalog_product.py``), each part is drawn by its template, in a context
holding only what it shows, and kept in a bounded LRU keyed on all of those values, language
included: nothing shown can be older than what the view computed on this request (the stock and
the member's balance included), and the bytes are the template's own.

Values are keyed by their text where their text is what is shown (``Decimal("1.0")`` and
``Decimal("1.00")`` are equal keys but draw differently)."""

from django import template
from django.utils.safestring import SafeString

from marketplace.localcache import Drawn, shown_text

register = template.Library()

PRODUCT_TEMPLATE = "orders/_checkout_product.html"
QUANTITY_TEMPLATE = "orders/_checkout_quantity.html"
BEFORE_TEMPLATE = "orders/_checkout_before.html"
CHANNELS_TEMPLATE = "payments/_channel_choice.html"
_drawn = Drawn(limit=2048)


def checkout_parts_forget() -> None:
    """Forget every part drawn (tests; a template change needs a restart anyway)."""
    _drawn.clear()


@register.simple_tag(takes_context=True)
def checkout_product(context) -> SafeString:
    """The product head: its kind, name and link, the unit price (an agent's own against the
    public one) and the stock."""
    product, info, unit_price = context["product"], context["info"], context["unit_price"]
    key = (
        product.slug,
        product.name,
        product.kind,
        product.supply_mode,
        shown_text(product.price),
        shown_text(unit_price),
        info.stock,
        bool(info.upstream),
    )
    return _drawn.template(PRODUCT_TEMPLATE, key, {"product": product, "info": info, "unit_price": unit_price})


@register.simple_tag(takes_context=True)
def checkout_quantity(context) -> SafeString:
    """The quantity field, its limits per order and how long the order is held."""
    product = context["product"]
    values = {
        "quantity": context["quantity"],
        "quantity_max": context["quantity_max"],
        "unit_price": context["unit_price"],
        "coupon": bool(context.get("coupon")),
        "hold_minutes": context["hold_minutes"],
    }
    key = (
        product.min_per_order,
        product.max_per_order,
        product.is_direct_topup,
        values["quantity"],
        values["quantity_max"],
        shown_text(values["unit_price"]),
        values["coupon"],
        values["hold_minutes"],
    )
    return _drawn.template(QUANTITY_TEMPLATE, key, {"product": product, **values})


@register.simple_tag(takes_context=True)
def checkout_before(context) -> SafeString:
    """The "Before you buy" card: the price, the delivery and the refund promise (a top-up's own)."""
    product, promises = context["product"], context.get("PROMISES")
    topup = product.is_direct_topup
    refund_days = None if topup or promises is None else promises.refund_days
    return _drawn.template(BEFORE_TEMPLATE, (topup, refund_days), {"product": product, "PROMISES": promises})


@register.simple_tag(takes_context=True)
def checkout_channels(context) -> SafeString:
    """The choice of how to pay (``payments/_channel_choice.html``): the live channels with the
    member's balance (disabled, with the reason and a recharge link, when it does not cover the
    total shown: the coupon's, else the estimate), the one chosen checked."""
    channels = context.get("PAY_CHANNELS") or []
    chosen = context.get("channel")
    coupon = context.get("coupon")
    total = coupon["total"] if coupon else context.get("estimated_total")
    # The member's balance is read for this request and drawn by its value (a key of the kept
    # part): never another viewer's; short when it does not cover the total shown.
    short = any(c.code == "balance" and total is not None and c.available < total for c in channels)
    key = (chosen, short, tuple((c.code, c.name, shown_text(c.available)) for c in channels))
    return _drawn.template(
        CHANNELS_TEMPLATE, key, {"PAY_CHANNELS": channels, "channel": chosen, "balance_short": short}
    )
