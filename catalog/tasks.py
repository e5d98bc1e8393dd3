import uuid
from smtplib import SMTPException

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from marketplace import tasklimits
from marketplace.celery import publish

from . import selectors, services


@shared_task(**tasklimits.BATCH, acks_late=True, reject_on_worker_lost=True)
def import_batch(batch_id: int) -> str:
    return services.batch_import_run(batch_id=batch_id)


@shared_task(
    **tasklimits.BATCH,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # A mail server that refuses or is away: the same run (same task id, so its own claimed rows
    # are taken again at once) tries later, a bounded number of times; then the beat sweeper's
    # run takes the rows over once the claim is stale (catalog.services.restock_notify_run).
    # 1, 2, 4 minutes, then every 5 (settings.CELERY_RETRY_COUNTDOWN_MAX: a longer countdown would
    # outlast the broker's visibility timeout and another worker would run the same run at once).
    autoretry_for=(SMTPException, OSError),
    max_retries=8,
    retry_backoff=60,
    retry_backoff_max=settings.CELERY_RETRY_COUNTDOWN_MAX,
    retry_jitter=True,
)
def restock_notify(self, product_id: int, batch_id: int | None = None, run_id: str | None = None) -> int:
    """One batch of restock alerts for a product; the next batch is queued as another run.

    At the soft time limit (a slow mail server: a batch of RESTOCK_ALERT_BATCH emails can take
    minutes) the run stops where it is: every alert sent before is marked (each mark is committed
    on its own), the one in flight is not, and a new task goes on with the rest under the same
    ``run_id``, so it takes this run's claimed rows again at once (catalog.services.
    restock_notify_run). The message is acknowledged well before the broker would hand it to
    another worker, which would send the same alerts at the same time.
    """
    run_id = run_id or self.request.id or uuid.uuid4().hex
    try:
        sent, more = services.restock_notify_run(product_id=product_id, batch_id=batch_id, run_id=run_id)
    except SoftTimeLimitExceeded:
        tasklimits.time_limit_reached(
            task=self.name, limit=tasklimits.SOFT, task_id=self.request.id, stopped_at=f"product {product_id}"
        )
        publish(restock_notify, product_id, batch_id, run_id)
        return 0
    if more:
        publish(restock_notify, product_id, batch_id)
    return sent


@shared_task(**tasklimits.BATCH)
def restock_alerts_sweep() -> int:
    """Beat: products in stock whose confirmed subscribers were not alerted (the run's publish
    failed, its worker died): a sending run each."""
    products = selectors.restock_products_due()
    for product_id in products:
        publish(restock_notify, product_id, None)
    return len(products)
