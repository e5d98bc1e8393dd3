"""Celery tasks of compliance: they call one service and are safe to run twice."""

from celery import shared_task

from marketplace import tasklimits

from . import services


@shared_task(**tasklimits.BATCH)
def qualifications_warn_expiring() -> int:
    """Daily at 09:00 Beijing time (marketplace/celery.py): email staff about qualifications whose
    validity ends within 30 or 7 days, or has ended, once per stage (QualificationWarning)."""
    return services.qualification_expiry_warn()
