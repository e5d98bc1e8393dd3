"""Fulfilment from a supplier's system (issue 16): a paid order whose goods come from upstream
(``Order.fulfilment == upstream``) is bought from the supplier and delivered like a stock order.

One ``UpstreamOrder`` per order, created under the order's lock; the supplier's idempotency key
is our order number. Every supplier call is made OUTSIDE any transaction or row lock:

- before the call the supplier order is marked ``placing`` (attempts + 1) and leased
  (``next_check_at`` past the call's timeout), committed, so a second worker (the delivery
  sweeper, a redelivered message after a worker was killed mid-call) does not call meanwhile;
- a ``placing`` order (a call that may have reached the supplier) is queried before any new
  placement: found, its state is taken; not found, it is placed again (idempotent anyway);
- an unknown outcome or an unreachable supplier leaves it ``placing``, asked again with backoff
  by beat (``upstream_due``); ``pending`` (the supplier is working) is queried again likewise,
  and a supplier's callback (``upstream_callback``) may finish it sooner;
- done: the codes are written as a batch (encrypted like imported ones), sold to the order and
  delivered through ``order_deliver`` (the sale booked, the cost owed to the supplier,
  commissions, the buyer's email, the agent's callback). A top-up has no codes: done is
  delivered, the supplier's cost booked;
- refused or failed: the order is refunded (``order_undeliverable``);
- not delivered ``UPSTREAM_GIVE_UP_MINUTES`` after payment: refunded too, and the supplier
  order is still followed: a late delivery goes into stock (our inventory), nothing lost.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from catalog import services as stock
from catalog.models import Product
from ledger import services as ledger
from marketplace.celery import publish
from marketplace.money import quantize
from supply import services as supply_services
from supply.adapters.base import OrderState, SupplierOrder, SupplyError, SupplyRefused
from supply.models import SupplierConnection, UpstreamProduct

from ..models import UPSTREAM_FLOW, Order, OrderCode, UpstreamOrder
from .orders import _lock, order_deliver
from .undeliverable import order_undeliverable

log = logging.getLogger(__name__)
UState = UpstreamOrder.State
OrderStatus = Order.Status
OPEN = (UState.NEW, UState.PLACING, UState.PENDING)

# Waits between checks: 5 s, 10 s, 20 s ... at most BACKOFF_MAX.
BACKOFF_FIRST = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=5)
# After this many calls the supplier order is left to the daily reconciliation (and staff).
MAX_ATTEMPTS = 40


def _backoff(attempts: int) -> timedelta:
    return min(BACKOFF_FIRST * (2 ** max(0, attempts - 1)), BACKOFF_MAX)


def _lease(connection: SupplierConnection) -> timedelta:
    """How long a call in flight keeps others away: past its timeouts (connect + read)."""
    return timedelta(seconds=2 * connection.timeout_seconds + 5)


def upstream_fulfil(*, order_id: int) -> bool:
    """A paid upstream order: its supplier order created (once, under the order's lock), and its
    first step queued (``upstream_advance``: placed, or asked). Safe to run any number of times,
    concurrently too. Returns False: nothing is delivered here."""
    with transaction.atomic():
        order = _lock(order_id)
        if order.status != OrderStatus.PAID or order.fulfilment != Order.Fulfilment.UPSTREAM:
            return False
        upstream = UpstreamOrder.objects.filter(order_id=order.pk).first()
        if upstream is None:
            link = UpstreamProduct.objects.select_related("connection").filter(product_id=order.product_id).first()
            if link is None:
                order_undeliverable(order_id=order.pk, reason="the product has no supplier connection any more")
                return False
            upstream = UpstreamOrder.objects.create(
                order=order,
                connection=link.connection,
                supplier_ref=link.supplier_ref,
                quantity=order.quantity,
                next_check_at=timezone.now(),
                give_up_at=(order.paid_at or timezone.now()) + timedelta(minutes=settings.UPSTREAM_GIVE_UP_MINUTES),
            )
        # The supplier call runs in a task of its own, on the queue of calls to other systems, so
        # a slow supplier never holds up the fulfilment queue's stock deliveries. If queueing
        # fails, beat finds the supplier order due (``upstream_due``).
        transaction.on_commit(lambda: _queue_advance(upstream.pk))
    return False


def _queue_advance(upstream_id: int) -> None:
    from ..tasks import advance_upstream

    publish(advance_upstream, upstream_id)


def upstream_advance(*, upstream_id: int) -> bool:
    """One step of a supplier order that is due: claim it (lease), call the supplier outside any
    transaction, apply what it said. Returns True when the order was delivered by this step."""
    now = timezone.now()
    with transaction.atomic():
        upstream = (
            UpstreamOrder.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("connection")
            .filter(pk=upstream_id, state__in=OPEN)
            .first()
        )
        if upstream is None or (upstream.next_check_at is not None and upstream.next_check_at > now):
            return False  # finished, being worked on, or not due yet
        connection = upstream.connection
        first = upstream.state == UState.NEW
        attempts, until = upstream.attempts + 1, now + _lease(connection)
        if first:
            UPSTREAM_FLOW.apply(
                upstream, UState.PLACING, note="placing", update={"attempts": attempts, "next_check_at": until}
            )
        else:
            UpstreamOrder.objects.filter(pk=upstream.pk).update(attempts=attempts, next_check_at=until)
            upstream.attempts, upstream.next_check_at = attempts, until
        order = Order.objects.only("pk", "number", "status", "topup_values").get(pk=upstream.order_id)
    # --- outside any transaction: the supplier call --------------------------------------
    may_place = order.status == OrderStatus.PAID  # never placed again once the buyer is refunded
    try:
        result: SupplierOrder | None = None
        if not first:
            result = supply_services.connection_call(
                connection=connection, call=lambda a: a.order_query(our_number=order.number)
            )
            if not result.exists:
                if upstream.state == UState.PENDING:
                    raise SupplyError(f"the supplier no longer knows order {order.number}")
                result = None
        if result is None:
            if not may_place:
                return _fail(upstream.pk, "not placed at the supplier; the buyer was refunded")
            result = supply_services.connection_call(
                connection=connection,
                call=lambda a: a.order_place(
                    our_number=order.number,
                    product_ref=upstream.supplier_ref,
                    quantity=upstream.quantity,
                    fields=_fields(order, connection),
                ),
            )
    except SupplyRefused as exc:
        return _fail(upstream.pk, f"refused by the supplier: {exc}")
    except SupplyError as exc:
        _later(upstream.pk, f"{exc.code}: {exc}")
        return False
    return upstream_apply(upstream_id=upstream.pk, result=result)


def _fields(order: Order, connection: SupplierConnection) -> dict[str, str] | None:
    """What goes with the placement: the top-up's fields, and for another platform running this
    product (its agent API) where to call us back."""
    fields = {str(k): str(v) for k, v in (order.topup_values or {}).items()}
    if connection.kind == SupplierConnection.Kind.KAMARKET:
        fields["callback_url"] = settings.SITE_URL + reverse("supply:callback", args=[connection.pk])
    return fields or None


def upstream_apply(*, upstream_id: int, result: SupplierOrder) -> bool:
    """What the supplier said about our order (a reply, a query, a callback), applied."""
    if result.state == OrderState.DONE:
        return _done(upstream_id, result)
    if result.state == OrderState.FAILED:
        return _fail(upstream_id, f"failed at the supplier: {result.message or 'no reason given'}")
    with transaction.atomic():
        upstream = UpstreamOrder.objects.select_for_update().get(pk=upstream_id)
        if upstream.state not in OPEN:
            return False
        update = {
            "supplier_order_no": result.supplier_order_no or upstream.supplier_order_no,
            "next_check_at": timezone.now() + _backoff(upstream.attempts),
            "last_error": "",
        }
        if upstream.state == UState.PLACING:
            UPSTREAM_FLOW.apply(upstream, UState.PENDING, note="accepted by the supplier", update=update)
        else:
            UpstreamOrder.objects.filter(pk=upstream.pk).update(**update)
    _give_up_if_due(upstream_id)
    return False


def _later(upstream_id: int, error: str) -> None:
    """No answer we can act on: asked again after a backoff (the outcome may be unknown)."""
    upstream = UpstreamOrder.objects.get(pk=upstream_id)
    follow = upstream.attempts < MAX_ATTEMPTS
    UpstreamOrder.objects.filter(pk=upstream_id, state__in=OPEN).update(
        last_error=error[:300], next_check_at=timezone.now() + _backoff(upstream.attempts) if follow else None
    )
    if not follow:
        log.error(
            "supplier order for order %s: %d calls without an answer; left to staff", upstream.order_id, MAX_ATTEMPTS
        )
    _give_up_if_due(upstream_id)


def _give_up_if_due(upstream_id: int) -> None:
    """Past its give-up time and still not delivered: the buyer is refunded. The supplier order
    stays open and followed (a late delivery goes into stock)."""
    upstream = UpstreamOrder.objects.get(pk=upstream_id)
    due = upstream.state in OPEN and upstream.give_up_at is not None and upstream.give_up_at <= timezone.now()
    if due and order_undeliverable(order_id=upstream.order_id, reason="the supplier did not deliver in time"):
        log.warning("order %s: supplier did not deliver in time; refunded", upstream.order_id)


def _fail(upstream_id: int, reason: str) -> bool:
    order_id = UpstreamOrder.objects.values_list("order_id", flat=True).get(pk=upstream_id)
    with transaction.atomic():
        _lock(order_id)  # the order first, as every order service locks
        upstream = UpstreamOrder.objects.select_for_update().get(pk=upstream_id)
        if upstream.state not in OPEN:
            return False
        UPSTREAM_FLOW.apply(
            upstream, UState.FAILED, note=reason[:500], update={"last_error": reason[:300], "next_check_at": None}
        )
        order_undeliverable(order_id=upstream.order_id, reason=reason[:200])
    log.warning("supplier order for order %s failed: %s", upstream.order_id, reason)
    return False


def _unit_cost(upstream: UpstreamOrder, result: SupplierOrder) -> Decimal:
    if result.cost is not None:
        return quantize(result.cost / upstream.quantity)
    cost = UpstreamProduct.objects.filter(product__orders__pk=upstream.order_id).values_list("cost", flat=True).first()
    return quantize(cost or Decimal("0.00"))


def _done(upstream_id: int, result: SupplierOrder) -> bool:
    """Done at the supplier: delivered to the buyer (the order still paid), or, after the buyer
    was refunded, the codes kept as our stock (a top-up's cost booked as owed)."""
    order_id = UpstreamOrder.objects.values_list("order_id", flat=True).get(pk=upstream_id)
    with transaction.atomic():
        order = _lock(order_id)  # the order first, as every order service locks
        upstream = (
            UpstreamOrder.objects.select_for_update(of=("self",))
            .select_related("connection__supplier")
            .get(pk=upstream_id)
        )
        if upstream.state not in OPEN:
            return False
        product = Product.objects.only("pk", "kind").get(pk=order.product_id)
        topup = product.is_direct_topup
        unit_cost = _unit_cost(upstream, result)
        if not topup and len(result.codes) != upstream.quantity:
            UpstreamOrder.objects.filter(pk=upstream.pk).update(
                last_error=f"done with {len(result.codes)} code(s) for {upstream.quantity}"[:300],
                next_check_at=timezone.now() + _backoff(upstream.attempts),
            )
            return False
        connection = upstream.connection
        UPSTREAM_FLOW.apply(
            upstream,
            UState.DONE,
            note=f"supplier order {result.supplier_order_no}",
            update={
                "supplier_order_no": result.supplier_order_no or upstream.supplier_order_no,
                "cost": quantize(unit_cost * upstream.quantity),
                "next_check_at": None,
                "last_error": "",
            },
        )
        source = f"{connection.name}: supplier order {result.supplier_order_no or '?'} for {order.number}"
        codes = [(c.card_number, c.secret) for c in result.codes]
        supplier = {"supplier_id": connection.supplier_id, "supplier_name": connection.supplier.name}
        if order.status == OrderStatus.PAID:
            if topup:
                costs = [{**supplier, "cost": unit_cost * upstream.quantity}]
                order_deliver(order=order, code_ids=[], note=f"topped up by {connection.name}", costs=costs)
            else:
                code_ids = stock.batch_receive(
                    product_id=order.product_id,
                    supplier_id=connection.supplier_id,
                    cost_price=unit_cost,
                    source_name=source,
                    codes=codes,
                    for_order=True,
                )
                OrderCode.objects.bulk_create([OrderCode(order=order, code_id=cid) for cid in code_ids])
                stock.stock_mark_sold(code_ids=code_ids, expected=len(code_ids))
                order_deliver(order=order, code_ids=code_ids, note=f"codes delivered by {connection.name}")
            delivered = True
        else:
            delivered = False
            if topup:
                # Credited after we refunded the buyer: we owe the supplier all the same.
                amount = quantize(unit_cost * upstream.quantity)
                if amount > 0:
                    ledger.transfer(
                        debit=ledger.COST_OF_SALES,
                        credit=ledger.supplier_payable(connection.supplier_id, connection.supplier.name),
                        amount=amount,
                        kind="upstream_late",
                        reference=order.number,
                        memo=f"top-up done by the supplier after the order was {order.status}",
                        idempotency_key=f"upstream_late:{order.number}",
                    )
            else:
                stock.batch_receive(
                    product_id=order.product_id,
                    supplier_id=connection.supplier_id,
                    cost_price=unit_cost,
                    source_name=f"{source} (late: into stock)",
                    codes=codes,
                    for_order=False,
                )
    if delivered:
        log.info("order %s delivered", order.number)
    else:
        log.warning(
            "order %s: the supplier delivered after the order was %s; kept as stock", order.number, order.status
        )
    return delivered


def upstream_due(*, limit: int = 100) -> list[int]:
    """Supplier orders whose next check is due (beat, every ~15 s), oldest first."""
    return list(
        UpstreamOrder.objects.filter(state__in=OPEN, next_check_at__lte=timezone.now())
        .order_by("next_check_at")
        .values_list("pk", flat=True)[:limit]
    )


def upstream_callback(*, connection: SupplierConnection, result: SupplierOrder) -> bool:
    """A verified supplier callback about ``result.our_number``: applied to our supplier order
    (of this connection). Returns False when there is none or nothing changed."""
    upstream = UpstreamOrder.objects.filter(order__number=result.our_number, connection=connection).first()
    if upstream is None:
        log.warning("callback from %s about unknown order %s", connection.name, result.our_number)
        return False
    if result.state == OrderState.PENDING:
        return False
    if result.state == OrderState.DONE and not result.codes:
        topup = Product.objects.filter(pk=upstream.order.product_id, kind=Product.Kind.DIRECT_TOPUP).exists()
        if not topup:
            # Delivered, but the codes are not in the callback (another platform running this
            # product never sends them there): ask for them now rather than at the next check.
            UpstreamOrder.objects.filter(pk=upstream.pk, state__in=OPEN).update(next_check_at=timezone.now())
            transaction.on_commit(lambda: _queue_advance(upstream.pk))
            return False
    return upstream_apply(upstream_id=upstream.pk, result=result)
