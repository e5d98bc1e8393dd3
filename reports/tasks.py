"""Celery tasks of the reports: generate the report of the period just ended. Safe to run twice
(``report_generate`` returns a ready report untouched); a failed run is retried with backoff, and
the next scheduled run or ``manage.py report_generate`` picks up a report left failed."""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from marketplace import tasklimits

from . import services
from .models import Report
from .periods import previous_half_year, previous_month

# Every 5 minutes, seven times: a longer countdown would outlast the broker's visibility timeout and
# another worker would generate the same report at once (settings.CELERY_RETRY_COUNTDOWN_MAX).
RETRY = {
    "max_retries": 7,
    "retry_backoff": settings.CELERY_RETRY_COUNTDOWN_MAX,
    "retry_backoff_max": settings.CELERY_RETRY_COUNTDOWN_MAX,
    "retry_jitter": False,
}


@shared_task(**tasklimits.BATCH, bind=True, autoretry_for=(Exception,), **RETRY)
def monthly_compliance_generate(self) -> int:
    """The 1st of each month at 02:00 Beijing time (marketplace/celery.py): last month's report."""
    start, end = previous_month(timezone.localdate())
    return services.report_generate(kind=Report.Kind.MONTHLY_COMPLIANCE, start=start, end=end).pk


@shared_task(**tasklimits.BATCH, bind=True, autoretry_for=(Exception,), **RETRY)
def operators_halfyear_generate(self) -> int:
    """1 January and 1 July at 02:30 (网络交易监督管理办法 第二十五条: every half year, in January and
    July): the operators of the half year just ended."""
    start, end = previous_half_year(timezone.localdate())
    return services.report_generate(kind=Report.Kind.OPERATORS_HALFYEAR, start=start, end=end).pk
