"""Every task's time limits against the broker's visibility timeout (marketplace/tasklimits.py).

A task still unacknowledged after CELERY_VISIBILITY_TIMEOUT is handed to another worker and runs
twice at once (tests/test_task_time_limits_worker.py shows it with real workers). So every task of
ours has a hard limit and a soft one below it, and a task that retries keeps its longest wait plus
its hard limit below the timeout; production refuses a configuration where the limit does not fit.
"""

import logging
import subprocess
import sys

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django.conf import settings

from marketplace import tasklimits
from marketplace.celery import app
from tests.test_deploy_check import BASE_DIR, production_env
from tests.test_task_retries import longest_countdown, project_tasks


def effective_limits(task) -> tuple[float | None, float | None]:
    """(soft, hard) as the worker reads them: the task's own, else the app's defaults."""
    return (
        task.soft_time_limit or app.conf.task_soft_time_limit,
        task.time_limit or app.conf.task_time_limit,
    )


def test_every_task_stops_before_the_broker_hands_it_to_another_worker():
    tasks = project_tasks()
    assert len(tasks) >= 45 and "orders.tasks.fulfil_order" in tasks and "catalog.tasks.import_batch" in tasks
    problems = {}
    for name, task in tasks.items():
        soft, hard = effective_limits(task)
        wait = longest_countdown(task)
        if not hard or not soft:
            problems[name] = f"no time limit (soft {soft}, hard {hard})"
        elif not soft < hard:
            problems[name] = f"soft limit {soft} not below the hard limit {hard}"
        elif not wait + hard < settings.CELERY_VISIBILITY_TIMEOUT:
            problems[name] = f"a retry's wait {wait} s + hard limit {hard} s >= {settings.CELERY_VISIBILITY_TIMEOUT} s"
    assert not problems, problems


def test_each_task_declares_its_class_and_the_classes_are_ordered():
    """No task relies on the app's default by accident: each names QUICK, CALL or BATCH."""
    classes = {(c["soft_time_limit"], c["time_limit"]) for c in (tasklimits.QUICK, tasklimits.CALL, tasklimits.BATCH)}
    undeclared = {
        name for name, task in project_tasks().items() if (task.soft_time_limit, task.time_limit) not in classes
    }
    assert not undeclared
    assert tasklimits.QUICK["time_limit"] < tasklimits.CALL["time_limit"] < tasklimits.BATCH["time_limit"]
    # Production's figures: 240 s for a batch, three quarters of it before the soft limit.
    assert (settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT) == (180, 240)
    assert app.conf.task_time_limit == 240 and app.conf.task_soft_time_limit == 180
    assert project_tasks()["ops.tasks.heartbeat"].time_limit == tasklimits.QUICK["time_limit"]


@pytest.mark.parametrize(
    ("env", "starts"),
    [
        ({"CELERY_VISIBILITY_TIMEOUT": "600"}, True),  # 240 s derived
        ({"CELERY_VISIBILITY_TIMEOUT": "600", "CELERY_TASK_TIME_LIMIT": "299"}, True),
        ({"CELERY_VISIBILITY_TIMEOUT": "600", "CELERY_TASK_TIME_LIMIT": "300"}, False),  # 300 + 300 = 600
        ({"CELERY_VISIBILITY_TIMEOUT": "3600", "CELERY_TASK_TIME_LIMIT": "900"}, True),
        ({"CELERY_VISIBILITY_TIMEOUT": "600", "CELERY_TASK_TIME_LIMIT": "0"}, False),
    ],
)
def test_production_refuses_a_time_limit_the_visibility_timeout_does_not_cover(tmp_path, env, starts):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.CELERY_TASK_TIME_LIMIT)",
        ],
        cwd=BASE_DIR,
        env=production_env(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode == 0) is starts, result.stderr
    if starts:
        assert int(result.stdout.split()[-1]) == int(env.get("CELERY_TASK_TIME_LIMIT", 240))
    else:
        assert "CELERY_TASK_TIME_LIMIT" in result.stderr


@pytest.mark.parametrize(
    ("exception", "limit"), [(SoftTimeLimitExceeded(), "soft"), (TimeLimitExceeded(4.0), "hard"), (OSError(), None)]
)
def test_a_task_stopped_by_its_limit_is_logged_and_counted(exception, limit, caplog):
    """The worker's failure signal (soft: in the pool's child; hard: in the main process, after the
    kill) logs the task's name and counts it for /metrics; any other failure is not counted."""
    from celery.signals import task_failure

    task = app.tasks["orders.tasks.send_delivery_emails"]
    before = tasklimits.time_limit_counts([task.name])
    with caplog.at_level(logging.WARNING, logger="marketplace.tasklimits"):
        task_failure.send(sender=task, task_id="t-1", exception=exception, args=(), kwargs={})
    after = tasklimits.time_limit_counts([task.name])
    for which in ("soft", "hard"):
        assert after[(task.name, which)] - before[(task.name, which)] == (1 if which == limit else 0)
    records = [r for r in caplog.records if r.name == "marketplace.tasklimits"]
    if limit is None:
        assert not records
    else:
        (record,) = records
        assert (record.task, record.time_limit, record.task_id) == (task.name, limit, "t-1")


@pytest.mark.django_db
def test_a_delivery_cut_by_the_soft_limit_rolls_back_whole_and_is_delivered_by_the_sweeper(monkeypatch):
    """The soft limit strikes inside the delivery's transaction, after the order has moved to
    delivered and the sale is booked: all of it rolls back (codes still reserved, no entry, no
    status change), the order stays paid and due, and the sweeper's next pass delivers it."""
    from django.utils import timezone

    from catalog.models import CardCode
    from ledger.models import Entry as JournalEntry
    from orders.models import Order, OrderStatusChange
    from orders.services import orders as order_services
    from orders.tasks import fulfil_order
    from payments.services import payments
    from tests.builders import place
    from tests.factories import ProductFactory, UserFactory, add_stock

    product = ProductFactory()
    add_stock(product, 2)
    order = place(UserFactory(), product, quantity=2)
    with monkeypatch.context() as m:
        m.setattr(order_services, "_queue_fulfilment", lambda order_id: None)  # the worker is slow
        payments.sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.PAID and order.delivery_due_at
    before = (JournalEntry.objects.count(), OrderStatusChange.objects.filter(order=order).count())
    real_deliver = order_services.order_deliver

    def deliver_then_time_out(**kwargs):
        real_deliver(**kwargs)
        assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED  # in the transaction
        raise SoftTimeLimitExceeded()

    with monkeypatch.context() as m:
        m.setattr(order_services, "order_deliver", deliver_then_time_out)
        result = fulfil_order.apply(args=[order.pk], throw=False)
    assert isinstance(result.result, SoftTimeLimitExceeded)
    order.refresh_from_db()
    assert order.status == Order.Status.PAID and order.delivered_at is None
    assert set(CardCode.objects.filter(product=product).values_list("status", flat=True)) == {"reserved"}
    assert (JournalEntry.objects.count(), OrderStatusChange.objects.filter(order=order).count()) == before

    Order.objects.filter(pk=order.pk).update(delivery_due_at=timezone.now())  # its grace is over
    assert order_services.orders_delivery_requeue(queue=fulfil_order.delay) == 1
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert set(CardCode.objects.filter(product=product).values_list("status", flat=True)) == {"sold"}


@pytest.mark.django_db
def test_metrics_export_each_tasks_count(client, settings):
    settings.METRICS_TOKEN = "time-limits-token"
    name = "catalog.tasks.import_batch"
    before = tasklimits.time_limit_counts([name])[(name, "hard")]
    tasklimits.time_limit_reached(task=name, limit=tasklimits.HARD)
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer time-limits-token").content.decode()
    assert f'kamarket_task_time_limits_total{{limit="hard",task="{name}"}} {before + 1}.0' in body
    assert 'kamarket_task_time_limits_total{limit="soft",task="orders.tasks.fulfil_order"}' in body
