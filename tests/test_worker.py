"""Fulfilment through a real Celery worker process, Redis and PostgreSQL.

A paid order is delivered by a worker. A worker SIGKILLed in the middle of fulfilment (its
transaction open, its message delivered but not acknowledged) delivers the order exactly once:
killed whole and restarted, the message comes back after the visibility timeout; with only
its pool process killed, the worker requeues the message itself (``reject_on_worker_lost``).
Either way the task runs again, and running it again is harmless.

The worker is blocked mid-task without test hooks in the product: the test holds the order's
row lock from another database session, so ``order_fulfil`` waits inside its transaction on
``SELECT ... FOR UPDATE`` until the test kills it.
"""

import json
import os
import signal
import sys
import time

import pytest
import redis
from django.conf import settings
from django.db.models import Count

from catalog.models import CardCode
from orders.models import Order, OrderCode, OrderStatusChange
from orders.services import orders
from orders.tasks import fulfil_order, send_delivery_emails
from payments.services.payments import sandbox_pay
from tests.factories import ProductFactory, add_stock
from tests.worker_utils import (
    RowLock,
    Worker,
    backend_exists,
    broker_redis_emptied,
    wait_for,
    workers_started,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform == "win32", reason="prefork workers and process groups are POSIX"),
]

# Seconds before Redis hands an unacknowledged message (its worker died) to another consumer.
VISIBILITY_TIMEOUT = 5
QUEUE = "fulfilment"  # orders.tasks.fulfil_order's queue (the delivery email goes to `notifications`)
OrderStatus = Order.Status


@pytest.fixture
def broker_redis(redis_url):
    """The test Redis, emptied, with this process publishing tasks to it.

    Worker tests on this host take turns: the broker database is shared and flushed.
    """
    with broker_redis_emptied(redis_url, visibility_timeout=VISIBILITY_TIMEOUT) as client:
        yield client


@pytest.fixture
def start_worker(request, redis_url, broker_redis):
    """Start worker processes; all are killed at the end, their logs shown if the test failed."""
    with workers_started(request) as start:
        yield lambda label, *, beat=False: start(
            broker_url=redis_url, visibility_timeout=VISIBILITY_TIMEOUT, label=label, beat=beat
        )


def paid_order(buyer, *, quantity: int) -> tuple[Order, list[str]]:
    """A paid order whose fulfilment waits in Redis, and the secrets of the stock (one spare code)."""
    product = ProductFactory()
    secrets = add_stock(product, quantity + 1)
    order = orders.order_place(
        buyer=buyer, product_id=product.pk, quantity=quantity, idempotency_key=f"worker-test-{product.pk}"
    )
    result = sandbox_pay(order_number=order.number)  # commits; fulfil_order is published on commit
    assert result.outcome == "applied", result
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    return order, secrets


def delivered(order: Order) -> bool:
    order.refresh_from_db()
    return order.status == OrderStatus.DELIVERED


def delivered_and_notified(order: Order) -> bool:
    order.refresh_from_db()
    return order.status == OrderStatus.DELIVERED and order.buyer_notified_at is not None


def assert_delivered_once(order: Order) -> None:
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert order.delivered_at is not None
    assert order.buyer_notified_at is not None
    history = list(order.history.values_list("from_status", "to_status"))
    assert history == [
        ("", OrderStatus.PENDING),
        (OrderStatus.PENDING, OrderStatus.PAID),
        (OrderStatus.PAID, OrderStatus.DELIVERED),
    ]
    assert OrderStatusChange.objects.filter(to_status=OrderStatus.DELIVERED).count() == 1
    live = order.codes.filter(released_at__isnull=True)
    assert live.count() == order.quantity
    statuses = CardCode.objects.filter(pk__in=live.values("code_id")).values_list("status", flat=True)
    assert set(statuses) == {CardCode.Status.SOLD}
    # One card code in two orders: never. Only this order's codes are sold; the spare is in stock.
    assert not OrderCode.objects.values("code_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert CardCode.objects.filter(status=CardCode.Status.SOLD).count() == order.quantity
    assert CardCode.objects.filter(status=CardCode.Status.AVAILABLE).count() == 1


def assert_not_delivered(order: Order) -> None:
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert not CardCode.objects.filter(status=CardCode.Status.SOLD).exists()


def snapshot(order: Order) -> dict:
    order.refresh_from_db()
    return {
        "status": order.status,
        "delivered_at": order.delivered_at,
        "buyer_notified_at": order.buyer_notified_at,
        "history": list(order.history.values_list("pk", "to_status")),
        "codes": sorted(CardCode.objects.values_list("pk", "status")),
        "order_codes": sorted(OrderCode.objects.values_list("pk", "order_id", "code_id", "released_at")),
    }


def drained(client: redis.Redis) -> bool:
    """Nothing waiting in the queue and nothing delivered but unacknowledged."""
    return all(client.llen(queue) == 0 for queue in settings.QUEUE_NAMES) and client.hlen("unacked") == 0


def task_result(worker: Worker, task_id: str) -> str | None:
    """What the worker logged as the task's return value, once it has succeeded."""
    marker = f"[{task_id}] succeeded in "
    log = worker.output()
    if marker not in log:
        return None
    return log.split(marker, 1)[1].split("\n", 1)[0].rsplit(": ", 1)[1]


def assert_running_again_changes_nothing(order: Order, worker: Worker) -> None:
    before = snapshot(order)
    for task, args, nothing in ((fulfil_order, (order.pk,), "False"), (send_delivery_emails, (), "0")):
        task_id = task.delay(*args).id
        result = wait_for(lambda task_id=task_id: task_result(worker, task_id), timeout=30, what=f"{task.name} again")
        assert result == nothing
    assert orders.order_fulfil(order_id=order.pk) is False
    assert snapshot(order) == before


def test_worker_delivers_a_paid_order(buyer, broker_redis, start_worker):
    order, secrets = paid_order(buyer, quantity=2)
    assert broker_redis.llen(QUEUE) == 1  # the fulfilment task waits in Redis; nothing has run it

    worker = start_worker("deliver", beat=True)  # beat runs the delivery emails every few seconds
    wait_for(lambda: delivered_and_notified(order), timeout=60, what="the order to be delivered and notified")

    assert_delivered_once(order)
    log = worker.output()
    assert f"order {order.number} delivered" in log
    # The console email backend prints the buyer's email: a link to the order, never a code.
    assert f"To: {order.buyer.email}" in log and f"/orders/{order.number}/" in log
    assert not any(secret in log for secret in secrets)
    wait_for(lambda: drained(broker_redis), timeout=10, what="both messages to be acknowledged")


def test_delivery_emails_of_a_burst_are_sent_by_beats_run_once_each(buyer, broker_redis, start_worker):
    """The fulfilment renders, sends and queues nothing for the email: beat's run every few
    seconds (``send_delivery_emails`` on the ``notifications`` queue) sends every email due, each
    once however often it runs."""
    from django.core import mail

    paid = [paid_order(buyer, quantity=1)[0] for _ in range(3)]
    broker_redis.delete(QUEUE)  # their fulfilments, run here instead
    for order in paid:
        assert orders.order_fulfil(order_id=order.pk) is True  # the task's body, in this process
        order.refresh_from_db()
        assert order.status == OrderStatus.DELIVERED and order.buyer_notified_at is None
    assert mail.outbox == []
    assert broker_redis.llen("notifications") == 0  # nothing queued for the emails

    worker = start_worker("notify", beat=True)
    for order in paid:
        wait_for(lambda order=order: delivered_and_notified(order), timeout=60, what="the delivery emails to be sent")
    task_id = send_delivery_emails.delay().id  # again: nothing is due, nothing is sent twice
    assert wait_for(lambda: task_result(worker, task_id), timeout=30, what="send_delivery_emails again") == "0"
    log = worker.output()
    assert log.count(f"To: {buyer.email}") == 3
    assert all(log.count(f"/orders/{order.number}/") == 1 for order in paid)


def test_worker_killed_mid_fulfilment_and_restarted_delivers_exactly_once(buyer, broker_redis, start_worker):
    order, secrets = paid_order(buyer, quantity=2)
    lock = RowLock("orders_order", order.pk)
    try:
        first = start_worker("killed")
        [(blocked_pid, query)] = wait_for(lock.waiters, timeout=30, what="the worker to block on the order's lock")
        # Blocked on our row lock: only a locking read (SELECT ... FOR UPDATE) waits for it. The
        # query's text may be cut before its FOR UPDATE (pg_stat_activity keeps 1024 bytes).
        assert query.startswith('SELECT "id", "number"') and 'FROM "orders_order" WHERE "id" = ' in query
        # Delivered to the worker, not acknowledged (acks_late): Redis keeps it in the unacked hash.
        assert broker_redis.llen(QUEUE) == 0
        unacked = broker_redis.zrange("unacked_index", 0, -1, withscores=True)
        assert len(unacked) == 1, "fulfil_order was acknowledged before it ran"
        [(tag, delivered_at)] = unacked
        assert len(first.children()) == 1

        first.kill()  # SIGKILL to the main process and its pool process, mid-transaction
        assert first.children() == []
    finally:
        lock.release()

    assert_not_delivered(order)
    [message, _exchange, routing_key] = json.loads(broker_redis.hget("unacked", tag))
    assert message["headers"]["task"] == "orders.tasks.fulfil_order" and routing_key == QUEUE
    # The orphaned database session got the lock once it was released, then died writing to
    # the dead worker's socket: its transaction rolled back.
    wait_for(lambda: not backend_exists(blocked_pid), timeout=15, what="the killed worker's session to end")
    assert_not_delivered(order)

    # kombu's Redis transport requeues unacked messages older than the visibility timeout
    # when a worker starts consuming, and after that only every ~100 s (a sweep every 10 s
    # that scans Redis one time in ten). Restart once the message is old enough to come back.
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))
    second = start_worker("restarted")
    wait_for(lambda: delivered(order), timeout=60, what="the order to be delivered after the restart")
    send_delivery_emails.delay()  # as beat does every few seconds
    wait_for(lambda: delivered_and_notified(order), timeout=30, what="the delivery email to be sent")
    print(f"\n[worker test] delivered {time.monotonic() - second.started_at:.1f}s after the restart")

    assert_delivered_once(order)
    log = second.output()
    assert f"Task orders.tasks.fulfil_order[{message['headers']['id']}] received" in log  # the same message
    assert f"order {order.number} delivered" in log
    assert "succeeded" not in first.output()
    assert not any(secret in first.output() + log for secret in secrets)
    wait_for(lambda: drained(broker_redis), timeout=10, what="both messages to be acknowledged")

    assert_running_again_changes_nothing(order, second)
    assert_delivered_once(order)


def test_pool_process_killed_mid_fulfilment_is_requeued_and_delivered_once(buyer, broker_redis, start_worker):
    order, _secrets = paid_order(buyer, quantity=1)
    lock = RowLock("orders_order", order.pk)
    try:
        worker = start_worker("child-killed")
        [(blocked_pid, _query)] = wait_for(lock.waiters, timeout=30, what="the worker to block on the order's lock")
        [child] = worker.children()
        started = time.monotonic()
        os.kill(child, signal.SIGKILL)

        # The main process sees its pool process die (at once, or on billiard's 5-second pool
        # maintenance tick) and, with reject_on_worker_lost, puts the message back in the queue;
        # a new pool process takes it and waits on the lock again. No restart needed.
        def blocked_again():
            return [pid for pid, _query in lock.waiters() if pid != blocked_pid]

        wait_for(blocked_again, timeout=30, what="the requeued task to block on the lock again")
        print(f"\n[worker test] requeued and running again {time.monotonic() - started:.1f}s after the kill")
        assert child not in worker.children()
        assert_not_delivered(order)
    finally:
        lock.release()

    wait_for(lambda: delivered(order), timeout=60, what="the order to be delivered")
    send_delivery_emails.delay()  # as beat does every few seconds
    wait_for(lambda: delivered_and_notified(order), timeout=30, what="the delivery email to be sent")
    assert_delivered_once(order)
    log = worker.output()
    assert "WorkerLostError" in log
    assert log.count("Task orders.tasks.fulfil_order[") == 3  # received, received again, succeeded
    wait_for(lambda: drained(broker_redis), timeout=10, what="both messages to be acknowledged")
    assert_running_again_changes_nothing(order, worker)
