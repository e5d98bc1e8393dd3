"""After-sales' parts of the member's and the guest's order pages, drawn in Python: the codes
card and the no-reason refund offer.

``{% order_codes_list reveal_url_name can_reveal=... aftersales=... %}`` takes ``order`` (its
``live_codes``, ``orders.selectors``), ``refund`` (``{% refund_options %}``, or nothing) and
``PROMISES`` from the context, and draws the card the template ``orders/_codes_list.html`` drew
(until 2026-12-06), byte for byte: the codes (masked, or revealed by a non-htmx reveal), the
reveal forms, the replacement badges, the reveal counts, the report links and the refund
badges. It lives here,
not in orders, because the links and badges are after-sales' (``buyer_url``, ``refund_code``).

Issue 17: the template cost one include and, per code, about 20 nodes (variables, ifs, a with,
four translations and two URL tags) on the delivered order page, the heaviest of the buyer's
path. Every value of the page's data is escaped here (``conditional_escape`` or
``render_value_in_context``, as the template's ``{{ }}`` did); the fixed markup is literal.
A reveal confirmed without htmx shows its code through ``orders/_revealed_code.html``, the
template the htmx answer uses too.

``{% refund_entry %}`` (``oob=True`` in the answer to an htmx reveal, which replaces it in place)
draws what ``orders/_refund_entry.html`` drew: its slot, always there, and in it the 7-day
no-reason refund offer while unrevealed codes of a delivered order can be refunded at once.
"""

from django import template
from django.template.base import FilterExpression, Parser
from django.template.defaulttags import CsrfTokenNode
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_noop, ngettext

from marketplace.templatetags.display import date_in_context, value_in_context
from marketplace.templatetags.i18n_kept import Texts, texts
from marketplace.templatetags.kept import include_unless_quiet, kept_reverse

from .aftersales_refunds import refund_code
from .aftersales_urls import buyer_url

register = template.Library()

# The fixed texts drawn below through ``texts()`` inside f-strings, marked for makemessages here:
# xgettext does not read the fields of f-strings (tests/test_i18n_kept_texts.py checks that each
# one is listed or marked where it is used).
_TEXTS = (
    gettext_noop("Hidden until you reveal it"),
    gettext_noop("Reveal"),
    gettext_noop("Problem with this code?"),
    gettext_noop("refund requested"),
    gettext_noop("unused — refundable"),
    gettext_noop("Your codes"),
    gettext_noop("Refund unused codes"),
)

_CSRF = CsrfTokenNode()
_REFUND_DAYS = FilterExpression("PROMISES.refund_days", Parser([]))


def _code_row(
    context, oc, counter: int, *, order, refund, reveal_url_name: str, can_reveal, aftersales, csrf, t: Texts
) -> str:
    """One code's row; ``t[message]`` is ``{% translate "message" %}`` (the translation, not
    escaped: a template's string literal is safe, and so is its translation)."""
    pk = value_in_context(oc.pk, context)
    revealed = getattr(oc, "revealed", None)
    parts = [
        '\n    <li class="list-group-item py-3" data-testid="code-row">\n'
        '      <div class="d-flex align-items-center gap-2">\n'
        '        <span class="code-index align-self-start mt-1">',
        value_in_context(getattr(oc, "number", None) or counter, context),
        f'</span>\n        <div class="flex-grow-1 min-w-0" id="slot-{pk}">\n          ',
    ]
    if revealed:
        with context.push(card_number=revealed["card_number"], secret=revealed["secret"], code_id=oc.pk):
            parts.append(context.template.engine.get_template("orders/_revealed_code.html").render(context))
        parts.append("\n          \n        </div>\n        ")
    else:
        parts.append(
            f'<span class="code-box masked" aria-label="{t["Hidden until you reveal it"]}">••••••••••••••••</span>'
            "\n        </div>\n        "
        )
    if can_reveal and not revealed:
        url = conditional_escape(kept_reverse(reveal_url_name, args=[order.number, oc.pk]))
        parts.append(
            f'\n        <form method="post" action="{url}" hx-post="{url}" hx-target="#slot-{pk}" hx-swap="innerHTML"'
            ' data-remove-after-success data-confirm-modal="#reveal-confirm" class="flex-shrink-0">\n'
            f"          {csrf}\n"
            '          <button class="btn btn-sm btn-outline-success" type="submit" data-testid="reveal">'
            f'<i class="bi bi-eye"></i> {t["Reveal"]}</button>\n'
            "        </form>\n        "
        )
    parts.append("\n      </div>\n      ")
    if oc.replaces:
        n = value_in_context(oc.replaces, context)
        parts.append(
            '<div class="small mt-2 ms-5"><span class="badge text-bg-info-subtle border border-info-subtle'
            ' text-info-emphasis" data-testid="replacement-badge"><i class="bi bi-arrow-repeat"></i> '
            + t[gettext_noop("Replacement for code #%(n)s")] % {"n": n}
            + "</span></div>"
        )
    parts.append("\n      ")
    if oc.reveal_count or aftersales:
        parts.append('<div class="small text-secondary mt-2 ms-5 d-flex flex-wrap gap-3">')
        if oc.reveal_count:
            n = value_in_context(oc.reveal_count, context)
            times = ngettext("Revealed %(n)s time", "Revealed %(n)s times", oc.reveal_count) % {"n": n}
            parts.append(f'<span><i class="bi bi-journal-check"></i> {times}</span>')
        if aftersales:
            number = value_in_context(order.number, context)
            parts.append(
                '<a class="link-secondary text-decoration-none"'
                f' href="{conditional_escape(buyer_url(context, "ticket_new"))}'
                f'?order={number}&amp;code={pk}&amp;kind=invalid" data-testid="report-code"><i class="bi bi-flag"></i>'
                f' <span class="text-decoration-underline">{t["Problem with this code?"]}</span></a>'
            )
        parts.append("</div>")
    parts.append("\n      ")
    if aftersales and refund:
        rc = refund_code(refund, oc.pk)
        request = rc.request if rc is not None else None
        if request:
            href = conditional_escape(buyer_url(context, "refund_detail", request.public_id))
            status = value_in_context(request.get_status_display(), context)
            parts.append(
                f'<div class="small mt-2 ms-5"><a class="badge text-bg-warning text-decoration-none" href="{href}">'
                f"{t['refund requested']} · {status}</a></div>"
            )
        elif oc.pk in refund.refundable_ids:
            parts.append(
                f'<div class="small mt-2 ms-5" id="refundable-{pk}"><span class="badge text-bg-success-subtle border'
                ' border-success-subtle text-success-emphasis" data-testid="code-refundable">'
                f"{t['unused — refundable']}</span></div>"
            )
    parts.append("\n    </li>\n    ")
    return "".join(parts)


@register.simple_tag(takes_context=True)
def order_codes_list(context, reveal_url_name: str, *, can_reveal=False, aftersales=False) -> SafeString:
    """The codes card of ``order`` (see the module's docstring); ``can_reveal``: the reveal
    forms (a guest only after the proof); ``aftersales``: the report and refund links."""
    order = context.get("order")
    refund = context.get("refund")
    days = _REFUND_DAYS.resolve(context)
    csrf = _CSRF.render(context) if can_reveal else ""
    t = texts()
    intro = t[gettext_noop("Revealing a code is logged; unrevealed codes can be refunded within %(days)s days.")] % {
        "days": value_in_context(days, context)
    }
    parts = [
        '\n<div class="card mb-3" data-testid="codes-card">\n  <div class="card-header">\n'
        f'    <div class="fw-semibold"><i class="bi bi-key text-success"></i> {t["Your codes"]}</div>\n'
        f'    <div class="small text-secondary mt-1">{intro}</div>\n'
        '  </div>\n  <ul class="list-group list-group-flush">\n    '
    ]
    kw = {
        "order": order,
        "refund": refund,
        "reveal_url_name": reveal_url_name,
        "can_reveal": can_reveal,
        "aftersales": aftersales,
        "csrf": csrf,
        "t": t,
    }
    parts.extend(_code_row(context, oc, i, **kw) for i, oc in enumerate(order.live_codes, start=1))
    parts.append("\n  </ul>\n</div>\n")
    return mark_safe("".join(parts))  # noqa: S308 (fixed markup; every value escaped above)


@register.simple_tag(takes_context=True)
def refund_entry(context, *, oob=False) -> SafeString:
    """The refund offer's slot with, when ``refund`` (``{% refund_options %}``) has codes of the
    delivered ``order`` to refund at once, the offer: the window's end, how many, the link."""
    order = context.get("order")
    refund = context.get("refund")
    head = '\n<div id="refund-entry-slot" hx-swap-oob="true">\n' if oob else '\n<div id="refund-entry-slot">\n'
    if not (order.status == "delivered" and refund and refund.window_open and refund.refundable_ids):
        return mark_safe(head + "\n</div>\n")  # noqa: S308 (fixed markup)
    count = len(refund.refundable_ids)
    n = value_in_context(count, context)
    days = value_in_context(_REFUND_DAYS.resolve(context), context)
    until = date_in_context(refund.window_end, "Y-m-d H:i", context)
    href = conditional_escape(buyer_url(context, "refund_new", order.number))
    t = texts()
    title = t[gettext_noop("%(days)s-day no-reason refund")] % {"days": days}
    # The date and time on one line (it wrapped between them at 1280 px in English).
    until = t[gettext_noop("Codes you have not revealed can be refunded until %(date)s, no reason needed.")] % {
        "date": f'<span class="text-nowrap">{until}</span>'
    }
    many = ngettext(
        "%(n)s unrevealed code can be refunded now.", "%(n)s unrevealed codes can be refunded now.", count
    ) % {"n": n}
    return mark_safe(  # noqa: S308 (fixed markup; every value escaped above)
        head + '\n<div class="card mb-3 border-success-subtle bg-success-subtle" data-testid="refund-entry">\n'
        '  <div class="card-body d-flex flex-column flex-sm-row align-items-sm-center gap-2 gap-sm-3 py-3">\n'
        '    <div class="flex-grow-1 small">\n'
        '      <div class="fw-semibold text-success-emphasis"><i class="bi bi-arrow-counterclockwise"></i>'
        f" {title}</div>\n"
        f'      <div class="text-secondary">{until}</div>\n'
        '      <div class="text-success-emphasis fw-semibold mt-1" data-testid="refundable-count"'
        f' data-count="{n}">{many}</div>\n'
        "    </div>\n"
        f'    <a class="btn btn-success flex-shrink-0 fw-semibold" href="{href}" data-testid="refund-unused">'
        f"{t['Refund unused codes']}</a>\n"
        "  </div>\n</div>\n\n</div>\n"
    )


@register.simple_tag(takes_context=True)
def refund_requests(context) -> SafeString:
    """``{% include "orders/_refund_requests.html" %}``, not rendered when ``refund``
    (``{% refund_options %}``, or nothing) has no requests."""
    shown = bool(getattr(context.get("refund"), "requests", None))
    return include_unless_quiet(context, "orders/_refund_requests.html", shown)
