"""The Celery application. Periodic tasks are declared here, in one place."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_stale_connections(task=None, **kwargs):
    """What Django does around each request: drop connections past CONN_MAX_AGE or broken.

    Not for eager tasks: they run inside the caller's request or transaction."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


app.conf.beat_schedule = {
    # Releases the stock of unpaid orders whose 15 minutes are up.
    "orders-expire-due": {"task": "orders.tasks.expire_due_orders", "schedule": 30.0},
    # Re-queues fulfilment of paid orders whose task was lost (broker wiped, worker died before ack).
    "orders-redeliver-stuck": {"task": "orders.tasks.redeliver_stuck_orders", "schedule": 120.0},
}
