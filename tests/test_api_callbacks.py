"""Signed delivery callbacks to agents' shops, against a real local HTTP server: signed like
API requests (verified here from the documented recipe), retried with exponential backoff,
given up after the last attempt; visible to the agent and to staff, who can send again."""

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import ApiKey
from agents.services import api_keys
from orders.models import ApiCallback, Order
from orders.services import callbacks
from orders.tasks import fulfil_order, send_due_callbacks
from tests.api_helpers import Signed, issue_key, make_agent, top_up
from tests.factories import ProductFactory, add_stock

CallbackStatus = ApiCallback.Status
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english")]


class Shop:
    """A real HTTP server in a thread that records callbacks and answers with scripted codes."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.received: list[dict] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                shop.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = shop.statuses.pop(0) if len(shop.statuses) > 1 else shop.statuses[0]
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"try later")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/kamarket/callback?shop=7"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def shop_server():
    servers = []

    def start(statuses=(200,)):
        server = Shop(statuses)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def agent_with_stock():
    agent = make_agent()
    product = ProductFactory()
    add_stock(product, 5)
    top_up(agent.user, "1000")
    return agent, product


def place(client: Signed, product, no="CB-1", **extra):
    response = client.post("/api/v1/orders/", {"product_id": product.pk, "quantity": 1, "agent_order_no": no, **extra})
    assert response.status_code == 201, response.content
    return Order.objects.get(agent_order_no=no)


def verify(request: dict, secret: str, max_skew: int = 300) -> dict:
    """What the agent's shop does: check the signature and time, then trust the JSON."""
    headers = request["headers"]
    message = "\n".join(
        [
            "POST",
            request["path"],
            headers["X-Timestamp"],
            headers["X-Nonce"],
            hashlib.sha256(request["body"]).hexdigest(),
        ]
    )
    expected = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, headers["X-Signature"]), "callback signature does not verify"
    assert abs(time.time() - int(headers["X-Timestamp"])) <= max_skew
    return json.loads(request["body"])


def make_due(callback: ApiCallback) -> None:
    ApiCallback.objects.filter(pk=callback.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_a_delivered_order_is_called_back_signed_with_the_keys_secret(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    server = shop_server([200])
    shop = issue_key(agent, callback_url=server.url)

    order = place(shop, product)

    assert order.status == Order.Status.DELIVERED
    (request,) = server.received
    assert request["path"] == "/kamarket/callback?shop=7"
    assert request["headers"]["X-Api-Key"] == shop.key_id
    assert request["headers"]["X-Event"] == "order.delivered"
    payload = verify(request, shop.secret)
    assert payload["event"] == "order.delivered"
    assert (payload["order_number"], payload["agent_order_no"], payload["status"]) == (
        order.number,
        "CB-1",
        "delivered",
    )
    assert payload["total"] == str(order.total) and payload["quantity"] == 1
    assert "codes" not in payload and "secret" not in request["body"].decode()
    callback = ApiCallback.objects.get()
    assert (callback.status, callback.attempts, callback.last_status_code) == (CallbackStatus.DELIVERED, 1, 200)
    assert callback.key.key_id == shop.key_id and callback.delivered_at is not None
    assert payload["callback_id"] == callback.pk


def test_a_tampered_callback_fails_verification(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    server = shop_server([200])
    shop = issue_key(agent, callback_url=server.url)
    place(shop, product)
    forged = dict(server.received[0], body=server.received[0]["body"].replace(b'"quantity":1', b'"quantity":9'))
    with pytest.raises(AssertionError, match="does not verify"):
        verify(forged, shop.secret)
    with pytest.raises(AssertionError, match="does not verify"):
        verify(server.received[0], "sk_someone-else")


def test_the_orders_own_callback_url_wins_and_no_url_means_no_callback(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    key_server, order_server = shop_server([200]), shop_server([200])
    shop = issue_key(agent, callback_url=key_server.url)
    place(shop, product, "CB-1", callback_url=order_server.url)
    assert len(order_server.received) == 1 and not key_server.received

    quiet = issue_key(agent)
    place(quiet, product, "CB-2")
    assert ApiCallback.objects.count() == 1


@pytest.fixture
def delivery_held(monkeypatch):
    """The API order is paid but its fulfilment not queued: the delivery runs when the test says."""
    monkeypatch.setattr("orders.services.orders._queue_fulfilment", lambda order_id: None)


def test_a_key_given_a_url_after_the_order_was_placed_is_called_back_at_delivery(
    agent_with_stock, shop_server, delivery_held
):
    agent, product = agent_with_stock
    server = shop_server([200])
    shop = issue_key(agent)
    order = place(shop, product, "CB-LATE")
    assert order.status == Order.Status.PAID and not ApiCallback.objects.exists()  # no URL: nothing prepared
    key = ApiKey.objects.get(key_id=shop.key_id)
    api_keys.apikey_update(agent=agent, key_id=key.pk, name=key.name, ip_allowlist="", callback_url=server.url)

    assert fulfil_order(order.pk)

    (request,) = server.received
    payload = verify(request, shop.secret)
    order.refresh_from_db()
    assert (payload["order_number"], payload["status"]) == (order.number, "delivered")
    callback = ApiCallback.objects.get()
    assert (callback.key_id, callback.url, callback.status) == (key.pk, server.url, CallbackStatus.DELIVERED)
    assert payload["callback_id"] == callback.pk


def test_the_callback_is_queued_with_the_delivery_so_beat_sends_it_when_its_task_is_lost(
    agent_with_stock, shop_server, delivery_held, monkeypatch
):
    agent, product = agent_with_stock
    server = shop_server([200])
    shop = issue_key(agent, callback_url=server.url)
    order = place(shop, product, "CB-LOST")
    lost = []
    monkeypatch.setattr(callbacks, "publish", lambda task, *args: lost.append((task.name, args)))

    assert fulfil_order(order.pk)

    callback = ApiCallback.objects.get()
    assert lost == [("orders.tasks.send_callback", (callback.pk,))] and not server.received
    order.refresh_from_db()
    # Committed with the delivery: the payload is the delivered order's, and it is due now.
    assert order.status == Order.Status.DELIVERED
    assert callback.next_attempt_at <= timezone.now() and callback.status == CallbackStatus.PENDING
    assert json.loads(callback.payload) == callbacks._payload(order, callback.pk)
    assert json.loads(callback.payload)["delivered_at"] == order.delivered_at.isoformat()

    assert send_due_callbacks() == 1
    (request,) = server.received
    assert verify(request, shop.secret)["status"] == "delivered"
    # Delivered once: a second run of the fulfilment or of beat sends nothing more.
    assert fulfil_order(order.pk) is False and send_due_callbacks() == 0 and len(server.received) == 1


def test_a_delivery_that_rolls_back_queues_no_callback(agent_with_stock, shop_server, delivery_held, monkeypatch):
    agent, product = agent_with_stock
    server = shop_server([200])
    shop = issue_key(agent, callback_url=server.url)
    order = place(shop, product, "CB-ROLLBACK")

    def broken(**kwargs):
        raise RuntimeError("commissions could not be booked")

    monkeypatch.setattr("agents.services.commissions.commissions_book", broken)
    with pytest.raises(RuntimeError):
        fulfil_order(order.pk)

    order.refresh_from_db()
    callback = ApiCallback.objects.get()
    assert order.status == Order.Status.PAID and callback.payload == "" and callback.next_attempt_at is None
    assert send_due_callbacks() == 0 and not server.received
    monkeypatch.undo()
    assert fulfil_order(order.pk)
    assert len(server.received) == 1


def test_a_server_error_is_retried_with_backoff(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    server = shop_server([500, 200])
    shop = issue_key(agent, callback_url=server.url)

    place(shop, product)

    callback = ApiCallback.objects.get()
    assert (callback.status, callback.attempts, callback.last_status_code) == (CallbackStatus.PENDING, 1, 500)
    wait = callback.next_attempt_at - timezone.now()
    assert timedelta(seconds=50) < wait <= timedelta(minutes=1)
    # Not due yet: the beat task leaves it alone.
    assert send_due_callbacks() == 0
    assert len(server.received) == 1

    make_due(callback)
    assert send_due_callbacks() == 1

    callback.refresh_from_db()
    assert (callback.status, callback.attempts, callback.last_status_code) == (CallbackStatus.DELIVERED, 2, 200)
    assert len(server.received) == 2
    first, second = (verify(r, shop.secret) for r in server.received)
    assert first == second  # the same body each time; nonces differ
    assert server.received[0]["headers"]["X-Nonce"] != server.received[1]["headers"]["X-Nonce"]


def test_backoff_doubles_from_one_minute():
    assert [callbacks.backoff(n) for n in range(1, 8)] == [timedelta(minutes=2**i) for i in range(7)]


def test_it_gives_up_after_the_last_attempt(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    server = shop_server([503])
    shop = issue_key(agent, callback_url=server.url)
    place(shop, product)
    callback = ApiCallback.objects.get()

    waits = []
    while callback.status == CallbackStatus.PENDING:
        waits.append(round((callback.next_attempt_at - timezone.now()).total_seconds() / 60))
        make_due(callback)
        callbacks.callback_send(callback_id=callback.pk)
        callback.refresh_from_db()

    assert waits == [1, 2, 4, 8, 16, 32, 64]
    assert (callback.status, callback.attempts, callback.next_attempt_at) == (
        CallbackStatus.FAILED,
        callbacks.MAX_ATTEMPTS,
        None,
    )
    assert len(server.received) == callbacks.MAX_ATTEMPTS
    assert callback.last_error.startswith("HTTP 503")
    make_due(callback)
    assert callbacks.callback_send(callback_id=callback.pk) == "not_due"
    assert len(server.received) == callbacks.MAX_ATTEMPTS


def test_an_unreachable_shop_is_retried(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    server = shop_server([200])
    url = server.url
    server.close()  # nothing listens there any more
    shop = issue_key(agent, callback_url=url)
    place(shop, product)
    callback = ApiCallback.objects.get()
    assert (callback.status, callback.attempts, callback.last_status_code) == (CallbackStatus.PENDING, 1, None)
    assert "ConnectionError" in callback.last_error


def test_a_revoked_key_cannot_sign_so_the_callback_fails(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    server = shop_server([500])
    shop = issue_key(agent, callback_url=server.url)
    place(shop, product)
    key = ApiKey.objects.get(key_id=shop.key_id)
    api_keys.apikey_revoke(agent=agent, key_id=key.pk)
    callback = ApiCallback.objects.get()
    make_due(callback)
    assert callbacks.callback_send(callback_id=callback.pk) == "failed"
    callback.refresh_from_db()
    assert callback.status == CallbackStatus.FAILED and "revoked" in callback.last_error
    assert len(server.received) == 1


def test_a_rotated_key_signs_with_its_new_secret(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    server = shop_server([500, 200])
    shop = issue_key(agent, callback_url=server.url)
    place(shop, product)
    key = ApiKey.objects.get(key_id=shop.key_id)
    _key, new_secret = api_keys.apikey_rotate(agent=agent, key_id=key.pk)
    make_due(ApiCallback.objects.get())
    send_due_callbacks.delay()
    verify(server.received[-1], new_secret)


def test_the_agent_sees_its_callbacks_and_can_send_a_failed_one_again(agent_with_stock, shop_server):
    agent, product = agent_with_stock
    server = shop_server([500])
    shop = issue_key(agent, callback_url=server.url)
    place(shop, product)
    ApiCallback.objects.update(status=CallbackStatus.FAILED, attempts=callbacks.MAX_ATTEMPTS, next_attempt_at=None)
    client = Client()
    client.force_login(agent.user)

    page = client.get("/agent/api-keys/").content.decode()
    assert 'data-testid="callback-row" data-status="failed"' in page and "HTTP 500" in page

    server.statuses = [200]
    callback = ApiCallback.objects.get()
    assert client.post(f"/agent/api-keys/callbacks/{callback.pk}/resend/").status_code == 302
    callback.refresh_from_db()
    assert (callback.status, callback.attempts) == (CallbackStatus.DELIVERED, 1)

    other = make_agent()
    intruder = Client()
    intruder.force_login(other.user)
    assert intruder.post(f"/agent/api-keys/callbacks/{callback.pk}/resend/").status_code == 404


def test_staff_see_callbacks_read_only_and_can_send_again(agent_with_stock, shop_server, staff):
    agent, product = agent_with_stock
    server = shop_server([200])
    shop = issue_key(agent, callback_url=server.url)
    place(shop, product)
    callback = ApiCallback.objects.get()
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/orders/apicallback/").status_code == 200
    detail = client.get(f"/admin/orders/apicallback/{callback.pk}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()

    response = client.post(
        "/admin/orders/apicallback/", {"action": "send_again", "_selected_action": [callback.pk]}, follow=True
    )
    assert response.status_code == 200
    assert len(server.received) == 2
    verify(server.received[1], shop.secret)


def test_in_production_a_callback_to_a_private_address_is_refused_unsent(agent_with_stock, shop_server, settings):
    settings.AGENT_API_CALLBACKS_ALLOW_PRIVATE = False  # the production default (SSRF)
    agent, product = agent_with_stock
    server = shop_server([200])
    shop = issue_key(agent, callback_url=server.url)  # a shop on 127.0.0.1
    place(shop, product)
    callback = ApiCallback.objects.get()
    assert server.received == []  # nothing was sent into our own network
    assert (callback.status, callback.attempts, callback.last_status_code) == (CallbackStatus.PENDING, 1, None)
    assert "not a public address" in callback.last_error


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:8000/x", True),
        ("http://10.1.2.3/x", True),
        ("http://169.254.169.254/latest/meta-data", True),
        ("http://[::1]/x", True),
        ("http://localhost/x", True),
        ("https://8.8.8.8/x", False),
    ],
)
def test_destination_check(url, refused, settings):
    settings.AGENT_API_CALLBACKS_ALLOW_PRIVATE = False
    assert bool(callbacks.destination_refusal(url)) is refused
