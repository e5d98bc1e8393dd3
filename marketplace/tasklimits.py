"""Time limits of Celery tasks, by class of task, and a record of every task that reached one.

With Redis as the broker, a message its worker has not acknowledged after CELERY_VISIBILITY_TIMEOUT
seconds is handed to another worker, and every task acknowledges late (settings.CELERY_TASK_ACKS_LATE):
a task still running then is run a second time, at once, in parallel. So no task may run that long.
Each task declares its class with ``@shared_task(**tasklimits.BATCH, ...)``:

- QUICK: a few statements on a few rows, no call out (delivering an order, a heartbeat);
- CALL: one call out (a payment gateway, a supplier, the mail server, an agent's callback URL), each
  with its own timeout below the soft limit, and a few statements around it;
- BATCH: a sweep, report, reconciliation, import or batch of emails: minutes, in chunks; the
  defaults (settings.CELERY_TASK_SOFT_TIME_LIMIT / CELERY_TASK_TIME_LIMIT, derived from the
  visibility timeout), and what a task that declares nothing gets.

At the soft limit Celery raises ``SoftTimeLimitExceeded`` inside the task (prefork pool: a signal
to the child), wherever it is: an ``atomic`` block it is in rolls back, what was committed stays.
Batch tasks catch it at a safe point and go on in a new task or leave the rest to the next beat
run (docs/runbook.md, "Task time limits"). At the hard limit the pool kills the child process:
its database connection drops and PostgreSQL rolls back the open transaction. The message is then
acknowledged, not redelivered, although acks_late and reject_on_worker_lost are set: Celery
(5.7, worker/request.py ``Request.on_timeout``) acknowledges a task that hit its hard limit when
``acks_on_timeout`` is true, which it is by default (it falls back to acks_on_failure_or_timeout,
default True); reject_on_worker_lost concerns a child that died on its own (WorkerLostError), and
Celery's docs say the message of a child terminated by a signal is acknowledged even with
acks_late. So what a killed task left undone is picked up by its sweeper (a paid order by
orders-deliver-due, a refund by payments-refunds-retry ...), never by the broker.

The solo pool (production's fulfilment worker) enforces no time limit at all: Celery's solo pool
runs the task inline and ignores both limits (celery/concurrency/solo.py). Its tasks (delivering
one order, the sweeper that queues due ones) are bounded by what they do; docs/runbook.md says so.

A message carries the limits of the process that published it (Celery puts the task's
``time_limit`` and ``soft_time_limit`` in its ``timelimit`` header) and the worker obeys those
before its own: web, beat and workers need the same settings.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TypedDict

from django.conf import settings
from django.core.cache import caches

log = logging.getLogger(__name__)

SOFT = "soft"
HARD = "hard"
KEY_PREFIX = "ops:timelimit:"
KEY_TIMEOUT = 30 * 24 * 3600  # a counter forgotten after a month without a hit (Prometheus sees a reset)


class Limits(TypedDict):
    """The options of ``@shared_task(**QUICK)``; a TypedDict keeps the task typed for mypy."""

    soft_time_limit: int
    time_limit: int


def _limits(soft: int, hard: int) -> Limits:
    """A class's limits, never above the batch defaults (which a test's worker may set lower)."""
    return {
        "soft_time_limit": min(soft, settings.CELERY_TASK_SOFT_TIME_LIMIT),
        "time_limit": min(hard, settings.CELERY_TASK_TIME_LIMIT),
    }


QUICK = _limits(30, 45)
CALL = _limits(90, 120)
BATCH = _limits(settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT)


def soft_deadline(task) -> float:
    """When (``time.monotonic()``) the running ``task`` reaches its soft limit: the limit its
    message carries (``timelimit``: hard, soft), else the task's own. For a batch that stops by
    itself before it, at a point of its choosing, and goes on in a new task."""
    carried = getattr(task.request, "timelimit", None) or (None, None)
    return time.monotonic() + float(carried[1] or task.soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT)


def _cache():
    return caches["heartbeat"]  # shared by every process (Redis in production), like the heartbeats


# (task id, limit) of the last runs recorded by this process: Celery reports one hard limit twice
# in the worker's main process (the pool's error callback and Request.on_timeout both send
# task_failure), and it must count once.
_recorded: deque[tuple[str, str]] = deque(maxlen=64)


def time_limit_reached(*, task: str, limit: str, task_id: str | None = None, stopped_at: str = "") -> None:
    """Log that ``task`` reached its soft or hard limit, and count it for /metrics
    (``kamarket_task_time_limits_total``), once per run. ``stopped_at``: where a batch stopped."""
    if task_id is not None:
        if (task_id, limit) in _recorded:
            return
        _recorded.append((task_id, limit))
    log.warning(
        "task %s reached its %s time limit%s",
        task,
        limit,
        f" (stopped at {stopped_at}; the rest goes on in a new run)" if stopped_at else "",
        extra={"task": task, "task_id": task_id, "time_limit": limit, "stopped_at": stopped_at},
    )
    key = f"{KEY_PREFIX}{limit}:{task}"
    try:
        cache = _cache()
        cache.add(key, 0, timeout=KEY_TIMEOUT)
        cache.incr(key)
        cache.touch(key, KEY_TIMEOUT)
    except Exception:  # the count is for monitoring; never fail a task's clean-up over it
        log.exception("could not count the time limit of %s", task)


def time_limit_counts(task_names) -> dict[tuple[str, str], int]:
    """{(task, "soft" | "hard"): times reached} for every one of ``task_names``."""
    keys = {f"{KEY_PREFIX}{limit}:{name}": (name, limit) for name in task_names for limit in (SOFT, HARD)}
    found = _cache().get_many(list(keys))
    return {pair: int(found.get(key) or 0) for key, pair in keys.items()}
