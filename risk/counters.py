"""Counters for the rules, in the cache's Redis: every counter of one event in ONE round-trip.

A counter's window starts at its first hit (``SET key 0 EX window NX`` then ``INCR``, both for
every key in one pipeline, no MULTI needed: a SET NX that loses to a concurrent one is harmless).
Keys hold hashes of their subjects, never addresses or emails.

With Redis away (the project's cache ignores outages: IGNORE_EXCEPTIONS) nothing is counted and
no rule fires: checkout and sign-up keep working, the caps counted in the database still hold.
Without Redis (development, most tests: the local-memory cache) the cache API counts instead.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.core.cache import cache

from marketplace.ratelimit import cache_redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counter:
    rule: str
    subject: str  # what is counted ("ip 1.2.3.4"): hashed into the key
    window: int

    @property
    def key(self) -> str:
        return f"risk:{self.rule}:{hashlib.sha256(self.subject.encode()).hexdigest()[:32]}"


def counters_hit(counters: list[Counter]) -> list[int | None]:
    """Count one hit on each counter; the counts after it (None: not counted, the cache is away)."""
    if not counters:
        return []
    client = cache_redis()
    if client is not None:
        try:
            pipe = client.pipeline(transaction=False)
            for c in counters:
                pipe.set(c.key, 0, ex=c.window, nx=True)
                pipe.incr(c.key)
            results = pipe.execute()
        except Exception as exc:  # redis.RedisError, OSError: an outage counts nothing
            log.warning("risk counters not counted, Redis is away: %s", exc)
            return [None] * len(counters)
        return [int(n) for n in results[1::2]]
    counts: list[int | None] = []
    for c in counters:
        cache.add(c.key, 0, timeout=c.window)
        try:
            counts.append(cache.incr(c.key))
        except ValueError:  # expired between add and incr
            cache.set(c.key, 1, timeout=c.window)
            counts.append(1)
    return counts


def counter_reset(key: str) -> None:
    """Forget a counter (staff dismissed its alert: the subject starts afresh)."""
    client = cache_redis()
    try:
        if client is not None:
            client.delete(key)
        else:
            cache.delete(key)
    except Exception as exc:  # an outage: the counter ends with its window anyway
        log.warning("risk counter not reset, Redis is away: %s", exc)
