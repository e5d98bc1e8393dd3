"""Business metrics for Prometheus, read from the records at scrape time (issue 17).

A prometheus_client Collector: every scrape of /metrics asks the database (a handful of
aggregate queries over indexed columns), the broker and the heartbeat cache, so the figures are
the same whichever web process answers, with no counters to keep in step across processes.
Request latency and the like come from django-prometheus' middleware (settings.MIDDLEWARE).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aftersales.services.sla import sla_at_risk_now, sla_overdue_now
from marketplace import tasklimits
from marketplace.queues import queue_lengths
from orders.models import EmailRefusal, ManualTopup, Order, UpstreamOrder
from payments.models import Mismatch, Refund
from supply.models import SupplyMismatch

from . import heartbeat

log = logging.getLogger(__name__)


def orders_by_status() -> dict[str, dict[str, int]]:
    """Per current status: how many orders, how many were ever paid, how many ever delivered."""
    rows = Order.objects.values("status").annotate(
        n=Count("id"), paid=Count("paid_at"), delivered=Count("delivered_at")
    )
    return {row["status"]: {"n": row["n"], "paid": row["paid"], "delivered": row["delivered"]} for row in rows}


def oldest_undelivered_paid_age(now=None) -> float:
    """Seconds since the oldest order still paid-but-undelivered was paid; 0 when there is none."""
    now = now or timezone.now()
    oldest = Order.objects.filter(status=Order.Status.PAID).aggregate(oldest=Min("paid_at"))["oldest"]
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


class SaleCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        statuses = orders_by_status()

        placed = CounterMetricFamily("kamarket_orders_placed", "Orders placed (every order ever created)")
        placed.add_metric([], sum(s["n"] for s in statuses.values()))
        yield placed
        paid = CounterMetricFamily("kamarket_orders_paid", "Orders paid (every order that has a payment time)")
        paid.add_metric([], sum(s["paid"] for s in statuses.values()))
        yield paid
        delivered = CounterMetricFamily("kamarket_orders_delivered", "Orders delivered (every order ever delivered)")
        delivered.add_metric([], sum(s["delivered"] for s in statuses.values()))
        yield delivered
        by_status = GaugeMetricFamily("kamarket_orders", "Orders by current status", labels=["status"])
        for status in Order.Status.values:
            by_status.add_metric([status], statuses.get(status, {}).get("n", 0))
        yield by_status

        yield GaugeMetricFamily(
            "kamarket_oldest_undelivered_paid_order_age_seconds",
            "Seconds since the oldest paid order still waiting for delivery was paid (0: none waits)",
            value=oldest_undelivered_paid_age(now),
        )

        lengths = queue_lengths()
        if lengths is not None:
            depth = GaugeMetricFamily(
                "kamarket_celery_queue_length", "Messages waiting in a Celery queue", labels=["queue"]
            )
            for queue, length in lengths.items():
                depth.add_metric([queue], length)
            yield depth

        ages = GaugeMetricFamily(
            "kamarket_heartbeat_age_seconds",
            "Seconds since beat published, or a worker ran, the last heartbeat of a queue (ops/heartbeat.py)",
            labels=["source"],
        )
        for source in (heartbeat.BEAT, *settings.QUEUE_NAMES):
            age = heartbeat.heartbeat_age(source=source)
            if age is not None:
                ages.add_metric([source], age)
        yield ages

        yield GaugeMetricFamily(
            "kamarket_sla_tickets_at_risk",
            "After-sales tickets past their warning time and not answered yet",
            value=sla_at_risk_now(now=now),
        )
        yield GaugeMetricFamily(
            "kamarket_sla_tickets_overdue",
            "After-sales tickets past their first-response deadline and not answered yet",
            value=sla_overdue_now(now=now),
        )
        yield GaugeMetricFamily(
            "kamarket_refunds_failed",
            "Refunds the gateway refused, waiting for staff",
            value=Refund.objects.filter(status=Refund.Status.FAILED).count(),
        )
        yield GaugeMetricFamily(
            "kamarket_reconciliation_mismatches_open",
            "Differences between gateways' bills and our records not resolved yet",
            value=Mismatch.objects.filter(resolved_at__isnull=True).count(),
        )
        yield GaugeMetricFamily(
            "kamarket_emails_held_by_refusal",
            "Buyers' emails still due that the mail server refused for a reason it may drop (4xx, or a"
            " 5xx that does not blame the address): waiting for their next attempt",
            value=EmailRefusal.objects.filter(permanent=False, order__buyer_notified_at__isnull=True).count(),
        )
        yield from supply_metrics(now)
        yield task_time_limits()


OPEN_UPSTREAM = (UpstreamOrder.State.NEW, UpstreamOrder.State.PLACING, UpstreamOrder.State.PENDING)


def supply_metrics(now) -> Iterator[Metric]:
    """Upstream supply (issue 16): supplier orders not finished (by state, and the oldest's age),
    manual top-ups waiting for staff and past their SLA, supplier reconciliation differences."""
    rows = (
        UpstreamOrder.objects.filter(state__in=OPEN_UPSTREAM)
        .values("state")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    )
    by_state = {row["state"]: row for row in rows}
    open_orders = GaugeMetricFamily(
        "kamarket_upstream_orders_open", "Supplier orders not finished, by state", labels=["state"]
    )
    for state in OPEN_UPSTREAM:
        open_orders.add_metric([state], by_state.get(state, {}).get("n", 0))
    yield open_orders
    oldest = min((row["oldest"] for row in by_state.values()), default=None)
    yield GaugeMetricFamily(
        "kamarket_upstream_oldest_open_age_seconds",
        "Seconds since the oldest unfinished supplier order was created (0: none)",
        value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
    )
    queued = ManualTopup.objects.filter(state=ManualTopup.State.QUEUED)
    yield GaugeMetricFamily(
        "kamarket_manual_topups_waiting", "Manual top-ups (人工代充) waiting for staff", value=queued.count()
    )
    yield GaugeMetricFamily(
        "kamarket_manual_topups_overdue",
        "Manual top-ups waiting past their SLA",
        value=queued.filter(due_at__lte=now).count(),
    )
    yield GaugeMetricFamily(
        "kamarket_supply_mismatches_open",
        "Differences between suppliers' records and ours not resolved yet",
        value=SupplyMismatch.objects.filter(resolved_at__isnull=True).count(),
    )


def task_time_limits() -> Metric:
    """How many times each task was stopped by its soft or hard time limit (marketplace/tasklimits.py):
    counted by the workers in the heartbeat cache, every task of ours with a series (0 if never)."""
    from marketplace.celery import app

    app.loader.import_default_modules()  # every task module, once per process
    names = sorted(name for name in app.tasks if not name.startswith("celery."))
    family = CounterMetricFamily(
        "kamarket_task_time_limits",
        "Runs of a Celery task stopped by its time limit (soft: it stopped itself at a safe point or"
        " failed; hard: the pool killed it), counted by the workers",
        labels=["task", "limit"],
    )
    try:
        counts = tasklimits.time_limit_counts(names)
    except Exception:  # the cache away: the other figures still answer
        log.exception("time limit counts unavailable")
        return family
    for (task, limit), count in sorted(counts.items()):
        family.add_metric([task, limit], count)
    return family
