"""``{% arbitration_box %}`` on the buyer's ticket page: the escalate form when the ticket may go
to arbitration, the case's status once it has."""

from django import template

from aftersales.models import ArbitrationCase
from aftersales.services import arbitration, tickets

register = template.Library()


@register.inclusion_tag("aftersales/arbitration_box.html", takes_context=True)
def arbitration_box(context):
    ticket = context.get("ticket")
    request = context.get("request")
    # On a guest order's ticket page (``guest_number``) the buyer is the guest (user None).
    user = None if context.get("guest_number") else getattr(request, "user", None)
    if ticket is None or (user is None and not context.get("guest_number")) or not tickets.is_buyer(ticket, user):
        return {"show": False}
    case = ArbitrationCase.objects.filter(ticket=ticket).first()
    eligibility = None if case else arbitration.arbitration_eligibility(ticket=ticket, user=user)
    return {
        "show": case is not None or eligibility.allowed,
        "ticket": ticket,
        "case": case,
        "eligibility": eligibility,
        "csrf_token": context.get("csrf_token"),
        "guest_number": context.get("guest_number"),
    }
