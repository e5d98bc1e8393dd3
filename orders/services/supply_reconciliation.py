"""Daily reconciliation of our supplier orders against the suppliers' (issue 16), in the shape
of the gateways' bills (``payments.services.reconciliation``).

For one enabled connection and one day (Beijing time, the suppliers' and the gateways' day),
every ``UpstreamOrder`` we created that day is queried at the supplier (``order_query``, the
connection's timeout, at most ``QUERY_TRIES`` tries each, at most ``MAX_ORDERS`` orders) and each
difference becomes a ``supply.SupplyMismatch`` for staff:

- ``missing_there``: the supplier does not know an order we think placed (placing, pending, done);
- ``state``: the supplier's state is not ours (done there while we failed it and refunded the
  buyer is the costly one: we were charged for goods the buyer did not get);
- ``cost``: the supplier charged another amount than we booked;
- ``undelivered``: done at the supplier, our order neither delivered nor refunded.

The run's totals: our booked cost of the orders not failed, and the supplier's charged cost of
the orders it did not fail. The supplier's own list of orders is not part of the adapter
contract, so an order placed at the supplier under a number we have no record of is not seen
here; the balance compared with our books (supplier connection admin) shows its money.

Idempotent per (connection, day): running a day again replaces its findings; the resolutions
staff wrote are kept for the mismatches found again (same order, kind and figures), as the bills'
are. A supplier that cannot be reached leaves the earlier findings as they were, records the
error on the run and raises ``SupplyError`` (the task retries with backoff).

A day of many orders takes longer than a task may run (one query each; the task's soft time
limit, marketplace/tasklimits.py): given a deadline, the run stops before a query that might not
end in time and returns what it found so far (``_Findings.carry``, the last order checked as the
cursor); the task goes on in a new one with it, and the last part writes the findings of all.
"""

import logging
import time as clock
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.errors import ServiceError
from supply import services as supply
from supply.adapters import http as supply_http
from supply.adapters.base import OrderState, SupplierOrder, SupplyError, SupplyRefused
from supply.models import SupplierConnection, SupplyMismatch, SupplyReconciliation

from ..models import Order, UpstreamOrder

log = logging.getLogger(__name__)

BEIJING = ZoneInfo("Asia/Shanghai")
MAX_ORDERS = 5000  # per connection and day; beyond it the run says so (error) and checks the first ones
QUERY_TRIES = 2  # an unanswered query is asked once more, after QUERY_BACKOFF seconds
QUERY_BACKOFF = 1.0

Kind = SupplyMismatch.Kind
S = UpstreamOrder.State
# Our state as the supplier would say it.
EXPECTED = {
    S.NEW: None,  # never sent: the supplier should not know it
    S.PLACING: None,  # either is fine: the call's outcome is not known to us yet
    S.PENDING: {OrderState.PENDING, OrderState.DONE},  # done there, not yet here: the query beat catches up
    S.DONE: {OrderState.DONE},
    S.FAILED: {OrderState.FAILED},
}
PLACED = {S.PLACING, S.PENDING, S.DONE}


class SupplyReconciliationError(ServiceError):
    code = "supply_reconciliation_refused"


def yesterday() -> date:
    return timezone.now().astimezone(BEIJING).date() - timedelta(days=1)


def day_range(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=BEIJING)
    return start, start + timedelta(days=1)


def connections_to_reconcile() -> list[int]:
    enabled = SupplierConnection.objects.filter(state=SupplierConnection.State.ENABLED).exclude(secret_encrypted="")
    return list(enabled.order_by("pk").values_list("pk", flat=True))


@dataclass
class _Findings:
    items: list[SupplyMismatch] = field(default_factory=list)
    our_cost: Decimal = Decimal("0.00")
    supplier_cost: Decimal = Decimal("0.00")
    checked: int = 0
    after: int = 0  # the primary key of the last order checked: where a run cut short goes on

    def add(self, kind: str, number: str, ours: str, theirs: str) -> None:
        self.items.append(SupplyMismatch(kind=kind, our_number=number, ours=ours[:200], theirs=theirs[:200]))

    def carry(self) -> dict:
        """What a run stopped by its deadline found so far, as JSON for the task that goes on."""
        return {
            "after": self.after,
            "checked": self.checked,
            "our_cost": str(self.our_cost),
            "supplier_cost": str(self.supplier_cost),
            "items": [[m.kind, m.our_number, m.ours, m.theirs] for m in self.items],
        }

    @classmethod
    def carried(cls, data: dict | None) -> "_Findings":
        if not data:
            return cls()
        found = cls(
            our_cost=Decimal(data["our_cost"]),
            supplier_cost=Decimal(data["supplier_cost"]),
            checked=int(data["checked"]),
            after=int(data["after"]),
        )
        for kind, number, ours, theirs in data["items"]:
            found.add(kind, number, ours, theirs)
        return found


def _longest_query(connection: SupplierConnection) -> float:
    """Seconds one ``_query`` may take at most: every try's connect and read timeouts, the pauses."""
    connect, read = supply_http.timeouts(connection.timeout_seconds)
    return QUERY_TRIES * (connect + read) + QUERY_BACKOFF * (QUERY_TRIES - 1) * QUERY_TRIES / 2


def _query(connection: SupplierConnection, number: str) -> SupplierOrder:
    for attempt in range(1, QUERY_TRIES + 1):
        try:
            return supply.connection_call(connection=connection, call=lambda a: a.order_query(our_number=number))
        except SupplyRefused:
            raise
        except SupplyError:
            if attempt == QUERY_TRIES:
                raise
            clock.sleep(QUERY_BACKOFF * attempt)
    raise AssertionError("unreachable")


def _theirs(order: SupplierOrder) -> str:
    words = {
        OrderState.PENDING: _("processing at the supplier"),
        OrderState.DONE: _("done at the supplier"),
        OrderState.FAILED: _("failed at the supplier"),
    }
    return f"{words[order.state]} {order.supplier_order_no}".strip()


def _money(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _compare(upstream: UpstreamOrder, theirs: SupplierOrder, found: _Findings) -> None:
    order = upstream.order
    number = order.number
    ours_state = f"{upstream.get_state_display()} / {order.get_status_display()}"
    if upstream.state != S.FAILED and upstream.cost is not None:
        found.our_cost += upstream.cost
    if not theirs.exists:
        if upstream.state in PLACED:
            found.add(Kind.MISSING_AT_SUPPLIER, number, ours_state, _("no such order"))
        return
    if theirs.state != OrderState.FAILED and theirs.cost is not None:
        found.supplier_cost += theirs.cost
    expected = EXPECTED[S(upstream.state)]
    if upstream.state == S.NEW or (expected is not None and theirs.state not in expected):
        found.add(Kind.STATE, number, ours_state, _theirs(theirs))
    charged = theirs.state != OrderState.FAILED and theirs.cost is not None
    if charged and upstream.state != S.FAILED and theirs.cost != upstream.cost:
        found.add(Kind.COST, number, _money(upstream.cost), _money(theirs.cost))
    if theirs.state == OrderState.DONE and order.status not in (Order.Status.DELIVERED, Order.Status.REFUNDED):
        found.add(Kind.UNDELIVERED, number, ours_state, _theirs(theirs))


def _key(m: SupplyMismatch) -> tuple:
    return (m.kind, m.our_number, m.ours, m.theirs)


def supply_reconcile(*, connection_id: int, day: date) -> SupplyReconciliation:
    """Reconcile one connection's supplier orders of ``day`` (Beijing time, a day that has ended)."""
    run, _carry = supply_reconcile_part(connection_id=connection_id, day=day)
    assert run is not None  # no deadline: always the whole day
    return run


def supply_reconcile_part(
    *, connection_id: int, day: date, until: float | None = None, carried: dict | None = None
) -> tuple[SupplyReconciliation | None, dict | None]:
    """``supply_reconcile`` going on from ``carried`` (what an earlier part found), stopping before
    a query that might not end by ``until`` (``time.monotonic()``; at least one order is checked):
    (the run, None) once the day is done, or (None, what to carry to the next part)."""
    connection = SupplierConnection.objects.select_related("supplier").get(pk=connection_id)
    if connection.state != SupplierConnection.State.ENABLED:
        raise SupplyReconciliationError(_("%(name)s is disabled.") % {"name": connection.name})
    if day >= timezone.now().astimezone(BEIJING).date():
        raise SupplyReconciliationError(_("%(day)s has not ended yet.") % {"day": day.isoformat()})
    run, _created = SupplyReconciliation.objects.get_or_create(connection=connection, day=day)
    start, end = day_range(day)
    found = _Findings.carried(carried)
    left = MAX_ORDERS - found.checked
    ours = list(
        UpstreamOrder.objects.filter(
            connection=connection, created_at__gte=start, created_at__lt=end, pk__gt=found.after
        )
        .select_related("order")
        .order_by("pk")[: left + 1]
    )
    too_many = len(ours) > left
    ours = ours[:left]
    longest = _longest_query(connection)
    first = found.checked  # each part checks at least one order: it always gets further
    try:
        for upstream in ours:
            if until is not None and found.checked > first and clock.monotonic() + longest >= until:
                return None, found.carry()
            _compare(upstream, _query(connection, upstream.order.number), found)
            found.checked, found.after = found.checked + 1, upstream.pk
    except SupplyError as exc:
        SupplyReconciliation.objects.filter(pk=run.pk).update(
            finished_at=timezone.now(), error=_("not reconciled: %(e)s") % {"e": str(exc)[:250]}
        )
        log.warning("supplier orders of %s on %s not reconciled: %s", connection.name, day, exc)
        raise
    with transaction.atomic():
        run = SupplyReconciliation.objects.select_for_update().get(pk=run.pk)  # one writer per day at a time
        resolved = {_key(m): m for m in run.items.filter(resolved_at__isnull=False)}
        run.items.all().delete()
        for mismatch in found.items:
            mismatch.reconciliation = run
            earlier = resolved.pop(_key(mismatch), None)
            if earlier is not None:
                mismatch.resolved_at, mismatch.resolved_by_id = earlier.resolved_at, earlier.resolved_by_id
                mismatch.resolution_note = earlier.resolution_note
        SupplyMismatch.objects.bulk_create(found.items)
        run.orders_checked, run.mismatches = found.checked, len(found.items)
        run.our_cost, run.supplier_cost = found.our_cost, found.supplier_cost
        run.finished_at = timezone.now()
        run.error = _("more than %(n)d orders: only the first %(n)d checked") % {"n": MAX_ORDERS} if too_many else ""
        run.save(update_fields=["orders_checked", "mismatches", "our_cost", "supplier_cost", "finished_at", "error"])
    level = logging.WARNING if found.items else logging.INFO
    log.log(
        level,
        "supplier orders of %s on %s: %d checked, %d mismatches",
        connection.name,
        day,
        found.checked,
        len(found.items),
    )
    return run, None
