"""Compliance's reads: credit events and audited refusals counted by the rules that read them."""

from datetime import timedelta
from typing import Any, TypedDict

from django.db.models import Q
from django.utils import timezone

from .models import AuditEvent, CreditEvent


def credit_email_normalise(email: str) -> str:
    """A guest's address as credit events key it: stripped, lower case (as guest orders store it)."""
    return (email or "").strip().lower()


class CreditOwnerKeys(TypedDict):
    """One owner as the keywords of ``credit_event_record`` and the counts: a member (``user``,
    email empty) or a guest (``user`` None, their address)."""

    user: Any
    email: str


def credit_owner(*, user=None, email: str = "") -> Q:
    """Whose events: a member (``user``), else the guest known by ``email`` (normalised). A
    member's events and a guest's under the same address are different owners."""
    if user is not None:
        return Q(user=user)
    email = credit_email_normalise(email)
    if not email:
        raise ValueError("a credit event belongs to a user or to a guest email")
    return Q(user__isnull=True, email=email)


def credit_events_count(*, user=None, email: str = "", kind: str, days: int) -> int:
    """How many ``kind`` events ``user`` (or the guest ``email``) had in the last ``days`` days."""
    return CreditEvent.objects.filter(
        credit_owner(user=user, email=email), kind=kind, at__gte=timezone.now() - timedelta(days=days)
    ).count()


def credit_summary(*, user=None, email: str = "") -> list[tuple[str, int]]:
    """The user's (or the guest ``email``'s) credit events by kind (label, count), all time, in one query.

    A dispute lost before staff and then won at arbitration (same reference) is not counted as
    lost: the third party found for the user."""
    Kind = CreditEvent.Kind
    counts: dict[str, int] = {}
    lost: list[str] = []
    overturned: set[str] = set()
    for kind, reference in CreditEvent.objects.filter(credit_owner(user=user, email=email)).values_list(
        "kind", "reference"
    ):
        if kind == Kind.DISPUTE_LOST:
            lost.append(reference)
            continue
        counts[kind] = counts.get(kind, 0) + 1
        if kind == Kind.ARBITRATION_WON and reference:
            overturned.add(reference)
    counts[Kind.DISPUTE_LOST] = sum(1 for reference in lost if not reference or reference not in overturned)
    return [(str(label), counts[kind]) for kind, label in Kind.choices if counts.get(kind)]


def audit_denied_count(*, action: str, target: str, since) -> int:
    """Refusals of ``action`` on ``target`` audited since ``since`` (e.g. wrong passwords)."""
    return AuditEvent.objects.filter(
        action=action, target=str(target)[:120], outcome=AuditEvent.Outcome.DENIED, at__gte=since
    ).count()
