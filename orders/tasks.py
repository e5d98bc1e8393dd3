import logging
from datetime import date, timedelta
from smtplib import SMTPException

from celery import shared_task
from django.conf import settings

from marketplace import tasklimits
from marketplace.celery import publish
from marketplace.db import retry_once_if_connection_lost
from supply.adapters.base import SupplyError

from .services import callbacks, guest_lookup, supply_reconciliation, upstream
from .services import orders as services
from .services import risk as risk_services

log = logging.getLogger(__name__)


# CALL, not QUICK: an upstream order calls its supplier (timeout_seconds, at most 60 s). The whole
# delivery is one transaction: a soft limit inside it rolls it back, and the order, still paid and
# due, is queued again by deliver_due_orders (tests/test_task_time_limits.py). In production this
# runs in the fulfilment worker's solo pool, which enforces no limit (marketplace/tasklimits.py).
# bench/tasks.py's skeleton delivery takes the same options.
FULFIL_OPTIONS = {
    **tasklimits.CALL,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OSError,),
    "retry_backoff": True,
    "max_retries": 8,
}


@shared_task(**FULFIL_OPTIONS)
@retry_once_if_connection_lost
def fulfil_order(order_id: int) -> bool:
    return services.order_fulfil(order_id=order_id)


@shared_task(**tasklimits.BATCH)
def send_delivery_emails() -> int:
    """Beat, every few seconds (marketplace.celery.DELIVERY_EMAIL_INTERVAL): the delivery emails
    that came due since, in batches. No retry of its own: a failed run (the mail server away) is
    followed by the next tick, and what stays unsent past the grace is the minute sweep's. (A
    Celery retry would be an ETA message, which the worker holds unacknowledged.)"""
    return services.delivery_emails_send(newer_than=timedelta(seconds=settings.DELIVERY_EMAIL_SWEEP_GRACE_SECONDS))


@shared_task(**tasklimits.BATCH)
def sweep_delivery_emails() -> int:
    """Beat, every minute: delivery emails due for longer than the grace (a run failed, the mail
    server away, a recipient refused). The next tick tries again."""
    return services.delivery_emails_send(older_than=timedelta(seconds=settings.DELIVERY_EMAIL_SWEEP_GRACE_SECONDS))


@shared_task(
    **tasklimits.CALL, acks_late=True, autoretry_for=(SMTPException, OSError), retry_backoff=True, max_retries=8
)
def notify_refund_pending(order_id: int) -> bool:
    return services.order_notify(order_id=order_id, kind="refund_pending")


@shared_task(**tasklimits.CALL, autoretry_for=(SMTPException, OSError), retry_backoff=True, max_retries=3)
def send_lookup_link(kind: str, value: str) -> bool:
    """A guest's order lookup without a password: find the orders, email a one-time link (in the
    worker, so that the page answers alike and as fast whether or not anything was found)."""
    return guest_lookup.guest_lookup_link_send(kind=kind, value=value)


@shared_task(**tasklimits.BATCH)
def purge_guest_lookups() -> int:
    """Daily: expired lookup links and browsers not seen for a cookie's lifetime."""
    return guest_lookup.guest_lookup_purge()


@shared_task(**tasklimits.BATCH)
def expire_due_orders() -> int:
    return services.orders_expire_due()


@shared_task(**tasklimits.BATCH)
def deliver_due_orders() -> int:
    """Beat, every few seconds: fulfilment queued again for paid orders past their due time."""
    return services.orders_delivery_requeue(queue=fulfil_order.delay)


# --- callbacks to agents' shops (orders.services.callbacks) ---------------------------------


@shared_task(**tasklimits.CALL, acks_late=True)
def send_callback(callback_id: int) -> str:
    """One attempt at an agent's callback (if due); failures are rescheduled with backoff."""
    return callbacks.callback_send(callback_id=callback_id)


@shared_task(**tasklimits.BATCH)
def send_due_callbacks() -> int:
    """Queue every callback whose next attempt is due (retries, and sends whose task was lost)."""
    due = callbacks.callbacks_due()
    for callback_id in due:
        send_callback.delay(callback_id)
    return len(due)


@shared_task(**tasklimits.BATCH)
def risk_clusters_scan() -> int:
    """Risk control: devices, IPs and payout accounts shared by many accounts (one alert each)."""
    return risk_services.clusters_scan()


# --- suppliers: the daily reconciliation of supplier orders (issue 16) -------------------------


@shared_task(
    **tasklimits.BATCH,
    bind=True,
    acks_late=True,
    autoretry_for=(SupplyError,),  # the supplier unreachable: asked again later
    # Every 5 minutes for about 4 hours: a longer countdown would outlast the broker's visibility
    # timeout and run the retry twice (settings.CELERY_RETRY_COUNTDOWN_MAX).
    retry_backoff=settings.CELERY_RETRY_COUNTDOWN_MAX,
    retry_backoff_max=settings.CELERY_RETRY_COUNTDOWN_MAX,
    retry_jitter=False,
    max_retries=48,
)
def supply_reconcile(self, connection_id: int, day: str, carried: dict | None = None) -> int:
    """One connection's day, one supplier query per order: a day too long for one task (its soft
    time limit) stops before it and goes on in a new task with what it found (``carried``); the
    last part writes the findings. Returns the mismatches, or -1 for a part that goes on."""
    run, carry = supply_reconciliation.supply_reconcile_part(
        connection_id=connection_id,
        day=date.fromisoformat(day),
        until=tasklimits.soft_deadline(self),
        carried=carried,
    )
    if run is None:
        checked = carry["checked"] if carry else 0
        log.info("supplier reconciliation of connection %s on %s goes on after %s orders", connection_id, day, checked)
        publish(supply_reconcile, connection_id, day, carry)
        return -1
    return run.mismatches


@shared_task(**tasklimits.BATCH)
def supply_reconcile_yesterday() -> list[int]:
    day = supply_reconciliation.yesterday().isoformat()
    ids = supply_reconciliation.connections_to_reconcile()
    for connection_id in ids:
        supply_reconcile.delay(connection_id, day)
    return ids


# --- fulfilment from suppliers' systems (orders.services.upstream) ---------------------------


@shared_task(**tasklimits.CALL, acks_late=True, reject_on_worker_lost=True)
@retry_once_if_connection_lost
def advance_upstream(upstream_id: int) -> bool:
    """One step of a supplier order that is due (its lease keeps two workers from calling)."""
    return upstream.upstream_advance(upstream_id=upstream_id)


@shared_task(**tasklimits.BATCH)
def upstream_due_orders() -> int:
    """Beat, every 15 s: supplier orders to place again, ask about, or give up on."""
    due = upstream.upstream_due()
    for upstream_id in due:
        advance_upstream.delay(upstream_id)
    return len(due)
