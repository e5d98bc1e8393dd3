"""Arbitration: a dispute the buyer did not accept goes to a third party (a consumer association).

Who may escalate (``arbitration_eligibility``):
- staff who may change tickets (``aftersales.change_ticket``, what the ticket admin's escalate
  button requires): any ticket about an order;
- the buyer (the ticket's user): only after staff decided against them, within
  ``ARBITRATION_WINDOW_DAYS`` (30) of that decision. A decision against the buyer is a refund
  request of the ticket that was rejected, or the ticket resolved by staff without a refund
  (no refund request of the ticket refunded or approved). A dispute still under review, an
  open ticket or a ticket the buyer closed themselves cannot be escalated by the buyer.
One case per ticket (the database holds it 1:1): escalating again returns the existing case.

The case moves preparing -> submitted -> decided (``CASE_FLOW``). The decision is carried out
through the dispute refund service (``aftersales.services.disputes.dispute_refund``), on the locked case
row with an idempotency key derived from the case: deciding twice, or two staff at once, makes
one refund. The dossier (``arbitration_dossier``) is a ZIP staff send to the third party: a
printable summary.html, CSV files and the ticket's images; never a code's secret. Submitting,
deciding and the dossier need the arbitration admin's change permission, not just the staff flag.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied  # noqa: F401 (Forbidden is one; tests name it here)
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from accounts.models import User
from compliance.models import AuditEvent, CreditEvent
from compliance.services import audit_denied, audit_record, credit_event_record
from marketplace.crypto import mask
from marketplace.errors import Forbidden, NotFound, ServiceError
from marketplace.permissions import staff_has_perm
from orders.models import CodeReveal, OrderCode
from payments.models import Refund

from ..models import CASE_FLOW, ArbitrationCase, RefundRequest, SlaEvent, Ticket, TicketAttachment, TicketMessage
from . import disputes, tickets

log = logging.getLogger(__name__)

CaseStatus = ArbitrationCase.Status
CaseOutcome = ArbitrationCase.Outcome
RequestStatus = RefundRequest.Status
TicketStatus = Ticket.Status
# What the arbitration admin requires for its buttons and the dossier.
CHANGE_PERMISSION = "aftersales.change_arbitrationcase"
# How the dossier's timeline names the decisions it lists (the audit action stays beside it;
# an action not named here is shown as it is).
DOSSIER_EVENTS = {
    "dispute.refund": gettext_lazy("Refund approved by staff"),
    "dispute.reject": gettext_lazy("Claim rejected by staff"),
    "dispute.reissue": gettext_lazy("Defective code replaced"),
    "dispute.request_info": gettext_lazy("More information asked of the buyer"),
    "arbitration.open": gettext_lazy("Escalated to arbitration"),
    "arbitration.submit": gettext_lazy("Submitted to the third party"),
    "arbitration.decide": gettext_lazy("Arbitration decision recorded"),
}


class ArbitrationError(ServiceError):
    """Refused, with a message for the person who asked."""

    code = "arbitration_refused"


# --- reads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    allowed: bool
    reason: str = ""  # why not (for the buyer), or what the decision was
    until: datetime | None = None  # the buyer's deadline to escalate


def _decision_against_buyer(ticket: Ticket) -> datetime | None:
    """When staff last decided against the buyer on this ticket, or None."""
    requests = list(ticket.refund_requests.all())
    if any(r.status == RequestStatus.UNDER_REVIEW for r in requests):
        return None  # still being decided
    times = [r.decided_at or r.created_at for r in requests if r.status == RequestStatus.REJECTED]
    refunded = any(r.status in (RequestStatus.APPROVED, RequestStatus.REFUNDED) for r in requests) or (
        ticket.order_id is not None
        and Refund.objects.filter(
            order_id=ticket.order_id, idempotency_key__startswith=f"dispute:{ticket.pk}:"
        ).exists()
    )
    if ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED) and ticket.resolved_at and not refunded:
        times.append(ticket.resolved_at)
    if ticket.status == TicketStatus.CLOSED and ticket.closed_at and not refunded and times:
        times.append(ticket.closed_at)  # closed by staff after rejecting: counts from the closing
    return max(times) if times else None


def arbitration_eligibility(*, ticket: Ticket, user, now: datetime | None = None) -> Eligibility:
    """May ``user`` escalate ``ticket`` now? (Whether a case exists already is the caller's concern.)
    ``user`` None: the guest of the ticket's guest order (the caller checked the guest's proof)."""
    if ticket.order_id is None:
        return Eligibility(False, _("Only a ticket about an order can go to arbitration."))
    own = tickets.is_buyer(ticket, user)
    if not own and staff_has_perm(user, tickets.CHANGE_PERMISSION):
        return Eligibility(True)
    if not own:
        return Eligibility(False, _("This is not your ticket."))
    decided = _decision_against_buyer(ticket)
    if decided is None:
        return Eligibility(
            False, _("Arbitration is possible once our team has decided on your request and you disagree.")
        )
    until = decided + timedelta(days=settings.ARBITRATION_WINDOW_DAYS)
    if (now or timezone.now()) > until:
        return Eligibility(
            False,
            _("Arbitration had to be requested within %(days)d days of our decision.")
            % {"days": settings.ARBITRATION_WINDOW_DAYS},
            until,
        )
    return Eligibility(True, until=until)


def case_for_user(*, user, number: str, request=None) -> ArbitrationCase | None:
    """The case of the user's own ticket (staff who may view tickets: any), None when the ticket has none; 404 and an
    audit entry when the ticket is someone else's."""
    ticket = tickets.ticket_for_user(user=user, number=number, request=request)
    return ArbitrationCase.objects.filter(ticket=ticket).select_related("ticket", "refund").first()


def refundable_codes(order) -> list[OrderCode]:
    """The order's codes it still holds (refunded codes leave the order), in the order page's order."""
    return list(disputes.held_codes(order))


def codes_left(order) -> int:
    """How many codes of ``order`` a decision can still refund."""
    return disputes.held_codes(order).count()


# --- emails ----------------------------------------------------------------------------------


def _staff_emails(ticket: Ticket) -> list[str]:
    users = get_user_model().objects.filter(
        Q(groups__name=settings.AFTERSALES_SUPERVISOR_GROUP) | Q(pk=ticket.assignee_id), is_active=True, is_staff=True
    )
    return sorted({u.email for u in users if u.email})


def _email_staff_on_commit(case: ArbitrationCase) -> None:
    case_id = case.pk

    def send():
        try:
            case = ArbitrationCase.objects.select_related("ticket", "ticket__assignee").get(pk=case_id)
            recipients = _staff_emails(case.ticket)
            if not recipients:
                return
            with translation.override(settings.LANGUAGE_CODE):
                url = settings.SITE_URL + reverse("admin:aftersales_arbitrationcase_change", args=[case.pk])
                subject = _("Arbitration requested on ticket %(number)s") % {"number": case.ticket.number}
                body = "\n\n".join(
                    [
                        _("Ticket %(number)s (%(subject)s) was escalated to arbitration.")
                        % {"number": case.ticket.number, "subject": case.ticket.subject},
                        _("Prepare the dossier and submit the case to the third party:"),
                        url,
                    ]
                )
            send_mail(subject, body, None, recipients)
        except Exception:  # the case stands; a lost email must not undo it
            log.warning("arbitration email for case %s failed", case_id, exc_info=True)

    transaction.on_commit(send)


# --- services --------------------------------------------------------------------------------


def _trace(ticket: Ticket, *, author, body: str, from_staff: bool, notify_buyer: bool = False) -> TicketMessage:
    """A message on the ticket's thread (the buyer sees it), and the ticket's activity time."""
    message = TicketMessage.objects.create(ticket=ticket, author=author, from_staff=from_staff, body=body[:5000])
    Ticket.objects.filter(pk=ticket.pk).update(last_activity_at=timezone.now())
    if notify_buyer and tickets.buyer_email(ticket):
        tickets._email_on_commit("buyer_reply", ticket, [tickets.buyer_email(ticket)])
    return message


def _locked_case(case: ArbitrationCase) -> ArbitrationCase:
    return (
        ArbitrationCase.objects.select_for_update(of=("self",))
        .select_related("ticket", "ticket__user", "ticket__order")
        .get(pk=case.pk)
    )


def arbitration_open(*, ticket: Ticket, user, statement: str = "", request=None) -> ArbitrationCase:
    """Escalate ``ticket`` to arbitration (see the module's rule). A second call returns the case.
    ``user`` None: the guest of the ticket's guest order (the caller checked the guest's proof)."""
    statement = (statement or "").strip()
    if len(statement) > 5000:
        raise ArbitrationError(_("The statement is too long (at most 5,000 characters)."))
    by_staff = not tickets.is_buyer(ticket, user)
    if by_staff and not staff_has_perm(user, tickets.CHANGE_PERMISSION):  # (audit outside the transaction)
        audit_denied(
            action="arbitration.open", request=request, actor=user, target=ticket.number, detail="not the ticket's user"
        )
        raise NotFound
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update(of=("self",)).select_related("user", "order").get(pk=ticket.pk)
        existing = ArbitrationCase.objects.filter(ticket=ticket).first()
        if existing is not None:
            return existing
        eligibility = arbitration_eligibility(ticket=ticket, user=user)
        if not eligibility.allowed:
            raise ArbitrationError(eligibility.reason)
        if not by_staff and not statement:
            raise ArbitrationError(_("Tell the arbitrator in a few words why you disagree with our decision."))
        case = ArbitrationCase.objects.create(ticket=ticket, requested_by=user, buyer_statement=statement)
        lines = [
            _("Escalated to arbitration by our team.") if by_staff else _("I escalate this dispute to arbitration.")
        ]
        if statement:
            lines.append(statement)
        _trace(ticket, author=user, body="\n\n".join(lines), from_staff=by_staff, notify_buyer=by_staff)
        if ticket.priority < Ticket.Priority.URGENT:
            Ticket.objects.filter(pk=ticket.pk).update(priority=Ticket.Priority.URGENT)
        audit_record(
            action="arbitration.open",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=user,
            target=ticket.number,
            request=request,
            detail=f"case {case.pk}" + (" by staff" if by_staff else " by the buyer"),
        )
        _email_staff_on_commit(case)
    log.info("ticket %s escalated to arbitration: case %s", ticket.number, case.pk)
    return case


def _require_staff(staff) -> None:
    if not staff_has_perm(staff, CHANGE_PERMISSION):
        raise Forbidden


def arbitration_submit(
    *, case: ArbitrationCase, staff, third_party: str, case_number: str, submitted_at: datetime | None = None
) -> ArbitrationCase:
    """preparing -> submitted: the dossier went to ``third_party``, who filed it as ``case_number``."""
    _require_staff(staff)
    third_party, case_number = (third_party or "").strip(), (case_number or "").strip()
    if not third_party:
        raise ArbitrationError(_("Name the third party the case was submitted to."))
    if not case_number:
        raise ArbitrationError(_("Give the case number the third party assigned."))
    if len(third_party) > 120 or len(case_number) > 60:
        raise ArbitrationError(_("The third party (120) or case number (60 characters) is too long."))
    now = timezone.now()
    submitted_at = submitted_at or now
    if submitted_at > now + timedelta(minutes=5):
        raise ArbitrationError(_("The submission date cannot be in the future."))
    with transaction.atomic():
        case = _locked_case(case)
        if case.status == CaseStatus.SUBMITTED and (case.third_party, case.case_number) == (third_party, case_number):
            return case  # the same click twice
        if case.status != CaseStatus.PREPARING:
            raise ArbitrationError(
                _("This case is already %(status)s.") % {"status": case.get_status_display().lower()}
            )
        if submitted_at < case.created_at - timedelta(days=1):
            raise ArbitrationError(_("The submission date is before the case was opened."))
        CASE_FLOW.apply(
            case,
            CaseStatus.SUBMITTED,
            actor=staff,
            update={"third_party": third_party, "case_number": case_number, "submitted_at": submitted_at},
        )
        _trace(
            case.ticket,
            author=staff,
            body=_("Your case was submitted to %(party)s on %(date)s (their case number: %(number)s).")
            % {
                "party": third_party,
                "date": timezone.localtime(submitted_at).strftime("%Y-%m-%d"),
                "number": case_number,
            },
            from_staff=True,
            notify_buyer=True,
        )
        audit_record(
            action="arbitration.submit",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=staff,
            target=case.ticket.number,
            detail=f"case {case.pk}: {third_party} #{case_number}",
        )
    return case


def _partial_code_ids(case: ArbitrationCase, quantity: int) -> list[int]:
    """Which codes a partial decision refunds: those the buyer asked about first (the ticket's
    refund requests, the ticket's code), then the order's other codes, never one already refunded."""
    ticket = case.ticket
    live = refundable_codes(ticket.order)
    asked = set(
        RefundRequest.objects.filter(ticket=ticket)
        .exclude(status__in=(RequestStatus.APPROVED, RequestStatus.REFUNDED))
        .values_list("codes", flat=True)
    )
    if ticket.order_code_id:
        asked.add(ticket.order_code_id)
    live.sort(key=lambda c: (c.pk not in asked, c.pk))
    return [c.pk for c in live[:quantity]]


def _refund(case: ArbitrationCase, *, staff, reason: str, order_code_ids):
    """Through the dispute refund service (which records the buyer's ARBITRATION_WON credit event,
    its audit row and tells the buyer), keyed on the case: one refund per case, ever. Its
    refusal (a DisputeError or RefundError) reaches the caller as it is."""
    return disputes.dispute_refund(
        ticket=case.ticket,
        staff=staff,
        reason=reason,
        order_code_ids=order_code_ids,
        key=f"arbitration:{case.pk}",
        credit_kind=CreditEvent.Kind.ARBITRATION_WON,
    )


def arbitration_decide(
    *, case: ArbitrationCase, staff, outcome: str, note: str, refund_quantity: int = 0
) -> ArbitrationCase:
    """submitted -> decided, and the decision carried out: ``buyer`` refunds every code not yet
    refunded, ``partial`` refunds ``refund_quantity`` codes, ``platform`` refunds nothing.
    Exactly once: the case row is locked and the refund's key is the case's."""
    _require_staff(staff)
    note = (note or "").strip()
    if outcome not in (CaseOutcome.BUYER, CaseOutcome.PARTIAL, CaseOutcome.PLATFORM):
        raise ArbitrationError(_("Choose the outcome of the arbitration."))
    if not note:
        raise ArbitrationError(_("Write down the third party's decision (the buyer sees it)."))
    if len(note) > 5000:
        raise ArbitrationError(_("The decision is too long (at most 5,000 characters)."))
    try:
        refund_quantity = int(refund_quantity or 0)
    except (TypeError, ValueError):
        raise ArbitrationError(_("The number of codes to refund must be a whole number.")) from None
    with transaction.atomic():
        case = _locked_case(case)
        if case.status == CaseStatus.DECIDED:
            return case  # decided already (a second click, a colleague): nothing more happens
        if case.status != CaseStatus.SUBMITTED:
            raise ArbitrationError(_("Record the submission to the third party before its decision."))
        ticket = case.ticket
        left = codes_left(ticket.order)
        refund = None
        if outcome == CaseOutcome.PARTIAL:
            if not 1 <= refund_quantity <= left:
                raise ArbitrationError(
                    ngettext(
                        "A partial decision refunds between 1 and %(left)d code of this order.",
                        "A partial decision refunds between 1 and %(left)d codes of this order.",
                        left,
                    )
                    % {"left": left}
                )
        elif outcome == CaseOutcome.BUYER:
            refund_quantity = left
        else:
            refund_quantity = 0
        reason = _("Arbitration %(party)s #%(number)s: %(note)s") % {
            "party": case.third_party,
            "number": case.case_number,
            "note": note,
        }
        if refund_quantity:
            ids = None if outcome == CaseOutcome.BUYER else _partial_code_ids(case, refund_quantity)
            if ids is not None and len(ids) < refund_quantity:
                raise ArbitrationError(
                    ngettext(
                        "Only %(n)d code of this order can still be refunded.",
                        "Only %(n)d codes of this order can still be refunded.",
                        len(ids),
                    )
                    % {"n": len(ids)}
                )
            refund = _refund(case, staff=staff, reason=reason[:300], order_code_ids=ids)
            refund_quantity = refund.quantity
        CASE_FLOW.apply(
            case,
            CaseStatus.DECIDED,
            actor=staff,
            update={
                "outcome": outcome,
                "outcome_note": note,
                "refund_quantity": refund_quantity,
                "refund": refund,
                "decided_at": timezone.now(),
            },
        )
        if refund is None:  # a refund's ARBITRATION_WON is recorded by the refund service, once
            won = outcome in (CaseOutcome.BUYER, CaseOutcome.PARTIAL)
            credit_event_record(
                **tickets.credit_owner(ticket),
                kind=CreditEvent.Kind.ARBITRATION_WON if won else CreditEvent.Kind.ARBITRATION_LOST,
                reference=ticket.number,
                detail=f"arbitration {case.third_party} #{case.case_number}: {outcome}",
            )
        if outcome == CaseOutcome.PLATFORM:
            head = _("The arbitrator decided in our favour: no refund.")
        elif outcome == CaseOutcome.BUYER:
            head = _("The arbitrator decided in your favour: the order is refunded to where the money came from.")
        else:
            head = ngettext(
                "The arbitrator decided partly in your favour: %(n)d code is refunded.",
                "The arbitrator decided partly in your favour: %(n)d codes are refunded.",
                refund_quantity,
            ) % {"n": refund_quantity}
        if refund is None and outcome == CaseOutcome.BUYER:
            head = _("The arbitrator decided in your favour (nothing was left to refund on the order).")
        _trace(ticket, author=staff, body=f"{head}\n\n{note}", from_staff=True, notify_buyer=True)
        audit_record(
            action="arbitration.decide",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=staff,
            target=ticket.number,
            detail=f"case {case.pk}: {outcome}, {refund_quantity} code(s)"
            + (f", refund {refund.number}" if refund else ""),
        )
    log.info("arbitration case %s decided: %s", case.pk, outcome)
    return case


# --- the dossier -----------------------------------------------------------------------------


def _csv(header: list[str], rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # BOM: spreadsheet programs read UTF-8


def _t(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


@dataclass(frozen=True)
class DossierReveal:
    """One row of the dossier's reveal log: a ``CodeReveal`` with the code's number on the order."""

    code_index: int | None
    at: datetime
    ip: str | None
    user_agent: str
    user: User | None  # None: the order's guest, after proving it (orders.services.guest)


@dataclass(frozen=True)
class DossierAttachment:
    """An image of the thread, with its path in the ZIP (numbered: no database id leaves the house)."""

    dossier_name: str
    attachment: TicketAttachment


@dataclass(frozen=True)
class DossierMessage:
    """A message of the thread as the dossier shows it, its images named for the ZIP."""

    created_at: datetime
    from_staff: bool
    is_resolution_plan: bool
    body: str
    attachments: list[DossierAttachment]


@dataclass(frozen=True)
class DossierEvent:
    """One line of the dossier's timeline: a status change or a decision (an audit row)."""

    at: datetime
    event: str | Promise  # a decision's name is translated when the summary is rendered
    actor: User | None
    note: str
    action: str


def dossier_context(case: ArbitrationCase) -> dict:
    """Everything the dossier shows. Codes are masked by their id; secrets are never decrypted."""
    ticket = case.ticket
    order = ticket.order
    codes = (
        list(
            OrderCode.objects.filter(order=order)
            .select_related("code__product")
            .annotate(reveal_count=Count("reveals"))
            .order_by("pk")
        )
        if order
        else []
    )
    index = {c.pk: i for i, c in enumerate(codes, start=1)}
    code_rows = [
        {
            "index": index[c.pk],
            "ref": mask(f"{c.code_id:08d}", 3),
            "reveal_count": c.reveal_count,
            "released_at": c.released_at,
            "status": c.code.get_status_display(),
        }
        for c in codes
    ]
    reveals = (
        list(CodeReveal.objects.filter(order_code__order=order).select_related("user").order_by("at", "pk"))
        if order
        else []
    )
    reveal_rows = [
        DossierReveal(code_index=index.get(r.order_code_id), at=r.at, ip=r.ip, user_agent=r.user_agent, user=r.user)
        for r in reveals
    ]
    # The images' names in the ZIP: numbered within the dossier (no database id leaves the house).
    numbers = itertools.count(1)
    messages = [
        DossierMessage(
            created_at=m.created_at,
            from_staff=m.from_staff,
            is_resolution_plan=m.is_resolution_plan,
            body=m.body,
            attachments=[
                DossierAttachment(dossier_name=f"attachments/{next(numbers):02d}-{a.original_name}", attachment=a)
                for a in m.attachments.all()
            ],
        )
        for m in tickets.ticket_messages_for(ticket, staff=False)
    ]
    history = list(ticket.history.select_related("actor"))
    decisions = list(
        AuditEvent.objects.filter(
            target__in=[ticket.number] + ([order.number] if order else []), outcome=AuditEvent.Outcome.ALLOWED
        )
        .exclude(action="arbitration.dossier")
        .select_related("actor")
    )
    # One timeline, oldest first: status changes and the decisions (audit rows) between them.
    timeline = [
        DossierEvent(
            at=h.at,
            event=f"{h.get_from_status_display() or '—'} → {h.get_to_status_display()}",
            actor=h.actor,
            note=h.note,
            action="",
        )
        for h in history
    ] + [
        DossierEvent(at=d.at, event=DOSSIER_EVENTS.get(d.action, ""), action=d.action, actor=d.actor, note=d.detail)
        for d in decisions
    ]
    timeline.sort(key=lambda row: row.at)
    return {
        "case": case,
        "ticket": ticket,
        "buyer": tickets.buyer_label(ticket),
        "order": order,
        "payments": list(order.payments.order_by("pk")) if order else [],
        "refunds": list(order.refunds.order_by("pk")) if order else [],
        "refund_requests": list(ticket.refund_requests.order_by("pk")),
        "codes": code_rows,
        "reveals": reveal_rows,
        "messages": messages,
        "timeline": timeline,
        "sla_events": list(SlaEvent.objects.filter(ticket=ticket)),
        "generated_at": timezone.now(),
    }


def arbitration_dossier(*, case: ArbitrationCase, staff) -> bytes:
    """The ZIP for the third party: summary.html (printable), CSVs and the ticket's images."""
    _require_staff(staff)
    case = ArbitrationCase.objects.select_related("ticket__user", "ticket__order", "refund").get(pk=case.pk)
    ctx = dossier_context(case)
    with translation.override(settings.LANGUAGE_CODE):
        summary = render_to_string("aftersales/dossier/summary.html", ctx)
    order = ctx["order"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("summary.html", summary)
        zf.writestr(
            "orders.csv",
            _csv(
                ["number", "product", "quantity", "unit_price", "total", "status", "refunded_quantity", "created_at",
                 "paid_at", "delivered_at", "buyer"],
                [
                    [order.number, order.product_name, order.quantity, order.unit_price, order.total, order.status,
                     order.refunded_quantity, _t(order.created_at), _t(getattr(order, "paid_at", None)),
                     _t(order.delivered_at), tickets.buyer_email(case.ticket)]
                ]
                if order
                else [],
            ),
        )  # fmt: skip
        zf.writestr(
            "payments.csv",
            _csv(
                ["kind", "number", "gateway", "trade_no", "amount", "status", "at"],
                [["payment", p.number, p.gateway, p.trade_no, p.amount, p.status, _t(p.paid_at or p.created_at)]
                 for p in ctx["payments"]]
                + [["refund", r.number, r.payment.gateway, r.gateway_refund_id, r.amount, r.status,
                    _t(r.succeeded_at or r.created_at)] for r in ctx["refunds"]],
            ),
        )  # fmt: skip
        zf.writestr(
            "reveals.csv",
            _csv(
                ["code", "at", "ip", "user_agent", "user"],
                [[r.code_index, _t(r.at), r.ip, r.user_agent, r.user.email if r.user else ""] for r in ctx["reveals"]],
            ),
        )
        zf.writestr(
            "messages.csv",
            _csv(
                ["at", "from", "resolution_plan", "body", "attachments"],
                [
                    [_t(m.created_at), "staff" if m.from_staff else "buyer", "yes" if m.is_resolution_plan else "",
                     m.body, " ".join(a.dossier_name for a in m.attachments)]
                    for m in ctx["messages"]
                ],
            ),
        )  # fmt: skip
        for m in ctx["messages"]:
            for a in m.attachments:
                try:
                    data = tickets.attachment_path(a.attachment).read_bytes()
                except (OSError, NotFound):
                    log.warning("dossier of case %s: attachment %s missing", case.pk, a.attachment.public_id)
                    continue
                zf.writestr(a.dossier_name, data)
    with transaction.atomic():
        ArbitrationCase.objects.filter(pk=case.pk).update(dossier_exported_at=timezone.now())
        audit_record(
            action="arbitration.dossier",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=staff,
            target=case.ticket.number,
            detail=f"case {case.pk}: dossier exported",
        )
    return buf.getvalue()
