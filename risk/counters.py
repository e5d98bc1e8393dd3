"""Counters for the rules, in the cache's Redis: every counter of one event in ONE round-trip.

A counter's window starts at its first hit (``SET key 0 EX window NX`` then ``INCR``, for every
key in one Lua script: one round trip and one command).
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

from marketplace.ratelimit import cache_redis, redis_script

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counter:
    rule: str
    subject: str  # what is counted ("ip 1.2.3.4"): hashed into the key
    window: int

    @property
    def key(self) -> str:
        return f"risk:{self.rule}:{hashlib.sha256(self.subject.encode()).hexdigest()[:32]}"


# Per counter (KEYS[i], window ARGV[i]): a zero count set if absent, expiring with the window,
# then incremented; one EVALSHA for all of them instead of two commands each.
_HITS_LUA = """
local out = {}
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], 0, 'EX', ARGV[i], 'NX')
  out[i] = redis.call('INCR', KEYS[i])
end
return out
"""


def counters_hit(counters: list[Counter]) -> list[int | None]:
    """Count one hit on each counter; the counts after it (None: not counted, the cache is away)."""
    if not counters:
        return []
    client = cache_redis()
    if client is not None:
        try:
            script = redis_script(client, _HITS_LUA)
            counts = script(keys=[c.key for c in counters], args=[c.window for c in counters], client=client)
        except Exception as exc:  # redis.RedisError, OSError: an outage counts nothing
            log.warning("risk counters not counted, Redis is away: %s", exc)
            return [None] * len(counters)
        return [int(n) for n in counts]
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
