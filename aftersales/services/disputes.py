"""Staff decisions on disputes (and code tickets), each one service call from the ticket's admin page.

Every decision runs in one transaction, serialised on the ticket's row (two staff clicking at
once: the second waits, then sees what the first did), needs a reason, writes an audit row
(``dispute.<verb>``) and leaves a trace on the ticket the buyer sees (through
``aftersales.services.tickets``, so the first one counts as the resolution plan and the buyer gets an email).

- ``dispute_refund``: the whole order or some codes back to where the money came from
  (``payments.services.refunds.order_refund``, idempotent on a key derived from the ticket); codes never
  revealed go back on sale like the no-reason refund's; the buyer won the dispute.
- ``dispute_reject``: the buyer lost; told why and that they can ask for arbitration.
- ``dispute_reissue`` (补发): the code is marked defective (its supplier owes it) and a
  replacement from stock delivered to the order; exactly one, however many clicks.
- ``dispute_request_info``: ask the buyer for more information.
"""

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from catalog import services as stock
from compliance.models import AuditEvent, CreditEvent
from compliance.services import audit_record, credit_event_record
from marketplace.errors import Forbidden, ServiceError
from orders.models import Order, OrderCode
from orders.services import orders as order_services
from orders.services.guest import guest_link_url
from payments.models import Refund
from payments.services import refunds

from ..models import REFUND_REQUEST_FLOW, RefundRequest, Reissue, Ticket
from . import tickets

log = logging.getLogger(__name__)
TicketStatus = Ticket.Status
RequestStatus = RefundRequest.Status
CHANGE_PERMISSION = "aftersales.change_ticket"
REASON_MAX = 500


class DisputeError(ServiceError):
    """A decision that cannot be made as asked; the message is shown to staff as it is."""

    code = "dispute_refused"


# --- Helpers --------------------------------------------------------------------------------


def _check_staff(staff) -> None:
    if not (getattr(staff, "is_staff", False) and staff.has_perm(CHANGE_PERMISSION)):
        raise Forbidden


def _reason(reason: str, *, limit: int = REASON_MAX) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DisputeError(_("Give a reason for this decision."))
    if len(reason) > limit:
        raise DisputeError(_("The text is too long (at most %(max)d characters).") % {"max": limit})
    return reason


def _lock(ticket: Ticket) -> Ticket:
    return Ticket.objects.select_for_update(of=("self",)).select_related("user", "order").get(pk=ticket.pk)


def _audit(verb: str, *, staff, ticket: Ticket, detail: str) -> None:
    audit_record(
        action=f"dispute.{verb}",
        outcome=AuditEvent.Outcome.ALLOWED,
        actor=staff,
        target=ticket.number,
        detail=detail,
    )


def _tell_buyer(ticket: Ticket, *, staff, body: str, resolve: bool) -> None:
    """Resolve with ``body`` (an open ticket), or add it as a reply (resolved: the status stays).
    A closed ticket takes no more messages: the audit row and the records carry the decision."""
    if ticket.status == TicketStatus.CLOSED:
        return
    if resolve and ticket.status in tickets.OPEN_STATUSES:
        tickets.ticket_resolve(ticket=ticket, staff=staff, note=body)
    else:
        tickets.ticket_reply(
            ticket=ticket,
            author=staff,
            body=body,
            staff=True,
            resolution_plan=ticket.first_responded_at is None,
        )


def arbitration_url(ticket: Ticket) -> str:
    """Where the buyer asks for arbitration (a guest: under their order's page)."""
    if ticket.user_id is None and ticket.order is not None:
        return settings.SITE_URL + reverse("aftersales_guest:arbitration", args=[ticket.order.number, ticket.number])
    return settings.SITE_URL + reverse("aftersales:arbitration_new", args=[ticket.number])


def order_url(order: Order) -> str:
    """The buyer's order page, for a message: a guest's through the order's signed link."""
    return guest_link_url(order=order) if order.is_guest else settings.SITE_URL + order.get_absolute_url()


def refund_key(ticket: Ticket, key: str) -> str:
    return f"dispute:{ticket.pk}:{key}"[:120]


def held_codes(order: Order):
    """The order's codes it still holds (refunded or replaced codes leave it), in the order page's order."""
    return OrderCode.objects.filter(order_id=order.pk, released_at__isnull=True).order_by("pk")


def live_codes(order: Order):
    """The order's codes still held by it, with how often each was revealed."""
    return held_codes(order).select_related("code").annotate(reveal_count=Count("reveals"))


# --- Decisions ------------------------------------------------------------------------------


def dispute_refund(
    *,
    ticket: Ticket,
    staff,
    reason: str,
    order_code_ids=None,
    key: str,
    credit_kind: str = CreditEvent.Kind.DISPUTE_WON,
) -> Refund:
    """Refund the ticket's order in full (``order_code_ids`` None: every code it still holds) or
    the given codes. The same ``key`` on the same ticket makes one refund, however often asked.
    ``credit_kind``: the buyer's credit event (an arbitration decision records its own kind)."""
    _check_staff(staff)
    reason = _reason(reason)
    key = (key or "").strip()
    if not key:
        raise DisputeError(_("This form has expired: reload the page and try again."))
    if order_code_ids is not None:
        try:
            order_code_ids = sorted({int(x) for x in order_code_ids})
        except (TypeError, ValueError):
            raise DisputeError(_("Choose the codes to refund from the list.")) from None
        if not order_code_ids:
            raise DisputeError(_("Choose at least one code to refund."))

    with transaction.atomic():
        ticket = _lock(ticket)
        rkey = refund_key(ticket, key)
        existing = Refund.objects.filter(idempotency_key=rkey).first()
        if existing is not None:
            return existing  # the same decision again (a double click, a second colleague)
        order = ticket.order
        if order is None:
            raise DisputeError(_("This ticket is not about an order: there is nothing to refund."))
        codes = list(held_codes(order))
        if order_code_ids is not None:
            codes = [c for c in codes if c.pk in set(order_code_ids)]
            if len(codes) != len(order_code_ids):
                raise DisputeError(
                    _("Some of the chosen codes are no longer on the order (refunded or replaced meanwhile). Reload.")
                )
        if not codes:
            raise DisputeError(_("Every code of this order has already been refunded."))
        # The refund service's refusal (a RefundError) reaches the caller as it is. The refunded
        # codes leave the order; the ones nobody has seen go back on sale like the no-reason refund's.
        refund = refunds.order_refund(
            order=order,
            order_code_ids=[c.pk for c in codes],
            reason=f"dispute {ticket.number}: {reason}"[:200],
            requested_by=staff,
            key=rkey,
            restock=order_services.Restock(
                key="stock_return:dispute:{refund}",
                memo=f"dispute {ticket.number}: {{n}} unrevealed code(s) back in stock",
            ),
        )
        for request in ticket.refund_requests.select_for_update().filter(status=RequestStatus.UNDER_REVIEW):
            REFUND_REQUEST_FLOW.apply(
                request,
                RequestStatus.REFUNDED,
                actor=staff,
                note=reason,
                update={"refund": refund, "decided_by": staff},
            )
        credit_event_record(
            **tickets.credit_owner(ticket),
            kind=credit_kind,
            reference=ticket.number,
            detail=f"{len(codes)} code(s), refund {refund.number}",
        )
        _audit(
            "refund",
            staff=staff,
            ticket=ticket,
            detail=f"{reason} [refund {refund.number}: {len(codes)} code(s), ¥{refund.amount}]",
        )
        body = ngettext(
            "Your refund of %(n)d code (¥%(amount)s) was approved and is on its way to where you paid "
            "(refund %(refund)s).\nReason: %(reason)s",
            "Your refund of %(n)d codes (¥%(amount)s) was approved and is on its way to where you paid "
            "(refund %(refund)s).\nReason: %(reason)s",
            len(codes),
        ) % {"n": len(codes), "amount": refund.amount, "refund": refund.number, "reason": reason}
        _tell_buyer(ticket, staff=staff, body=body, resolve=True)
    log.info("dispute %s: refund %s by staff %s", ticket.number, refund.number, staff.pk)
    return refund


def dispute_reject(*, ticket: Ticket, staff, reason: str) -> Ticket:
    """The buyer's claim is refused: told why, and that a third party can arbitrate."""
    _check_staff(staff)
    reason = _reason(reason)
    with transaction.atomic():
        ticket = _lock(ticket)
        if ticket.status not in tickets.OPEN_STATUSES:
            raise DisputeError(
                _("Only an open ticket can be decided (this one is %(status)s).")
                % {"status": ticket.get_status_display()}
            )
        for request in ticket.refund_requests.select_for_update().filter(status=RequestStatus.UNDER_REVIEW):
            REFUND_REQUEST_FLOW.apply(
                request, RequestStatus.REJECTED, actor=staff, note=reason, update={"decided_by": staff}
            )
        credit_event_record(
            **tickets.credit_owner(ticket),
            kind=CreditEvent.Kind.DISPUTE_LOST,
            reference=ticket.number,
            detail=reason[:200],
        )
        _audit("reject", staff=staff, ticket=ticket, detail=reason)
        # The address on a line of its own: the buyer's page turns it into a link.
        escalate = (
            _("If you do not accept this decision, you can ask for arbitration by a third party:")
            + "\n"
            + arbitration_url(ticket)
        )
        body = _("We cannot approve your request.\nReason: %(reason)s") % {"reason": reason} + "\n\n" + escalate
        tickets.ticket_resolve(ticket=ticket, staff=staff, note=body)
    log.info("dispute %s rejected by staff %s", ticket.number, staff.pk)
    return ticket


def dispute_reissue(*, ticket: Ticket, order_code: OrderCode, staff, reason: str) -> Reissue:
    """补发: mark the code defective (back to its supplier) and deliver one replacement from stock."""
    _check_staff(staff)
    reason = _reason(reason)
    with transaction.atomic():
        ticket = _lock(ticket)
        if ticket.status == TicketStatus.CLOSED:
            raise DisputeError(_("This ticket is closed."))
        oc = OrderCode.objects.filter(pk=getattr(order_code, "pk", order_code)).first()
        if ticket.order_id is None or oc is None or oc.order_id != ticket.order_id:
            raise DisputeError(_("This code is not on the ticket's order."))
        if oc.released_at is not None or Reissue.objects.filter(old_code_id=oc.pk).exists():
            raise DisputeError(_("This code is no longer on the order (already replaced or refunded)."))
        order = ticket.order
        assert order is not None  # ticket.order_id was checked above (and _lock joined the order)
        # A refusal of the replacement (OutOfStock, OrderError) reaches staff as it is.
        stock.code_mark_defective(code_id=oc.code_id, note=f"{ticket.number}: {reason}")
        new = order_services.order_code_replace(order=order, old_order_code_id=oc.pk, actor=staff)
        try:
            with transaction.atomic():
                reissue = Reissue.objects.create(
                    ticket=ticket, order_id=ticket.order_id, old_code=oc, new_code=new, staff=staff, reason=reason[:300]
                )
        except IntegrityError:
            raise DisputeError(_("This code has already been replaced.")) from None
        credit_event_record(
            **tickets.credit_owner(ticket),
            kind=CreditEvent.Kind.REISSUE,
            reference=ticket.number,
            detail=f"order {order.number}: code {oc.code_id} → {new.code_id}",
        )
        _audit(
            "reissue",
            staff=staff,
            ticket=ticket,
            detail=f"{reason} [order {order.number}: code {oc.code_id} defective, {new.code_id} delivered]",
        )
        body = _(
            "We marked the code that did not work as defective and delivered a replacement: it is on your "
            "order page (%(url)s).\nReason: %(reason)s"
        ) % {"url": order_url(order), "reason": reason}
        _tell_buyer(ticket, staff=staff, body=body, resolve=False)
    log.info("dispute %s: code %s reissued as %s by staff %s", ticket.number, oc.code_id, new.code_id, staff.pk)
    return reissue


def dispute_request_info(*, ticket: Ticket, staff, body: str):
    """Ask the buyer for more information (the ticket then waits for the buyer)."""
    _check_staff(staff)
    body = (body or "").strip()
    if not body:
        raise DisputeError(_("Write what the buyer should send or explain."))
    if len(body) > 5000:
        raise DisputeError(_("The text is too long (at most %(max)d characters).") % {"max": 5000})
    with transaction.atomic():
        ticket = _lock(ticket)
        if ticket.status == TicketStatus.CLOSED:
            raise DisputeError(_("This ticket is closed."))
        message = tickets.ticket_reply(
            ticket=ticket,
            author=staff,
            body=body,
            staff=True,
            request_info=True,
            resolution_plan=ticket.first_responded_at is None,
        )
        _audit("request_info", staff=staff, ticket=ticket, detail=body[:500])
    return message
