"""The buyer's arbitration page: escalate a decided dispute, then follow the case.

Staff work on cases in admin (``aftersales.admin.arbitration``).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from marketplace.errors import PASS_THROUGH, ServiceError

from ..services import arbitration, tickets
from .tickets import ticket_url


@login_required
@never_cache
def arbitration_detail(request, number):
    """GET: the case (or the escalate form when eligible); POST: escalate with a statement."""
    ticket = tickets.ticket_for_user(user=request.user, number=number, request=request)
    if not tickets.is_buyer(ticket, request.user):  # staff: the case lives in admin
        case = arbitration.case_for_user(user=request.user, number=number, request=request)
        if case is not None:
            return redirect("admin:aftersales_arbitrationcase_change", case.pk)
        return redirect("admin:aftersales_ticket_change", ticket.pk)
    case = arbitration.case_for_user(user=request.user, number=number, request=request)
    return arbitration_page(request, ticket, case, user=request.user)


def arbitration_page(request, ticket, case, *, user, guest_number: str | None = None):
    """The case of the buyer's ``ticket`` (or the escalate form), for a member (``user``) or a
    guest order's guest (``user`` None, ``guest_number``)."""
    error = None
    statement = ""
    if request.method == "POST" and case is None:
        statement = request.POST.get("statement", "")
        try:
            case = arbitration.arbitration_open(ticket=ticket, user=user, statement=statement, request=request)
        except PASS_THROUGH:
            raise
        except ServiceError as exc:
            error = str(exc)
        else:
            messages.success(request, _("Your case is escalated to arbitration. We prepare the dossier."))
            return redirect(ticket_url(ticket, guest_number))
    eligibility = arbitration.arbitration_eligibility(ticket=ticket, user=user)
    return render(
        request,
        "aftersales/arbitration_detail.html",
        {
            "ticket": ticket,
            "case": case,
            "eligibility": eligibility,
            "error": error,
            "statement": statement,
            "guest_number": guest_number,
        },
        status=400 if error else 200,
    )
