"""The Celery application. Periodic tasks are declared here, in one place."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Releases the stock of unpaid orders whose 15 minutes are up.
    "orders-expire-due": {"task": "orders.tasks.expire_due_orders", "schedule": 30.0},
    # Re-queues fulfilment of paid orders whose task was lost (broker wiped, worker died before ack).
    "orders-redeliver-stuck": {"task": "orders.tasks.redeliver_stuck_orders", "schedule": 120.0},
}
