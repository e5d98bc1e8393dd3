"""``{% order_row order testid truncate %}``: one order as a row of a list (orders/_order_row.html).

A buyer's order list draws 20 rows, and an order's row changes only with its status. Each row
is drawn once per process for each set of values it shows (a bounded LRU keyed on all of
them, with the language and the time zone) and reused: nothing shown can be older than the
order row the page has just read."""

from django import template
from django.template.loader import get_template
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from marketplace.localcache import Drawn

register = template.Library()

ROW_TEMPLATE = "orders/_order_row.html"
_rows = Drawn(limit=4096)


def order_rows_forget() -> None:
    """Forget every row drawn (tests)."""
    _rows.clear()


def _row(order, testid, truncate, language: str, zone: str) -> str:
    key = (
        language,
        zone,
        order.pk,
        order.number,
        order.buyer_id is None,
        order.status,
        order.product_name,
        order.quantity,
        order.created_at,
        order.total,
        order.product.kind,
        getattr(order, "email_refusal_permanent", None),
        testid,
        bool(truncate),
    )
    context = {"order": order, "testid": testid, "truncate": truncate}
    return _rows.get_or_draw(key, lambda: get_template(ROW_TEMPLATE).render(context))


@register.simple_tag
def order_row(order, testid, truncate=False):
    """``order`` with its product loaded (the row shows its kind)."""
    html = _row(order, testid, truncate, get_language(), timezone.get_current_timezone_name())
    return mark_safe(html)  # noqa: S308 (rendered, and escaped, by the template engine)


@register.simple_tag
def order_rows(orders, testid, truncate=False):
    """``{% for order in orders %}\n  {% order_row order testid truncate %}\n  {% endfor %}``:
    the rows of a list with the loop's whitespace, the language and time zone looked up once
    for all of them (each lookup, the loop's context push and the tag's arguments were about
    half of a kept row's cost)."""
    language, zone = get_language(), timezone.get_current_timezone_name()
    html = "".join(f"\n  {_row(order, testid, truncate, language, zone)}\n  " for order in orders)
    return mark_safe(html)  # noqa: S308 (rendered, and escaped, by the template engine)
