from celery import shared_task

from . import api_keys, callbacks, commissions


@shared_task
def settle_commissions() -> int:
    """Commissions whose refund window has closed become available to withdraw."""
    return commissions.commissions_settle_due()


# --- The integration API -----------------------------------------------------------------


@shared_task(acks_late=True)
def send_callback(callback_id: int) -> str:
    """One attempt at an agent's callback (if due); failures are rescheduled with backoff."""
    return callbacks.callback_send(callback_id=callback_id)


@shared_task
def send_due_callbacks() -> int:
    """Queue every callback whose next attempt is due (retries, and sends whose task was lost)."""
    due = callbacks.callbacks_due()
    for callback_id in due:
        send_callback.delay(callback_id)
    return len(due)


@shared_task
def purge_api_nonces() -> int:
    """Nonces older than the signature window can no longer be replayed: forget them."""
    return api_keys.nonces_purge()
