"""Reads of after-sales records over a period, shared by the public trust centre
(``trust.services``) and the regulator reports (``reports.sections``): one definition of each
figure, so the two never disagree.

- Tickets: those opened in [start, end) whose first answer is known by ``now``: answered, or
  unanswered past its due time (``first_response_due_at``). A ticket not yet answered and not yet
  due is neither on time nor late, so it is left out until it is. The median first response is
  over the tickets of the period that were answered.
- Refunds by kind: every refund is made by ``payments.services.refunds`` under an idempotency key
  its caller chooses; the callers' keys say where the refund came from (see ``REFUND_KIND_OF``).
"""

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

from payments.models import Refund

from .models import ArbitrationCase, Ticket

SHARE_PLACES = Decimal("0.0001")


def share(part: int, whole: int) -> Decimal | None:
    """part / whole to four places; None when there is nothing to count (never 0%)."""
    return (Decimal(part) / Decimal(whole)).quantize(SHARE_PLACES) if whole else None


def median_seconds(durations: Iterable[timedelta]) -> Decimal | None:
    seconds = [d.total_seconds() for d in durations]
    return Decimal(str(round(statistics.median(seconds)))) if seconds else None


@dataclass(frozen=True)
class TicketSla:
    opened: int  # tickets opened in the period
    decided: int  # of which the first answer is known: answered, or unanswered past due
    on_time: int  # answered by their due time
    answered: int
    median_first_response: Decimal | None  # seconds; None: none answered

    @property
    def on_time_share(self) -> Decimal | None:
        return share(self.on_time, self.decided)


def ticket_sla(*, start: datetime, end: datetime, now: datetime, kind: str | None = None) -> TicketSla:
    """The first-response figures of the tickets opened in [start, end) (of one ``kind`` if given),
    as known at ``now``."""
    tickets = Ticket.objects.filter(created_at__gte=start, created_at__lt=end)
    if kind is not None:
        tickets = tickets.filter(kind=kind)
    rows = list(tickets.values_list("created_at", "first_responded_at", "first_response_due_at"))
    decided = [t for t in rows if t[1] is not None or t[2] <= now]
    on_time = sum(1 for _opened, answered, due in decided if answered is not None and answered <= due)
    answered = [answered - opened for opened, answered, _due in rows if answered is not None]
    return TicketSla(
        opened=len(rows),
        decided=len(decided),
        on_time=on_time,
        answered=len(answered),
        median_first_response=median_seconds(answered),
    )


def arbitration_outcomes(*, start: datetime, end: datetime) -> dict[str, int]:
    """Arbitration cases opened in [start, end), by outcome (every outcome present, 0 if none)."""
    found = dict(
        ArbitrationCase.objects.filter(created_at__gte=start, created_at__lt=end)
        .values_list("outcome")
        .annotate(n=models.Count("id"))
        .values_list("outcome", "n")
    )
    return {outcome: found.get(outcome, 0) for outcome in ArbitrationCase.Outcome.values}


class RefundKind(models.TextChoices):
    NO_REASON = "no_reason", _("No-reason refund (codes never revealed)")
    DEFECTIVE = "defective", _("Defective or undelivered code, after a dispute")
    DISPUTE = "dispute", _("Other dispute decided by staff")
    ARBITRATION = "arbitration", _("After arbitration")
    UNUSED = "unused", _("Payment the order could not use (duplicate, late)")
    STAFF = "staff", _("Refunded by staff from the order")


# The idempotency key each caller of the refund service gives (its prefix up to the first ":").
# aftersales.services.no_reason: "noreason:<request>"; aftersales.services.disputes.refund_key:
# "dispute:<ticket>:<form key>" (an arbitration's form key is "arbitration:<case>");
# payments.services.refunds.payment_refund_unused: "unused:<gateway>:<trade>"; the order's admin
# refund form: "staff:<order>:<token>". Anything else is counted as staff's.
REFUND_KIND_OF = {"noreason": RefundKind.NO_REASON, "unused": RefundKind.UNUSED, "staff": RefundKind.STAFF}
DEFECTIVE_TICKET_KINDS = ("invalid", "not_received")


@dataclass(frozen=True)
class KindTotal:
    kind: str
    count: int
    amount: Decimal  # requested in the period (whatever became of them since)
    succeeded: int
    succeeded_amount: Decimal  # of which back with the buyer now


def refund_kind(refund: Refund, *, ticket_kinds: dict[int, str], arbitrated: set[int]) -> str:
    if refund.pk in arbitrated or ":arbitration:" in refund.idempotency_key:
        return RefundKind.ARBITRATION
    prefix, _sep, rest = refund.idempotency_key.partition(":")
    if prefix == "dispute":
        ticket_id = rest.partition(":")[0]
        kind = ticket_kinds.get(int(ticket_id)) if ticket_id.isdigit() else None
        return RefundKind.DEFECTIVE if kind in DEFECTIVE_TICKET_KINDS else RefundKind.DISPUTE
    return REFUND_KIND_OF.get(prefix, RefundKind.STAFF)


def refunds_by_kind(*, start: datetime, end: datetime) -> list[KindTotal]:
    """The refunds requested in [start, end) by kind, every kind present (0 if none), in
    ``RefundKind``'s order."""
    refunds = list(Refund.objects.filter(created_at__gte=start, created_at__lt=end))
    ticket_ids = {
        int(r.idempotency_key.split(":")[1])
        for r in refunds
        if r.idempotency_key.startswith("dispute:") and r.idempotency_key.split(":")[1].isdigit()
    }
    ticket_kinds = dict(Ticket.objects.filter(pk__in=ticket_ids).values_list("pk", "kind"))
    arbitrated = set(
        ArbitrationCase.objects.filter(refund__in=[r.pk for r in refunds]).values_list("refund_id", flat=True)
    )
    counts = {k: [0, 0] for k in RefundKind.values}  # requested, succeeded
    amounts = {k: [Decimal(0), Decimal(0)] for k in RefundKind.values}
    for r in refunds:
        kind = refund_kind(r, ticket_kinds=ticket_kinds, arbitrated=arbitrated)
        counts[kind][0] += 1
        amounts[kind][0] += r.amount
        if r.status == Refund.Status.SUCCEEDED:
            counts[kind][1] += 1
            amounts[kind][1] += r.amount
    return [KindTotal(k, counts[k][0], amounts[k][0], counts[k][1], amounts[k][1]) for k in RefundKind.values]
