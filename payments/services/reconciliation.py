"""Reconciliation: what the gateways say, held against what we recorded.

Active query. Every order or recharge started at a real gateway has a ``PaymentAttempt``
(recorded by ``services.payment_start``). While it can be paid, the gateway is asked about it
2 minutes after the start, then after 4, 8, 16 and every 32 minutes, never later than the
moment it stops being payable. A trade found paid goes through ``services.payment_fact_apply``,
the same pipeline as a notification, so a lost notification still completes the order exactly
once and a notification arriving afterwards is a replay. Once the order or recharge can no
longer be paid (expired, cancelled, paid another way), the gateway is asked once more (a payment
made at the last moment is applied, not lost) and the trade is closed there so it cannot be paid
late. A close that fails is retried at the next run, for at most ``CLOSE_GIVE_UP`` after expiry.

Each turn is claimed by bumping ``queries`` with a conditional UPDATE before the gateway is
called: runs that overlap (two beats, two workers) split the work instead of repeating it, and
no row lock is held while the gateway is on the line.

Daily bills. ``reconciliation_run`` downloads one gateway's bill for one day (Beijing time) and
matches every line with our payments (by gateway trade number, else by order number) and our
succeeded refunds (by refund number). What does not match is a ``Mismatch`` for staff: on the
bill but not here, here but not on the bill, or a different amount. Running a day again
replaces its mismatches; resolutions staff wrote are kept for the mismatches found again.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from compliance.models import CreditEvent
from compliance.services import credit_event_record
from marketplace.errors import ServiceError
from orders.models import Order
from risk import services as risk

from ..gateways import BillLine, GatewayError, RemoteGateway, TradeStatus, VerifiedNotification, enabled_gateways
from ..models import (
    RECHARGE_PREFIX,
    RECONCILIATION_FLOW,
    Mismatch,
    Notification,
    Payment,
    PaymentAttempt,
    Recharge,
    ReconciliationRun,
    Refund,
    payable_model,
)
from . import payments as services
from .payments import query_delay

log = logging.getLogger(__name__)

BEIJING = ZoneInfo("Asia/Shanghai")  # the gateways' day: bills run from 00:00 to 24:00 Beijing time
CLOSE_RETRY = timedelta(minutes=1)  # a failed close is tried again at the next run (beat: every minute)
CLOSE_GIVE_UP = timedelta(days=1)  # after this past expiry an unclosable trade is left to staff (and the bill)

Kind = Mismatch.Kind


class ReconciliationError(ServiceError):
    """A request that cannot be carried out as asked; the message says why."""

    code = "reconciliation_refused"


# --- active query --------------------------------------------------------------------------


def _payable(number: str) -> Order | Recharge | None:
    return payable_model(number).objects.filter(number=number).first()


def _open_numbers(now: datetime) -> Q:
    """Attempts whose order or recharge can still be paid."""
    orders = Order.objects.filter(status=Order.Status.PENDING, expires_at__gt=now).values("number")
    recharges = Recharge.objects.filter(status=Recharge.Status.PENDING, expires_at__gt=now).values("number")
    return Q(number__in=orders) | Q(number__in=recharges)


def attempts_due(*, limit: int = 500) -> list[int]:
    """Attempts to query now: their next query is due and they can still be paid."""
    now = timezone.now()
    due = PaymentAttempt.objects.filter(next_query_at__lte=now).filter(_open_numbers(now))
    return list(due.order_by("next_query_at").values_list("pk", flat=True)[:limit])


def attempts_to_close(*, limit: int = 500) -> list[int]:
    """Attempts not finished whose order or recharge can no longer be paid: to close."""
    now = timezone.now()
    due = PaymentAttempt.objects.filter(next_query_at__lte=now).exclude(_open_numbers(now))
    return list(due.order_by("next_query_at").values_list("pk", flat=True)[:limit])


def _paid_here(attempt: PaymentAttempt) -> bool:
    number_field = "recharge__number" if attempt.number.startswith(RECHARGE_PREFIX) else "order__number"
    return Payment.objects.filter(gateway=attempt.gateway, **{number_field: attempt.number}).exists()


def _note(attempt: PaymentAttempt, *, state: str | None = None, error: str = "") -> None:
    fields: dict[str, object] = {"last_error": error[:300]}
    if state is not None:
        fields["last_state"] = state[:40]
    PaymentAttempt.objects.filter(pk=attempt.pk).update(**fields)


def _finish(attempt: PaymentAttempt, *, state: str | None = None, error: str = "", closed: bool = False) -> None:
    now = timezone.now()
    fields: dict[str, object] = {"next_query_at": None, "finished_at": now, "last_error": error[:300]}
    if state is not None:
        fields["last_state"] = state[:40]
    if closed:
        fields["closed_at"] = now
    PaymentAttempt.objects.filter(pk=attempt.pk).update(**fields)


# Trade states in which a gateway says the payment itself failed (WeChat Pay: the bank refused
# it, or a payment-code trade was revoked), as opposed to a trade left unpaid until it closed.
FAILED_STATES = frozenset({"PAYERROR", "REVOKED"})


def _payment_failed_credit(payable, *, reference: str, detail: str) -> bool:
    """A payment that failed at its gateway, or was reversed there, weighs on the payer's credit
    (``CreditEvent.Kind.PAYMENT_FAILED``); once per ``reference`` (queries and bills run again)."""
    user = payable.buyer if isinstance(payable, Order) else payable.user
    email = payable.guest_email if isinstance(payable, Order) else ""
    if user is None and not email:
        return False
    if CreditEvent.objects.filter(kind=CreditEvent.Kind.PAYMENT_FAILED, reference=reference[:40]).exists():
        return False
    credit_event_record(
        user=user, email=email, kind=CreditEvent.Kind.PAYMENT_FAILED, reference=reference, detail=detail
    )
    return True


def _closed_unpaid(payable, attempt: PaymentAttempt, *, state: str = "") -> None:
    """A trade closed at its gateway without being paid (here or any other way): a failed
    payment, counted by risk control's velocity rules per buyer, IP and device. When the
    gateway says the payment failed (not merely that it was left unpaid, which the order's
    expiry already records), it is also a credit event of the payer."""
    if payable.paid_at is not None:
        return  # paid another way (another gateway, the balance): not a failure
    if state in FAILED_STATES:
        _payment_failed_credit(
            payable,
            reference=f"{attempt.gateway}:{attempt.number}",
            detail=f"payment failed at {attempt.gateway} ({state})",
        )
    if isinstance(payable, Order):
        risk.velocity_count(
            event="payment_failed",
            user=payable.buyer,
            email=payable.guest_email,
            ip=payable.buyer_ip,
            device=payable.buyer_device,
            reference=f"{attempt.gateway}:{attempt.number}",
        )
    else:
        risk.velocity_count(event="payment_failed", user=payable.user, reference=f"{attempt.gateway}:{attempt.number}")


def attempt_check(*, attempt_id: int) -> str:
    """One turn for one attempt: query while it can be paid, close once it cannot.

    Returns what happened, for logs and tests: finished, not due, busy (another run has this
    turn), waiting, error, applied, replay, rejected, closed, close failed, gave up, paid.
    Safe to call any number of times, from any number of workers at once.
    """
    attempt = PaymentAttempt.objects.filter(pk=attempt_id).first()
    if attempt is None or attempt.next_query_at is None:
        return "finished"
    now = timezone.now()
    if attempt.next_query_at > now:
        return "not due"
    payable = _payable(attempt.number)
    if payable is None:
        _finish(attempt, error="no order or recharge has this number")
        return "finished"
    if _paid_here(attempt):  # the notification came; nothing left to ask
        _finish(attempt, state="paid (notified)")
        return "paid"
    is_open = payable.is_payable
    if not is_open and now > payable.expires_at + CLOSE_GIVE_UP:
        _finish(attempt, error=f"not closed at the gateway, gave up: {attempt.last_error}")
        log.error("%s trade %s could not be closed; left to staff", attempt.gateway, attempt.number)
        return "gave up"
    next_at = min(now + query_delay(attempt.queries + 1), payable.expires_at) if is_open else now + CLOSE_RETRY
    claimed = PaymentAttempt.objects.filter(pk=attempt.pk, queries=attempt.queries, next_query_at__isnull=False).update(
        queries=F("queries") + 1, next_query_at=next_at
    )
    if not claimed:
        return "busy"
    gateway = enabled_gateways().get(attempt.gateway)
    if not isinstance(gateway, RemoteGateway):
        _note(attempt, error="the gateway is not enabled")
        return "error"
    try:
        status = gateway.query(order_number=attempt.number)
    except GatewayError as exc:
        _note(attempt, error=str(exc))
        return "error"
    if status.paid:
        return _apply(attempt, status)
    state = status.state if status.exists else "no such trade"
    if is_open:
        _note(attempt, state=state)
        return "waiting"
    if status.closed:
        _finish(attempt, state=state, closed=True)
        _closed_unpaid(payable, attempt, state=state)
        return "closed"
    try:
        gateway.close(order_number=attempt.number)
    except GatewayError as exc:
        _note(attempt, state=state, error=f"close: {exc}")
        return "close failed"
    _finish(attempt, state=f"closed ({state})", closed=True)
    _closed_unpaid(payable, attempt, state=state)
    log.info("%s trade %s closed: it can no longer be paid", attempt.gateway, attempt.number)
    return "closed"


def _apply(attempt: PaymentAttempt, status: TradeStatus) -> str:
    """The gateway says paid: the same pipeline as a notification decides what that changes."""
    if status.amount is None or not status.trade_no:
        _note(attempt, state=status.state, error="paid, but the answer has no amount or trade number")
        return "error"
    verified = VerifiedNotification(
        order_number=attempt.number,
        trade_no=status.trade_no,
        amount=status.amount,
        currency="CNY",
        paid=True,
        state=status.state,
        paid_at=status.paid_at,
    )
    result = services.payment_fact_apply(gateway_code=attempt.gateway, verified=verified)
    if result.outcome == Notification.Outcome.REJECTED:
        # Retrying would be refused again: the bill shows it as missing here, for staff.
        _finish(attempt, state=status.state, error=f"payment refused: {result.reason}")
        log.error("%s trade %s paid but refused: %s", attempt.gateway, attempt.number, result.reason)
        return "rejected"
    _finish(attempt, state=status.state)
    return str(result.outcome)


# --- daily bills --------------------------------------------------------------------------------


def bill_gateways() -> list[str]:
    """The enabled gateways that have bills to reconcile."""
    return [code for code, gateway in enabled_gateways().items() if isinstance(gateway, RemoteGateway)]


def yesterday() -> date:
    return timezone.now().astimezone(BEIJING).date() - timedelta(days=1)


def _day_range(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=BEIJING)
    return start, start + timedelta(days=1)


def _number(payment: Payment) -> str:
    return payment.number  # its order's or its recharge's (a check constraint: exactly one of them)


@dataclass
class _Comparison:
    found: list[Mismatch] = field(default_factory=list)
    matched: int = 0
    ours: int = 0
    bill_payments: Decimal = Decimal("0.00")
    bill_refunds: Decimal = Decimal("0.00")
    our_payments: Decimal = Decimal("0.00")
    our_refunds: Decimal = Decimal("0.00")
    # Refunds on the bill that no refund of ours made: money taken back at the gateway (a
    # payer's complaint there, a refund from the merchant portal).
    reversals: list[BillLine] = field(default_factory=list)

    def add(self, kind: str, *, ours=None, theirs=None, order_number="", trade_no="", refund_no="", note="") -> None:
        self.found.append(
            Mismatch(
                kind=kind,
                order_number=order_number[:64],
                trade_no=trade_no[:64],
                refund_no=refund_no[:64],
                ours=ours,
                theirs=theirs,
                note=note[:300],
            )
        )


def _why_not_here(gateway_code: str, line: BillLine) -> str:
    """What we know about a bill line we have no record of (for staff)."""
    notification = (
        Notification.objects.filter(gateway=gateway_code)
        .filter(Q(trade_no=line.trade_no) | Q(order_number=line.order_number))
        .order_by("-id")
        .first()
    )
    if notification is not None:
        return _("last notification %(outcome)s: %(reason)s") % {
            "outcome": notification.get_outcome_display(),
            "reason": notification.reason,
        }
    if _payable(line.order_number) is None:
        return _("no order or recharge has this number")
    return _("no notification received, not found by the active query")


def _compare_payments(gateway_code: str, day: date, lines: list[BillLine], result: _Comparison) -> None:
    start, end = _day_range(day)
    ours = list(
        Payment.objects.filter(gateway=gateway_code)
        .annotate(at=Coalesce("paid_at", "created_at"))
        .filter(at__gte=start, at__lt=end)
        .select_related("order", "recharge")
        .order_by("pk")
    )
    result.ours += len(ours)
    result.our_payments += sum((p.amount for p in ours), Decimal("0.00"))
    by_trade: dict[str, Payment] = {p.trade_no: p for p in ours}
    by_number: dict[str, Payment] = {_number(p): p for p in ours}
    # Lines for a payment we dated on another day (a payment at midnight): found, not missing.
    strays = [line for line in lines if line.trade_no not in by_trade and line.order_number not in by_number]
    payment: Payment | None  # a stray's payment below, then each bill line's match (None: not found)
    if strays:
        others = Payment.objects.filter(gateway=gateway_code).select_related("order", "recharge")
        trade_nos = {line.trade_no for line in strays if line.trade_no}
        numbers = {line.order_number for line in strays if line.order_number}
        for payment in others.filter(
            Q(trade_no__in=trade_nos) | Q(order__number__in=numbers) | Q(recharge__number__in=numbers)
        ):
            by_trade.setdefault(payment.trade_no, payment)
            by_number.setdefault(_number(payment), payment)
    seen: set[int] = set()
    for line in lines:
        result.bill_payments += line.amount
        payment = by_trade.get(line.trade_no) if line.trade_no else None
        note = ""
        if payment is None and line.order_number in by_number:
            payment = by_number[line.order_number]
            note = _("matched by order number; our trade number is %(ours)s") % {"ours": payment.trade_no}
        if payment is None:
            why = _why_not_here(gateway_code, line)
            result.add(
                Kind.MISSING_HERE, theirs=line.amount, order_number=line.order_number, trade_no=line.trade_no, note=why
            )
            continue
        if payment.pk in seen:
            result.add(
                Kind.MISSING_HERE,
                theirs=line.amount,
                order_number=line.order_number,
                trade_no=line.trade_no,
                note=_("the bill lists this payment more than once"),
            )
            continue
        seen.add(payment.pk)
        if payment.amount != line.amount:
            result.add(
                Kind.AMOUNT_DIFFERS,
                ours=payment.amount,
                theirs=line.amount,
                order_number=_number(payment),
                trade_no=payment.trade_no,
                note=note,
            )
        else:
            result.matched += 1
    for payment in ours:
        if payment.pk not in seen:
            result.add(
                Kind.MISSING_THERE,
                ours=payment.amount,
                order_number=_number(payment),
                trade_no=payment.trade_no,
                note=_("payment %(status)s, not on the bill") % {"status": payment.get_status_display()},
            )


def _compare_refunds(gateway_code: str, day: date, lines: list[BillLine], result: _Comparison) -> None:
    start, end = _day_range(day)
    succeeded = Refund.objects.filter(payment__gateway=gateway_code, status=Refund.Status.SUCCEEDED)
    ours = list(
        succeeded.annotate(at=Coalesce("succeeded_at", "created_at"))
        .filter(at__gte=start, at__lt=end)
        .select_related("payment__order", "payment__recharge")
        .order_by("pk")
    )
    result.ours += len(ours)
    result.our_refunds += sum((r.amount for r in ours), Decimal("0.00"))
    by_number: dict[str, Refund] = {r.number: r for r in ours}
    strays = {line.refund_no for line in lines if line.refund_no not in by_number}
    others = {r.number: r for r in Refund.objects.filter(number__in=strays).select_related("payment")}
    seen: set[int] = set()
    for line in lines:
        result.bill_refunds += line.amount
        refund = by_number.get(line.refund_no)
        if refund is None:
            other = others.get(line.refund_no)
            if other is not None and other.status == Refund.Status.SUCCEEDED and other.payment.gateway == gateway_code:
                refund = other  # ours is dated on another day
            else:
                if other is None:
                    why = _("no refund has this number")
                    result.reversals.append(line)
                elif other.payment.gateway != gateway_code:
                    why = _("our refund with this number went through %(gateway)s") % {"gateway": other.payment.gateway}
                else:
                    why = _("our refund is %(status)s") % {"status": other.get_status_display()}
                result.add(
                    Kind.MISSING_HERE,
                    theirs=line.amount,
                    order_number=line.order_number,
                    trade_no=line.trade_no,
                    refund_no=line.refund_no,
                    note=why,
                )
                continue
        if refund.pk in seen:
            result.add(
                Kind.MISSING_HERE,
                theirs=line.amount,
                order_number=line.order_number,
                trade_no=line.trade_no,
                refund_no=line.refund_no,
                note=_("the bill lists this refund more than once"),
            )
            continue
        seen.add(refund.pk)
        if refund.amount != line.amount:
            result.add(
                Kind.AMOUNT_DIFFERS,
                ours=refund.amount,
                theirs=line.amount,
                order_number=line.order_number,
                trade_no=refund.payment.trade_no,
                refund_no=refund.number,
            )
        else:
            result.matched += 1
    for refund in ours:
        if refund.pk not in seen:
            result.add(
                Kind.MISSING_THERE,
                ours=refund.amount,
                trade_no=refund.payment.trade_no,
                refund_no=refund.number,
                order_number=_number(refund.payment),
                note=_("refund succeeded here, not on the bill"),
            )


def _key(mismatch: Mismatch) -> tuple:
    return (mismatch.kind, mismatch.order_number, mismatch.trade_no, mismatch.refund_no, mismatch.ours, mismatch.theirs)


def reconciliation_run(*, gateway_code: str, day: date) -> ReconciliationRun:
    """Download ``gateway_code``'s bill for ``day`` and record every difference with our books.

    Running a day again replaces its mismatches (resolutions of those found again are kept).
    A bill that cannot be downloaded marks the run failed and raises ``GatewayError``.
    """
    gateway = enabled_gateways().get(gateway_code)
    if not isinstance(gateway, RemoteGateway):
        raise ReconciliationError(_("%(gateway)s is not an enabled gateway with bills") % {"gateway": gateway_code})
    if day >= timezone.now().astimezone(BEIJING).date():
        raise ReconciliationError(_("%(day)s has not ended yet: its bill is not out") % {"day": day.isoformat()})
    run, _created = ReconciliationRun.objects.get_or_create(gateway=gateway_code, day=day)
    with transaction.atomic():
        run = ReconciliationRun.objects.select_for_update().get(pk=run.pk)
        restart = {"started_at": timezone.now(), "finished_at": None, "error": ""}
        if not RECONCILIATION_FLOW.apply(run, ReconciliationRun.Status.RUNNING, note="run again", update=restart):
            ReconciliationRun.objects.filter(pk=run.pk).update(**restart)  # running already (a new run)
    try:
        lines = gateway.bill(day=day)
    except GatewayError as exc:
        RECONCILIATION_FLOW.move_all(
            ReconciliationRun.objects.filter(pk=run.pk),
            ReconciliationRun.Status.RUNNING,
            ReconciliationRun.Status.FAILED,
            finished_at=timezone.now(),
            error=str(exc)[:300],
        )
        log.warning("%s bill for %s not reconciled: %s", gateway_code, day, exc)
        raise
    with transaction.atomic():
        run = ReconciliationRun.objects.select_for_update().get(pk=run.pk)  # one writer per day at a time
        result = _Comparison()
        _compare_payments(gateway_code, day, [line for line in lines if line.kind == "payment"], result)
        _compare_refunds(gateway_code, day, [line for line in lines if line.kind == "refund"], result)
        resolved = {_key(m): m for m in run.mismatches.filter(resolved_at__isnull=False)}
        run.mismatches.all().delete()
        for mismatch in result.found:
            mismatch.run = run
            earlier = resolved.pop(_key(mismatch), None)
            if earlier is not None:
                mismatch.resolved_at, mismatch.resolved_by_id = earlier.resolved_at, earlier.resolved_by_id
                mismatch.resolution_note, mismatch.created_at = earlier.resolution_note, earlier.created_at
        Mismatch.objects.bulk_create(result.found)
        kinds = [m.kind for m in result.found]
        run.finished_at, run.error = timezone.now(), ""
        run.bill_lines, run.our_records, run.matched = len(lines), result.ours, result.matched
        run.missing_here, run.missing_there = kinds.count(Kind.MISSING_HERE), kinds.count(Kind.MISSING_THERE)
        run.amount_differs = kinds.count(Kind.AMOUNT_DIFFERS)
        run.bill_payments_total, run.bill_refunds_total = result.bill_payments, result.bill_refunds
        run.our_payments_total, run.our_refunds_total = result.our_payments, result.our_refunds
        run.save(
            update_fields=[
                "finished_at",
                "error",
                "bill_lines",
                "our_records",
                "matched",
                "missing_here",
                "missing_there",
                "amount_differs",
                "bill_payments_total",
                "bill_refunds_total",
                "our_payments_total",
                "our_refunds_total",
            ]
        )
        RECONCILIATION_FLOW.apply(run, ReconciliationRun.Status.DONE, note=f"{len(result.found)} mismatch(es)")
    for line in result.reversals:
        _reversal_credit(gateway_code, line)
    level = logging.WARNING if result.found else logging.INFO
    log.log(level, "%s bill for %s: %d lines, %d mismatches", gateway_code, day, len(lines), len(result.found))
    return run


def _reversal_credit(gateway_code: str, line: BillLine) -> None:
    """A refund on the bill that we never made, of a payment we have: the payment was reversed
    at the gateway, a credit event of whoever paid (staff see the mismatch; the rating sees the
    payer). Once per bill refund number."""
    match = Q(trade_no=line.trade_no) if line.trade_no else Q(pk__in=[])
    if line.order_number:
        match |= Q(order__number=line.order_number) | Q(recharge__number=line.order_number)
    payment = Payment.objects.filter(match, gateway=gateway_code).select_related("order", "recharge").first()
    if payment is None:
        return
    payable = payment.order or payment.recharge
    _payment_failed_credit(
        payable,
        reference=f"rev:{line.refund_no or line.trade_no}"[:40],
        detail=f"payment reversed at {gateway_code}: {line.amount} refunded there, not by us",
    )


def mismatch_resolve(*, mismatch_ids: Iterable[int], user, note: str) -> int:
    """Staff say what was done about these mismatches; those already resolved stay as they were."""
    note = (note or "").strip()
    if not note:
        raise ReconciliationError(_("Say what was done: a note is required."))
    return Mismatch.objects.filter(pk__in=list(mismatch_ids), resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=user, resolution_note=note[:500]
    )
