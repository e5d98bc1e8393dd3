"""Rate limits counted in the cache (Redis in production, shared by every gunicorn worker), and
the one answer past a limit: HTTP 429 with Retry-After and a page in the reader's language.

A limit is N hits of one kind by one subject (a client's network, an email, an order number)
within a window that starts at the first hit; past N, everything of that kind by that subject is
refused until the window ends. Subjects are hashed into the keys: the cache holds no addresses.

    limits = [RateLimit("guest_lookup.ip", client_network(client_ip(request)), 30, 15 * 60), ...]
    throttled = rate_limits_hit(limits)
    if throttled:
        return too_many_requests(request, throttled)

Counting here, not with django-ratelimit: its windows are fixed clock buckets (a burst across a
bucket's end gets twice the limit), its Retry-After must be derived, and failing open or closed
is one global setting. This is the counter that accounts' login locks use, plus the window's end.

With the cache away (django-redis's IGNORE_EXCEPTIONS turns errors into misses) a hit counts
nothing and nothing is refused: the pages keep working, and callers keep a limit of their own in
the database where a missed one would matter (e.g. emails sent per address).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` hits of ``scope`` by ``subject`` within ``window`` seconds."""

    scope: str
    subject: str
    limit: int
    window: int


@dataclass(frozen=True)
class Throttled:
    """A limit that refuses: which one, and how many seconds until it lets hits through again."""

    scope: str
    subject: str
    retry_after: int

    @property
    def minutes(self) -> int:
        """Rounded up: "1 minute" while any of it is left, never "0 minutes"."""
        return max(1, math.ceil(self.retry_after / 60))


def client_network(ip: str | None) -> str:
    """The client a limit is about: its IPv4 address, or its IPv6 /64 (one subscriber's share,
    which a client can hop around in at will)."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False).network_address)
    return str(address)


def _keys(scope: str, subject: str) -> tuple[str, str]:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"rl:{scope}:{digest}:n", f"rl:{scope}:{digest}:end"


def rate_limit_hit(limit: RateLimit) -> Throttled | None:
    """Count one hit; the refusal if it is past the limit (the hit that reaches it still passes)."""
    count_key, end_key = _keys(limit.scope, limit.subject)
    now = time.time()
    cache.add(end_key, now + limit.window, timeout=limit.window)
    cache.add(count_key, 0, timeout=limit.window)
    try:
        count = cache.incr(count_key)
    except ValueError:  # the window ended between add and incr: this hit opens the next one
        cache.set(end_key, now + limit.window, timeout=limit.window)
        cache.set(count_key, 1, timeout=limit.window)
        count = 1
    if count is None:  # the cache is away (errors read as misses): count nothing, refuse nothing
        return None
    if count <= limit.limit:
        return None
    end = cache.get(end_key)
    retry_after = math.ceil(float(end) - now) if end is not None else limit.window
    return Throttled(limit.scope, limit.subject, max(1, min(retry_after, limit.window)))


def rate_limits_hit(limits: Iterable[RateLimit]) -> Throttled | None:
    """Count one hit on each limit (all of them, so that every subject's count is true); the
    refusal that lasts longest, if any refuses."""
    refusals = [t for limit in limits if (t := rate_limit_hit(limit)) is not None]
    return max(refusals, key=lambda t: t.retry_after, default=None)


def too_many_requests(
    request: HttpRequest,
    throttled: Throttled | None = None,
    *,
    template: str = "429.html",
    context: dict[str, Any] | None = None,
) -> HttpResponse:
    """The page past a limit: 429, Retry-After, never cached. ``429.html`` says how long to wait
    (``wait_minutes``) and takes ``reason`` (a sentence on what was limited) and ``way_out_url``
    / ``way_out_label`` (what to do instead of waiting) in ``context``."""
    data = {"throttled": throttled, "wait_minutes": throttled.minutes if throttled else None, **(context or {})}
    response = render(request, template, data, status=429)
    if throttled is not None:
        response["Retry-After"] = str(throttled.retry_after)
    add_never_cache_headers(response)
    return response
