"""Reads for the inviter's page: their code, their invitations (the invitee masked) and totals."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, Sum

from .models import InviteCode, Referral, ReferralStatus


def invite_code_of(user) -> InviteCode | None:
    return InviteCode.objects.filter(user=user).first()


def inviter_of_code(code: str):
    """The active member a code belongs to, or None."""
    found = InviteCode.objects.filter(code=(code or "").strip().lower()).select_related("user").first()
    return found.user if found is not None and found.user.is_active else None


def email_masked(email: str) -> str:
    """a***@example.com: enough for the inviter to recognise a friend, not to read the address."""
    local, _at, domain = (email or "").partition("@")
    if not domain:
        return "***"
    return f"{local[:1]}***@{domain}"


@dataclass(frozen=True)
class Invitation:
    invitee: str
    signed_up: object
    status: str
    status_label: str
    reward: Decimal
    reason: str
    window_closes_at: object


@dataclass(frozen=True)
class Totals:
    invited: int
    waiting: int
    rewarded: int
    earned: Decimal


def invitations_of(user, *, limit: int = 200) -> list[Invitation]:
    rows = Referral.objects.filter(inviter=user).select_related("invitee").order_by("-created_at", "-pk")[:limit]
    return [
        Invitation(
            invitee=email_masked(r.invitee.email),
            signed_up=r.created_at,
            status=r.status,
            status_label=r.get_status_display(),
            reward=r.reward if r.status == ReferralStatus.REWARDED else Decimal("0.00"),
            reason=r.reason,
            window_closes_at=r.window_closes_at,
        )
        for r in rows
    ]


def totals_of(user) -> Totals:
    agg = Referral.objects.filter(inviter=user).aggregate(
        invited=Count("pk"),
        waiting=Count("pk", filter=Q(status__in=[ReferralStatus.PENDING, ReferralStatus.QUALIFIED])),
        rewarded=Count("pk", filter=Q(status=ReferralStatus.REWARDED)),
        earned=Sum("reward", filter=Q(status=ReferralStatus.REWARDED)),
    )
    return Totals(
        invited=agg["invited"],
        waiting=agg["waiting"],
        rewarded=agg["rewarded"],
        earned=agg["earned"] or Decimal("0.00"),
    )
