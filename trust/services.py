"""The trust centre's figures, computed from the platform's own records and stored as a snapshot
(``TrustFigure``). Run by beat (``trust.tasks.figures_compute``, hourly) and at the end of the
demo seeds (``manage.py trust_compute``); the page only reads the snapshot.

What each figure counts (the page says the same in words):

- Tickets opened in the period whose first answer is known: answered, or unanswered past its due
  time (``first_response_due_at``). A ticket opened an hour ago and not yet answered is neither on
  time nor late, so it is left out until it is.
- The median first response: over the tickets of the period that were answered.
- Refunds: a refund row is made when the refund is approved (at once for a no-reason refund, when
  staff or an arbitration decide for a dispute), so approval → money back is ``created_at`` →
  ``succeeded_at``. The median is over the refunds of the period that reached the buyer.
- Back within one business day: business days are Monday to Friday in Beijing time; a refund
  approved at a time on a business day is due at the same time on the next business day, one
  approved on a weekend by the end of the next Monday. Chinese public holidays (and the working
  weekends that make up for them) are not taken into account. Counted over the refunds whose
  outcome is known: back, or still not back past that deadline.
- Refund requests approved automatically: the requests of the period created approved (codes
  never revealed, inside the window: the no-reason refund), out of all refund requests; the others
  went to staff as a dispute.
- Arbitration cases opened in the period, by outcome (pending while the third party decides).
- The funds statement: the ledger's balances now (``ledger.selectors.funds_isolation``).
"""

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from aftersales.models import RefundRequest, RefundRequestStatusChange
from aftersales.selectors import arbitration_outcomes, median_seconds, share, ticket_sla
from ledger.selectors import funds_isolation
from marketplace.dbrouter import replica_reads
from payments.models import Refund

from .models import TrustFigure

PERIODS = (30, 90)
FUNDS_PERIOD = 0  # a balance on the date computed, not a period


def business_day_deadline(start: datetime) -> datetime:
    """When a refund approved at ``start`` is one business day late (Monday to Friday, Beijing
    time; public holidays not counted). Thursday 10:00 → Friday 10:00; Friday 10:00 → Monday
    10:00; Saturday or Sunday → the end of Monday (Tuesday 00:00).

    The same rule as ``payments.selectors.one_business_day_before`` read forwards: a refund is
    overdue there exactly when this deadline has passed."""
    local = timezone.localtime(start)
    if local.weekday() >= 5:  # a weekend: the business day starts on Monday at 00:00
        local = (local + timedelta(days=7 - local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    deadline = local + timedelta(days=1)
    while deadline.weekday() >= 5:
        deadline += timedelta(days=1)
    return deadline


def _period_figures(*, days: int, now: datetime) -> dict[str, tuple[Decimal | None, int]]:
    """Each figure of one period as (value, records counted); value None: nothing to count."""
    since = now - timedelta(days=days)
    figures: dict[str, tuple[Decimal | None, int]] = {}

    # One definition with the regulator reports' (aftersales.selectors); a ticket opened at
    # ``now`` itself is left to the next computation.
    sla = ticket_sla(start=since, end=now, now=now)
    figures["tickets_on_time"] = (sla.on_time_share, sla.decided)
    figures["first_response_median"] = (sla.median_first_response, sla.answered)

    refunds = list(
        Refund.objects.filter(created_at__gte=since, created_at__lte=now).values_list(
            "created_at", "succeeded_at", "status"
        )
    )
    back = [(created, done) for created, done, status in refunds if status == Refund.Status.SUCCEEDED and done]
    figures["refund_median"] = (median_seconds(done - created for created, done in back), len(back))
    known = [
        (created, done) for created, done, _s in refunds if done is not None or business_day_deadline(created) <= now
    ]
    in_time = sum(1 for created, done in known if done is not None and done <= business_day_deadline(created))
    figures["refunds_in_business_day"] = (share(in_time, len(known)), len(known))

    requests = RefundRequest.objects.filter(created_at__gte=since, created_at__lte=now)
    # Created approved: still approved, or refunded from approved (a reviewed one went
    # under_review → refunded or rejected).
    approved = RefundRequest.Status.APPROVED
    automatic = requests.filter(
        Q(status=approved) | Q(pk__in=RefundRequestStatusChange.objects.filter(from_status=approved).values("request"))
    ).count()
    total_requests = requests.count()
    figures["requests_automatic"] = (share(automatic, total_requests), total_requests)

    outcomes = arbitration_outcomes(start=since, end=now)
    total_cases = sum(outcomes.values())
    figures["arbitration_cases"] = (Decimal(total_cases), total_cases)
    for outcome, count in outcomes.items():
        figures[f"arbitration_{outcome}"] = (Decimal(count), count)
    return figures


def _funds_figures() -> dict[str, tuple[Decimal | None, int]]:
    funds = funds_isolation()
    figures: dict[str, tuple[Decimal | None, int]] = {
        f"funds_owed_{name}": (amount, 0) for name, amount in funds.customer_money.items()
    }
    figures["funds_owed"] = (funds.owed, 0)
    figures.update({f"funds_held_{gateway}": (amount, 0) for gateway, amount in funds.holdings.items()})
    figures["funds_held"] = (funds.held, 0)
    return figures


def trust_figures_compute(*, now: datetime | None = None) -> int:
    """Compute every figure from the records and replace the stored snapshot with it, in one
    transaction (the page never shows half of an old set and half of a new one). Returns the
    number of figures stored. Safe to run at any time, and twice."""
    now = now or timezone.now()
    # Hourly figures over days and months: read from the replica when there is one (seconds
    # behind at most); the snapshot is written to the primary below.
    with replica_reads():
        rows = [
            TrustFigure(key=key, period_days=days, value=value, sample=sample, computed_at=now)
            for days in PERIODS
            for key, (value, sample) in _period_figures(days=days, now=now).items()
        ]
        rows += [
            TrustFigure(key=key, period_days=FUNDS_PERIOD, value=value, sample=None, computed_at=now)
            for key, (value, _sample) in _funds_figures().items()
        ]
    with transaction.atomic():
        TrustFigure.objects.all().delete()
        TrustFigure.objects.bulk_create(rows)
    return len(rows)
