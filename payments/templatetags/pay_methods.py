"""``{% pay_methods %}``: the "Choose how to pay" page's list of ways to pay (issue 17).

The list is the same markup for every order but for the order's number (in each form's
address) and the viewer's CSRF token: it is drawn by its template (``payments/_pay_methods.html``)
once per process per everything else it shows (language, URL prefix, a guest's email or the
member's balance and whether it covers the amount, the live channels' codes and names, a phone
or not), with those two put in (``Drawn.template_for_order``). Its nodes (the channels' loop, a
URL and a token per form, the balance's ``blocktranslate``) were about 0.4 ms of the page on
every view. The balance is the view's, read on this request. A number or a token the samples
cannot stand for is drawn by the template as it stands."""

from types import SimpleNamespace

from django import template
from django.template.loader import get_template
from django.urls import get_script_prefix, get_urlconf
from django.utils.safestring import SafeString, mark_safe

from marketplace.localcache import SAMPLE_NUMBER, Drawn, shown_text

register = template.Library()

TEMPLATE = "payments/_pay_methods.html"
_drawn = Drawn(limit=1024)


def pay_methods_forget() -> None:
    """Forget every list drawn (tests)."""
    _drawn.clear()


@register.simple_tag(takes_context=True)
def pay_methods(context) -> SafeString:
    """The ways to pay ``order`` (``choose``'s context: ``order``, ``balance``, ``gateways``,
    ``on_phone`` and the request's ``csrf_token``)."""
    order, balance = context["order"], context.get("balance")
    is_guest = bool(getattr(order, "is_guest", False))
    values = {
        "balance": balance,
        "balance_short": not is_guest and balance < order.total,
        "gateways": [SimpleNamespace(code=gw.code, name=str(gw.name)) for gw in context["gateways"]],
        "on_phone": context.get("on_phone"),
    }
    email = order.guest_email if is_guest else None
    key = (
        get_script_prefix(),
        get_urlconf(),
        is_guest,
        email,
        None if is_guest else shown_text(balance),
        values["balance_short"],
        tuple((gw.code, gw.name) for gw in values["gateways"]),
        bool(values["on_phone"]),
    )
    sample = {
        "order": SimpleNamespace(number=SAMPLE_NUMBER, is_guest=is_guest, guest_email=email),
        **values,
        "on_phone": bool(values["on_phone"]),
    }
    token = context.get("csrf_token")
    kept = _drawn.template_for_order(TEMPLATE, key, sample, number=order.number, token=token)
    if kept is not None:
        return kept
    part = {"order": order, "csrf_token": token, **values}
    return mark_safe(get_template(TEMPLATE).render(part))  # noqa: S308 (rendered, and escaped, by the template engine)
