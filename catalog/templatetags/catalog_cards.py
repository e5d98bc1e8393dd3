"""``{% product_card info href price agent_price heading %}``: one product card of a grid.

A catalogue, home or storefront page draws up to 50 cards, the same HTML for everyone who
sees the same product at the same price and stock. Each card is drawn once per process for
each set of values it shows (kept in a bounded LRU keyed on all of them, language included)
and reused: nothing it shows can be older than the values passed in, which the page computes
on every request (the stock included)."""

from django import template
from django.template.loader import get_template
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from marketplace.localcache import Drawn

register = template.Library()

CARD_TEMPLATE = "catalog/_product_card.html"
_cards = Drawn(limit=4096)


def product_cards_forget() -> None:
    """Forget every card drawn (tests; a template change needs a restart anyway)."""
    _cards.clear()


@register.simple_tag
def product_card(info, href, price, agent_price=None, heading="h2"):
    """``info``: an orders.selectors PurchaseInfo (its product with the supplier loaded);
    ``href`` None: the product's own page (reversed only when the card is drawn)."""
    return mark_safe(_card(get_language(), info, href, price, agent_price, heading))  # noqa: S308 (rendered, and escaped, by the template engine)


@register.simple_tag
def product_cards(infos):
    """``{% product_cards infos %}``: the cards of a grid, each on its product's page, at the
    viewer's price (and an agent's own cost): ``product_card`` for each, without a template loop."""
    language = get_language()
    html = "".join(_card(language, info, None, info.list_price, info.agent_price, "h2") for info in infos)
    return mark_safe(html)  # noqa: S308 (rendered, and escaped, by the template engine)


def _card(language, info, href, price, agent_price, heading) -> str:
    p = info.product
    supplier = p.supplier
    key = (
        language,
        p.pk,
        p.name,
        p.kind,
        p.face_value,
        supplier.is_authorised if supplier is not None else None,
        p.slug if href is None else str(href),
        price,
        agent_price,
        info.stock,
        info.upstream,
        heading,
    )

    def draw() -> str:
        context = {
            "info": info,
            "href": p.get_absolute_url() if href is None else href,
            "price": price,
            "agent_price": agent_price,
            "heading": heading,
        }
        return get_template(CARD_TEMPLATE).render(context)

    return _cards.get_or_draw(key, draw)
