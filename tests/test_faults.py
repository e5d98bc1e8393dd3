"""Faults in Redis, a worker or a database connection: no time lost, no 500.

Unit tests (in-process) pin each rule: a failed publish after the payment's commit still
answers the gateway ``success`` and leaves the order due for delivery; the sweeper queues it
again, with backoff, and a failed queuing marks nothing done; a replayed notification queues
the delivery of a paid, undelivered order again; without Redis, pages, sessions and checkout
work from the database; a database connection dropped under a request is retried once where
that is safe, and otherwise answered 503, never 500.

The fault tests run purchases through the real pipeline (checkout, then the sandbox gateway's
signed notification) against a private ``redis-server`` (broker and cache) and real Celery
workers with beat, and inject the faults: Redis killed and restarted mid-purchase, a worker
SIGKILLed with a fulfilment in flight, database connections terminated by the server. They
assert no 500, every paid order delivered exactly once, and print how long after the fault
ended the last order was delivered (asserted under ``DELIVERY_BOUND`` seconds).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from unittest import mock

import kombu.exceptions
import psycopg2
import pytest
import redis
from django.db import connection, connections
from django.db.models import Count
from django.test import Client, RequestFactory
from django.utils import timezone

from catalog.models import CardCode
from marketplace import celery_app
from marketplace.middleware import ServiceFaultMiddleware
from orders.models import Order, OrderCode, OrderStatusChange
from orders.services import orders
from payments.gateways.sandbox import SandboxGateway
from payments.models import Notification, Payment
from tests.builders import place
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.worker_utils import (
    FULFILMENT_POOL,
    RowLock,
    Worker,
    backend_exists,
    broker,
    terminate_worker_backends,
    wait_for,
)

NOTIFY = "/payments/notify/sandbox/"
OrderStatus = Order.Status
# Every paid order is delivered within this many seconds of the fault's end.
DELIVERY_BOUND = 30.0
# No request may take longer than this while a service is away (no 20-second hangs).
REQUEST_BOUND = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cache_settings(url: str) -> dict:
    """What settings.py configures from REDIS_CACHE_URL."""
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }


def notify(client: Client, body: bytes):
    return client.post(NOTIFY, data=body, content_type="application/x-www-form-urlencoded")


def terminate(pid: int) -> None:
    """pg_terminate_backend from a connection of its own, as an operator or a failover would."""
    db = connection.settings_dict
    killer = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"] or None, host=db["HOST"], port=db["PORT"]
    )
    try:
        killer.autocommit = True
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            for _ in range(100):
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
                if cursor.fetchone()[0] == 0:
                    return
                time.sleep(0.05)
    finally:
        killer.close()


LOGIN_READS = ('FROM "django_session"', 'FROM "accounts_user"')


@contextlib.contextmanager
def connection_terminated_at_first_statement(*, after_login_reads: bool = False):
    """The server drops this process's connection just before the next statement runs:
    the statement fails the way it does after a restart, failover or pg_terminate_backend.
    ``after_login_reads``: the first statement after the session and user reads (the view's)."""
    fired = []

    def wrapper(execute, sql, params, many, context):
        if after_login_reads and any(table in sql for table in LOGIN_READS):
            return execute(sql, params, many, context)
        if not fired:
            fired.append(sql)
            terminate(connection.connection.get_backend_pid())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield fired


# --- unit tests: the rules, in-process ------------------------------------------------------


@pytest.fixture
def product(db):
    product = ProductFactory()
    add_stock(product, 10)
    return product


@pytest.fixture
def broker_down(monkeypatch):
    """Celery publishes for real (not eagerly) and every publish fails as with Redis away."""
    celery_app.conf.task_always_eager = False
    sent = []

    def refused(self, *args, **kwargs):
        sent.append((self.name, args))
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    monkeypatch.setattr("celery.app.task.Task.delay", refused)
    return sent


@pytest.fixture
def broker_recorded(monkeypatch):
    celery_app.conf.task_always_eager = False
    sent = []
    monkeypatch.setattr("celery.app.task.Task.delay", lambda self, *args, **kw: sent.append((self.name, args)))
    return sent


@pytest.mark.django_db(transaction=True)
def test_publish_failing_after_the_commit_still_answers_success_and_leaves_the_order_due(
    client, buyer, product, broker_down
):
    order = place(buyer, product)
    response = notify(client, SandboxGateway.build_notification(order_number=order.number, amount=order.total))
    assert response.status_code == 200 and response.content == b"success"
    assert broker_down == [("orders.tasks.fulfil_order", (order.pk,))]  # tried, failed, not raised
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert Payment.objects.filter(order=order, status=Payment.Status.SUCCEEDED).count() == 1
    # The intent to deliver was committed with the payment: due shortly after it.
    assert order.paid_at < order.delivery_due_at <= order.paid_at + orders.DELIVERY_GRACE + timedelta(seconds=1)


@pytest.mark.django_db(transaction=True)
def test_replayed_notification_for_a_paid_undelivered_order_queues_delivery_again(
    client, buyer, product, broker_down, monkeypatch
):
    order = place(buyer, product)
    body = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
    assert notify(client, body).content == b"success"  # the first queuing is lost
    sent = []
    monkeypatch.setattr("celery.app.task.Task.delay", lambda self, *args, **kw: sent.append((self.name, args)))

    assert notify(client, body).content == b"success"  # the gateway sends it again
    assert sent == [("orders.tasks.fulfil_order", (order.pk,))]
    outcomes = Notification.objects.filter(order_number=order.number).order_by("pk").values_list("outcome", flat=True)
    assert list(outcomes) == [
        Notification.Outcome.APPLIED,
        Notification.Outcome.REPLAY,
    ]
    assert orders.order_fulfil(order_id=order.pk) is True
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED and order.delivery_due_at is None

    sent.clear()  # a replay for a delivered order queues nothing
    assert notify(client, body).content == b"success"
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_sweeper_queues_due_orders_again_with_backoff(buyer, product, broker_recorded):
    paid = [place(buyer, product) for _ in range(3)]
    for order in paid:
        notify(Client(), SandboxGateway.build_notification(order_number=order.number, amount=order.total))
    broker_recorded.clear()
    queued: list[int] = []
    assert orders.orders_delivery_requeue(queue=queued.append) == 0  # not due yet: the first publish may work

    later = timezone.now() + orders.DELIVERY_GRACE + timedelta(seconds=1)
    Order.objects.filter(pk=paid[0].pk).update(paid_at=later - timedelta(seconds=40))  # waited 40 s already
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("django.utils.timezone.now", lambda: later)
        assert orders.orders_delivery_requeue(queue=queued.append) == 3
        assert sorted(queued) == sorted(o.pk for o in paid)
        assert orders.orders_delivery_requeue(queue=queued.append) == 0  # pushed back: no flood
    due = dict(Order.objects.filter(pk__in=[o.pk for o in paid]).values_list("pk", "delivery_due_at"))
    paid_at = dict(Order.objects.filter(pk__in=[o.pk for o in paid]).values_list("pk", "paid_at"))
    assert due[paid[0].pk] == later + timedelta(seconds=40)  # about as long as it has waited
    assert due[paid[1].pk] == later + max(later - paid_at[paid[1].pk], orders.DELIVERY_GRACE)
    Order.objects.filter(pk=paid[2].pk).update(paid_at=later - timedelta(hours=1), delivery_due_at=later)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("django.utils.timezone.now", lambda: later)
        assert orders.orders_delivery_requeue(queue=queued.append) == 1
    assert Order.objects.get(pk=paid[2].pk).delivery_due_at == later + orders.DELIVERY_RETRY_MAX  # at most

    orders.order_fulfil(order_id=paid[1].pk)
    assert Order.objects.get(pk=paid[1].pk).delivery_due_at is None


@pytest.mark.django_db(transaction=True)
def test_sweeper_that_cannot_queue_marks_nothing_done(buyer, product, broker_recorded):
    order = place(buyer, product)
    notify(Client(), SandboxGateway.build_notification(order_number=order.number, amount=order.total))
    Order.objects.filter(pk=order.pk).update(delivery_due_at=timezone.now() - timedelta(seconds=1))
    due_before = Order.objects.get(pk=order.pk).delivery_due_at

    def broker_away(order_id):
        raise kombu.exceptions.OperationalError("Connection refused")

    with pytest.raises(kombu.exceptions.OperationalError):
        orders.orders_delivery_requeue(queue=broker_away)
    assert Order.objects.get(pk=order.pk).delivery_due_at == due_before  # the next tick takes it
    queued: list[int] = []
    assert orders.orders_delivery_requeue(queue=queued.append) == 1 and queued == [order.pk]


@pytest.mark.django_db(transaction=True)
def test_without_redis_pages_sessions_and_checkout_work_from_the_database(settings, product):
    settings.CACHES = redis_cache_settings(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens
    settings.SESSION_ENGINE = "marketplace.sessions"
    buyer = UserFactory()
    client = Client()
    client.force_login(buyer)
    started = time.monotonic()
    assert client.get("/").status_code == 200
    assert client.get(f"/p/{product.slug}/").status_code == 200
    assert client.get(f"/orders/checkout/{product.slug}/").status_code == 200  # logged in: from the database
    response = client.post(f"/orders/checkout/{product.slug}/", {"quantity": 1, "idempotency_key": uuid.uuid4().hex})
    assert response.status_code == 302
    order = Order.objects.get(buyer=buyer)
    assert client.get(order.get_absolute_url()).status_code == 200
    assert time.monotonic() - started < 4 * REQUEST_BOUND


def test_session_cache_entries_are_short_lived(settings):
    from marketplace.sessions import SessionStore

    settings.SESSION_CACHE_SECONDS = 60
    store = SessionStore()
    seen = {}
    store._cache._cache = type("Spy", (), {"set": lambda self, key, value, timeout: seen.update(t=timeout)})()
    store._cache.set("k", {}, 1209600)  # cached_db asks for the session's age: two weeks
    assert seen["t"] == 60


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
def test_broker_outage_where_nothing_else_can_work_is_a_503_page(lang):
    from django.utils import translation

    request = RequestFactory().post("/agent/stock/import/")
    with translation.override(lang):
        response = ServiceFaultMiddleware(lambda r: None).process_exception(
            request, kombu.exceptions.OperationalError("Connection refused")
        )
    assert response.status_code == 503 and response["Retry-After"] == "30"
    text = response.content.decode()
    assert ("马上回来" in text) if lang == "zh-hans" else ("Back in a moment" in text)


def test_api_gets_its_json_503():
    request = RequestFactory().post("/api/v1/orders/")
    response = ServiceFaultMiddleware(lambda r: None).process_exception(
        request, redis.exceptions.ConnectionError("refused")
    )
    assert response.status_code == 503
    assert json.loads(response.content)["code"] == "service_unavailable"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_connection_terminated_under_a_notification_is_retried_and_answers_success(client, buyer, product):
    order = place(buyer, product)
    body = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
    with connection_terminated_at_first_statement() as fired:
        response = notify(client, body)
    assert fired, "the fault was not injected"
    assert response.status_code == 200 and response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED  # eager fulfilment, after the retried commit
    assert Payment.objects.filter(order=order).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_retried_operation_needs_no_health_check_first(client, buyer, product, caplog):
    """The notification (like the fulfilment task) runs again on a new connection when its
    first statement finds the connection dead, so the ``SELECT 1`` of CONN_HEALTH_CHECKS is not
    sent before it: a connection dropped while idle is found by that statement, and retried."""
    order = place(buyer, product)
    body = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
    terminate(connection.connection.get_backend_pid())  # dropped while idle, between requests
    connection.health_check_done = False  # as at the start of a request or task
    with caplog.at_level(logging.WARNING, logger="marketplace.db"):
        response = notify(client, body)
    assert response.status_code == 200 and response.content == b"success"
    assert "database connection lost in notification_receive" in caplog.text  # no check found it first
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert Payment.objects.filter(order=order).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_members_user_read_is_the_health_check(buyer, product, caplog):
    """A member's request reads its user first (compliance's middleware, with one retry on a
    lost connection): that read finds a connection dropped while idle, so no ``SELECT 1`` is
    sent before it. An anonymous request reads no user: Django's check still runs first."""
    client = Client()
    client.force_login(buyer)
    checks = []
    original = type(connections["default"]).is_usable

    def is_usable(self):
        checks.append(1)
        return original(self)

    with mock.patch.object(type(connections["default"]), "is_usable", is_usable):
        # The test client does not reset the check per request (Django's close_old_connections
        # is disconnected from request_started): set as at the start of a request.
        connection.health_check_done = False
        assert client.get(f"/p/{product.slug}/").status_code == 200
        assert checks == []  # a live connection: no SELECT 1 before the user's read
        terminate(connection.connection.get_backend_pid())  # dropped while idle, between requests
        connection.health_check_done = False
        with caplog.at_level(logging.WARNING, logger="marketplace.middleware"):
            assert client.get(f"/p/{product.slug}/").status_code == 200
        assert "database connection lost loading the user" in caplog.text  # found by the read, retried
        assert checks == []
        caplog.clear()
        terminate(connection.connection.get_backend_pid())
        connection.health_check_done = False
        with caplog.at_level(logging.WARNING):
            assert Client().get(f"/p/{product.slug}/").status_code == 200
        assert checks == [1]  # anonymous: Django's check found the dead connection and replaced it
        assert "connection lost" not in caplog.text


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_connection_terminated_under_a_page_or_checkout_is_retried(buyer, product):
    client = Client()
    client.force_login(buyer)
    with connection_terminated_at_first_statement() as fired:
        assert client.get(f"/p/{product.slug}/").status_code == 200
    assert fired
    key = uuid.uuid4().hex
    with connection_terminated_at_first_statement() as fired:
        response = client.post(f"/orders/checkout/{product.slug}/", {"quantity": 1, "idempotency_key": key})
    assert fired and response.status_code == 302
    assert Order.objects.filter(buyer=buyer).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_connection_terminated_under_an_unsafe_post_is_a_503_not_a_500(buyer, product):
    client = Client(raise_request_exception=False)
    client.force_login(buyer)
    order = place(buyer, product)
    with connection_terminated_at_first_statement(after_login_reads=True) as fired:
        response = client.post(f"/orders/{order.number}/cancel/")
    assert fired and response.status_code == 503
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


# --- fault tests: a private Redis, real workers with beat -----------------------------------


class RedisServer:
    """A redis-server of this test's own (no persistence: a restart loses what it held)."""

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_for(lambda: _pings(client), timeout=10, what="redis-server to answer")
        client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does (queued messages are lost with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture
def stack(request, settings):
    """A private Redis as broker and cache for this process and its workers."""
    server = RedisServer().start()
    settings.CACHES = redis_cache_settings(server.url(1))
    settings.SESSION_ENGINE = "marketplace.sessions"
    workers: list[Worker] = []
    failed_before = request.session.testsfailed

    def start_worker(label: str) -> Worker:
        worker = Worker(
            broker_url=server.url(0),
            visibility_timeout=600,  # production's: a killed worker's message stays away 10 minutes
            label=label,
            beat=True,
            env={"REDIS_CACHE_URL": server.url(1), "CELERY_VISIBILITY_TIMEOUT": "600"},
            pool=FULFILMENT_POOL,  # deliveries run as production's fulfilment worker runs them
        ).start()
        workers.append(worker)
        worker.wait_ready(timeout=60)
        return worker

    with broker(celery_app, server.url(0), visibility_timeout=600):
        celery_app.conf.broker_transport_options.update(socket_connect_timeout=1, socket_timeout=5)
        try:
            yield server, start_worker
        finally:
            for worker in workers:
                worker.kill()
            if request.session.testsfailed > failed_before:
                for worker in workers:
                    print(f"\n===== log of worker {worker.name} =====\n{worker.output()[-20000:]}", file=sys.stderr)
            for worker in workers:
                worker.close()
            server.kill()
            terminate_worker_backends()


class Shopper:
    """A logged-in buyer in a browser: checkout, the gateway's notification, the order page.
    Every response is timed and checked: no 500, no hang."""

    def __init__(self, product):
        self.product = product
        self.buyer = UserFactory()
        self.client = Client(raise_request_exception=False)
        self.client.force_login(self.buyer)
        self.gateway = Client(raise_request_exception=False)
        self.slowest = 0.0
        self.bodies: dict[int, bytes] = {}

    def _timed(self, call, *args, **kwargs):
        started = time.monotonic()
        response = call(*args, **kwargs)
        self.slowest = max(self.slowest, time.monotonic() - started)
        assert response.status_code != 500, response.content[:500]
        return response

    def buy(self) -> Order:
        response = self._timed(
            self.client.post,
            f"/orders/checkout/{self.product.slug}/",
            {"quantity": 1, "idempotency_key": uuid.uuid4().hex},
        )
        assert response.status_code == 302, response.status_code
        order = Order.objects.filter(buyer=self.buyer).latest("pk")
        assert self._timed(self.client.get, f"/pay/{order.number}/").status_code == 200
        self.bodies[order.pk] = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
        self.resend(order)
        assert self._timed(self.client.get, order.get_absolute_url()).status_code == 200
        return order

    def resend(self, order: Order) -> None:
        response = self._timed(notify, self.gateway, self.bodies[order.pk])
        assert response.status_code == 200 and response.content == b"success"


def all_delivered(paid: list[Order]) -> bool:
    return Order.objects.filter(pk__in=[o.pk for o in paid], status=OrderStatus.DELIVERED).count() == len(paid)


def assert_each_delivered_exactly_once(paid: list[Order]) -> None:
    ids = [o.pk for o in paid]
    assert all_delivered(paid)
    deliveries = OrderStatusChange.objects.filter(order_id__in=ids, to_status=OrderStatus.DELIVERED)
    assert deliveries.count() == len(ids)
    assert Payment.objects.filter(order_id__in=ids).count() == len(ids)  # each applied once
    assert not Order.objects.filter(pk__in=ids, delivery_due_at__isnull=False).exists()
    live = OrderCode.objects.filter(order_id__in=ids, released_at__isnull=True)
    assert live.count() == len(ids)  # one code per order
    assert set(CardCode.objects.filter(pk__in=live.values("code_id")).values_list("status", flat=True)) == {
        CardCode.Status.SOLD
    }
    assert not OrderCode.objects.values("code_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert CardCode.objects.filter(status=CardCode.Status.SOLD).count() == len(ids)


def delivery_delay(paid: list[Order], since) -> float:
    """Seconds from ``since`` to the last delivery of ``paid``."""
    last = max(Order.objects.filter(pk__in=[o.pk for o in paid]).values_list("delivered_at", flat=True))
    return max(0.0, (last - since).total_seconds())


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_redis_killed_and_restarted_mid_purchase(stack):
    server, start_worker = stack
    product = ProductFactory()
    add_stock(product, 40)
    shopper = Shopper(product)
    worker = start_worker("redis")
    paid = [shopper.buy() for _ in range(4)]
    wait_for(lambda: all_delivered(paid), timeout=30, what="the first orders to be delivered")

    server.kill()
    outage_started = time.monotonic()
    during = [shopper.buy() for _ in range(8)]  # checkout, cashier, notification, order page
    shopper.resend(during[0])  # the gateway resends: success again
    assert Order.objects.filter(pk__in=[o.pk for o in during], status=OrderStatus.PAID).count() == len(during)
    time.sleep(max(0.0, 8 - (time.monotonic() - outage_started)))  # Redis away at least 8 s
    server.start()
    back = timezone.now()
    outage = time.monotonic() - outage_started

    paid += during
    wait_for(lambda: all_delivered(paid), timeout=DELIVERY_BOUND + 30, interval=0.2, what="every paid order")
    delay = delivery_delay(during, back)
    print(
        f"\n[faults] Redis down {outage:.1f}s: {len(during)} purchases, slowest request {shopper.slowest:.2f}s;"
        f" last order delivered {delay:.1f}s after Redis came back"
    )
    assert delay < DELIVERY_BOUND
    assert shopper.slowest < REQUEST_BOUND
    # Every publish of the outage failed and Redis came back empty: beat's sweeper, which
    # outlived its own failed ticks, queued them again.
    assert "queued delivery again for" in worker.output()
    assert_each_delivered_exactly_once(paid)


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_worker_killed_with_fulfilment_in_flight(stack):
    _server, start_worker = stack
    product = ProductFactory()
    add_stock(product, 20)
    shopper = Shopper(product)
    first = start_worker("killed")
    paid = [shopper.buy() for _ in range(2)]
    wait_for(lambda: all_delivered(paid), timeout=30, what="the first orders to be delivered")

    # The next order's fulfilment blocks on its code's row (held by another session) inside
    # its transaction: in flight, delivered to the worker and not acknowledged, when it dies.
    response = shopper.client.post(
        f"/orders/checkout/{product.slug}/", {"quantity": 1, "idempotency_key": uuid.uuid4().hex}
    )
    assert response.status_code == 302
    stuck = Order.objects.filter(buyer=shopper.buyer).latest("pk")
    lock = RowLock("catalog_cardcode", stuck.codes.get().code_id)
    try:
        shopper.bodies[stuck.pk] = SandboxGateway.build_notification(order_number=stuck.number, amount=stuck.total)
        shopper.resend(stuck)
        [(blocked_pid, _query)] = wait_for(lock.waiters, timeout=30, what="fulfilment to block mid-transaction")
        queued = [shopper.buy() for _ in range(3)]  # waiting in Redis behind it (one prefetched)
        first.kill()
        killed_at = timezone.now()
    finally:
        lock.release()
    wait_for(lambda: not backend_exists(blocked_pid), timeout=15, what="the killed worker's session to end")
    assert Order.objects.get(pk=stuck.pk).status == OrderStatus.PAID

    start_worker("restarted")
    restarted = timezone.now()
    paid += [stuck, *queued]
    wait_for(lambda: all_delivered(paid), timeout=DELIVERY_BOUND + 30, interval=0.2, what="every paid order")
    delay = delivery_delay([stuck, *queued], restarted)
    print(
        f"\n[faults] worker SIGKILLed with a fulfilment in flight (visibility timeout 600 s):"
        f" last order delivered {delay:.1f}s after the new worker was ready"
        f" ({delivery_delay([stuck], killed_at):.1f}s after the kill)"
    )
    assert delay < DELIVERY_BOUND
    assert_each_delivered_exactly_once(paid)


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_database_connections_terminated_mid_flow(stack):
    _server, start_worker = stack
    product = ProductFactory()
    add_stock(product, 20)
    shopper = Shopper(product)
    worker = start_worker("terminated")
    paid = [shopper.buy() for _ in range(2)]

    # The worker's connection dropped while fulfilment waits inside its transaction.
    response = shopper.client.post(
        f"/orders/checkout/{product.slug}/", {"quantity": 1, "idempotency_key": uuid.uuid4().hex}
    )
    assert response.status_code == 302
    order = Order.objects.filter(buyer=shopper.buyer).latest("pk")
    lock = RowLock("catalog_cardcode", order.codes.get().code_id)
    try:
        shopper.bodies[order.pk] = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
        shopper.resend(order)
        [(blocked_pid, _query)] = wait_for(lock.waiters, timeout=30, what="fulfilment to block mid-transaction")
        terminate(blocked_pid)
        terminated_at = timezone.now()
    finally:
        lock.release()
    paid.append(order)

    # This process's connections dropped under a notification, a page and a checkout.
    for _ in range(3):
        with connection_terminated_at_first_statement() as fired:
            paid.append(shopper.buy())
        assert fired

    # Every connection of the test database terminated at once (a failover), then more sales.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    paid += [shopper.buy() for _ in range(2)]

    wait_for(lambda: all_delivered(paid), timeout=DELIVERY_BOUND + 30, interval=0.2, what="every paid order")
    delay = delivery_delay([order], terminated_at)
    print(
        f"\n[faults] worker's connection terminated mid-fulfilment: delivered {delay:.1f}s later;"
        f" {len(paid)} purchases with connections terminated, slowest request {shopper.slowest:.2f}s"
    )
    # Retried at once on a new connection, not left for the sweeper's next turn.
    assert "database connection lost in fulfil_order" in worker.output()
    assert delay < orders.DELIVERY_GRACE.total_seconds()
    assert shopper.slowest < REQUEST_BOUND
    assert_each_delivered_exactly_once(paid)
