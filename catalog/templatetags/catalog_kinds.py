"""``{% kind_icon kind %}`` (``large=True`` for a product's own page): a product kind's tile, the
icon beside a product or an order's product on many pages. Drawn here without a template (it
was ``catalog/_kind_icon.html`` until 2026-12-06, whose include cost more than the tile: issue
17), the same bytes."""

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_ICONS = {"game_card": "bi-controller", "licence_key": "bi-key", "direct_topup": "bi-lightning-charge"}


def kind_icon_html(kind, *, large: bool = False) -> SafeString:
    """The tile of product kind ``kind`` (an unknown kind gets the generic icon)."""
    size = " kind-tile-lg" if large else ""
    icon = _ICONS.get(kind, "bi-gem")
    return mark_safe(  # noqa: S308 (fixed markup; the kind escaped)
        f'<span class="kind-tile kind-{conditional_escape(kind)}{size}" aria-hidden="true">'
        f'<i class="bi {icon} kind-icon"></i></span>\n'
    )


@register.simple_tag
def kind_icon(kind, large=False) -> SafeString:
    return kind_icon_html(kind, large=bool(large))
