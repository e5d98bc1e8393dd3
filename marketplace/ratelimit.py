"""Rate limits counted in the cache (Redis in production, shared by every gunicorn worker), and
the one answer past a limit: HTTP 429 with Retry-After and a page in the reader's language.

A limit is N hits of one kind by one subject (a client's network, an email, an order number)
within a window that starts at the first hit; past N, everything of that kind by that subject is
refused until the window ends. Subjects are hashed into the keys: the cache holds no addresses.

    limits = [RateLimit("guest_lookup.ip", client_network(client_ip(request)), 30, 15 * 60), ...]
    throttled = rate_limits_hit(limits)
    if throttled:
        return too_many_requests(request, throttled)

A view limited by ``settings.RATE_LIMITS`` (per client network, and per account or another
subject) takes one line, ``@rate_limited("checkout", subject=..., reason=...)``. An htmx request
past a limit gets a fragment (``_too_many_requests.html``), still 429: static/js/site.js swaps
429 answers in where the content would have gone. allauth's limits (ACCOUNT_RATE_LIMITS) answer
with the same page through ``allauth_429`` (marketplace.urls.handler429).

With Redis as the cache, all the limits of one request are counted in one round-trip (one
MULTI/EXEC pipeline); with another cache, through the cache API.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

from .http import client_ip

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


def cache_redis():
    """The raw client of django-redis when the cache is Redis, else None (risk's counters too)."""
    try:
        from django_redis import get_redis_connection
        from django_redis.cache import RedisCache
    except ImportError:  # pragma: no cover - django-redis is a dependency
        return None
    if not isinstance(caches["default"], RedisCache):
        return None
    return get_redis_connection("default")


# Per limit (KEYS: its window's end, its count; ARGV: the end's value, the window in seconds):
# the end and a zero count set if absent (both expiring with the window), the count incremented,
# the end read. One script: atomic like MULTI/EXEC, one command to build and parse instead of
# four per limit (the script is sent once per Redis; EVALSHA afterwards).
_HITS_LUA = """
local out = {}
for i = 1, #KEYS, 2 do
  local window = ARGV[i + 1]
  redis.call('SET', KEYS[i], ARGV[i], 'EX', window, 'NX')
  redis.call('SET', KEYS[i + 1], 0, 'EX', window, 'NX')
  out[#out + 1] = redis.call('INCR', KEYS[i + 1])
  out[#out + 1] = redis.call('GET', KEYS[i])
end
return out
"""
_scripts: dict[str, Any] = {}


def redis_script(client, source: str):
    """``source`` as a redis-py ``Script`` (EVALSHA, loaded again if the server lost it), one per
    process; call it with ``client=``."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = client.register_script(source)
    return script


def _redis_hits(client, limits: list[RateLimit]) -> list[Throttled | None]:
    """Every limit counted in one round-trip (``_HITS_LUA``), atomically, so a count never
    outlives its window (an INCR on an expired key would keep it)."""
    now = time.time()
    named = caches["default"].make_key  # the cache's own names (KEY_PREFIX, version)
    keys: list[str] = []
    args: list = []
    for limit in limits:
        count_key, end_key = (named(key) for key in _keys(limit.scope, limit.subject))
        keys += [end_key, count_key]
        args += [repr(now + limit.window), limit.window]
    found = redis_script(client, _HITS_LUA)(keys=keys, args=args, client=client)
    answers: list[Throttled | None] = []
    for n, limit in enumerate(limits):
        count, end = found[2 * n], found[2 * n + 1]
        if int(count) <= limit.limit:
            answers.append(None)
            continue
        retry_after = math.ceil(float(end) - now) if end is not None else limit.window
        answers.append(Throttled(limit.scope, limit.subject, max(1, min(retry_after, limit.window))))
    return answers


def rate_limits_hit(limits: Iterable[RateLimit]) -> Throttled | None:
    """Count one hit on each limit (all of them, so that every subject's count is true); the
    refusal that lasts longest, if any refuses."""
    limits = list(limits)
    client = cache_redis() if limits else None
    if client is not None:
        try:
            answers = _redis_hits(client, limits)
        except Exception as exc:  # redis.RedisError, OSError: an outage counts nothing, refuses nothing
            log.warning("rate limits not counted, Redis is away: %s", exc)
            return None
    else:
        answers = [rate_limit_hit(limit) for limit in limits]
    refusals = [t for t in answers if t is not None]
    return max(refusals, key=lambda t: t.retry_after, default=None)


def request_limits(request: HttpRequest, action: str, subject: str | None = None) -> list[RateLimit]:
    """The limits of ``settings.RATE_LIMITS[action]`` for this request: its client's network,
    and ``subject`` (an account, a guest's email or order) when there is one."""
    spec = settings.RATE_LIMITS[action]
    limit, window = spec["network"]
    limits = [RateLimit(f"{action}.network", client_network(client_ip(request)), limit, window)]
    if subject:
        limit, window = spec["subject"]
        limits.append(RateLimit(f"{action}.subject", subject, limit, window))
    return limits


def member_subject(request: HttpRequest, *args: Any, **kwargs: Any) -> str | None:
    """The default subject of a limit: the signed-in account (none for a visitor)."""
    user = getattr(request, "user", None)
    return f"user:{user.pk}" if user is not None and user.is_authenticated else None


def rate_limited(
    action: str,
    *,
    subject: Callable[..., str | None] = member_subject,
    reason: Any = None,
    hint: Any = None,
) -> Callable:
    """A view's POSTs counted against ``settings.RATE_LIMITS[action]``: per client network and
    per ``subject(request, *args, **kwargs)`` (by default the signed-in account). Past a limit
    the view does not run: 429 with Retry-After, ``reason`` and ``hint`` on the page (lazy
    translations, read in the reader's language). Other methods pass uncounted."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                throttled = rate_limits_hit(request_limits(request, action, subject(request, *args, **kwargs)))
                if throttled is not None:
                    log.warning(
                        "rate limit %s refused a request (retry after %ss)", throttled.scope, throttled.retry_after
                    )
                    context = {"reason": reason, "hint": hint}
                    return too_many_requests(request, throttled, context=context)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def too_many_requests(
    request: HttpRequest,
    throttled: Throttled | None = None,
    *,
    template: str = "429.html",
    context: dict[str, Any] | None = None,
) -> HttpResponse:
    """The page past a limit: 429, Retry-After, never cached. ``429.html`` says how long to wait
    (``wait_minutes``) and takes ``reason`` (a sentence on what was limited) and ``way_out_url``
    / ``way_out_label`` (what to do instead of waiting) in ``context``. To an htmx request, the
    same as a fragment (``_too_many_requests.html``) that the page shows in place."""
    if template == "429.html" and request.headers.get("HX-Request"):
        template = "_too_many_requests.html"
    data = {"throttled": throttled, "wait_minutes": throttled.minutes if throttled else None, **(context or {})}
    response = render(request, template, data, status=429)
    if throttled is not None:
        response["Retry-After"] = str(throttled.retry_after)
    add_never_cache_headers(response)
    return response


# allauth's views by URL name, and the limit (ACCOUNT_RATE_LIMITS' action) each can hit.
ALLAUTH_ACTIONS = {
    "account_signup": "signup",
    "account_login": "login",
    "account_reset_password": "reset_password",
    "account_reset_password_from_key": "reset_password_from_key",
    "account_email": "manage_email",
    "account_change_password": "change_password",
    "account_set_password": "change_password",
    "account_reauthenticate": "reauthenticate",
}


def _allauth_retry_after(request: HttpRequest) -> int:
    """Seconds until allauth's full limit for this request lets one through: its counts are
    lists of hit times (newest first) in the cache; the limit frees when the oldest of its last
    ``amount`` hits leaves the window. The longest window of the action if none is found full."""
    from allauth.account import app_settings
    from allauth.core.internal import ratelimit as allauth_ratelimit

    config = app_settings.RATE_LIMITS
    match = getattr(request, "resolver_match", None)
    action = ALLAUTH_ACTIONS.get(getattr(match, "url_name", "") or "")
    actions = [action] if action else [name for name, rates in config.items() if rates]
    email = (request.POST.get("email") or request.POST.get("login") or "").strip().lower()
    user = getattr(request, "user", None)
    now = time.time()
    waits: list[float] = []
    windows: list[float] = []
    for name in actions:
        for rate in allauth_ratelimit.get_rates(app="allauth.account", action=name, config=config):
            windows.append(rate.duration)
            if (rate.per == "key" and not email) or (rate.per == "user" and not (user and user.is_authenticated)):
                continue
            key_of = allauth_ratelimit.get_cache_key(
                request, app="allauth.account", action=name, rate=rate, key=email or None
            )
            hits = [t for t in cache.get(key_of, []) if t > now - rate.duration]
            if len(hits) >= rate.amount:
                waits.append(hits[rate.amount - 1] + rate.duration - now)
    if waits:
        return max(1, math.ceil(max(waits)))
    return max(1, math.ceil(max(windows))) if action and windows else 60


def allauth_429(request: HttpRequest) -> HttpResponse:
    """allauth's answer past one of its limits (sign-up, password reset, login posts ...): the
    site's 429 page in the reader's language, with Retry-After (allauth sends none)."""
    try:
        retry_after = _allauth_retry_after(request)
    except Exception:  # allauth's internals moved: the page still answers, with a minute to wait
        log.exception("allauth rate limit: no Retry-After computed")
        retry_after = 60
    return too_many_requests(request, Throttled("allauth", "", retry_after))
