"""Parts of the member's and the guest's order pages drawn in Python (issue 17): the head card,
the details card, the history card and the status badge (also the order rows' and the status
poll's). Each draws what its template drew until 2026-12-06 (``orders/_order_head.html``,
``_order_info.html``, ``_order_history.html``, ``_status_badge.html``), byte for byte.

The delivered order page, the heaviest of a buyer's path, spent most of its Python in Django's
template machinery: an include, a context push and a node per variable, ``if`` and translation.
Here the fixed markup is literal and every value is escaped as the template's ``{{ }}`` escaped
it (``render_value_in_context``: local time, localisation, ``conditional_escape``); translations
are the same messages (``{% translate "..." %}`` is not escaped, a template's literal being
safe; ``{% blocktranslate %}`` escapes its values, not its text).
"""

from datetime import timedelta
from types import SimpleNamespace

from django import template
from django.conf import settings
from django.template.base import FilterExpression, Parser
from django.urls import get_script_prefix, get_urlconf
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_noop, ngettext

from catalog.templatetags.catalog_kinds import kind_icon_html
from marketplace.localcache import SAMPLE_NUMBER, Drawn, shown_text
from marketplace.templatetags.display import date_in_context, money_format, order_no, value_in_context
from marketplace.templatetags.i18n_kept import texts
from marketplace.templatetags.kept import include_unless_quiet, kept_reverse

register = template.Library()

# The fixed texts drawn below through ``texts()``, marked for makemessages here: xgettext does not
# read the fields of f-strings (tests/test_i18n_kept_texts.py checks that each one is listed).
_TEXTS = (
    gettext_noop("Total"),
    gettext_noop("Order number"),
    gettext_noop("Unit price"),
    gettext_noop("Quantity"),
    gettext_noop("Discount"),
    gettext_noop("Ordered at"),
    gettext_noop("Paid at"),
    gettext_noop("Delivered at"),
    gettext_noop("Order details"),
    gettext_noop("History"),
)
_REFUND_DAYS = FilterExpression("PROMISES.refund_days", Parser([]))
_drawn = Drawn(limit=64)  # the reveal confirmation, by language and refund days
# The statuses orders/_order_alerts.html has a line for (with ``confirming``, its conditions).
_ASKING = frozenset({"pending", "paid", "refund_pending", "expired"})

_BADGE_CLASS = {
    "delivered": "text-bg-success",
    "pending": "text-bg-warning",
    "paid": "text-bg-info",
    "refund_pending": "text-bg-secondary",
    "refunded": "text-bg-secondary",
}
_BADGE_ICON = {
    "delivered": '<i class="bi bi-check-circle-fill"></i> ',
    "pending": '<i class="bi bi-hourglass-split"></i> ',
    "paid": '<i class="bi bi-truck"></i> ',
}


def status_badge_html(order, *, compact: bool = False) -> SafeString:
    """The order's status as a badge: ``order`` has ``status`` and ``get_status_display()``."""
    status = order.status
    size = "" if compact else "fs-6"
    return mark_safe(  # noqa: S308 (fixed markup; the status and its label escaped)
        f'<span class="badge rounded-pill fw-semibold {size} {_BADGE_CLASS.get(status, "text-bg-light border")}"'
        f' data-testid="order-status" data-status="{conditional_escape(status)}">{_BADGE_ICON.get(status, "")}'
        f"{conditional_escape(order.get_status_display())}</span>\n"
    )


@register.simple_tag
def status_badge(order, compact=False) -> SafeString:
    """``{% status_badge order compact=True %}``: see ``status_badge_html``."""
    return status_badge_html(order, compact=bool(compact))


def _value(value, context) -> str:
    """``{{ value }}``."""
    return value_in_context(value, context)


def _money(value, context) -> str:
    """``{{ value|money }}``."""
    return value_in_context(money_format(value), context)


@register.simple_tag(takes_context=True)
def order_head(context, status_url_name: str) -> SafeString:
    """The head card of ``order``: its product, quantity, total, refunded codes and the status
    badge, polled (``status_url_name``, members' and guests' differ) while payment or delivery
    is under way (``confirming``: back from a gateway's cashier)."""
    order = context.get("order")
    confirming = context.get("confirming")
    items = ngettext("%(n)s item", "%(n)s items", order.quantity) % {"n": _value(order.quantity, context)}
    refunded = ""
    if order.refunded_quantity:
        n = order.refunded_quantity
        refunded = (
            ' · <span class="text-success-emphasis" data-testid="refunded-count">'
            + ngettext("%(n)s code refunded", "%(n)s codes refunded", n) % {"n": _value(n, context)}
            + "</span>"
        )
    poll = ""
    if order.status == "paid" or confirming:
        url = conditional_escape(kept_reverse(status_url_name, args=[order.number]))
        every = "10s" if order.fulfilment == "manual" and not confirming else "2s"
        poll = f'hx-get="{url}?seen={_value(order.status, context)}" hx-trigger="every {every}" hx-swap="innerHTML"'
    return mark_safe(  # noqa: S308 (fixed markup; every value escaped above)
        '\n<div class="card mb-3">\n  <div class="card-body d-flex flex-wrap gap-3 align-items-center">\n'
        f"    {kind_icon_html(order.product.kind)}\n"
        '    <div class="order-head-text min-w-0">\n'
        f'      <h1 class="h6 mb-1 text-break">{_value(order.product_name, context)}</h1>\n'
        f'      <div class="small text-secondary">{items} · {texts()["Total"]}'
        f' <span class="text-price fw-bold">{_money(order.total, context)}</span>{refunded}</div>\n'
        "    </div>\n"
        f'    <div class="flex-shrink-0" {poll}>{status_badge_html(order)}</div>\n'
        "  </div>\n</div>\n"
    )


@register.simple_tag(takes_context=True)
def order_info(context) -> SafeString:
    """The details card of ``order``: number, prices, quantity and its times."""
    order = context.get("order")
    t = texts().__getitem__
    rows = [
        f'<dt class="col-4">{t("Order number")}</dt><dd class="col-8 font-monospace text-break small"'
        f' data-testid="order-number">{_value(order_no(order.number), context)}</dd>\n',
        f'      <dt class="col-4">{t("Unit price")}</dt><dd class="col-8">{_money(order.unit_price, context)}</dd>\n',
        f'      <dt class="col-4">{t("Quantity")}</dt><dd class="col-8">{_value(order.quantity, context)}</dd>\n      ',
    ]
    if order.discount:
        rows.append(f'<dt class="col-4">{t("Discount")}</dt><dd class="col-8">−{_money(order.discount, context)}</dd>')
    rows.append(
        f'\n      <dt class="col-4">{t("Total")}</dt><dd class="col-8 fw-bold text-price" data-testid="order-total">'
        f"{_money(order.total, context)}</dd>\n"
        f'      <dt class="col-4">{t("Ordered at")}</dt><dd class="col-8">'
        f"{date_in_context(order.created_at, 'Y-m-d H:i', context)}</dd>\n      "
    )
    if order.paid_at:
        rows.append(
            f'<dt class="col-4">{t("Paid at")}</dt><dd class="col-8">'
            f"{date_in_context(order.paid_at, 'Y-m-d H:i', context)}</dd>"
        )
    rows.append("\n      ")
    if order.delivered_at:
        rows.append(
            f'<dt class="col-4">{t("Delivered at")}</dt><dd class="col-8">'
            f"{date_in_context(order.delivered_at, 'Y-m-d H:i', context)}</dd>"
        )
    return mark_safe(  # noqa: S308 (fixed markup; every value escaped above)
        '\n<div class="card mb-3">\n'
        f'  <div class="card-header small fw-semibold">{t("Order details")}</div>\n'
        '  <div class="card-body small">\n'
        '    <dl class="row mb-0 summary-list">\n      ' + "".join(rows) + "\n    </dl>\n  </div>\n</div>\n"
    )


@register.simple_tag(takes_context=True)
def order_history(context) -> SafeString:
    """The history card of ``order``: its ``timeline`` (``orders.selectors``), reissues marked."""
    order = context.get("order")
    rows = [
        '\n        <li class="d-flex justify-content-between gap-2"'
        + (' data-testid="history-reissue"' if h.reissue else "")
        + f'><span>{_value(h.label, context)}</span><span class="text-secondary text-nowrap">'
        f"{date_in_context(h.at, 'm-d H:i:s', context)}</span></li>\n      "
        for h in order.timeline
    ]
    return mark_safe(  # noqa: S308 (fixed markup; every value escaped above)
        '\n<div class="card">\n'
        f'  <div class="card-header small fw-semibold">{texts()["History"]}</div>\n'
        '  <div class="card-body small">\n'
        '    <ol class="timeline">\n      ' + "".join(rows) + "\n    </ol>\n  </div>\n</div>\n"
    )


@register.simple_tag(takes_context=True)
def order_alerts(context, cancel_url_name: str) -> SafeString:
    """``{% include "orders/_order_alerts.html" with cancel_url_name=... %}``, not rendered when
    it shows nothing (not ``confirming``, and a status that asks nothing of the buyer); for a
    pending order, the pending alert's markup kept (``_pending_alert``)."""
    order = context.get("order")
    if order.status == "pending":
        drawn = _pending_alert(context, order, cancel_url_name)
        if drawn is not None:
            return drawn
    shown = bool(context.get("confirming")) or order.status in _ASKING
    return include_unless_quiet(context, "orders/_order_alerts.html", shown, cancel_url_name=cancel_url_name)


# A pending order's alerts show two values of their own: the order's number (in the links to pay
# and to cancel) and the viewer's CSRF token. They are drawn once per process per everything else
# they show (language, URL prefix, cancel link, ``confirming``, the time the codes are held until)
# with those two put in (``Drawn.template_for_order``): the include cost about 0.3 ms on every
# view of a pending order (a blocktranslate, two URLs, the token).
_pending = Drawn(limit=1024)


def _pending_alert(context, order, cancel_url_name: str) -> SafeString | None:
    """The alerts of a pending ``order`` from the kept markup, or None where the samples cannot
    stand for its values (Django's include then)."""
    held_until = timezone.localtime(order.expires_at) if settings.USE_TZ else order.expires_at
    confirming = bool(context.get("confirming"))
    key = (get_script_prefix(), get_urlconf(), cancel_url_name, confirming, held_until.hour, held_until.minute)
    sample = {
        "order": SimpleNamespace(number=SAMPLE_NUMBER, status="pending", expires_at=held_until, topup=None),
        "confirming": confirming,
        "cancel_url_name": cancel_url_name,
    }
    return _pending.template_for_order(
        "orders/_order_alerts.html", key, sample, number=order.number, token=context.get("csrf_token")
    )


def order_alerts_forget() -> None:
    """Forget the pending alerts drawn (tests)."""
    _pending.clear()


@register.simple_tag(takes_context=True)
def topup_info(context) -> SafeString:
    """``{% include "orders/_topup_info.html" %}``, not rendered for an order without a top-up."""
    shown = bool(getattr(context.get("order"), "topup", None))
    return include_unless_quiet(context, "orders/_topup_info.html", shown)


@register.simple_tag(takes_context=True)
def reveal_confirm(context) -> SafeString:
    """``orders/_reveal_confirm.html``: the same for every viewer but for the language and the
    refund days it names, drawn once per process for each."""
    days = _REFUND_DAYS.resolve(context)
    return _drawn.template("orders/_reveal_confirm.html", (shown_text(days),), {"PROMISES": {"refund_days": days}})


@register.simple_tag(takes_context=True)
def email_refusal(context) -> SafeString:
    """``orders/_email_refusal.html``: the mail server refused the buyer's address of ``order``
    (``order.email_refused``, read with the page's order), not rendered when it did not. On a
    guest's page (``guest``) the address is masked (``email_hint``) unless this browser proved
    the order (``unlocked``) or placed it (``placed_here``): whoever holds the order's link sees
    no more of the address than the page's proof card shows."""
    order = context.get("order")
    refusal = getattr(order, "email_refused", None)
    if refusal is None:
        return SafeString("")  # what the template draws without one
    guest = order.buyer_id is None
    placed_here = bool(context.get("placed_here"))
    address = refusal.address
    if guest and not (context.get("unlocked") or placed_here):
        address = context.get("email_hint") or ""
    retry_until = None
    if not refusal.permanent and order.delivered_at:
        retry_until = order.delivered_at + timedelta(hours=settings.DELIVERY_EMAIL_MAX_AGE_HOURS)
    values = {
        "refusal": refusal,
        "address": address,
        "retry_until": retry_until,
        "stopped": retry_until is not None and retry_until <= timezone.now(),
        "guest": guest,
        "may_set_password": guest and placed_here and not order.query_password,
    }
    return include_unless_quiet(context, "orders/_email_refusal.html", True, **values)
