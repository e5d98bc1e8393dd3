from datetime import date
from smtplib import SMTPException

from celery import shared_task
from django.conf import settings

from marketplace import tasklimits

from .gateways import GatewayError
from .services import reconciliation, refunds


@shared_task(**tasklimits.CALL, acks_late=True, reject_on_worker_lost=True)
def refund_execute(refund_id: int) -> str:
    return refunds.refund_execute(refund_id=refund_id)


@shared_task(**tasklimits.BATCH)
def refunds_retry_due() -> int:
    ids = refunds.refunds_due()
    for refund_id in ids:
        refund_execute.delay(refund_id)
    return len(ids)


@shared_task(**tasklimits.BATCH)
def refunds_undeliverable() -> int:
    """Orders that will not be delivered (a supplier's failure, a failed top-up): refunded in full."""
    return refunds.refunds_undeliverable_run()


@shared_task(
    **tasklimits.CALL, acks_late=True, autoretry_for=(SMTPException, OSError), retry_backoff=True, max_retries=8
)
def refund_notify(refund_id: int) -> None:
    refunds.refund_notify(refund_id=refund_id)


# --- reconciliation: active query, closing at the gateway, daily bills ------------------------


@shared_task(**tasklimits.CALL, acks_late=True, reject_on_worker_lost=True)
def attempt_check(attempt_id: int) -> str:
    """One attempt's turn: query it, or close it. Claimed in the database: safe to run twice."""
    return reconciliation.attempt_check(attempt_id=attempt_id)


@shared_task(**tasklimits.BATCH)
def attempts_query_due() -> int:
    ids = reconciliation.attempts_due()
    for attempt_id in ids:
        attempt_check.delay(attempt_id)
    return len(ids)


@shared_task(**tasklimits.BATCH)
def attempts_close_expired() -> int:
    ids = reconciliation.attempts_to_close()
    for attempt_id in ids:
        attempt_check.delay(attempt_id)
    return len(ids)


@shared_task(
    **tasklimits.BATCH,
    acks_late=True,
    autoretry_for=(GatewayError,),  # the bill not out yet, the gateway unreachable
    # Every 5 minutes for about 4 hours: a longer countdown would outlast the broker's visibility
    # timeout and run the retry twice (settings.CELERY_RETRY_COUNTDOWN_MAX).
    retry_backoff=settings.CELERY_RETRY_COUNTDOWN_MAX,
    retry_backoff_max=settings.CELERY_RETRY_COUNTDOWN_MAX,
    retry_jitter=False,
    max_retries=48,
)
def bill_reconcile(gateway_code: str, day: str) -> int:
    run = reconciliation.reconciliation_run(gateway_code=gateway_code, day=date.fromisoformat(day))
    return run.mismatch_total


@shared_task(**tasklimits.BATCH)
def bills_reconcile_yesterday() -> list[str]:
    day = reconciliation.yesterday().isoformat()
    codes = reconciliation.bill_gateways()
    for code in codes:
        bill_reconcile.delay(code, day)
    return codes


# --- payouts of agents' withdrawals -------------------------------------------------------------


@shared_task(**tasklimits.CALL, acks_late=True, reject_on_worker_lost=True)
def payout_execute(withdrawal_id: int) -> str:
    """Pay an approved withdrawal out (or ask where its payout stands). Safe to run twice."""
    from .services import payouts

    return payouts.payout_execute(withdrawal_id=withdrawal_id)


@shared_task(**tasklimits.BATCH)
def payouts_check_due() -> int:
    """Approved Alipay payouts with no known outcome (a timeout, a lost task): asked again."""
    from .services import payouts

    ids = payouts.payouts_due()
    for withdrawal_id in ids:
        payout_execute.delay(withdrawal_id)
    return len(ids)
