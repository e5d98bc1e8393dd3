"""For the buyer's order page: where the 7-day no-reason refund stands on an order."""

from django import template

from aftersales.services import no_reason, tickets

register = template.Library()


@register.simple_tag(takes_context=True)
def refund_options(context, order):
    """``{% refund_options order as refund %}``: the codes' refund state, the window, the requests."""
    if order.buyer_id is None:  # a guest order: the guest is counted by the order's email
        return no_reason.refund_options(order=order, user=None)
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or user.pk != order.buyer_id:
        user = order.buyer
    return no_reason.refund_options(order=order, user=user)


@register.simple_tag
def guest_tickets(order):
    """``{% guest_tickets order as tickets %}``: the guest's tickets on a guest order (its page
    lists them; a guest has no ticket list of their own)."""
    return list(tickets.tickets_for_guest_order(order))


@register.filter
def refund_code(options, order_code_id):
    """``{% with c=refund|refund_code:oc.pk %}``: that code's CodeOption (or None)."""
    for c in options.codes:
        if c.order_code.pk == order_code_id:
            return c
    return None
