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


@register.simple_tag
def order_row(order, testid, truncate=False):
    """``order`` with its product loaded (the row shows its kind)."""
    key = (
        get_language(),
        timezone.get_current_timezone_name(),
        order.pk,
        order.number,
        order.buyer_id is None,
        order.status,
        order.product_name,
        order.quantity,
        order.created_at,
        order.total,
        order.product.kind,
        testid,
        bool(truncate),
    )
    context = {"order": order, "testid": testid, "truncate": truncate}
    html = _rows.get_or_draw(key, lambda: get_template(ROW_TEMPLATE).render(context))
    return mark_safe(html)  # noqa: S308 (rendered, and escaped, by the template engine)
