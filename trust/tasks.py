"""Celery tasks of the trust centre: they call one service and are safe to run twice."""

from celery import shared_task

from marketplace import tasklimits

from . import services


@shared_task(**tasklimits.BATCH)
def figures_compute() -> int:
    """Hourly (marketplace/celery.py): recompute the trust centre's figures from the records and
    replace the stored snapshot."""
    return services.trust_figures_compute()
