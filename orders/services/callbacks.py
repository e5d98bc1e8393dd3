"""Signed callbacks to agents' shops: "your API order has been delivered".

An ``ApiCallback`` row is the durable record of one event for one order (unique per order and
event). It is prepared when the API places the order (to remember which key placed it and
where to call), filled in and queued in the delivery's transaction, and sent by a task:
a JSON POST signed exactly like API requests (``agents.services.api_keys``), with that key's current
secret. Success is an HTTP 2xx within ``TIMEOUT``; anything else is retried with exponential
backoff (1, 2, 4 ... minutes) up to ``MAX_ATTEMPTS``, then given up (FAILED). A beat task sends
what is due, so a lost task or a restart only delays a callback.

The payload never holds codes: the shop fetches them through the API, where each read is logged.

It lives in ``orders`` because the delivery of an order triggers it (``orders.services``); the
API (above) prepares and discards callbacks, the agent's pages (below) list them through
``Agent.callbacks``.
"""

import ipaddress
import json
import logging
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from agents.models import ApiKey
from agents.services import api_keys
from marketplace.celery import publish

from ..models import CALLBACK_FLOW, ApiCallback, Order

log = logging.getLogger(__name__)

EVENT_DELIVERED = "order.delivered"
MAX_ATTEMPTS = api_keys.CALLBACK_MAX_ATTEMPTS
BASE_DELAY = timedelta(minutes=1)
TIMEOUT = (5, 10)  # connect, read (seconds)
# While one worker waits on the agent's server, the row is not due for anyone else.
LEASE = timedelta(minutes=2)
USER_AGENT = "kamarket-callback/1.0"

CallbackStatus = ApiCallback.Status


def destination_refusal(url: str) -> str:
    """Why we will not call ``url`` (empty: we will).

    In production a callback may only go to public addresses: an agent must not be able to make
    our servers call into our own network (SSRF). Every address the host resolves to is checked
    just before the call; redirects are not followed.
    """
    if settings.AGENT_API_CALLBACKS_ALLOW_PRIVATE:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"Cannot resolve {host}: {exc}"[:300]
    for info in infos:
        # An IPv4 or IPv6 socket address: (host, port, ...) with the host a str. (The stubs
        # allow an int too, for address families getaddrinfo does not return for a host name.)
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            return f"{host} resolves to {address}, not a public address: callbacks go to public servers only."
    return ""


def callback_prepare(*, order, key: ApiKey) -> ApiCallback | None:
    """When the API places an order: remember the key that placed it (its secret signs the
    callback) and the URL to call (the order's own, else the key's). No URL: no callback."""
    url = order.callback_url or key.callback_url
    if not url:
        return None
    callback, _created = ApiCallback.objects.get_or_create(
        order=order,
        event=EVENT_DELIVERED,
        defaults={"agent_id": key.agent_id, "key": key, "url": url, "payload": ""},
    )
    return callback


def callback_discard(*, order) -> int:
    """The order was never paid (cancelled): drop its prepared, never-queued callback."""
    deleted, _rows = ApiCallback.objects.filter(
        order=order, status=CallbackStatus.PENDING, next_attempt_at__isnull=True, attempts=0, payload=""
    ).delete()
    return deleted


def _payload(order, callback_id: int) -> dict:
    return {
        "event": EVENT_DELIVERED,
        "callback_id": callback_id,
        "order_number": order.number,
        "agent_order_no": order.agent_order_no,
        "status": order.status,
        "product_id": order.product_id,
        "product_name": order.product_name,
        "quantity": order.quantity,
        "unit_price": str(order.unit_price),
        "total": str(order.total),
        "currency": order.currency,
        "created_at": order.created_at.isoformat(),
        "delivered_at": order.delivered_at.isoformat() if order.delivered_at else None,
    }


# Whether an order being delivered has a callback: its prepared row, and the agent's newest
# active key with its URL (for an order placed before its key had one). One statement of
# constant text, portable (scalar subqueries); the key's part only matters without a row.
_PROBE = (
    "SELECT (SELECT id FROM {callback} WHERE order_id = %s AND event = %s),"
    " (SELECT id FROM {key} WHERE agent_id = %s AND revoked_at IS NULL ORDER BY id DESC LIMIT 1),"
    " (SELECT callback_url FROM {key} WHERE agent_id = %s AND revoked_at IS NULL ORDER BY id DESC LIMIT 1)"
)


def callback_queue(*, order: Order) -> int | None:
    """An API order is being delivered: fill in its callback and queue the first send once the
    caller commits. Returns the callback's id (None: no callback).

    ``order`` is locked by the caller and moved to delivered in its transaction (its status and
    ``delivered_at`` are the payload's), so the callback is queued with the delivery or not at
    all: a beat run (``send_due_callbacks``) sends it if the task published on commit is lost.
    Safe to call again (it queues once). Without a prepared row (an order placed before its key
    had a URL, or not through a key), the order's URL is used, else the URL of the agent's newest
    active key, signed with that key.
    """
    if order.agent_id is None:
        return None
    using = order._state.db or "default"
    with connections[using].cursor() as cursor:
        cursor.execute(
            _PROBE.format(callback=ApiCallback._meta.db_table, key=ApiKey._meta.db_table),
            [order.pk, EVENT_DELIVERED, order.agent_id, order.agent_id],
        )
        callback_id, key_id, key_url = cursor.fetchone()
    if callback_id is None:
        url = order.callback_url or key_url or ""
        if not url:
            return None  # the common case: one statement
        callback, _created = ApiCallback.objects.using(using).get_or_create(
            order=order,
            event=EVENT_DELIVERED,
            defaults={"agent_id": order.agent_id, "key_id": key_id, "url": url, "payload": ""},
        )
        callback_id = callback.pk
    payload = json.dumps(_payload(order, callback_id), ensure_ascii=False, separators=(",", ":"))
    filled = (
        ApiCallback.objects.using(using)
        .filter(pk=callback_id, payload="")
        .update(payload=payload, next_attempt_at=timezone.now())
    )
    if not filled:
        if ApiCallback.objects.using(using).filter(pk=callback_id).exists():
            return callback_id  # queued already
        # Its unqueued row was discarded meanwhile (a cancelled order's, then paid late): again.
        return callback_queue(order=order)
    from ..tasks import send_callback

    transaction.on_commit(lambda: publish(send_callback, callback_id), using=using)
    return callback_id


def _signed_request(callback: ApiCallback, key: ApiKey, secret: str) -> tuple[bytes, dict[str, str]]:
    parts = urlsplit(callback.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = callback.payload.encode()
    headers = api_keys.signature_headers(key_id=key.key_id, secret=secret, method="POST", path=path, body=body)
    headers.update(
        {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Event": callback.event,
            "X-Callback-Id": str(callback.pk),
        }
    )
    return body, headers


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed try: 1, 2, 4, 8 ... minutes."""
    return BASE_DELAY * (2 ** max(0, attempts - 1))


def callback_send(*, callback_id: int, force: bool = False) -> str:
    """Send one callback if it is due (or ``force``). Returns what happened.

    The row is claimed (attempt counted, a lease set) in one short transaction, the HTTP call
    is made outside any transaction, and the result recorded in another: a slow agent server
    holds no lock, and two workers never send the same attempt.
    """
    now = timezone.now()
    with transaction.atomic():
        callback = (
            ApiCallback.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("key")
            .filter(pk=callback_id)
            .first()
        )
        if callback is None:
            return "busy"
        if callback.status == CallbackStatus.DELIVERED:
            return "done"
        if not callback.payload:
            return "not_ready"
        due = (
            callback.status == CallbackStatus.PENDING
            and callback.next_attempt_at is not None
            and callback.next_attempt_at <= now
        )
        if not (due or force):
            return "not_due"
        key = callback.key
        if key is None or key.revoked_at is not None:
            callback.next_attempt_at = None
            callback.last_error = "The API key that placed this order has been revoked: nothing to sign with."
            callback.save(update_fields=["next_attempt_at", "last_error"])
            CALLBACK_FLOW.apply(callback, CallbackStatus.FAILED, note="API key revoked")
            return "failed"
        callback.attempts += 1
        callback.next_attempt_at = now + LEASE
        callback.save(update_fields=["attempts", "next_attempt_at"])
        CALLBACK_FLOW.apply(callback, CallbackStatus.PENDING, note="sent again")  # a forced send of a failed one
        secret = api_keys.apikey_secret(key)

    body, headers = _signed_request(callback, key, secret)
    status_code, error = None, destination_refusal(callback.url)
    try:
        if not error:
            response = requests.post(callback.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {response.text[:200]}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]

    with transaction.atomic():
        callback = ApiCallback.objects.select_for_update().get(pk=callback_id)
        callback.last_status_code = status_code
        callback.last_error = error[:300]
        if (
            not error or callback.status == CallbackStatus.DELIVERED
        ):  # (another attempt got through meanwhile: it stands)
            dst, callback.next_attempt_at, outcome = CallbackStatus.DELIVERED, None, "delivered"
        elif callback.attempts >= MAX_ATTEMPTS:
            dst, callback.next_attempt_at, outcome = CallbackStatus.FAILED, None, "failed"
        else:
            dst, callback.next_attempt_at, outcome = (
                CallbackStatus.PENDING,
                timezone.now() + backoff(callback.attempts),
                "retry",
            )
        callback.save(update_fields=["last_status_code", "last_error", "next_attempt_at"])
        CALLBACK_FLOW.apply(callback, dst, note=f"attempt {callback.attempts}" + (f": {error}" if error else ""))
    log.info("callback %s attempt %s: %s %s", callback_id, callback.attempts, outcome, error)
    return outcome


def callback_resend(*, callback_id: int, agent=None) -> ApiCallback:
    """Send a callback again (staff, or its agent): a fresh round of attempts, starting now."""
    from ..tasks import send_callback

    with transaction.atomic():
        rows = ApiCallback.objects.select_for_update()
        if agent is not None:
            rows = rows.filter(agent=agent)
        callback = rows.get(pk=callback_id)
        if not callback.payload:
            return callback  # the order is not delivered yet: it will be sent then
        callback.attempts, callback.next_attempt_at = 0, timezone.now()
        callback.save(update_fields=["attempts", "next_attempt_at"])
        CALLBACK_FLOW.apply(
            callback, CallbackStatus.PENDING, note="sent again by its agent" if agent else "sent again by staff"
        )
        transaction.on_commit(lambda: publish(send_callback, callback_id))
    return callback


def callbacks_due(*, limit: int = 500) -> list[int]:
    rows = ApiCallback.objects.filter(status=CallbackStatus.PENDING, next_attempt_at__lte=timezone.now()).exclude(
        payload=""
    )
    return list(rows.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
