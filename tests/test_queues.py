"""Celery queues (issue 17): deliveries have a queue of their own, so a flood of emails,
callbacks or a long report cannot hold them up."""

import pytest
from django.conf import settings

from marketplace.celery import app

EXPECTED = {
    "orders.tasks.fulfil_order": "fulfilment",
    "orders.tasks.deliver_due_orders": "fulfilment",
    "orders.tasks.send_delivery_emails": "notifications",
    "orders.tasks.sweep_delivery_emails": "notifications",
    "orders.tasks.notify_refund_pending": "notifications",
    "orders.tasks.send_lookup_link": "notifications",
    "payments.tasks.refund_notify": "notifications",
    "aftersales.tasks.sla_notify": "notifications",
    "accounts.tasks.warn_login_locked": "notifications",
    "catalog.tasks.restock_notify": "notifications",
    "orders.tasks.send_callback": "callbacks",
    "orders.tasks.send_due_callbacks": "callbacks",
    "payments.tasks.attempt_check": "callbacks",
    "payments.tasks.refund_execute": "callbacks",
    "payments.tasks.payout_execute": "callbacks",
    "reports.tasks.monthly_compliance_generate": "reports",
    "reports.tasks.operators_halfyear_generate": "reports",
    "trust.tasks.figures_compute": "reports",
    "payments.tasks.bill_reconcile": "reports",
    "catalog.tasks.import_batch": "reports",
    "orders.tasks.expire_due_orders": "default",
    "aftersales.tasks.sla_sweep": "default",
    "agents.tasks.settle_commissions": "default",
}


def queue_of(name: str) -> str:
    route = app.amqp.router.route({}, name)
    return route["queue"].name


@pytest.mark.parametrize(("task", "queue"), sorted(EXPECTED.items()))
def test_task_queue(task, queue):
    app.loader.import_default_modules()
    assert task in app.tasks, task  # a renamed task would silently fall back to `default`
    assert queue_of(task) == queue


def test_every_task_lands_on_a_declared_queue():
    """A worker started without -Q consumes the declared queues: no task may route elsewhere."""
    app.loader.import_default_modules()
    declared = {q.name for q in app.conf.task_queues}
    assert declared == {"fulfilment", "notifications", "callbacks", "reports", "default"}
    ours = [name for name in app.tasks if not name.startswith("celery.")]
    assert len(ours) > 30
    for name in ours:
        assert queue_of(name) in declared, name


def test_beat_schedule_tasks_exist_and_route():
    app.loader.import_default_modules()
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks, entry["task"]
    assert settings.CELERY_TASK_DEFAULT_QUEUE == "default"
