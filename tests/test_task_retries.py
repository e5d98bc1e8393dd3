"""Task retries against the broker's visibility timeout.

With Redis as the broker, a message a worker has fetched but not acknowledged goes back to the
queue after ``CELERY_VISIBILITY_TIMEOUT`` seconds, and another worker runs it. A retry with a
countdown is such a message: the worker that fetched it holds it, unacknowledged (``acks_late``),
until the countdown is over and the retry has run. Before, the daily bill and supplier
reconciliations retried up to an hour later, restock alerts up to 30 minutes, reports 20 minutes,
with a 600 s timeout: every retry past it ran again in another worker, once per timeout elapsed
(kombu 5.7; seen with two real workers, a 4 s timeout and a 200 s countdown: three runs at the
same second). Now no retry waits longer than ``CELERY_RETRY_COUNTDOWN_MAX``, and the settings
refuse a timeout that leaves less than as much again for the retry's run.
"""

import subprocess
import sys

import pytest
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from marketplace.celery import app
from tests.test_deploy_check import BASE_DIR, production_env


def longest_countdown(task) -> float:
    """The longest wait before one of the task's automatic retries (autoretry_for), read the way
    celery.app.autoretry reads the task's options."""
    if not getattr(task, "autoretry_for", ()):
        return 0
    if "countdown" in getattr(task, "retry_kwargs", {}):
        return task.retry_kwargs["countdown"]
    if not getattr(task, "retry_backoff", False):
        return task.default_retry_delay or 0
    factor = int(max(1.0, float(task.retry_backoff)))  # True: 1
    maximum = int(getattr(task, "retry_backoff_max", 600))
    return max(
        get_exponential_backoff_interval(factor=factor, retries=retries, maximum=maximum, full_jitter=False)
        for retries in range(task.max_retries or 1)
    )


def project_tasks() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_no_retry_waits_past_half_the_visibility_timeout():
    tasks = project_tasks()
    assert {"payments.tasks.bill_reconcile", "orders.tasks.supply_reconcile", "catalog.tasks.restock_notify"} <= set(
        tasks
    )
    waits = {name: longest_countdown(task) for name, task in tasks.items()}
    too_long = {name: wait for name, wait in waits.items() if wait > settings.CELERY_RETRY_COUNTDOWN_MAX}
    assert not too_long, f"retried later than CELERY_RETRY_COUNTDOWN_MAX: {too_long}"
    assert settings.CELERY_VISIBILITY_TIMEOUT >= 2 * settings.CELERY_RETRY_COUNTDOWN_MAX
    # The reconciliations still ask for a late bill for hours, not minutes.
    bill = tasks["payments.tasks.bill_reconcile"]
    assert bill.max_retries * settings.CELERY_RETRY_COUNTDOWN_MAX >= 4 * 3600


@pytest.mark.parametrize(("value", "starts"), [("599", False), ("600", True), ("3600", True)])
def test_a_visibility_timeout_shorter_than_a_retry_and_its_run_refuses_to_start(tmp_path, value, starts):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env=production_env(tmp_path, CELERY_VISIBILITY_TIMEOUT=value, CELERY_BROKER_URL="redis://127.0.0.1:1/0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode == 0) is starts, result.stderr
    if not starts:
        assert "CELERY_VISIBILITY_TIMEOUT" in result.stderr
