"""A guest order's after-sales, on the guest's order page (no account): the no-reason refund,
tickets about the order or a code (with images), their threads, refund requests, arbitration.

The same services and templates as a member's (``user=None``: the order's guest), under the
guest order's address ``/orders/guest/<number>/...``. A browser may see the order with a view
grant (``orders.views.guest``); after-sales needs the proof (the query password or an emailed
code) the browser made a short while ago, as revealing codes does. Without a view grant every
address here is 404 (order numbers cannot be probed); with a view grant but no proof a page
sends the guest to the order's proof form, and a POST is refused (403, audited) and writes
nothing. A ticket, request or image of another order is 404 here.
"""

import functools
import uuid

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from compliance.services import audit_denied
from marketplace.errors import Forbidden
from orders.models import Order
from orders.services import guest as guest_services
from orders.views.guest import guest_may_reveal, guest_may_view

from ..models import ArbitrationCase, RefundRequest
from ..services import tickets
from . import arbitration as arbitration_views
from . import refunds as refund_views
from . import tickets as ticket_views
from .limits import guest_ticket_limited


def proved_guest(*, page: bool = True):
    """The view runs for a browser that proved the guest order ``number`` (it gets the order).

    No view grant: 404. A view grant without a proof: a page (``page``, GET) redirects to the
    order's proof form with a word why; anything else is 403 and an audit entry."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, number, *args, **kwargs):
            if not guest_may_view(request, number):
                raise Http404
            order = guest_services.guest_order(number=number)  # NotFound: not a guest order
            if not guest_may_reveal(request, number):
                if page and request.method in ("GET", "HEAD"):
                    messages.info(
                        request,
                        _("Confirm it is you (query password or emailed code) to use after-sales for this order."),
                    )
                    return redirect(order.get_absolute_url() + "#guest-proof")
                audit_denied(
                    action="guest_order.aftersales",
                    request=request,
                    target=number,
                    detail=f"{request.method} {view.__name__}: no proof in this session",
                )
                raise Forbidden(_("Enter the query password or an emailed code first."), code="guest_proof_required")
            return view(request, order, *args, **kwargs)

        return wrapper

    return decorate


def _ticket(request, order: Order, ticket_number: str):
    return tickets.ticket_for_guest(order=order, number=ticket_number, request=request)


@never_cache
@proved_guest()
def refund_new(request, order):
    return refund_views.refund_new_page(request, order, user=None, guest_number=order.number)


@never_cache
@proved_guest()
def refund_detail(request, order, public_id):
    refund_request = (
        RefundRequest.objects.select_related("order", "order__product", "refund", "refund__payment", "ticket")
        .prefetch_related("codes")
        .filter(public_id=public_id, order_id=order.pk, user__isnull=True)
        .first()
    )
    if refund_request is None:
        if RefundRequest.objects.filter(public_id=public_id).exists():
            audit_denied(
                action="refund.request",
                request=request,
                target=f"refund request {public_id}",
                detail=f"not a request of guest order {order.number}",
            )
        raise Http404
    return refund_views.refund_detail_page(request, refund_request, guest_number=order.number)


@guest_ticket_limited
@proved_guest()
def ticket_new(request, order):
    return ticket_views.ticket_new_page(request, user=None, order=order, guest_number=order.number)


@never_cache
@proved_guest()
def ticket_detail(request, order, ticket):
    return ticket_views.ticket_page(request, _ticket(request, order, ticket), user=None, guest_number=order.number)


@require_POST
@proved_guest(page=False)
def ticket_reopen(request, order, ticket):
    return ticket_views.ticket_reopen_answer(
        request, _ticket(request, order, ticket), user=None, guest_number=order.number
    )


@require_POST
@proved_guest(page=False)
def ticket_close(request, order, ticket):
    return ticket_views.ticket_close_answer(
        request, _ticket(request, order, ticket), user=None, guest_number=order.number
    )


@never_cache
@proved_guest()
def arbitration(request, order, ticket):
    found = _ticket(request, order, ticket)
    case = ArbitrationCase.objects.filter(ticket=found).select_related("ticket", "refund").first()
    return arbitration_views.arbitration_page(request, found, case, user=None, guest_number=order.number)


@never_cache
@proved_guest(page=False)
def attachment(request, order, public_id: uuid.UUID):
    return ticket_views.attachment_response(
        tickets.attachment_for_guest(order=order, public_id=public_id, request=request)
    )
