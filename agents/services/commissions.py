"""Commissions: each agent's share of a sale, booked in the ledger.

When an order is delivered, every agent of its snapshotted price chain (``OrderShare``) with
a share above zero earns ``unit_earning × quantity``, booked as *pending*:
``expense:commissions`` debited, the agent's ``commission_pending`` credited. When the refund
window closes (``REFUND_WINDOW_DAYS``) the beat task moves it to the agent's *available*
account, which is what withdrawals draw on. A refund inside the window reverses the refunded
codes' share with a reversal entry (never an edit); a refund after it takes the share back
from the available balance, and what was already withdrawn is booked as owed by the agent.

The sum over the chain is the order's price less the top agent's cost; with the platform's
margin (top agent's cost less the stock's cost price) it makes exactly the sale less its cost.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ledger import services as ledger
from ledger.models import Entry
from ledger.selectors import balance_of

from ..models import COMMISSION_FLOW, Commission

log = logging.getLogger(__name__)
CommissionStatus = Commission.Status


def refund_window() -> timedelta:
    return timedelta(days=settings.REFUND_WINDOW_DAYS)


def commissions_book(*, order, shares=None) -> list[Commission]:
    """Book the chain's commissions of ``order`` (just delivered, in the caller's transaction).

    ``shares``: the order's price shares that earn (``unit_earning > 0``) with their agents and
    users, if the caller has read them; read here otherwise.

    Idempotent: the ledger entry's key and the (order, agent) constraint make a repeat a no-op.
    """
    if shares is None:
        shares = order.shares.select_related("agent__user")
    shares = [s for s in shares if s.unit_earning > 0]
    if not shares:
        return []
    if Commission.objects.filter(order_id=order.pk).exists():
        return list(Commission.objects.filter(order_id=order.pk))
    available_at = (order.delivered_at or timezone.now()) + refund_window()
    # An agent's own coupon (order.discount_funder) is paid out of its earnings on the order.
    funded = order.discount if order.discount_funder_id else Decimal(0)
    rows = [
        Commission(
            order_id=order.pk,
            agent=s.agent,
            depth=s.depth,
            unit_amount=s.unit_earning,
            quantity=order.quantity,
            amount=s.unit_earning * order.quantity - (funded if s.agent_id == order.discount_funder_id else 0),
            available_at=available_at,
        )
        for s in shares
    ]
    if any(r.amount < 0 for r in rows):
        raise RuntimeError(f"order {order.number}: a coupon takes an agent below its cost")
    Commission.objects.bulk_create(rows)
    specs = [ledger.commission_pending(s.agent.user) for s in shares]
    legs = [(ledger.COMMISSIONS, sum((s.unit_earning * order.quantity for s in shares), Decimal(0)))]
    legs += [(spec, -row.amount) for spec, row in zip(specs, rows, strict=True) if row.amount]
    if funded:
        legs.append((ledger.AGENT_COUPON_DISCOUNTS, -funded))
    ledger.entry_post(
        kind="commission",
        legs=legs,
        reference=order.number,
        memo=f"{len(rows)} agent(s), {order.quantity} code(s)",
        idempotency_key=f"commission:{order.number}",
    )
    return rows


def commissions_reverse(*, order, quantity: int, reason: str = "") -> Decimal:
    """Take back the share of ``quantity`` refunded codes of ``order`` from every agent.

    Runs in the refund's transaction. Pending commissions are reversed out of the pending
    account; available ones out of the available account, any shortfall (already withdrawn)
    becoming a receivable from the agent. Returns the total taken back.
    """
    rows = list(
        Commission.objects.select_for_update()
        .filter(order_id=order.pk)
        .exclude(status=CommissionStatus.REVERSED)
        .select_related("agent__user")
        .order_by("pk")
    )
    if not rows or quantity <= 0:
        return Decimal(0)
    # Everything still pending and all of it refunded at once: the exact mirror of the booking.
    mirror = all(
        r.status == CommissionStatus.PENDING and r.reversed_quantity == 0 and quantity >= r.quantity for r in rows
    )
    legs: list = []
    total = Decimal(0)
    gross = Decimal(0)
    funded = Decimal(0)
    for row in rows:
        take = min(quantity, row.quantity - row.reversed_quantity)
        if take <= 0:
            continue
        gross += row.unit_amount * take
        amount = row.unit_amount * take
        if order.discount_funder_id and row.agent_id == order.discount_funder_id:
            # The refunded codes' share of the agent's own coupon comes back to it.
            share = order.discount_slots(row.reversed_quantity, take)
            amount -= share
            funded += share
        user = row.agent.user
        if row.status == CommissionStatus.PENDING:
            if amount:
                legs.append((ledger.commission_pending(user), amount))
        else:
            available = ledger.commission_available(user)
            from_balance = min(balance_of(available), amount)
            if from_balance > 0:
                legs.append((available, from_balance))
            if amount - from_balance > 0:
                legs.append((ledger.agent_receivable(user), amount - from_balance))
        row.reversed_quantity += take
        if row.reversed_quantity == row.quantity:
            COMMISSION_FLOW.apply(
                row, CommissionStatus.REVERSED, note=reason, update={"reversed_quantity": row.reversed_quantity}
            )
        else:
            row.save(update_fields=["reversed_quantity"])
        total += amount
    if total and mirror:
        booked = Entry.objects.get(idempotency_key=f"commission:{order.number}")
        ledger.entry_reverse(entry=booked, memo=(reason or "order refunded")[:200])
    elif gross:
        legs.append((ledger.COMMISSIONS, -gross))
        if funded:
            legs.append((ledger.AGENT_COUPON_DISCOUNTS, funded))
        ledger.entry_post(
            kind="commission_reversal",
            legs=legs,
            reference=order.number,
            memo=(reason or f"{quantity} code(s) refunded")[:200],
        )
    return total


def commission_settle(*, commission_id: int) -> bool:
    """Pending -> available once the refund window has closed. Safe to run twice."""
    with transaction.atomic():
        row = (
            Commission.objects.select_for_update()
            .select_related("agent__user", "order")
            .filter(pk=commission_id, status=CommissionStatus.PENDING, available_at__lte=timezone.now())
            .first()
        )
        if row is None:
            return False
        amount = row.net_amount
        if amount > 0:
            ledger.transfer(
                debit=ledger.commission_pending(row.agent.user),
                credit=ledger.commission_available(row.agent.user),
                amount=amount,
                kind="commission_settled",
                reference=row.order.number,
                idempotency_key=f"commission_settled:{row.pk}",
            )
        COMMISSION_FLOW.apply(row, CommissionStatus.AVAILABLE, note="refund window closed")
    return True


def commissions_settle_due(*, limit: int = 1000) -> int:
    due = Commission.objects.filter(status=CommissionStatus.PENDING, available_at__lte=timezone.now()).order_by(
        "available_at"
    )
    return sum(commission_settle(commission_id=pk) for pk in due.values_list("pk", flat=True)[:limit])
