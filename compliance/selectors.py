"""Compliance's reads: credit events and audited refusals counted by the rules that read them."""

from datetime import timedelta

from django.utils import timezone

from .models import AuditEvent, CreditEvent


def credit_events_count(*, user, kind: str, days: int) -> int:
    """How many ``kind`` events ``user`` had in the last ``days`` days."""
    return CreditEvent.objects.filter(user=user, kind=kind, at__gte=timezone.now() - timedelta(days=days)).count()


def credit_summary(*, user) -> list[tuple[str, int]]:
    """The user's credit events by kind (label, count), all time, in one query.

    A dispute lost before staff and then won at arbitration (same reference) is not counted as
    lost: the third party found for the user."""
    Kind = CreditEvent.Kind
    counts: dict[str, int] = {}
    lost: list[str] = []
    overturned: set[str] = set()
    for kind, reference in CreditEvent.objects.filter(user=user).values_list("kind", "reference"):
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
