"""Admission control for the expensive doors (issue 17, "A peak like 双11").

Placing an order costs a web process tens of milliseconds and a delivery task behind it. In a
burst well past what the platform can place and deliver, requests would queue in front of the
web processes until they time out, and the ones that get through would wait behind all the
others. Instead, past a rate set for the whole platform, a checkout is refused at once with a
429, Retry-After and a page (or an API error) saying so, and the platform keeps serving at full
speed what it admits.

Two tests, both cheap, before the view runs:

- **Checkouts per second, across every web process**: a counter per clock second in the shared
  cache (one pipelined INCR + EXPIRE on Redis). Past ``ADMISSION_CHECKOUTS_PER_SECOND`` in the
  current second, refused.
- **Deliveries behind**: the ``fulfilment`` queue's length, read from the broker at most once a
  second per process (marketplace.queues). Past ``ADMISSION_FULFILMENT_QUEUE_MAX`` waiting
  deliveries, checkouts are shed until the workers catch up: an order placed now would be paid
  and then wait for its codes.

What is never refused here: payment notifications (money already taken: always applied), the
API's callbacks and reveals, pages that read. Orders already placed can always be paid.

With Redis away, admission fails open (logged at most once a minute per process): the rate
limits, risk checks and stock locks still hold, and refusing every sale would be worse.
A setting of 0 turns its test off.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext_lazy as _
from prometheus_client import Counter

from . import queues
from .ratelimit import Throttled, cache_redis, too_many_requests

log = logging.getLogger(__name__)

BUSY = "busy"  # the API's error code
FULFILMENT_QUEUE = "fulfilment"

# Requests refused with 429 by a gate, for /metrics (prometheus_client's default registry; under
# gunicorn each process counts in PROMETHEUS_MULTIPROC_DIR and the scrape merges them). The
# gates: "overload" (OverloadMiddleware), "rate" and "queue" (a checkout's Refusal.reason).
# OverloadMiddleware answers before django-prometheus' inner middleware, so its 429s appear in
# no response-status counter: this is where they are counted (ops/prometheus/alerts.yml).
REFUSED = Counter("kamarket_admission_refused", "Requests refused with 429 by admission control", ["gate"])
GATES = ("overload", "rate", "queue")
for _gate in GATES:
    REFUSED.labels(gate=_gate)  # every gate's series exists from the start, at 0


@dataclass(frozen=True)
class Refusal:
    """Why a checkout was not admitted, and how long to wait before trying again."""

    reason: str  # "rate" or "queue"
    retry_after: int


_warned_at = 0.0


def _warn(message: str, *args: Any) -> None:
    """A warning at most once a minute per process (an outage would otherwise log per request)."""
    global _warned_at
    now = time.monotonic()
    if now - _warned_at >= 60:
        _warned_at = now
        log.warning(message, *args)


def _checkouts_this_second() -> int | None:
    """Count this checkout in the current clock second's counter (shared by every process);
    the count, or None when the cache cannot count."""
    second = int(time.time())
    key = f"admission:checkout:{second}"
    client = cache_redis()
    if client is not None:
        try:
            pipe = client.pipeline(transaction=False)
            name = cache.make_key(key)
            pipe.incr(name)
            pipe.expire(name, 3)
            count, _ok = pipe.execute()
            return int(count)
        except Exception as exc:  # redis.RedisError, OSError: fail open
            _warn("admission control: checkouts not counted, Redis is away: %s", exc)
            return None
    cache.add(key, 0, timeout=3)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr (or the cache is away)
        return None


_depth: dict[str, float | int | None] = {"at": -1e9, "value": None}


def fulfilment_backlog() -> int | None:
    """Deliveries waiting in the broker, read at most once a second per process; None unknown."""
    now = time.monotonic()
    if now - float(_depth["at"] or 0) >= settings.ADMISSION_QUEUE_READ_SECONDS:
        lengths = queues.queue_lengths([FULFILMENT_QUEUE])
        _depth["value"] = lengths.get(FULFILMENT_QUEUE) if lengths else None
        _depth["at"] = now
        if lengths is None:
            _warn("admission control: the fulfilment queue's length is unknown (broker away)")
    value = _depth["value"]
    return int(value) if value is not None else None


def checkout_admit() -> Refusal | None:
    """None if this checkout may go ahead; else why not. Counts the checkout when it tests the
    rate (a refused one counts too: a burst stays refused until its second is over)."""
    queue_max = settings.ADMISSION_FULFILMENT_QUEUE_MAX
    if queue_max:
        backlog = fulfilment_backlog()
        if backlog is not None and backlog > queue_max:
            return Refusal("queue", settings.ADMISSION_RETRY_AFTER)
    rate = settings.ADMISSION_CHECKOUTS_PER_SECOND
    if rate:
        count = _checkouts_this_second()
        if count is not None and count > rate:
            return Refusal("rate", settings.ADMISSION_RETRY_AFTER)
    return None


REASON = _(
    "Very many buyers are placing orders right now, more than we can take at once. "
    "Your order was not placed and nothing was charged: please try again in %(seconds)d seconds."
)
HINT = _("Orders you have already placed are not affected: they can still be paid, and their codes are delivered.")


def admission_controlled(view: Callable) -> Callable:
    """A checkout view's POSTs pass admission control first: past it, 429 with Retry-After and
    the site's page (a fragment for htmx) saying to try again in a few seconds; the view does
    not run. Other methods pass untested."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            refusal = checkout_admit()
            if refusal is not None:
                log.info("admission control refused a checkout (%s)", refusal.reason)
                REFUSED.labels(gate=refusal.reason).inc()
                context = {
                    "reason": REASON % {"seconds": refusal.retry_after},
                    "hint": HINT,
                    "wait_minutes": None,  # seconds, said in the reason
                }
                return too_many_requests(request, Throttled("admission", "", refusal.retry_after), context=context)
        return view(request, *args, **kwargs)

    return wrapped


# --- overload: requests that waited too long for a web process ------------------------------

# struct tcp_info (Linux): u32 tcpi_last_data_recv, milliseconds since the last data came in.
TCP_INFO_SIZE = 104
TCP_INFO_LAST_DATA_RECV = 52

OVERLOAD_REASON = _(
    "The site is very busy right now and could not get to your request in time. "
    "Nothing was changed: please try again in %(seconds)d seconds."
)
OVERLOAD_HINT = _("Orders you have already placed are not affected: payments are applied and codes delivered.")
OVERLOAD_API = _(
    "The platform is too busy to take this request right now: nothing was done. Try again in %(n)d seconds."
)


def queue_wait(request: HttpRequest) -> float | None:
    """Seconds since the request's last bytes reached this host, read from the kernel (the
    client's socket under gunicorn: TCP_INFO's last_data_recv); None where it is not known
    (another server, another OS). Under gunicorn's sync workers this is the time the request
    sat in the listen queue while every worker was busy."""
    sock = request.META.get("gunicorn.socket")
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
        return struct.unpack_from("I", info, TCP_INFO_LAST_DATA_RECV)[0] / 1000
    except (OSError, struct.error, AttributeError):
        return None


_rendered: dict[tuple[str, str], bytes] = {}
_shed = {"n": 0, "since": time.monotonic()}


def _overload_body(request: HttpRequest, kind: str, retry_after: int) -> tuple[bytes, str]:
    """The answer's body in the reader's language, rendered once per process and kept."""
    language = translation.get_language_from_request(request)
    key = (language, kind)
    body = _rendered.get(key)
    if body is None:
        with translation.override(language):
            if kind == "json":
                body = json.dumps(
                    {"code": BUSY, "message": str(OVERLOAD_API % {"n": retry_after}), "retry_after": retry_after},
                    ensure_ascii=False,
                ).encode()
            else:
                context = {
                    "reason": OVERLOAD_REASON % {"seconds": retry_after},
                    "hint": OVERLOAD_HINT,
                    "wait_minutes": None,
                }
                template = "_too_many_requests.html" if kind == "htmx" else "busy.html"
                body = render_to_string(template, context).encode()
        _rendered[key] = body
    return body, "application/json" if kind == "json" else "text/html; charset=utf-8"


class OverloadMiddleware:
    """Early in the middleware: a request that waited longer than ADMISSION_QUEUE_WAIT_MS for a
    web process is answered at once with 429 and Retry-After (a page, an htmx fragment or the
    API's JSON, in the reader's language), before sessions, users or the database are touched.
    In a burst past the web processes' capacity, this drains the queue in front of them at a
    fraction of a millisecond a request, so those admitted are served quickly instead of all of
    them waiting into the clients' timeouts. Payment notifications, health checks and metrics
    are never refused (ADMISSION_OVERLOAD_EXEMPT)."""

    def __init__(self, get_response):
        self.get_response = get_response
        # When this process became able to serve (gunicorn loads the application in each worker
        # before it accepts). A request that arrived before that waited for the process to
        # start, not behind an overload: it is served (a restart or a cold start refuses nothing).
        self.ready = time.monotonic()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.ADMISSION_QUEUE_WAIT_MS
        if limit:
            wait = queue_wait(request)
            if (
                wait is not None
                and wait * 1000 > limit
                and time.monotonic() - wait > self.ready
                and not request.path.startswith(settings.ADMISSION_OVERLOAD_EXEMPT)
            ):
                return self.refuse(request, wait)
        return self.get_response(request)

    def refuse(self, request: HttpRequest, wait: float) -> HttpResponse:
        retry_after = settings.ADMISSION_RETRY_AFTER
        if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            kind = "json"
        elif request.headers.get("HX-Request"):
            kind = "htmx"
        else:
            kind = "html"
        body, content_type = _overload_body(request, kind, retry_after)
        response = HttpResponse(body, status=429, content_type=content_type)
        response["Retry-After"] = str(retry_after)
        add_never_cache_headers(response)
        REFUSED.labels(gate="overload").inc()
        _shed["n"] += 1
        now = time.monotonic()
        if now - _shed["since"] >= 60:
            log.warning(
                "admission control: %d requests refused in %.0f s, queued longer than %d ms (last %.0f ms)",
                _shed["n"],
                now - _shed["since"],
                settings.ADMISSION_QUEUE_WAIT_MS,
                wait * 1000,
            )
            _shed.update(n=0, since=now)
        return response
