"""Celery tasks of after-sales: they parse ids, call one service, and are safe to run twice."""

from smtplib import SMTPException

from celery import shared_task

from marketplace import tasklimits

from .services import sla


@shared_task(**tasklimits.BATCH)
def sla_sweep() -> dict[str, int]:
    """Every 60 s (marketplace/celery.py): fire the due warnings, breaches and escalations, once
    each, and queue again any of their emails still not sent after some minutes."""
    counts = sla.sla_sweep()
    counts["emails_requeued"] = sla.sla_notify_unsent()
    counts.update(sla.topup_sla_sweep())  # the manual top-up queue's clocks (人工代充)
    return counts


@shared_task(
    **tasklimits.CALL, acks_late=True, autoretry_for=(SMTPException, OSError), retry_backoff=True, max_retries=8
)
def sla_notify(event_id: int) -> int:
    """Email the people an SLA event concerns (queued on commit, only when the event row was created)."""
    return sla.sla_event_notify(event_id=event_id)


@shared_task(
    **tasklimits.CALL, acks_late=True, autoretry_for=(SMTPException, OSError), retry_backoff=True, max_retries=8
)
def topup_sla_notify(topup_id: int, kind: str) -> int:
    """Email the supervisors a manual top-up's SLA warning or breach (queued on commit, once: the
    sweep queues it only when it stamped the clock)."""
    return sla.topup_sla_notify(topup_id=topup_id, kind=kind)
