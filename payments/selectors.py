"""Reads for a user's money pages: their payments and their wallet's movements."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q

from ledger import services as ledger
from ledger.models import Line

from .models import Payment, Refund


def user_payments(user, limit: int | None = 200):
    qs = (
        Payment.objects.filter(Q(order__buyer=user) | Q(recharge__user=user))
        .select_related("order", "recharge")
        .order_by("-created_at")
    )
    return qs[:limit] if limit else qs


def user_refunds(user, limit: int | None = 200):
    qs = (
        Refund.objects.filter(Q(payment__order__buyer=user) | Q(payment__recharge__user=user))
        .select_related("payment", "order")
        .order_by("-created_at")
    )
    return qs[:limit] if limit else qs


@dataclass(frozen=True)
class Movement:
    at: datetime
    kind: str
    reference: str
    amount: Decimal  # + into the wallet, − out of it


def wallet_movements(user, limit: int | None = 200) -> list[Movement]:
    lines = (
        Line.objects.filter(account__code=ledger.wallet(user).code)
        .select_related("entry")
        .order_by("-entry__created_at")
    )
    if limit:
        lines = lines[:limit]
    # A wallet is owed to the user: a credit (negative line) puts money in.
    return [Movement(line.entry.created_at, line.entry.kind, line.entry.reference, -line.amount) for line in lines]
