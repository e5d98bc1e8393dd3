from celery import shared_task

from . import commissions


@shared_task
def settle_commissions() -> int:
    """Commissions whose refund window has closed become available to withdraw."""
    return commissions.commissions_settle_due()
