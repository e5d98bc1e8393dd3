"""Celery tasks of the rights ledger (declared in marketplace/celery.py): each calls one service
and is safe to run twice."""

from celery import shared_task

from marketplace import tasklimits

from . import services


@shared_task(**tasklimits.BATCH)
def reviews_expire() -> int:
    """Daily: approved authorisations past their validity expire; products they alone covered
    leave sale."""
    return services.reviews_expire_due()


@shared_task(**tasklimits.BATCH)
def reviews_warn_expiring() -> int:
    """Daily: staff emailed 30 and 7 days before an approved authorisation ends."""
    return services.review_expiry_warn()


@shared_task(**tasklimits.BATCH)
def notices_restore() -> int:
    """Hourly: products of counter-noticed notices whose 15 days have passed with no complaint or
    lawsuit reported come back on sale (电子商务法 第四十三条)."""
    return services.notices_restore_due()
