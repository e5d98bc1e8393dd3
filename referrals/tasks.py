from celery import shared_task
from django.db import OperationalError

from marketplace import tasklimits

from .services import referrals_process_due


@shared_task(**tasklimits.BATCH, autoretry_for=(OperationalError, OSError), retry_backoff=True, max_retries=3)
def rewards_process() -> dict:
    """Referrals: first orders delivered (qualified), refunded (cancelled), past the refund
    window (rewarded or refused). Idempotent: a second run finds nothing left to do."""
    return referrals_process_due()
