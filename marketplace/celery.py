"""The Celery application. Periodic tasks are declared here, in one place."""

import logging
import os

import kombu.exceptions
import redis.exceptions
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.schedules import crontab
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
)

from . import logcontext

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
log = logging.getLogger(__name__)

# What a publish raises when the broker is away (refused, timed out, dropped mid-send).
BROKER_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError)


def tasks_run_in_place() -> bool:
    """Whether a task queued now runs in this process, in place (eager Celery: the tests), so that
    what it changes is already done when the queuing request goes on; with a worker it is not."""
    return bool(app.conf.task_always_eager)


def publish(task, *args) -> bool:
    """Queue ``task(*args)``; with the broker away, log it and return False instead of raising.

    For after-commit publishes of work the database already records (an order due for
    delivery, a refund to execute, a callback to send): a sweeper publishes it again, so a
    broker outage must not turn a committed change into an error page. Eager mode (tests)
    runs the task in place and lets its errors through.
    """
    if task.app.conf.task_always_eager:
        task.delay(*args)
        return True
    try:
        task.delay(*args)
    except BROKER_ERRORS as exc:
        log.warning("could not queue %s%r (a sweeper will): %s", task.name, args, exc)
        return False
    return True


@task_prerun.connect
@task_postrun.connect
def _close_stale_connections(task=None, **kwargs):
    """What Django does around each request: drop connections past CONN_MAX_AGE or broken.

    Not for eager tasks: they run inside the caller's request or transaction."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@before_task_publish.connect
def _pass_request_id(headers=None, **kwargs):
    """The request (or task) that queues a task hands it its request id, in a message header."""
    request_id = logcontext.request_id()
    if request_id and headers is not None:
        headers.setdefault(logcontext.TASK_HEADER, request_id)


@task_prerun.connect
def _task_log_context(task=None, **kwargs):
    """A task's log lines carry the request id it was queued with (the order and payment are set
    by the service that handles them). Eager tasks run inside their caller's context."""
    if task is None or getattr(task.request, "is_eager", False):
        return
    request_id = getattr(task.request, logcontext.TASK_HEADER, None) or (task.request.headers or {}).get(
        logcontext.TASK_HEADER
    )
    logcontext.log_context_start(request_id=request_id or f"task-{task.request.id}")


@task_postrun.connect
def _task_log_context_end(task=None, **kwargs):
    if task is not None and not getattr(task.request, "is_eager", False):
        logcontext.log_context_clear()


@task_failure.connect
@task_retry.connect
def _time_limit_reached(sender=None, task_id=None, exception=None, reason=None, request=None, **kwargs):
    """A task stopped by its time limit, not caught by the task (which records it itself when it
    does): the soft limit's exception (in the pool's child), the hard limit's kill (reported in the
    worker's main process), or a retry caused by the soft limit."""
    from . import tasklimits  # reads the settings, which are not set up yet when this module loads

    exc = exception if exception is not None else reason
    limit = (
        tasklimits.HARD
        if isinstance(exc, TimeLimitExceeded)
        else tasklimits.SOFT
        if isinstance(exc, SoftTimeLimitExceeded)
        else None
    )
    if limit is not None and sender is not None:
        tasklimits.time_limit_reached(task=sender.name, limit=limit, task_id=task_id or getattr(request, "id", None))


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger=None, **kwargs):
    """Celery replaces the root logger's handlers in a worker: its handlers get the context
    filter, and the JSON formatter when LOG_FORMAT=json (settings.LOGGING does the rest)."""
    from django.conf import settings

    for handler in logger.handlers if logger is not None else ():
        handler.addFilter(logcontext.ContextFilter())
        if settings.LOG_FORMAT == "json":
            handler.setFormatter(logcontext.json_formatter())


# Seconds between two runs of the delivery emails' batch (the longest an email waits for its run).
DELIVERY_EMAIL_INTERVAL = 2.0

app.conf.beat_schedule = {
    # Releases the stock of unpaid orders whose 15 minutes are up.
    "orders-expire-due": {"task": "orders.tasks.expire_due_orders", "schedule": 30.0},
    # Paid orders still undelivered at their due time (the publish after payment failed, the
    # broker was away, the worker died): fulfilment queued again, the next try pushed back.
    # A tick left in the queue longer than its interval is dropped: the next one does its work.
    "orders-deliver-due": {
        "task": "orders.tasks.deliver_due_orders",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
    # Orders that will not be delivered (a supplier failed or was too slow, a manual top-up
    # failed): refunded in full, once (payments.services.refunds.refunds_undeliverable_run).
    "payments-refunds-undeliverable": {"task": "payments.tasks.refunds_undeliverable", "schedule": 30.0},
    # Supplier orders (issue 16) whose outcome is unknown or still pending: asked again, with
    # backoff; not delivered in time: refunded.
    "orders-upstream-due": {"task": "orders.tasks.upstream_due_orders", "schedule": 15.0, "options": {"expires": 15.0}},
    # Suppliers' availability of upstream goods: displayed stock is at most a minute old.
    "supply-availability-refresh": {
        "task": "supply.tasks.refresh_upstream_availability",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    # Refunds not finished at their gateway: asked again, with backoff, until done or FAILED.
    "payments-refunds-retry": {"task": "payments.tasks.refunds_retry_due", "schedule": 60.0},
    # Active query: orders and recharges started at a gateway, asked with backoff (2, 4, 8 ... min),
    # so a lost notification still completes the order.
    "payments-query-due": {"task": "payments.tasks.attempts_query_due", "schedule": 60.0},
    # Trades of orders and recharges that can no longer be paid: closed at their gateway.
    "payments-close-expired": {"task": "payments.tasks.attempts_close_expired", "schedule": 60.0},
    # Commissions whose refund window has closed: pending -> available.
    "agents-settle-commissions": {"task": "agents.tasks.settle_commissions", "schedule": 300.0},
    # Alipay payouts of approved withdrawals whose outcome is not known yet: asked again.
    "payments-payouts-check": {"task": "payments.tasks.payouts_check_due", "schedule": 300.0},
    # Yesterday's bills (CELERY_TIMEZONE is Beijing time): WeChat Pay publishes them after 10:00.
    "payments-bills-reconcile": {
        "task": "payments.tasks.bills_reconcile_yesterday",
        "schedule": crontab(hour=10, minute=30),
    },
    # Delivery emails, in batches: every few seconds one run sends what the deliveries since the
    # last one left due (orders.services.orders.delivery_emails_send). No delivery queues anything
    # for its email, so a burst of deliveries costs one run per tick, not one task per email.
    "orders-delivery-emails": {
        "task": "orders.tasks.send_delivery_emails",
        "schedule": DELIVERY_EMAIL_INTERVAL,
        "options": {"expires": DELIVERY_EMAIL_INTERVAL},
    },
    # Delivery emails not sent a minute after the delivery (a run failed, the mail server away, a
    # recipient refused): tried again, once a minute.
    "orders-delivery-emails-sweep": {
        "task": "orders.tasks.sweep_delivery_emails",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # Agents' API callbacks whose next attempt is due (backoff 1, 2, 4 ... min, at most 8 tries).
    "orders-callbacks-send-due": {"task": "orders.tasks.send_due_callbacks", "schedule": 60.0},
    # API nonces older than the signature window (replays of them are refused by their timestamp).
    "agents-api-nonces-purge": {"task": "agents.tasks.purge_api_nonces", "schedule": 600.0},
    # Guests' one-time lookup links past their expiry, browsers not seen for a cookie's lifetime.
    "orders-guest-lookups-purge": {"task": "orders.tasks.purge_guest_lookups", "schedule": crontab(hour=4, minute=10)},
    # After-sales SLA clocks: warnings, first-response breaches and escalations that are due.
    "aftersales-sla-sweep": {"task": "aftersales.tasks.sla_sweep", "schedule": 60.0},
    # Qualifications whose validity ends within 30 or 7 days, or has ended: staff emailed once each.
    "compliance-qualifications-warn": {
        "task": "compliance.tasks.qualifications_warn_expiring",
        "schedule": crontab(hour=9, minute=0),
    },
    # The authorisation ledger (rights): approved reviews past their validity expire and their
    # products leave sale, just after midnight Beijing time; staff warned 30 and 7 days before.
    "rights-reviews-expire": {"task": "rights.tasks.reviews_expire", "schedule": crontab(hour=0, minute=5)},
    "rights-reviews-warn": {"task": "rights.tasks.reviews_warn_expiring", "schedule": crontab(hour=9, minute=5)},
    # Rights notices: products restored 15 days after the counter-notice reached the rights holder
    # with no complaint or lawsuit reported (电子商务法 第四十三条: 及时终止所采取的措施), checked hourly.
    "rights-notices-restore": {"task": "rights.tasks.notices_restore", "schedule": crontab(minute=35)},
    # The trust centre's figures (after-sales over 30 and 90 days, the funds statement): computed
    # from the records and the stored snapshot replaced, hourly (the issue asks at least daily).
    "trust-figures-compute": {"task": "trust.tasks.figures_compute", "schedule": crontab(minute=20)},
    # Reports to regulators (reports.tasks; CELERY_TIMEZONE is Beijing time): last month's compliance
    # report on the 1st at 02:00; the operators of the half year just ended on 1 January and 1 July
    # (网络交易监督管理办法 第二十五条). Idempotent: a ready report is not made again.
    "reports-monthly-compliance": {
        "task": "reports.tasks.monthly_compliance_generate",
        "schedule": crontab(day_of_month=1, hour=2, minute=0),
    },
    "reports-operators-halfyear": {
        "task": "reports.tasks.operators_halfyear_generate",
        "schedule": crontab(month_of_year="1,7", day_of_month=1, hour=2, minute=30),
    },
    # Restock alerts whose run was never queued or died (broker away, worker killed): products in
    # stock with confirmed subscribers not yet told get a sending run (catalog.tasks).
    "catalog-restock-alerts-sweep": {
        "task": "catalog.tasks.restock_alerts_sweep",
        "schedule": 600.0,
        "options": {"expires": 600.0},
    },
    # Referrals: invitees' first orders delivered, refunded or past their refund window (the
    # inviter's reward paid once, under a ledger idempotency key, or cancelled or refused).
    "referrals-rewards-process": {"task": "referrals.tasks.rewards_process", "schedule": 600.0},
    # Risk control: many accounts sharing one device, IP or payout account (orders.services.risk).
    "risk-clusters-scan": {"task": "orders.tasks.risk_clusters_scan", "schedule": 900.0},
    # Suppliers (issue 16): our balance at each enabled connection read hourly (staff compare it
    # with our books); yesterday's supplier orders reconciled at 03:30 Beijing time.
    "supply-balances-refresh": {
        "task": "supply.tasks.connection_balances_refresh",
        "schedule": crontab(minute=15),
        "options": {"expires": 3000.0},
    },
    "supply-reconcile-yesterday": {
        "task": "orders.tasks.supply_reconcile_yesterday",
        "schedule": crontab(hour=3, minute=30),
    },
}
# Heartbeats (ops/heartbeat.py): one to each queue every 30 s, read by /health/ and /metrics.
for _queue in app.conf.task_queues or ():
    app.conf.beat_schedule[f"ops-heartbeat-{_queue.name}"] = {
        "task": "ops.tasks.heartbeat",
        "schedule": 30.0,
        "args": (_queue.name,),
        "options": {"queue": _queue.name, "expires": 120.0},
    }
