"""bench/skeleton.py's delivery task: a purchase's shape with almost no work in it.

Loaded by the benchmark's Celery worker through ``CELERY_IMPORTS`` in bench/settings.py; the
product never imports it.
"""

from celery import shared_task
from django.db import connection, transaction

from marketplace.db import retry_once_if_connection_lost
from orders.tasks import FULFIL_OPTIONS


def skeleton_deliver_row(row_id: int) -> bool:
    """The delivery's floor: one UPDATE in one transaction, applied once (paid -> delivered)."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "UPDATE bench_skeleton SET status = 'delivered', delivered_at = now() WHERE id = %s AND status = 'paid'",
            [row_id],
        )
        return cur.rowcount == 1


# fulfil_order's options and wrapper (orders/tasks.py), routed to its queue in bench/settings.py.
@shared_task(**FULFIL_OPTIONS)
@retry_once_if_connection_lost
def skeleton_deliver(row_id: int) -> bool:
    return skeleton_deliver_row(row_id)
