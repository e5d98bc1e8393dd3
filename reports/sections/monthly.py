"""The monthly compliance report's sections: each reads the records of the period and returns one
``Table``. Every figure comes from a record (an order's payment, a refund row, a ticket, a case,
an alert, a qualification) or from the ledger, never typed in."""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils.translation import gettext as _

from aftersales.models import ArbitrationCase, Kind
from aftersales.selectors import RefundKind, arbitration_outcomes, refunds_by_kind, ticket_sla
from compliance.models import Qualification, QualificationChange
from ledger import services as ledger
from ledger.selectors import movements_total
from marketplace.money import quantize
from orders.models import Channel
from payments.models import CHANNEL_NAMES, Payment, Refund
from risk.models import Action, Alert, Rule

from ..periods import Period
from .table import Column, Table, Unit

ZERO = Decimal("0.00")
EXPIRING_DAYS = 30  # a qualification ending within this many days of the period's end is flagged


def _hours(seconds: Decimal | None) -> Decimal | None:
    return None if seconds is None else (Decimal(seconds) / 3600).quantize(Decimal("0.1"))


def _order_payments(period: Period):
    """The money received for orders in the period: one succeeded payment per order paid
    (a duplicate or late payment the order could not use is a refund, counted there)."""
    return Payment.objects.filter(
        order__isnull=False,
        status=Payment.Status.SUCCEEDED,
        created_at__gte=period.start_at,
        created_at__lt=period.end_at,
    )


def orders(period: Period) -> Table:
    """Orders paid in the period and their amounts, by the channel they were sold through."""
    rows_by_channel = {
        row["order__channel"]: row
        for row in _order_payments(period)
        .values("order__channel")
        .annotate(n=Count("order", distinct=True), codes=Sum("order__quantity"), gross=Sum("amount"))
    }
    total_n = sum(r["n"] for r in rows_by_channel.values())
    total_codes = sum(r["codes"] or 0 for r in rows_by_channel.values())
    gross = quantize(sum((r["gross"] for r in rows_by_channel.values()), ZERO))
    rows = []
    for code, label in Channel.choices:
        row = rows_by_channel.get(code, {"n": 0, "codes": 0, "gross": ZERO})
        amount = quantize(row["gross"] or 0)
        rows.append([str(label), row["n"], row["codes"] or 0, amount, share_of(amount, gross)])
    return Table(
        title=_("Orders and amounts"),
        columns=[
            Column(_("Sold through"), width=22),
            Column(_("Orders paid"), Unit.COUNT),
            Column(_("Codes"), Unit.COUNT),
            Column(_("Gross amount (CNY)"), Unit.MONEY, 16),
            Column(_("Share of gross"), Unit.SHARE),
        ],
        rows=rows,
        totals=[_("Total"), total_n, total_codes, gross, share_of(gross, gross)],
        note=_(
            "Orders whose payment was received in the period (one payment per order; a duplicate or late "
            "payment the order could not use is counted under refunds)."
        ),
        summary={"orders": str(total_n), "codes": str(total_codes), "gross": str(gross)},
    )


def share_of(part: Decimal, whole: Decimal) -> Decimal | None:
    return (part / whole).quantize(Decimal("0.0001")) if whole else None


def payment_methods(period: Period) -> Table:
    """The same money by the way it was paid (gateway or balance)."""
    found = list(
        _order_payments(period).values("gateway").annotate(n=Count("id"), gross=Sum("amount")).order_by("gateway")
    )
    gross = quantize(sum((r["gross"] for r in found), ZERO))
    rows = [
        [str(CHANNEL_NAMES.get(r["gateway"], r["gateway"])), r["n"], quantize(r["gross"]), share_of(r["gross"], gross)]
        for r in found
    ]
    return Table(
        title=_("Payments received, by payment method"),
        columns=[
            Column(_("Payment method"), width=22),
            Column(_("Payments"), Unit.COUNT),
            Column(_("Amount (CNY)"), Unit.MONEY, 16),
            Column(_("Share"), Unit.SHARE),
        ],
        rows=rows,
        totals=[_("Total"), sum(r["n"] for r in found), gross, share_of(gross, gross)],
        summary={"payments": str(sum(r["n"] for r in found)), "gross": str(gross)},
    )


def refunds(period: Period) -> Table:
    """Refunds requested in the period, by kind, and how much of each is back with the buyer."""
    totals = refunds_by_kind(start=period.start_at, end=period.end_at)
    rows = [[str(RefundKind(t.kind).label), t.count, t.amount, t.succeeded, t.succeeded_amount] for t in totals]
    count = sum(t.count for t in totals)
    amount = quantize(sum((t.amount for t in totals), ZERO))
    back = quantize(sum((t.succeeded_amount for t in totals), ZERO))
    summary = {"count": str(count), "amount": str(amount), "back": str(back)}
    summary.update({f"{t.kind}_amount": str(quantize(t.amount)) for t in totals})
    return Table(
        title=_("Refunds by kind"),
        columns=[
            Column(_("Kind"), width=40),
            Column(_("Refunds"), Unit.COUNT),
            Column(_("Amount (CNY)"), Unit.MONEY, 16),
            Column(_("Back with the buyer"), Unit.COUNT),
            Column(_("Amount back (CNY)"), Unit.MONEY, 16),
        ],
        rows=rows,
        totals=[_("Total"), count, amount, sum(t.succeeded for t in totals), back],
        note=_(
            "Refunds requested in the period; 'back with the buyer' counts those refunded by the time the "
            "report was generated."
        ),
        summary=summary,
    )


def ledger_reconciliation(period: Period) -> Table:
    """The report's money figures against the double-entry journal's movements of the same period
    (``ledger.selectors.movements_total``): each pair must be equal; a difference is shown, not hidden."""
    start, end = period.start_at, period.end_at
    paid = _order_payments(period).aggregate(s=Sum("amount"))["s"] or ZERO
    all_refunds = Refund.objects.filter(created_at__gte=start, created_at__lt=end)
    unused = all_refunds.filter(idempotency_key__startswith="unused:")
    decided = all_refunds.exclude(idempotency_key__startswith="unused:").aggregate(s=Sum("amount"))["s"] or ZERO
    back = (
        Refund.objects.filter(status=Refund.Status.SUCCEEDED, succeeded_at__gte=start, succeeded_at__lt=end).aggregate(
            s=Sum("amount")
        )["s"]
        or ZERO
    )
    pairs = [
        (
            _("Payments received for orders"),
            paid,
            movements_total(kinds=["payment", "balance_payment"], start=start, end=end, account=ledger.HELD).amount,
        ),
        (
            _("Refunds decided on delivered orders"),
            decided,
            movements_total(kinds=["refund_decided"], start=start, end=end, account=ledger.REFUNDS_DUE).amount,
        ),
        (
            _("Payments the order could not use, owed back"),
            unused.aggregate(s=Sum("amount"))["s"] or ZERO,
            movements_total(kinds=["payment"], start=start, end=end, account=ledger.REFUNDS_DUE).amount,
        ),
        (
            _("Refunds paid back to buyers"),
            back,
            movements_total(kinds=["refund_paid"], start=start, end=end).amount,
        ),
    ]
    rows = [[label, quantize(ours), quantize(theirs), quantize(ours - theirs)] for label, ours, theirs in pairs]
    keys = ("payments", "refunds_decided", "unused", "refunds_paid")
    summary = {}
    for key, row in zip(keys, rows, strict=True):
        summary[f"{key}_report"], summary[f"{key}_ledger"] = str(row[1]), str(row[2])
    summary["balanced"] = str(all(row[3] == 0 for row in rows))
    return Table(
        title=_("Reconciliation with the ledger"),
        columns=[
            Column(_("Figure"), width=40),
            Column(_("In this report (CNY)"), Unit.MONEY, 16),
            Column(_("In the ledger (CNY)"), Unit.MONEY, 16),
            Column(_("Difference (CNY)"), Unit.MONEY, 16),
        ],
        rows=rows,
        note=_(
            "The ledger column sums the journal entries posted in the period: payments credited to customer "
            "payments held, refunds credited to payments to return, refunds paid out of it."
        ),
        summary=summary,
    )


def complaints(period: Period) -> Table:
    """Tickets (complaints and after-sales requests) opened in the period, by kind, with the share
    answered within the promised time and the median first response
    (``aftersales.selectors.ticket_sla``, the trust centre's definition)."""
    rows = []
    for code, label in Kind.choices:
        sla = ticket_sla(start=period.start_at, end=period.end_at, now=period.now, kind=code)
        if sla.opened:
            rows.append([str(label), sla.opened, sla.answered, sla.on_time_share, _hours(sla.median_first_response)])
    total = ticket_sla(start=period.start_at, end=period.end_at, now=period.now)
    return Table(
        title=_("Complaints and after-sales response"),
        columns=[
            Column(_("Ticket kind"), width=30),
            Column(_("Tickets opened"), Unit.COUNT),
            Column(_("Answered"), Unit.COUNT),
            Column(_("Answered within the promised time"), Unit.SHARE, 18),
            Column(_("Median first response (hours)"), Unit.HOURS, 18),
        ],
        rows=rows,
        totals=[_("Total"), total.opened, total.answered, total.on_time_share, _hours(total.median_first_response)],
        note=_(
            "The share is over the tickets whose first answer is known (answered, or unanswered past the "
            "promised time) when the report was generated."
        ),
        summary={
            "opened": str(total.opened),
            "answered": str(total.answered),
            "on_time_share": str(total.on_time_share) if total.on_time_share is not None else "",
            "median_hours": str(_hours(total.median_first_response) or ""),
        },
    )


def arbitration(period: Period) -> Table:
    """Arbitration cases opened in the period, by outcome, and what they refunded."""
    outcomes = arbitration_outcomes(start=period.start_at, end=period.end_at)
    refunded: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for outcome, amount in ArbitrationCase.objects.filter(
        created_at__gte=period.start_at, created_at__lt=period.end_at, refund__isnull=False
    ).values_list("outcome", "refund__amount"):
        refunded[outcome] += amount
    rows = [[str(label), outcomes[code], quantize(refunded[code])] for code, label in ArbitrationCase.Outcome.choices]
    total = sum(outcomes.values())
    total_refunded = quantize(sum(refunded.values(), ZERO))
    return Table(
        title=_("Arbitration"),
        columns=[
            Column(_("Outcome"), width=30),
            Column(_("Cases"), Unit.COUNT),
            Column(_("Refunded (CNY)"), Unit.MONEY, 16),
        ],
        rows=rows,
        totals=[_("Total"), total, total_refunded],
        note=_("Cases opened in the period, by their outcome when the report was generated."),
        summary={"cases": str(total), "refunded": str(total_refunded)},
    )


def qualifications(period: Period) -> Table:
    """Every qualification on record, its validity and state on the period's last day, and the
    changes made to it during the period (电子商务法 第十五条: kept current and shown)."""
    changes = dict(
        QualificationChange.objects.filter(at__gte=period.start_at, at__lt=period.end_at)
        .values_list("qualification")
        .annotate(n=Count("id"))
        .values_list("qualification", "n")
    )
    rows = []
    expired = 0
    for q in Qualification.objects.order_by("kind", "pk"):
        if q.valid_until is None:
            state = _("Valid, without end")
        elif q.valid_until < period.end:
            state = _("Expired")
            expired += 1
        elif q.valid_until <= period.end + timedelta(days=EXPIRING_DAYS):
            state = _("Valid, ends within 30 days")
        else:
            state = _("Valid")
        if not q.is_shown:
            state = _("%(state)s (retired, not shown)") % {"state": state}
        rows.append([q.get_kind_display(), q.number, q.company_name, q.valid_until, state, changes.get(q.pk, 0)])
    return Table(
        title=_("Qualifications"),
        columns=[
            Column(_("Qualification"), width=20),
            Column(_("Number"), width=26),
            Column(_("Holder"), width=30),
            Column(_("Valid until"), Unit.DATE, 13),
            Column(_("State on the last day"), width=18),
            Column(_("Changes in the period"), Unit.COUNT, 11),
        ],
        rows=rows,
        summary={"qualifications": str(len(rows)), "expired": str(expired)},
    )


def risk(period: Period) -> Table:
    """Risk-control alerts raised in the period, by rule and automatic action, and what staff did."""
    found = (
        Alert.objects.filter(created_at__gte=period.start_at, created_at__lt=period.end_at)
        .values("rule", "action")
        .annotate(
            n=Count("id"),
            actioned=Count("id", filter=Q(status=Alert.Status.ACTIONED)),
            dismissed=Count("id", filter=Q(status=Alert.Status.DISMISSED)),
            open=Count("id", filter=Q(status=Alert.Status.OPEN)),
        )
        .order_by("rule", "action")
    )
    rules, actions = dict(Rule.choices), dict(Action.choices)
    rows = [
        [
            str(rules.get(r["rule"], r["rule"])),
            str(actions.get(r["action"], r["action"])),
            r["n"],
            r["actioned"],
            r["dismissed"],
            r["open"],
        ]
        for r in found
    ]
    sums = [sum(row[i] for row in rows) for i in range(2, 6)]
    return Table(
        title=_("Risk alerts and actions"),
        columns=[
            Column(_("Rule"), width=30),
            Column(_("Automatic action"), width=22),
            Column(_("Alerts"), Unit.COUNT),
            Column(_("Actioned by staff"), Unit.COUNT),
            Column(_("Dismissed"), Unit.COUNT),
            Column(_("Still open"), Unit.COUNT),
        ],
        rows=rows,
        totals=[_("Total"), "", *sums],
        summary={"alerts": str(sums[0]), "actioned": str(sums[1])},
    )
