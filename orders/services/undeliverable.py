"""A paid order that will not be delivered: the supplier refused or failed it, a manual top-up
failed, or the supplier did not deliver in time (issue 16). The buyer gets all of it back.

``order_undeliverable`` moves the order paid → refund pending in one transaction: any codes it
held go back on sale, its coupon use comes back, the payment held for it becomes owed back to
the buyer (ledger: orders held → refunds due) and the buyer is told. The refund itself is made
by payments (above this layer): ``payments.services.refunds.refunds_undeliverable_run``, every
30 seconds by beat, refunds each such order to where its money came from, once.
"""

import logging

from django.db import transaction

from ledger import services as ledger
from marketing.services import coupons
from marketplace.celery import publish

from ..models import ORDER_FLOW, Order
from .orders import _lock, _release_codes

log = logging.getLogger(__name__)

OrderStatus = Order.Status


def order_undeliverable(*, order_id: int, reason: str, actor=None) -> bool:
    """Paid → refund pending (the buyer refunded in full by payments' sweep). Returns False, and
    changes nothing, unless the order is paid and undelivered (a repeat, a delivered order)."""
    from ..tasks import notify_refund_pending

    reason = (reason or "").strip() or "undeliverable"
    with transaction.atomic():
        order = _lock(order_id)
        if order.status != OrderStatus.PAID:
            return False
        _release_codes(order)
        coupons.coupon_use_release(order_id=order.pk, reason="undeliverable")
        if order.total > 0:
            ledger.transfer(
                debit=ledger.HELD,
                credit=ledger.REFUNDS_DUE,
                amount=order.total,
                kind="undeliverable",
                reference=order.number,
                memo=reason[:200],
                idempotency_key=f"undeliverable:{order.number}",
            )
        ORDER_FLOW.apply(
            order,
            OrderStatus.REFUND_PENDING,
            actor=actor,
            note=f"not delivered: {reason}",
            update={"delivery_due_at": None},
            on_commit=[lambda: publish(notify_refund_pending, order.pk)],
        )
    log.warning("order %s will not be delivered (%s): to be refunded", order.number, reason)
    return True
