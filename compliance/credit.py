"""Credit events: recorded where they happen, counted by the rules that read them."""

from datetime import timedelta

from django.utils import timezone

from .models import CreditEvent


def credit_event_record(*, user, kind: str, reference: str = "", detail: str = "") -> CreditEvent:
    return CreditEvent.objects.create(user=user, kind=kind, reference=reference[:40], detail=detail[:300])


def credit_events_count(*, user, kind: str, days: int) -> int:
    """How many ``kind`` events ``user`` had in the last ``days`` days."""
    return CreditEvent.objects.filter(user=user, kind=kind, at__gte=timezone.now() - timedelta(days=days)).count()


def credit_summary(*, user) -> list[tuple[str, int]]:
    """The user's credit events by kind (label, count), all time, in one query."""
    from django.db.models import Count

    counts = dict(CreditEvent.objects.filter(user=user).values_list("kind").annotate(n=Count("id")))
    return [(label, counts[kind]) for kind, label in CreditEvent.Kind.choices if counts.get(kind)]
