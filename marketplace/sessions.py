"""Sessions read from the cache, written through to the database (Django's ``cached_db``),
with cache entries that live at most ``SESSION_CACHE_SECONDS``.

The cache ignores Redis errors (``IGNORE_EXCEPTIONS``), so with Redis away a session is read
from the database and nothing fails. But a write or a delete that Redis missed leaves the
entry it held before: a session ended while Redis was unreachable (a logout, a key cycled at
login) would still be served from the cache once Redis answers again, for as long as the
entry lives. ``cached_db`` keeps entries as long as the session (two weeks); here they expire
after a few minutes, which bounds that window and costs one indexed read per session per
few minutes.
"""

from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore


class _ShortLivedEntries:
    """The session cache, with every entry's lifetime capped."""

    def __init__(self, cache, seconds: int):
        self._cache, self._seconds = cache, seconds

    def set(self, key, value, timeout=None, **kwargs):
        timeout = self._seconds if timeout is None else min(timeout, self._seconds)
        return self._cache.set(key, value, timeout, **kwargs)

    async def aset(self, key, value, timeout=None, **kwargs):
        timeout = self._seconds if timeout is None else min(timeout, self._seconds)
        return await self._cache.aset(key, value, timeout, **kwargs)

    def __contains__(self, key):
        return key in self._cache

    def __getattr__(self, name):
        return getattr(self._cache, name)


class SessionStore(CachedDBStore):
    def __init__(self, session_key=None):
        super().__init__(session_key)
        self._cache = _ShortLivedEntries(self._cache, getattr(settings, "SESSION_CACHE_SECONDS", 300))
