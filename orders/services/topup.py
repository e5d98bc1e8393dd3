"""Manual direct top-ups (代充 by staff): the queue in admin, done or failed with a note.

A paid order of a product supplied by hand (``catalog.Product.SupplyMode.MANUAL``) is not
delivered by the fulfilment task: ``order_fulfil`` queues it here (``manual_topup_queue``: one
``ManualTopup`` per order, due within settings.MANUAL_TOPUP_SLA_MINUTES, watched by the SLA
sweep in aftersales) and the order stays paid. A staff member tops up the buyer's account
(``Order.topup_values``) and marks it:

- done (``manual_topup_done``): the order is delivered, as ``order_fulfil`` delivers codes: the
  held payment becomes revenue, the product's cost per unit (``supply_cost`` × quantity) is owed
  to its supplier, the chain's commissions are booked, the buyer (and an API order's callback)
  told;
- failed (``manual_topup_fail``, a note required): the order cannot be delivered and is refunded
  in full (``orders.services.undeliverable.order_undeliverable``; payments' sweep refunds it).

Each runs in one transaction with the top-up and the order locked, through the top-up's state
machine: a double click, or two staff members at once, carry it out once; the second is told.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.errors import Conflict, ServiceError
from marketplace.money import quantize

from ..models import MANUAL_TOPUP_FLOW, ManualTopup, Order
from .orders import _lock, order_deliver
from .undeliverable import order_undeliverable

log = logging.getLogger(__name__)
TopupState = ManualTopup.State
NOTE_MAX = 300


class TopupError(ServiceError):
    code = "manual_topup_refused"


def sla_minutes() -> int:
    return settings.MANUAL_TOPUP_SLA_MINUTES


def manual_topup_queue(*, order: Order) -> ManualTopup:
    """Queue the paid manual top-up ``order`` (locked by the caller, in its transaction) for
    staff, once: a repeat (the delivery sweeper, a second payment notice) returns the same row.
    The order's delivery clock is stopped: the queue's own SLA watches it now."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("manual_topup_queue runs in the order's transaction")
    topup, created = ManualTopup.objects.get_or_create(
        order=order, defaults={"due_at": timezone.now() + timedelta(minutes=sla_minutes())}
    )
    if created:
        topup.history.create(from_status="", to_status=TopupState.QUEUED, note="queued for staff")
        log.info("order %s: manual top-up queued, due %s", order.number, topup.due_at.isoformat())
    if order.delivery_due_at is not None:
        Order.objects.filter(pk=order.pk).update(delivery_due_at=None)
        order.delivery_due_at = None
    return topup


def _lock_topup(topup_id: int) -> tuple[ManualTopup, Order]:
    """The top-up and its order, locked (order first, as every order service locks it)."""
    order_id = ManualTopup.objects.filter(pk=topup_id).values_list("order_id", flat=True).first()
    if order_id is None:
        raise ManualTopup.DoesNotExist
    order = _lock(order_id)
    topup = ManualTopup.objects.select_for_update().get(pk=topup_id)
    return topup, order


def _already(topup: ManualTopup) -> Conflict:
    return Conflict(
        _("This top-up was already marked %(state)s by %(who)s.")
        % {"state": topup.get_state_display(), "who": topup.handled_by or "-"},
        code="manual_topup_decided",
    )


def _cost(order: Order) -> Decimal:
    unit = order.product.supply_cost if order.product_id else None
    return quantize((unit or Decimal("0")) * order.quantity)


def _costs(order: Order) -> list[dict]:
    """What the top-up cost us (``supply_cost`` × quantity), owed to the product's supplier."""
    cost = _cost(order)
    if not cost:
        return []
    supplier = order.product.supplier
    return [{"supplier_id": supplier.pk, "supplier_name": supplier.name, "cost": cost}]


def _note(note: str) -> str:
    return " ".join((note or "").split())[:NOTE_MAX]


def manual_topup_done(*, topup_id: int, actor, note: str = "") -> bool:
    """Staff topped up the buyer's account: the order is delivered. Returns True for the call
    that did it; a repeat of the same decision returns False; the other decision is refused."""
    note = _note(note)
    with transaction.atomic():
        topup, order = _lock_topup(topup_id)
        if topup.state == TopupState.DONE:
            return False
        if topup.state != TopupState.QUEUED:
            raise _already(topup)
        if order.status != Order.Status.PAID:
            raise TopupError(
                _("The order is %(status)s, not paid: it cannot be delivered.")
                % {"status": order.get_status_display()},
                code="order_not_paid",
            )
        MANUAL_TOPUP_FLOW.apply(
            topup, TopupState.DONE, actor=actor, note=note, update={"handled_by": actor, "note": note}
        )
        # As stock and upstream orders are delivered: the sale and the supplier's cost booked,
        # the buyer and an API order's shop told, the chain's commissions booked.
        order_deliver(order=order, code_ids=[], note="manual top-up done", costs=_costs(order))
    log.info("order %s: manual top-up done by %s", order.number, getattr(actor, "pk", None))
    return True


def manual_topup_fail(*, topup_id: int, actor, note: str) -> bool:
    """Staff could not top up (a wrong account, the game's side refused): the order is refunded
    in full (``order_undeliverable``: refund pending, the money owed back, payments' sweep pays
    it). ``note`` (why) is required: the buyer sees it. Returns True for the call that did it."""
    note = _note(note)
    if not note:
        raise TopupError(_("Say why the top-up failed: the buyer sees the note."), code="note_required")
    with transaction.atomic():
        topup, order = _lock_topup(topup_id)
        if topup.state == TopupState.FAILED:
            return False
        if topup.state != TopupState.QUEUED:
            raise _already(topup)
        if order.status != Order.Status.PAID:
            raise TopupError(
                _("The order is %(status)s, not paid: it cannot be refunded from here.")
                % {"status": order.get_status_display()},
                code="order_not_paid",
            )
        MANUAL_TOPUP_FLOW.apply(
            topup, TopupState.FAILED, actor=actor, note=note, update={"handled_by": actor, "note": note}
        )
        if not order_undeliverable(order_id=order.pk, reason=f"manual top-up failed: {note}", actor=actor):
            raise RuntimeError(f"order {order.number}: paid and locked, yet not moved to refund pending")
    log.info("order %s: manual top-up failed (%s), to be refunded", order.number, note)
    return True
