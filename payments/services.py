"""The one pipeline every gateway's notifications go through.

verify (signature, merchant) -> check order, amount and currency -> store once (unique per
gateway trade number) -> apply once (orders marks the order paid, fulfilment is queued on
commit). Replays change nothing; anything that fails a check changes nothing and is logged
with its reason.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from ledger import services as ledger
from orders import services as orders
from orders.services import PaidOutcome

from .gateways import NotificationRejected, VerifiedNotification, get_gateway
from .models import Notification, Payment

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
    *, gateway_code: str, headers: Mapping[str, str], body: bytes, remote_addr: str | None = None
) -> NotificationResult:
    gateway = get_gateway(gateway_code)
    # PostgreSQL text cannot hold NUL: an unsigned junk body must be logged, not crash the view.
    text = body[:20000].decode("utf-8", "replace").replace("\x00", "\ufffd")
    record = Notification(gateway=gateway_code, remote_addr=remote_addr, body=text)
    try:
        verified = gateway.verify(headers=headers, body=body)
    except NotificationRejected as exc:
        return _log(record, Outcome.REJECTED, str(exc))
    record.order_number, record.trade_no = verified.order_number[:64], verified.trade_no[:64]
    if not verified.paid:
        return _log(record, Outcome.IGNORED, f"state {verified.state}")
    try:
        with transaction.atomic():
            outcome, reason, payment = _apply(gateway_code, verified, record)
    except _Reject as exc:
        return _log(record, Outcome.REJECTED, str(exc))
    except IntegrityError:
        # The same trade number committed for another order meanwhile: nothing was applied.
        record.payment = None
        return _log(record, Outcome.REJECTED, "trade number already used (concurrent notification)")
    return NotificationResult(outcome, reason, payment)


def _log(record: Notification, outcome: str, reason: str) -> NotificationResult:
    record.outcome, record.reason = outcome, reason[:300]
    record.save()
    level = logging.WARNING if outcome == Outcome.REJECTED else logging.INFO
    log.log(level, "%s notification %s for order %r: %s", record.gateway, outcome, record.order_number, reason)
    return NotificationResult(outcome, reason)


def _apply(gateway_code: str, verified: VerifiedNotification, record: Notification):
    order = orders.order_lock_by_number(verified.order_number)
    if order is None:
        raise _Reject("unknown order")
    if verified.currency != order.currency:
        raise _Reject(f"currency {verified.currency} differs from the order's {order.currency}")
    if verified.amount != order.total:
        raise _Reject(f"amount {verified.amount} differs from the order's {order.total}")
    existing = Payment.objects.filter(gateway=gateway_code, trade_no=verified.trade_no).first()
    if existing is not None:
        return _replay(existing, order, record)
    # Deliveries of one notification are serialised by the order's row lock, so the check
    # above sees any earlier one; the unique (gateway, trade_no) constraint backs it up.
    result = orders.order_mark_paid(order=order, note=f"{gateway_code} {verified.trade_no}")
    payment = Payment.objects.create(
        order=order,
        gateway=gateway_code,
        trade_no=verified.trade_no,
        amount=verified.amount,
        currency=verified.currency,
        status=_PAYMENT_STATUS[result],
        paid_at=verified.paid_at,
    )
    _book_payment(payment, order.number)
    record.outcome, record.reason, record.payment = Outcome.APPLIED, result.value, payment
    record.save()
    log.info("%s payment %s applied to order %s: %s", gateway_code, verified.trade_no, order.number, result.value)
    return Outcome.APPLIED, result.value, payment


def _book_payment(payment: Payment, order_number: str) -> None:
    """Money is at the gateway: held for the order, or owed back when the order cannot use it."""
    clearing = ledger.clearing(payment.gateway)
    owed = ledger.HELD if payment.status == Payment.Status.SUCCEEDED else ledger.REFUNDS_DUE
    accounts = ledger.accounts_get(clearing, owed)
    ledger.entry_post(
        kind="payment",
        legs=[(accounts[clearing.code], payment.amount), (accounts[owed.code], -payment.amount)],
        reference=order_number,
        memo=f"{payment.gateway} {payment.trade_no} {payment.get_status_display()}",
        idempotency_key=f"payment:{payment.gateway}:{payment.trade_no}",
    )


def _replay(existing: Payment, order, record: Notification):
    if existing.order_id != order.pk:
        raise _Reject("trade number already used for another order")
    record.outcome, record.reason, record.payment = Outcome.REPLAY, "already applied", existing
    record.save()
    return Outcome.REPLAY, "already applied", existing


def sandbox_pay(*, order_number: str, remote_addr: str | None = None) -> NotificationResult:
    """The sandbox cashier's "pay" button: the gateway side signs, then our pipeline verifies."""
    from orders.models import Order

    from .gateways.sandbox import SandboxGateway

    gateway = get_gateway(SandboxGateway.code)  # 404 when the sandbox is disabled
    order = Order.objects.get(number=order_number)
    body = gateway.build_notification(order_number=order.number, amount=order.total)
    return notification_receive(gateway_code=SandboxGateway.code, headers={}, body=body, remote_addr=remote_addr)
