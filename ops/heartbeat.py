"""Heartbeats: proof that Celery beat publishes and that a worker consumes each queue.

Beat publishes ``ops.tasks.heartbeat`` to every queue every 30 s (marketplace/celery.py). The
publish itself, in the beat process, stamps ``beat`` (the before_task_publish signal in
ops/tasks.py); the task, run by whichever worker consumes that queue, stamps the queue. A stamp
older than HEARTBEAT_MAX_AGE means beat stopped, no worker consumes the queue, or the queue is so
far behind that its heartbeat waited that long: all three mean deliveries are late.

Stamps live in the ``heartbeat`` cache (settings): Redis in production, a folder under var/
otherwise, so that web, worker and beat processes on one machine see each other's stamps.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import caches

HEARTBEAT_TASK = "ops.tasks.heartbeat"
BEAT = "beat"
KEY_PREFIX = "ops:heartbeat:"
# Kept long after going stale, so a stale heartbeat reads as "N seconds old", not "never".
KEY_TIMEOUT = 7 * 24 * 3600


def _cache():
    return caches["heartbeat"]


def heartbeat_stamp(*, source: str, now: float | None = None) -> None:
    """Record that ``source`` (a queue name, or ``beat``) is alive now."""
    _cache().set(KEY_PREFIX + source, time.time() if now is None else now, timeout=KEY_TIMEOUT)


def heartbeat_age(*, source: str, now: float | None = None) -> float | None:
    """Seconds since ``source`` last stamped, or None if it never did (or the cache is away)."""
    stamped = _cache().get(KEY_PREFIX + source)
    if stamped is None:
        return None
    return max(0.0, (time.time() if now is None else now) - float(stamped))


def heartbeat_max_age() -> float:
    return float(settings.HEARTBEAT_MAX_AGE)
