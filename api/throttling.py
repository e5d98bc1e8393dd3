"""Requests per minute per API key (``AGENT_API_RATE_PER_MINUTE``), counted in the cache.

With Redis away the count is not kept (the cache ignores its errors) and requests pass: the
limit fails open for the outage. That is deliberate: signatures, nonces (a database table,
so a replay is refused whatever Redis does), key allow-lists and balances are all checked in
the database, so only a correctly signing agent could exceed its rate meanwhile, and
refusing every agent's sales while Redis is down would be worse.

With Redis (production) the count is a sliding-window counter, one round trip per request: a
counter per key and minute, and the estimate ``previous minute × the part of it still inside
the last 60 s + this minute``, the request counted, must not exceed the rate. Without Redis
(development, tests) DRF's log of request times in the cache does the same job.
"""

import logging
import math
import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from agents.models import ApiKey

log = logging.getLogger(__name__)
WINDOW = 60


# (the cache object, its Redis client or None): worked out once per cache object, which Django
# keeps per thread and replaces when the CACHES setting changes (tests).
_client: tuple[object, object] | None = None


def _redis_client(cache):
    """The Redis client of ``cache`` (django-redis), or None with another cache backend."""
    global _client
    kept = _client
    if kept is not None and kept[0] is cache:
        return kept[1]
    try:
        from django_redis.cache import RedisCache
    except ImportError:  # pragma: no cover - a dependency
        return None
    # get_redis_connection("default"): the client django-redis keeps for the cache's server.
    client = cache.client.get_client(write=True) if isinstance(cache, RedisCache) else None
    _client = (cache, client)
    return client


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "agent_api"

    def get_rate(self) -> str:
        # Read per request, so the setting can change without a restart of this class.
        return f"{settings.AGENT_API_RATE_PER_MINUTE}/min"

    def get_cache_key(self, request, view) -> str | None:
        key = request.auth
        if not isinstance(key, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": key.key_id}

    def allow_request(self, request, view) -> bool:
        cache = caches["default"]
        client = _redis_client(cache)
        if client is None:
            return super().allow_request(request, view)
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        limit = settings.AGENT_API_RATE_PER_MINUTE
        now = time.time()
        minute = int(now // WINDOW)
        current, previous = cache.make_key(f"{ident}:{minute}"), cache.make_key(f"{ident}:{minute - 1}")
        try:
            pipe = client.pipeline(transaction=False)
            pipe.incr(current)
            pipe.expire(current, 2 * WINDOW)
            pipe.get(previous)
            count, _expiry, before = pipe.execute()
        except Exception as exc:  # Redis away: the limit fails open (above)
            log.warning("API rate limit not counted (Redis): %s", exc)
            return True
        before = int(before or 0)
        remaining = 1 - (now - minute * WINDOW) / WINDOW  # the part of the previous minute still in the last 60 s
        if before * remaining + count <= limit:
            return True
        # Refused, and not counted (DRF's log counts only what it lets through). Retry when this
        # minute's own count is under the rate, or enough of the previous minute has slid out.
        if count > limit or not before:
            self._wait = WINDOW * (minute + 1) - now
        else:
            self._wait = max(0.0, remaining * WINDOW - (limit - count) * WINDOW / before)
        try:
            client.decr(current)
        except Exception as exc:  # as above
            log.warning("API rate limit not uncounted (Redis): %s", exc)
        return False

    def wait(self):
        if hasattr(self, "_wait"):
            return max(1, math.ceil(self._wait))
        return super().wait()
