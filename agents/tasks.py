from celery import shared_task

from marketplace import tasklimits

from .services import api_keys, commissions


@shared_task(**tasklimits.BATCH)
def settle_commissions() -> int:
    """Commissions whose refund window has closed become available to withdraw."""
    return commissions.commissions_settle_due()


# --- The integration API -----------------------------------------------------------------


@shared_task(**tasklimits.BATCH)
def purge_api_nonces() -> int:
    """Nonces older than the signature window can no longer be replayed: forget them."""
    return api_keys.nonces_purge()
