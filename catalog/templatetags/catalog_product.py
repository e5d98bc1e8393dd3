"""``{% product_summary %}`` and ``{% product_assurance %}``: the two cards of a product's own page.

Both show the same HTML to everyone who sees the same product at the same price and stock, and
their ``{% include %}`` (template lookup, context push, some fifty nodes) was most of the product
page's own work (issue 17). Each is drawn by its template once per process for each set of values
it shows (a bounded LRU keyed on all of them, language included, as ``catalog_cards``) and reused:
nothing shown can be older than the values the page computed on this request, the stock included.
The same bytes the includes drew (the templates are unchanged and still the source)."""

from django import template

from marketplace.localcache import Drawn, shown_text

register = template.Library()

SUMMARY_TEMPLATE = "catalog/_product_summary.html"
ASSURANCE_TEMPLATE = "catalog/_product_assurance.html"
_drawn = Drawn(limit=2048)


def product_parts_forget() -> None:
    """Forget every card drawn (tests; a template change needs a restart anyway)."""
    _drawn.clear()


@register.simple_tag(takes_context=True)
def product_summary(context, product, price, agent_price, stock, upstream):
    """The product's card (``catalog/_product_summary.html``): name, kind, price, stock, guarantees."""
    promises = context.get("PROMISES")
    supplier = product.supplier
    key = (
        product.pk,
        product.name,
        product.kind,
        shown_text(product.face_value),
        supplier.is_authorised if supplier is not None else None,
        shown_text(price),
        shown_text(agent_price),
        stock,
        upstream,
        promises.refund_days if promises is not None else None,
    )
    context = {
        "product": product,
        "price": price,
        "agent_price": agent_price,
        "stock": stock,
        "upstream": upstream,
        "PROMISES": promises,
    }
    return _drawn.template(SUMMARY_TEMPLATE, key, context)


@register.simple_tag(takes_context=True)
def product_assurance(context, product):
    """The supply source and refund policy card (``catalog/_product_assurance.html``). The
    first-response promise is read (and keyed) only when the card states it: the platform's
    policy, shown for a product of codes without its own policy."""
    promises = context.get("PROMISES")
    supplier = product.supplier
    states_promise = not product.is_direct_topup and not product.refund_policy and promises is not None
    key = (
        supplier.name,
        supplier.is_authorised,
        supplier.authorisation_cert_no,
        supplier.authorised_until,
        supplier.authorisation_lookup_url,
        product.is_direct_topup,
        product.refund_policy,
        (promises.refund_days, promises.response_hours) if states_promise else None,
    )
    return _drawn.template(ASSURANCE_TEMPLATE, key, {"product": product, "PROMISES": promises})
