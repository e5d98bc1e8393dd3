"""The one pipeline every gateway's notifications go through.

verify (signature, merchant) -> check order, amount and currency -> store once (unique per
gateway trade number) -> apply once (orders marks the order paid, fulfilment is queued on
commit). Replays change nothing; anything that fails a check changes nothing and is logged
with its reason.
"""

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from compliance import rating
from ledger import services as ledger
from marketplace import rows
from marketplace.errors import NotFound, ServiceError
from marketplace.logcontext import log_context
from marketplace.money import parse_yuan
from marketplace.prepared import Prepared
from orders.models import Order
from orders.services import orders
from orders.services.orders import PaidOutcome

from ..gateways import Device, NotificationRejected, PaymentStart, RemoteGateway, VerifiedNotification, get_gateway
from ..models import (
    BALANCE,
    RECHARGE_FLOW,
    RECHARGE_PREFIX,
    Notification,
    Payment,
    PaymentAttempt,
    Recharge,
    payable_model,
)
from .refunds import payment_refund_unused, refund_confirmed_by_gateway

RECHARGE_MIN, RECHARGE_MAX = Decimal("1.00"), Decimal("5000.00")
BACKOFF_MINUTES = (2, 4, 8, 16, 32)  # the first query 2 minutes after the start, then 4, 8, 16, 32, 32 ...

log = logging.getLogger(__name__)
Outcome = Notification.Outcome

_PAYMENT_STATUS = {
    PaidOutcome.PAID: Payment.Status.SUCCEEDED,
    PaidOutcome.LATE_PAID: Payment.Status.SUCCEEDED,
    PaidOutcome.REFUND_PENDING: Payment.Status.UNFULFILLABLE,
    PaidOutcome.ALREADY_PAID: Payment.Status.DUPLICATE,
}


@dataclass(frozen=True)
class NotificationResult:
    outcome: str
    reason: str = ""
    payment: Payment | None = None

    @property
    def ok(self) -> bool:
        """Whether to tell the gateway to stop resending."""
        return self.outcome != Outcome.REJECTED


class _Reject(Exception):
    pass


def notification_receive(
    *,
    gateway_code: str,
    headers: Mapping[str, str],
    body: bytes,
    remote_addr: str | None = None,
    order: Order | None = None,
) -> NotificationResult:
    """``order``: the order as the caller has just read it (the sandbox cashier's page), if any.
    Only used when the verified notification pays that very order: its row is then locked
    reading back what can have changed since (``_order_relock``), not built again."""
    gateway = get_gateway(gateway_code)
    # PostgreSQL text cannot hold NUL: an unsigned junk body must be logged, not crash the view.
    text = body[:20000].decode("utf-8", "replace").replace("\x00", "\ufffd")
    record = Notification(gateway=gateway_code, remote_addr=remote_addr, body=text)
    try:
        verified = gateway.verify(headers=headers, body=body)
    except NotificationRejected as exc:
        return _log(record, Outcome.REJECTED, str(exc))
    return payment_fact_apply(gateway_code=gateway_code, verified=verified, record=record, order=order)


def payment_fact_apply(
    *,
    gateway_code: str,
    verified: VerifiedNotification,
    record: Notification | None = None,
    order: Order | None = None,
) -> NotificationResult:
    """Apply what a gateway has told us, verified: by a notification, or by our own active
    query (reconciliation) when the notification never came. Same checks, applied once.
    ``order``: as for ``notification_receive``."""
    with log_context(order=verified.order_number[:64], payment=f"{gateway_code}:{verified.trade_no[:64]}"):
        return _fact_apply(gateway_code, verified, record, order)


def _fact_apply(
    gateway_code: str, verified: VerifiedNotification, record: Notification | None, known: Order | None
) -> NotificationResult:
    if record is None:
        record = Notification(gateway=gateway_code, body="(active query)")
    record.order_number, record.trade_no = verified.order_number[:64], verified.trade_no[:64]
    if verified.refund_no:
        settled = refund_confirmed_by_gateway(gateway_code=gateway_code, refund_no=verified.refund_no)
        return _log(record, Outcome.IGNORED, f"refund {verified.refund_no}: {settled}")
    if not verified.paid:
        return _log(record, Outcome.IGNORED, f"state {verified.state}")
    try:
        with transaction.atomic():
            outcome, reason, payment = _apply(gateway_code, verified, record, known)
    except _Reject as exc:
        _unsaved(record)
        return _log(record, Outcome.REJECTED, str(exc))
    except IntegrityError:
        # The trade number is another order's (the unique (gateway, trade_no) index refused the
        # payment of a pending order, which is not looked up first), or it committed for
        # another order meanwhile: nothing was applied.
        _unsaved(record)
        taken = Payment.objects.filter(gateway=gateway_code, trade_no=verified.trade_no).exclude(
            order__number=verified.order_number
        )
        reason = "for another order" if taken.exists() else "(concurrent notification)"
        return _log(record, Outcome.REJECTED, f"trade number already used {reason}")
    return NotificationResult(outcome, reason, payment)


def _unsaved(record: Notification) -> None:
    """``record`` as before the rolled-back transaction that may have written it: a new row."""
    record.pk, record.payment = None, None
    record._state.adding = True


def _log(record: Notification, outcome: str, reason: str) -> NotificationResult:
    record.outcome, record.reason = outcome, reason[:300]
    record.save()
    level = logging.WARNING if outcome == Outcome.REJECTED else logging.INFO
    log.log(level, "%s notification %s for order %r: %s", record.gateway, outcome, record.order_number, reason)
    return NotificationResult(outcome, reason)


def _apply(gateway_code: str, verified: VerifiedNotification, record: Notification, known: Order | None):
    if verified.order_number.startswith(RECHARGE_PREFIX):
        return _apply_recharge(gateway_code, verified, record)
    if known is not None and known.number == verified.order_number:
        order = _order_relock(known)  # what can have changed since the caller read it, locked
    else:
        order = orders.order_lock_by_number(verified.order_number)
    replayed = _check_fact(gateway_code, verified, order, record, what="order")
    if replayed is not None:
        return replayed
    assert order is not None  # _check_fact refused a missing order
    # Deliveries of one notification are serialised by the order's row lock, so the check
    # above sees any earlier one; the unique (gateway, trade_no) constraint backs it up.

    def recorded(result: PaidOutcome) -> rows.PairAndRow:
        # The payment and the notification's log row that applied it, written by the order's
        # move (one statement on PostgreSQL with the status change and its history row), so the
        # log row stands or falls with the rest.
        payment = Payment(
            order=order,
            gateway=gateway_code,
            trade_no=verified.trade_no,
            amount=verified.amount,
            currency=verified.currency,
            status=_PAYMENT_STATUS[result],
            paid_at=verified.paid_at,
        )
        record.outcome, record.reason, record.payment = Outcome.APPLIED, result.value, payment
        # Its ledger lines are written now; the entry that seals them rides with the payment.
        return rows.PairAndRow(rows.Pair(payment, record, link="payment"), _book_payment(payment, order.number))

    result = orders.order_mark_paid(order=order, note=f"{gateway_code} {verified.trade_no}", recorded_by=recorded)
    payment = record.payment
    assert payment is not None and payment.pk is not None  # written by order_mark_paid
    if payment.status != Payment.Status.SUCCEEDED:  # money the order cannot use goes straight back
        payment_refund_unused(payment=payment, reason=f"{payment.get_status_display()}: automatic refund")
    log.info("%s payment %s applied to order %s: %s", gateway_code, verified.trade_no, order.number, result.value)
    return Outcome.APPLIED, result.value, payment


def _book_payment(payment: Payment, order_number: str) -> rows.Row:
    """Money is at the gateway: held for the order, or owed back when the order cannot use it.
    The lines are written; the entry that seals them is returned, for the caller to write with
    the payment (``ledger.transfer_sealed_by_caller``)."""
    clearing = ledger.clearing(payment.gateway)
    owed = ledger.HELD if payment.status == Payment.Status.SUCCEEDED else ledger.REFUNDS_DUE
    return ledger.transfer_sealed_by_caller(
        debit=clearing,
        credit=owed,
        amount=payment.amount,
        kind="payment",
        reference=order_number,
        memo=f"{payment.gateway} {payment.trade_no} {payment.get_status_display()}",
        idempotency_key=f"payment:{payment.gateway}:{payment.trade_no}",
    )


def _apply_recharge(gateway_code: str, verified: VerifiedNotification, record: Notification):
    """A recharge paid: the money is the user's, held in their wallet (a liability, not revenue).

    Every payment for a recharge is credited, a late or a second one too: it is the user's money.
    """
    recharge = Recharge.objects.select_for_update().filter(number=verified.order_number).first()
    replayed = _check_fact(gateway_code, verified, recharge, record, what="recharge")
    if replayed is not None:
        return replayed
    assert recharge is not None  # _check_fact refused a missing recharge
    payment = Payment.objects.create(
        recharge=recharge,
        gateway=gateway_code,
        trade_no=verified.trade_no,
        amount=verified.amount,
        currency=verified.currency,
        status=Payment.Status.SUCCEEDED,
        paid_at=verified.paid_at,
    )
    ledger.transfer(
        debit=ledger.clearing(gateway_code),
        credit=ledger.wallet(recharge.user),
        amount=payment.amount,
        kind="recharge",
        reference=recharge.number,
        memo=f"{gateway_code} {payment.trade_no}",
        idempotency_key=f"payment:{gateway_code}:{payment.trade_no}",
    )
    RECHARGE_FLOW.apply(recharge, Recharge.Status.PAID, note=f"{gateway_code} {payment.trade_no}")  # once
    record.outcome, record.reason, record.payment = Outcome.APPLIED, "recharged", payment
    record.save()
    return Outcome.APPLIED, "recharged", payment


def _check_fact(gateway_code: str, verified: VerifiedNotification, paid_for, record: Notification, *, what: str):
    """The checks a paid fact must pass against what it pays for (its order or recharge, locked):
    it exists, in the same currency, for the same amount. Returns the replay's answer when this
    trade number was applied already, else None (apply it)."""
    if paid_for is None:
        raise _Reject(f"unknown {what}")
    if verified.currency != paid_for.currency:
        raise _Reject(f"currency {verified.currency} differs from the {what}'s {paid_for.currency}")
    if verified.amount != paid_for.total:
        raise _Reject(f"amount {verified.amount} differs from the {what}'s {paid_for.total}")
    if isinstance(paid_for, Order) and paid_for.status == Order.Status.PENDING:
        # Nothing has paid a pending order (no status leads back to pending), so this trade
        # number is new or another order's: the payment's unique (gateway, trade_no) index
        # decides, in the INSERT that follows (refused: ``_fact_apply`` rejects it).
        return None
    existing = Payment.objects.filter(gateway=gateway_code, trade_no=verified.trade_no).first()
    return None if existing is None else _replay(existing, paid_for, record)


def _replay(existing: Payment, paid_for, record: Notification):
    if (existing.recharge_id if isinstance(paid_for, Recharge) else existing.order_id) != paid_for.pk:
        raise _Reject("trade number already used for another order")
    record.outcome, record.reason, record.payment = Outcome.REPLAY, "already applied", existing
    record.save()
    if not isinstance(paid_for, Recharge):
        # The gateway resends until it hears success: a paid order still undelivered (its
        # first queuing lost) is queued again now rather than at the sweeper's next turn.
        orders.order_delivery_nudge(order=paid_for)
    return Outcome.REPLAY, "already applied", existing


def sandbox_pay(*, order_number: str, remote_addr: str | None = None, payable=None) -> NotificationResult:
    """The sandbox cashier's "pay" button: the gateway side signs, then our pipeline verifies.
    ``payable``: the order or recharge the caller has just read (its page), not read again; the
    notification's amount is its total, and the pipeline checks it against the locked row."""
    from ..gateways.sandbox import SandboxGateway

    get_gateway(SandboxGateway.code)  # 404 when the sandbox is disabled
    if payable is None or payable.number != order_number:
        payable = payable_model(order_number).objects.get(number=order_number)
    body = SandboxGateway.build_notification(order_number=payable.number, amount=payable.total)
    # Verified like any gateway's notification; only the order's lock reads less (it is known).
    return notification_receive(
        gateway_code=SandboxGateway.code,
        headers={},
        body=body,
        remote_addr=remote_addr,
        order=payable if isinstance(payable, Order) else None,
    )


# --- Balance ----------------------------------------------------------------------------


class PaymentError(ServiceError):
    """A payment the user can fix (or must choose another way for); shown as it is."""

    code = "payment_refused"


def balance_pay(*, order_number: str, buyer, order: Order | None = None, placed: bool = False) -> Payment:
    """Pay an order from the buyer's balance, instantly: the debit and the order's move to
    paid are one transaction, and the balance cannot go below zero however many pay at once.

    ``order``: the order with this number as the caller has just read or placed it (the API).
    Its row is then locked reading back only what can have changed since (status, expiry,
    buyer), not the whole order again; the payment's ``order`` is that instance, brought up
    to date. ``placed``: the caller's transaction placed ``order`` itself (``order_place`` with
    ``return_existing=False`` returned it) and has not committed: no other transaction can see
    its row, let alone lock or change it, so it is neither locked nor read again.

    Called inside a transaction (the API's, which placed the order in it), it runs in that one,
    without a savepoint of its own: what it refuses (``NotFound``, ``PaymentError``) it refuses
    before writing, or after the ledger's own savepoint took back the refused debit, so the
    caller can go on (commit the order, cancel it). A wallet opened by its first payment stays
    opened (an account with a zero balance)."""
    outer = transaction.get_connection().in_atomic_block
    with (
        log_context(order=order_number, payment=f"{BALANCE}:BAL{order_number}"),
        contextlib.nullcontext() if outer else transaction.atomic(),
    ):
        if order is not None and order.number == order_number:
            # (Outside a transaction of the caller's, its order is committed: locked as any.)
            order = order if placed and outer else _order_relock(order)
        else:
            order = None
        if order is None:
            order = orders.order_lock_by_number(order_number)
        if order is None or order.buyer_id != buyer.pk:
            raise NotFound(_("No such order."), code="order_not_found")
        if not order.is_payable:
            raise PaymentError(_("This order can no longer be paid."))
        try:
            # The debit's lines now (the wallet's floor refuses an overdraft here); the entry
            # that seals them rides the order's move with the payment, as a gateway's does.
            entry = ledger.transfer_sealed_by_caller(
                debit=ledger.wallet(buyer),
                credit=ledger.HELD,
                amount=order.total,
                kind="balance_payment",
                reference=order.number,
                idempotency_key=f"payment:{BALANCE}:{order.number}",
            )
        except ledger.InsufficientFunds:
            raise PaymentError(
                _("Your balance is not enough for ¥%(total)s: recharge it or choose another way to pay.")
                % {"total": order.total}
            ) from None
        payment = Payment(
            order=order,
            gateway=BALANCE,
            trade_no=f"BAL{order.number}",
            amount=order.total,
            status=Payment.Status.SUCCEEDED,
            paid_at=timezone.now(),
        )
        orders.order_mark_paid(
            order=order, note="balance", recorded_by=lambda _outcome: rows.PairAndRow(rows.Row(payment), entry)
        )
    return payment


def _order_relock(order: Order) -> Order | None:
    """Lock ``order``'s row and refresh what a concurrent change to an order can have changed
    meanwhile; None if the row is gone. One plain statement (no model built) on PostgreSQL; on
    other databases (SQLite in development: no row locks, no such clause, datetimes converted by
    the ORM) the ORM's ``select_for_update``."""
    if connection.vendor != "postgresql":
        row = (
            Order.objects.select_for_update()
            .filter(pk=order.pk)
            .values_list("status", "expires_at", "buyer_id")
            .first()
        )
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT status, expires_at, buyer_id FROM {Order._meta.db_table} WHERE id = %s FOR UPDATE",  # noqa: S608
                [order.pk],
            )
            row = cursor.fetchone()
    if row is None:
        return None
    order.status, order.expires_at, order.buyer_id = row
    return order


def recharge_create(*, user, amount) -> Recharge:
    try:
        value = parse_yuan(str(amount))
    except ValueError:
        raise PaymentError(_("Enter an amount in yuan, like 100 or 58.50.")) from None
    if not RECHARGE_MIN <= value <= RECHARGE_MAX:
        raise PaymentError(
            _("Recharge between ¥%(min)s and ¥%(max)s at a time.") % {"min": RECHARGE_MIN, "max": RECHARGE_MAX}
        )
    return Recharge.objects.create(
        user=user, amount=value, expires_at=timezone.now() + timedelta(minutes=settings.ORDER_PAYMENT_MINUTES)
    )


# --- Starting a payment at a gateway -----------------------------------------------------


_KIND = F("product__kind")  # the product's kind, read with the order


def _member_order_query(number: str, buyer: int, since: datetime, now: datetime):
    """The member's order with ``credit_rated`` (``compliance.rating.credit_probe_sql``: false,
    the unrated level: ``payment_start`` checks the channel without a query of its own) and
    ``product_kind`` (the cashier's message after paying, without a read of its own)."""
    rated = rating.credit_probe_annotation(user_id=buyer, now=now)
    return Order.objects.filter(number=number, buyer_id=buyer).annotate(credit_rated=rated, product_kind=_KIND)


# Read by the choose-payment page, the start and the cashier: compiled once per process.
_member_order = Prepared(
    _member_order_query,
    number="K-PREPARED-SAMPLE",
    buyer=987654321,
    **rating.CREDIT_PROBE_SAMPLES,
)
_member_recharge = Prepared(
    lambda number, user: Recharge.objects.filter(number=number, user_id=user),
    number="K-PREPARED-SAMPLE",
    user=987654321,
)


def payable_for(*, user, number: str):
    """The user's own order or recharge with this number, or 404."""
    model = payable_model(number)
    owner = {"user": user} if model is Recharge else {"buyer": user}
    payable = None
    if getattr(user, "pk", None):
        if model is Recharge:
            payable = _member_recharge.first(number=number, user=user.pk)
        else:
            now = timezone.now()
            payable = _member_order.first(number=number, buyer=user.pk, **rating.credit_probe_values(now))
    if payable is None:
        raise NotFound(_("No such order."), code="order_not_found")
    setattr(payable, next(iter(owner)), user)  # the owner is this user: not loaded again (payment_start)
    return payable


def guest_payable_for(*, number: str, allowed: bool) -> Order:
    """A guest order with this number, when the caller's browser may see it (``allowed``:
    it placed the order or opened its signed link), or 404, as for any unknown number."""
    order = (
        Order.objects.filter(number=number, buyer__isnull=True).annotate(product_kind=_KIND).first()
        if allowed
        else None
    )
    if order is None:
        raise NotFound(_("No such order."), code="order_not_found")
    return order


# --- payment attempts (queried by payments.services.reconciliation when no notification comes) ---


def query_delay(queries: int) -> timedelta:
    """How long to wait after the ``queries``-th query (0: after the start)."""
    return timedelta(minutes=BACKOFF_MINUTES[min(queries, len(BACKOFF_MINUTES) - 1)])


def attempt_record(*, number: str, gateway_code: str, expires_at: datetime) -> PaymentAttempt:
    """Called when a payment is started at a real gateway. Starting again changes nothing."""
    attempt, _created = PaymentAttempt.objects.get_or_create(
        number=number,
        gateway=gateway_code,
        defaults={"next_query_at": min(timezone.now() + query_delay(0), expires_at)},
    )
    return attempt


def payment_start(*, gateway_code: str, payable, device: Device, client_ip: str, subject: str) -> PaymentStart:
    """Ask the gateway how the buyer pays (its page, or a QR code we show)."""
    gateway = get_gateway(gateway_code)
    if not payable.is_payable:
        raise PaymentError(_("This can no longer be paid."))
    if isinstance(payable, Order):
        # A credit level may allow the balance only (CreditRestricted says so); a recharge is fine.
        known = rating.credit_rating_unrated() if getattr(payable, "credit_rated", None) is False else None
        rating.channel_check(user=payable.buyer, email=payable.guest_email, balance=False, rating=known)
    if isinstance(gateway, RemoteGateway):
        # Recorded first: a start whose reply is lost may still have opened a trade to query.
        attempt_record(number=payable.number, gateway_code=gateway_code, expires_at=payable.expires_at)
        return gateway.start_payment(
            order_number=payable.number,
            amount=payable.total,
            subject=subject,
            device=device,
            client_ip=client_ip or "127.0.0.1",
            notify_url=settings.SITE_URL + reverse("payments-notify", args=[gateway_code]),
            return_url=settings.SITE_URL + payable.get_absolute_url() + "?returned=1",
            expires_at=payable.expires_at,
        )
    return PaymentStart(redirect_url=reverse("payments:sandbox", args=[payable.number]))
