from smtplib import SMTPException

from celery import shared_task

from marketplace import tasklimits

from . import services


@shared_task(
    **tasklimits.CALL, acks_late=True, autoretry_for=(SMTPException, OSError), retry_backoff=True, max_retries=8
)
def warn_login_locked(user_id: int, until: float) -> None:
    services.login_lock_warn(user_id=user_id, until=until)
