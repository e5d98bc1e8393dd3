"""Admission control (issue 17, "A peak like 双11"): past ADMISSION_CHECKOUTS_PER_SECOND in a
second, or while too many deliveries wait in the fulfilment queue, checkouts (platform, guest,
storefront, API) are refused at once with 429 + Retry-After and a message in the caller's format;
admitted again the next second or once the queue is short. Payment notifications are never
refused; with Redis away, admission fails open. Time stands still or moves by a patched clock
(``clock``), so a count never crosses the edge of a second by chance.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
import rest_framework.throttling  # noqa: F401  # before any clock is patched: DRF keeps time.time as its timer
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client, override_settings

from marketplace import admission
from orders.models import Order
from payments.gateways.sandbox import SandboxGateway
from tests.api_helpers import issue_key, make_agent, set_level_price, top_up
from tests.factories import AgentLevelFactory, ProductFactory, UserFactory, add_stock, storefront_create

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
RETRY = 7


@pytest.fixture(autouse=True)
def admission_settings(settings):
    settings.ADMISSION_CHECKOUTS_PER_SECOND = 2
    settings.ADMISSION_FULFILMENT_QUEUE_MAX = 0
    settings.ADMISSION_RETRY_AFTER = RETRY
    settings.LANGUAGE_CODE = "zh-hans"
    admission._depth.update(at=-1e9, value=None)
    cache.clear()
    yield
    admission._depth.update(at=-1e9, value=None)


@pytest.fixture
def product(db):
    p = ProductFactory(price=D("50.00"), face_value=D("50.00"), slug="steam-50")
    add_stock(p, 40)
    return p


def member(ip: str = "203.0.113.5", language: str = "zh-hans") -> Client:
    client = Client(REMOTE_ADDR=ip, HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(UserFactory())
    return client


def checkout(client, product, **extra):
    data = {"quantity": "1", "idempotency_key": uuid.uuid4().hex}
    return client.post(f"/orders/checkout/{product.slug}/", data, **extra)


def assert_busy(response) -> str:
    assert response.status_code == 429
    assert response["Retry-After"] == str(RETRY)
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    body = response.content.decode()
    assert 'data-testid="too-many-requests"' in body
    return body


def test_past_the_rate_checkouts_are_refused_then_admitted_the_next_second(product, clock):
    # Different buyers on different networks: admission is for the whole platform, not a buyer.
    clients = [member(f"198.51.100.{n}") for n in range(1, 5)]
    assert [checkout(c, product).status_code for c in clients[:2]] == [302, 302]
    body = assert_busy(checkout(clients[2], product))
    assert f"请在 {RETRY} 秒后重试" in body  # the reason, in Chinese, with the wait in seconds
    assert "分钟后重试" not in body  # not the rate limits' "in N minutes"
    assert Order.objects.count() == 2  # the refused checkout placed nothing
    # Reading is never refused.
    assert clients[2].get(f"/orders/checkout/{product.slug}/").status_code == 200
    assert clients[2].get(f"/p/{product.slug}/").status_code == 200
    clock.advance(1)
    assert checkout(clients[3], product).status_code == 302
    assert Order.objects.count() == 3


def test_the_htmx_checkout_shows_the_message_in_place(product, clock):
    client = member(language="en")
    for _ in range(2):
        checkout(client, product)
    answer = checkout(client, product, HTTP_HX_REQUEST="true")
    body = assert_busy(answer)
    assert "<html" not in body.lower()  # a fragment, swapped in where the content would go
    assert "more than we can take at once" in body and f"try again in {RETRY} seconds" in body


def test_guest_checkouts_are_admitted_the_same_way(product, clock):
    email = "guest@example.net"
    guest = {
        "quantity": "1",
        "idempotency_key": uuid.uuid4().hex,
        "guest_email": email,
        "guest_email_confirm": email,
        "query_password": "cha-xun-2024",
    }
    assert Client().post(f"/orders/checkout/{product.slug}/", guest).status_code == 302
    assert checkout(member(), product).status_code == 302
    assert_busy(Client().post(f"/orders/checkout/{product.slug}/", {**guest, "idempotency_key": uuid.uuid4().hex}))


def test_storefront_buy_is_refused_past_the_rate(product, settings, clock):
    from tests.builders import chain_of

    agent = chain_of(1, AgentLevelFactory(name="一级", rank=1))[0]
    shop = storefront_create(agent=agent, slug="shop", name="Shop", default_markup_value=D(10))
    settings.ADMISSION_CHECKOUTS_PER_SECOND = 1
    client = member()
    url = f"/s/{shop.slug}/p/{product.slug}/buy/"
    data = {"quantity": "1", "idempotency_key": uuid.uuid4().hex}
    first = client.post(url, data)
    assert first.status_code == 302
    assert_busy(client.post(url, {**data, "idempotency_key": uuid.uuid4().hex}))


def test_a_deep_fulfilment_queue_sheds_checkouts_until_it_drains(product, settings, monkeypatch, clock):
    settings.ADMISSION_CHECKOUTS_PER_SECOND = 0
    settings.ADMISSION_FULFILMENT_QUEUE_MAX = 10
    depth = {"fulfilment": 11}
    reads = []
    monkeypatch.setattr(admission.queues, "queue_lengths", lambda queues=None: reads.append(1) or dict(depth))
    client = member()
    assert_busy(checkout(client, product))
    assert_busy(checkout(client, product))
    assert len(reads) == 1  # read once, kept for a second (per process)
    depth["fulfilment"] = 3
    admission._depth["at"] = -1e9  # the second is over
    assert checkout(client, product).status_code == 302


def test_payment_notifications_are_never_refused(product, settings, monkeypatch, clock):
    """Over the rate and with a deep queue, a payment is still applied: money already taken."""
    client = member()
    assert [checkout(client, product).status_code for _ in range(2)] == [302, 302]
    assert_busy(checkout(client, product))
    settings.ADMISSION_FULFILMENT_QUEUE_MAX = 1
    monkeypatch.setattr(admission.queues, "queue_lengths", lambda queues=None: {"fulfilment": 10_000})
    admission._depth["at"] = -1e9
    assert_busy(checkout(client, product))
    for order in Order.objects.all():
        body = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
        answer = Client().post("/payments/notify/sandbox/", data=body, content_type="application/x-www-form-urlencoded")
        assert answer.status_code == 200 and answer.content.endswith(b"success")
    assert Order.objects.exclude(paid_at=None).count() == 2


def test_the_api_answers_busy_in_json(product, settings, clock):
    gold = AgentLevelFactory(name="金牌", rank=4)
    agent = make_agent(level_obj=gold)
    set_level_price(gold, product, "45.00")
    top_up(agent.user, "1000")
    shop = issue_key(agent)
    payloads = [{"product_id": product.pk, "quantity": 1, "agent_order_no": f"N-{n}"} for n in range(3)]
    answers = [shop.post("/api/v1/orders/", p) for p in payloads]
    assert [a.status_code for a in answers] == [201, 201, 429]
    busy = answers[2]
    assert busy["Retry-After"] == str(RETRY)
    assert busy.json()["code"] == "busy" and busy.json()["retry_after"] == RETRY
    assert not Order.objects.filter(agent_order_no="N-2").exists()
    assert shop.get("/api/v1/balance/").status_code == 200  # reads are not admission-controlled


def test_counted_in_redis_across_processes_and_open_when_redis_is_away(redis_url, product):
    options = {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}
    redis_cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url, "OPTIONS": options}
    prefix = f"test-adm-{uuid.uuid4().hex}"
    with override_settings(CACHES={"default": {**redis_cache, "KEY_PREFIX": prefix}}):
        try:
            answers = [admission.checkout_admit() for _ in range(3)]
            # One counter for the second, whichever process counts: here, at most two may pass
            # (three if the clock's second turned between the calls).
            assert answers[0] is None
            assert answers[2] is None or answers[2] == admission.Refusal("rate", RETRY)
            import redis

            conn = redis.Redis.from_url(redis_url)
            keys = list(conn.scan_iter(f"{prefix}*admission:checkout:*"))
            assert keys and all(0 < conn.ttl(k) <= 3 for k in keys)
        finally:
            cache.clear()
            cache.close()
    away = {"default": {**redis_cache, "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=away):
        assert [admission.checkout_admit() for _ in range(5)] == [None] * 5  # fails open
        cache.close()


# --- overload: requests that waited too long for a web process ------------------------------


@pytest.fixture
def waited_socket():
    """The server side of a TCP connection whose request arrived ``seconds`` ago, as gunicorn
    hands it to the application (environ["gunicorn.socket"])."""
    import socket
    import time

    opened = []

    def make(seconds: float):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname())
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(seconds)
        accepted, _ = server.accept()
        opened.extend([server, client, accepted])
        return accepted

    yield make
    for s in opened:
        s.close()


def overload_answer(path: str, sock, started_before: float = 60, method: str = "get", **headers):
    """The middleware's answer, in a process that became ready ``started_before`` seconds ago;
    and whether the view ran."""
    import time

    from django.test import RequestFactory

    from marketplace.admission import OverloadMiddleware

    ran = []
    request = getattr(RequestFactory(), method)(path, **headers)
    request.META["gunicorn.socket"] = sock
    middleware = OverloadMiddleware(lambda r: ran.append(r) or HttpResponse("ok"))
    middleware.ready = time.monotonic() - started_before
    response = middleware(request)
    return response, bool(ran)


def test_a_request_that_waited_too_long_is_refused_at_once(settings, waited_socket):
    settings.ADMISSION_QUEUE_WAIT_MS = 100
    admission._rendered.clear()
    late = waited_socket(0.3)
    assert admission.queue_wait(type("R", (), {"META": {"gunicorn.socket": late}})()) >= 0.25
    response, ran = overload_answer("/p/steam-50/", late, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert not ran and response.status_code == 429 and response["Retry-After"] == str(RETRY)
    body = response.content.decode()
    assert 'data-testid="too-many-requests"' in body and "网站此刻非常繁忙" in body and f"{RETRY} 秒后重试" in body
    # htmx gets the fragment, the API its JSON, in the reader's language.
    fragment, _ = overload_answer("/orders/x/status/", late, HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE="en")
    assert fragment.status_code == 429 and "<html" not in fragment.content.decode()
    assert "could not get to your request in time" in fragment.content.decode()
    api, _ = overload_answer("/api/v1/orders/", late, HTTP_ACCEPT_LANGUAGE="en")
    assert api.status_code == 429 and api["Content-Type"] == "application/json"
    assert json.loads(api.content) == {
        "code": "busy",
        "message": json.loads(api.content)["message"],
        "retry_after": RETRY,
    }
    assert "too busy" in json.loads(api.content)["message"]
    # A request served at once passes; so does every request with the check off.
    assert overload_answer("/p/steam-50/", waited_socket(0))[1]
    # A request that arrived before the process was ready waited for it to start (a restart, a
    # cold start), not behind an overload: served.
    assert overload_answer("/p/steam-50/", late, started_before=0.1)[1]
    settings.ADMISSION_QUEUE_WAIT_MS = 0
    assert overload_answer("/p/steam-50/", late)[1]


def test_payment_notifications_and_health_checks_are_never_refused_for_waiting(settings, waited_socket):
    settings.ADMISSION_QUEUE_WAIT_MS = 100
    late = waited_socket(0.3)
    for path in ("/payments/notify/sandbox/", "/payments/notify/wechatpay/refund/", "/supply/callback/1/"):
        assert overload_answer(path, late, method="post")[1], path
    for path in ("/health/", "/metrics"):
        assert overload_answer(path, late)[1], path
    assert not overload_answer("/orders/checkout/steam-50/", late)[1]


def test_without_gunicorns_socket_nothing_is_refused(settings, product):
    """The test client, runserver, another server: the wait is unknown and nothing is refused."""
    settings.ADMISSION_QUEUE_WAIT_MS = 1
    assert Client().get(f"/p/{product.slug}/").status_code == 200


def refused(gate: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("kamarket_admission_refused_total", {"gate": gate}) or 0.0


def test_refusals_are_counted_for_metrics_by_gate(product, settings, monkeypatch, clock, waited_socket):
    """Each 429 is counted once under its gate (kamarket_admission_refused_total, alerted on in
    ops/prometheus/alerts.yml); admitted requests are not counted."""
    before = {gate: refused(gate) for gate in admission.GATES}
    client = member()
    assert [checkout(client, product).status_code for _ in range(3)] == [302, 302, 429]
    assert refused("rate") == before["rate"] + 1
    settings.ADMISSION_CHECKOUTS_PER_SECOND = 0
    settings.ADMISSION_FULFILMENT_QUEUE_MAX = 10
    monkeypatch.setattr(admission.queues, "queue_lengths", lambda queues=None: {"fulfilment": 11})
    assert_busy(checkout(client, product))
    assert refused("queue") == before["queue"] + 1
    settings.ADMISSION_QUEUE_WAIT_MS = 100
    assert overload_answer("/p/steam-50/", waited_socket(0.3))[0].status_code == 429
    assert overload_answer("/p/steam-50/", waited_socket(0))[1]  # served: not counted
    assert refused("overload") == before["overload"] + 1
    assert refused("rate") == before["rate"] + 1
    # Exported on /metrics, every gate's series present.
    settings.METRICS_TOKEN = "t0ken"
    body = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").content.decode()
    for gate in admission.GATES:
        assert f'kamarket_admission_refused_total{{gate="{gate}"}}' in body
