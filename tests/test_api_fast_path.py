"""The balance-paid API order's own cost (issue 17), and what its shortcuts keep.

A process keeps each key with its agent and user (``agents.services.api_keys``); the statement
that records a request's nonce also checks those rows against the database, so any change to
them (revoked, rotated, allow-list, account disabled, level) applies from the next request.
"""

import uuid
from decimal import Decimal
from types import SimpleNamespace

import pytest
import redis
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from agents.models import Agent, ApiKey, ApiNonce
from agents.services import api_keys
from marketplace.celery import app as celery_app
from orders.models import Order
from tests.api_helpers import issue_key, level, make_agent, set_level_price, top_up
from tests.factories import ProductFactory, add_stock

pytestmark = pytest.mark.usefixtures("english")

D = Decimal


@pytest.fixture
def shop(db):
    gold = level("金牌", 4)
    product = ProductFactory(price=D("20.00"))
    add_stock(product, 10)
    set_level_price(gold, product, "15.00")
    agent = make_agent(level_obj=gold)
    top_up(agent.user, "500")
    signed = issue_key(agent)
    return signed, agent, product


def order(signed, product, no, **kw):
    return signed.post("/api/v1/orders/", {"product_id": product.pk, "quantity": 1, "agent_order_no": no}, **kw)


@pytest.fixture
def broker_recorded(monkeypatch):
    """Delivery queued, not run in place: the request alone, as under a real worker."""
    celery_app.conf.task_always_eager = False
    sent = []
    monkeypatch.setattr("celery.app.task.Task.delay", lambda self, *args, **kw: sent.append((self.name, args)))
    return sent


@pytest.mark.postgres
def test_a_plain_balance_paid_order_costs_its_pinned_statements(
    shop, broker_recorded, django_capture_on_commit_callbacks
):
    signed, _agent, product = shop
    assert order(signed, product, "WARM-1").status_code == 201  # the process reads the key once

    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
        response = order(signed, product, "PIN-1")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["total"], body["coupon_code"], body["codes"]) == ("paid", "15.00", "", None)
    placed = Order.objects.get(agent_order_no="PIN-1")
    assert broker_recorded[-1] == ("orders.tasks.fulfil_order", (placed.pk,))
    sql = [q["sql"] for q in ctx.captured_queries]
    # The API's own: one statement for the key and the nonce (no key SELECT, no transaction of its
    # own), the order looked up by agent_order_no once, no coupon-use lookup for an order without a
    # discount, no re-read of the order after payment.
    assert sum("agents_apinonce" in s for s in sql) == 1
    assert not [s for s in sql if s.lstrip().startswith("SELECT") and '"agents_apikey"' in s]
    assert not [s for s in sql if "marketing_couponuse" in s]
    assert sum(s.startswith("SELECT id FROM orders_order WHERE agent_id") for s in sql) == 1  # a new number
    whole_order = ('SELECT "orders_order"', 'SELECT "id", "number"')  # the ORM's read, the lock's (rows.lock_one)
    assert not [s for s in sql if s.startswith(whole_order)]  # never the whole order again
    # The order this transaction placed is not locked again: no other transaction can see it.
    assert not [s for s in sql if s.startswith("SELECT status, expires_at, buyer_id FROM orders_order")]
    # The whole request (order_place's and the ledger's statements included): 21 on 2026-12-05
    # with the checkout's and the ledger's work merged (24 with the API's own work alone, 29 before
    # issue 17); 20 with the move to paid and its history row one statement (h-pay2); 19 with the
    # order's INSERT folded into its claim (h-place); 18 without the relock of the order just
    # placed, and 17 with its price chain's shares written in the order's statement (h-fold); 15
    # with the payment row and the ledger entry written by the order's move to paid, as a
    # gateway's are (ninth session). A change elsewhere on the path changes this figure: update it.
    assert len(sql) == 15, "\n".join(s[:120] for s in sql)
    # The payment and the entry ride the move: no INSERT of their own.
    assert not [s for s in sql if s.startswith(('INSERT INTO "payments_payment"', 'INSERT INTO "ledger_entry"'))]
    moves = [s for s in sql if s.startswith("WITH moved AS")]
    assert len(moves) == 1 and '"payments_payment"' in moves[0] and '"ledger_entry"' in moves[0]


@pytest.mark.postgres
def test_an_order_another_request_placed_meanwhile_is_locked_before_it_is_paid(
    shop, broker_recorded, django_capture_on_commit_callbacks, monkeypatch
):
    """The race the agent order number's lookup cannot see: another request commits the same
    number between the lookup and this request's INSERT. ``order_place`` raises ``OrderExists``
    with that order (it did not place it), so ``balance_pay`` locks its row before paying it."""
    from api import services as api_services
    from orders.services import orders as order_services

    signed, agent, product = shop
    same = {
        "buyer": agent.user,
        "product_id": product.pk,
        "quantity": 1,
        "idempotency_key": api_services.idempotency_key("RACE-1"),
        "channel": Order.Channel.API,
        "agent_order_no": "RACE-1",
    }
    theirs = order_services.order_place(**same)
    with pytest.raises(order_services.OrderExists) as exists:
        order_services.order_place(**same, return_existing=False)
    assert exists.value.order.pk == theirs.pk
    monkeypatch.setattr(api_services, "_order_of", lambda agent, agent_order_no: None)  # the lookup ran too early

    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
        response = order(signed, product, "RACE-1")

    assert response.status_code == 201, response.content
    assert response.json()["order_number"] == theirs.number
    assert Order.objects.get(pk=theirs.pk).status == Order.Status.PAID
    assert Order.objects.filter(agent_order_no="RACE-1").count() == 1
    locks = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SELECT status, expires_at, buyer_id")]
    assert len(locks) == 1 and locks[0].endswith("FOR UPDATE")


def test_a_repeat_still_answers_the_same_order_from_the_kept_key(shop):
    signed, _agent, product = shop
    first = order(signed, product, "SAME-1")
    again = order(signed, product, "SAME-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["order_number"] == first.json()["order_number"]


def test_a_nonce_is_refused_the_second_time_with_the_key_kept(shop):
    signed, _agent, product = shop
    assert order(signed, product, "N-1").status_code == 201
    assert order(signed, product, "N-2", nonce="n" * 20).status_code == 201
    replay = order(signed, product, "N-3", nonce="n" * 20)
    assert replay.status_code == 401 and replay.json()["code"] == "nonce_reused"
    assert ApiNonce.objects.filter(nonce="n" * 20).count() == 1


def test_a_revoked_key_is_refused_at_the_very_next_request(shop):
    signed, agent, product = shop
    assert order(signed, product, "R-1").status_code == 201  # kept by this process now
    key = ApiKey.objects.get(key_id=signed.key_id)
    assert api_keys.apikey_revoke(agent=agent, key_id=key.pk)
    refused = order(signed, product, "R-2")
    assert refused.status_code == 401 and refused.json()["code"] == "key_revoked"
    assert not Order.objects.filter(agent_order_no="R-2").exists()


def test_a_revocation_written_straight_to_the_row_is_seen_too(shop):
    signed, _agent, product = shop
    assert order(signed, product, "R-1").status_code == 201
    ApiKey.objects.filter(key_id=signed.key_id).update(revoked_at=timezone.now())
    refused = order(signed, product, "R-2")
    assert refused.status_code == 401 and refused.json()["code"] == "key_revoked"


def test_a_deleted_key_is_unknown_at_once(shop):
    signed, _agent, product = shop
    assert order(signed, product, "D-1").status_code == 201
    ApiKey.objects.filter(key_id=signed.key_id).delete()
    refused = order(signed, product, "D-2")
    assert refused.status_code == 401 and refused.json()["code"] == "unknown_key"


def test_a_rotated_secret_works_at_once_and_the_old_one_in_its_grace(shop):
    signed, agent, product = shop
    assert order(signed, product, "S-1").status_code == 201
    key = ApiKey.objects.get(key_id=signed.key_id)
    _key, new_secret = api_keys.apikey_rotate(agent=agent, key_id=key.pk)
    assert order(signed, product, "S-2", secret=new_secret).status_code == 201
    assert order(signed, product, "S-3").status_code == 201  # the previous secret, within its grace
    ApiKey.objects.filter(pk=key.pk).update(previous_valid_until=timezone.now())
    expired = order(signed, product, "S-4")
    assert expired.status_code == 401 and expired.json()["code"] == "bad_signature"


def test_an_allow_list_change_applies_at_the_next_request(shop):
    signed, agent, product = shop
    assert order(signed, product, "IP-1").status_code == 201
    key = ApiKey.objects.get(key_id=signed.key_id)
    api_keys.apikey_update(agent=agent, key_id=key.pk, name="shop", ip_allowlist="203.0.113.7", callback_url="")
    refused = order(signed, product, "IP-2")
    assert refused.status_code == 403 and refused.json()["code"] == "ip_not_allowed"
    assert order(signed, product, "IP-3", ip="203.0.113.7").status_code == 201
    api_keys.apikey_update(agent=agent, key_id=key.pk, name="shop", ip_allowlist="", callback_url="")
    assert order(signed, product, "IP-4").status_code == 201  # widened again: the kept copy is not the judge


def test_a_disabled_account_is_refused_at_once_and_served_again_when_enabled(shop):
    signed, agent, product = shop
    assert order(signed, product, "U-1").status_code == 201
    User.objects.filter(pk=agent.user_id).update(is_active=False)
    refused = order(signed, product, "U-2")
    assert refused.status_code == 403 and refused.json()["code"] == "agent_inactive"
    User.objects.filter(pk=agent.user_id).update(is_active=True)
    assert order(signed, product, "U-3").status_code == 201


def test_without_the_kept_copy_the_same_answers(shop, monkeypatch):
    """Elsewhere than on PostgreSQL (SQLite in development; the fingerprint is PostgreSQL's SQL)
    nothing is kept and the nonce is recorded by the ORM: the same answers."""
    monkeypatch.setattr(api_keys, "_kept", lambda: False)
    signed, agent, product = shop
    assert order(signed, product, "P-1", nonce="p" * 20).status_code == 201
    replay = order(signed, product, "P-2", nonce="p" * 20)
    assert replay.status_code == 401 and replay.json()["code"] == "nonce_reused"
    assert signed.key_id not in api_keys._KEYS
    User.objects.filter(pk=agent.user_id).update(is_active=False)
    refused = order(signed, product, "P-3")
    assert refused.status_code == 403 and refused.json()["code"] == "agent_inactive"
    User.objects.filter(pk=agent.user_id).update(is_active=True)
    ApiKey.objects.filter(key_id=signed.key_id).update(revoked_at=timezone.now())
    refused = order(signed, product, "P-4")
    assert refused.status_code == 401 and refused.json()["code"] == "key_revoked"


def test_a_new_level_prices_the_next_order(shop):
    signed, agent, product = shop
    assert order(signed, product, "L-1").json()["unit_price"] == "15.00"
    basic = level("普通", 1)
    Agent.objects.filter(pk=agent.pk).update(level=basic)
    assert order(signed, product, "L-2").json()["unit_price"] == "20.00"


# --- the rate limit in Redis (production's cache) ---------------------------------------------


@pytest.fixture
def redis_cache(redis_url):
    prefix = f"test-api-rate-{uuid.uuid4().hex}"
    options = {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "OPTIONS": options,
            "KEY_PREFIX": prefix,
        }
    }
    try:
        with override_settings(CACHES=caches):
            yield caches
    finally:
        connection_ = redis.Redis.from_url(redis_url)
        for key in connection_.scan_iter(f"{prefix}:*"):
            connection_.delete(key)
        cache.close()


@pytest.fixture
def clock(monkeypatch):
    now = SimpleNamespace(value=1_800_000_000.0 + 10)  # 10 s into a minute
    monkeypatch.setattr("api.throttling.time", SimpleNamespace(time=lambda: now.value))
    return now


def test_the_rate_limit_in_redis_refuses_past_the_rate_without_counting_refusals(shop, settings, redis_cache, clock):
    signed, _agent, _product = shop
    settings.AGENT_API_RATE_PER_MINUTE = 3
    assert [signed.get("/api/v1/balance/").status_code for _ in range(5)] == [200, 200, 200, 429, 429]
    refused = signed.get("/api/v1/balance/")
    assert refused.json()["code"] == "rate_limited" and int(refused["Retry-After"]) == 50  # the minute's end
    ident = f"throttle_agent_api_{signed.key_id}"
    assert cache.get(f"{ident}:{int(clock.value // 60)}") == 3  # the refused ones not counted
    # 30 s into the next minute, half of the previous minute's 3 still counts: one more fits.
    clock.value += 80
    assert [signed.get("/api/v1/balance/").status_code for _ in range(2)] == [200, 429]


def test_the_rate_limit_in_redis_is_a_sliding_window(shop, settings, redis_cache, clock):
    signed, _agent, _product = shop
    settings.AGENT_API_RATE_PER_MINUTE = 10
    minute = int(clock.value // 60)
    cache.set(f"throttle_agent_api_{signed.key_id}:{minute - 1}", 12, 120)  # the previous minute: 12 requests
    # 10 s into this minute, 5/6 of those 12 (10) still fall in the last 60 s: the rate is used up.
    refused = signed.get("/api/v1/balance/")
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 50
    clock.value += int(refused["Retry-After"])
    assert signed.get("/api/v1/balance/").status_code == 200


def test_the_rate_limit_fails_open_with_redis_away(shop, settings, redis_cache):
    signed, _agent, _product = shop
    settings.AGENT_API_RATE_PER_MINUTE = 1
    away = {"default": {**redis_cache["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=away):
        assert [signed.get("/api/v1/balance/").status_code for _ in range(3)] == [200] * 3
        cache.close()


def test_balance_pay_with_the_callers_order_still_decides_on_the_locked_row(shop):
    """The caller's instance is stale (the order was cancelled meanwhile): the locked row's status
    decides, nothing is charged."""
    from orders.services import orders as order_services
    from payments.models import Payment
    from payments.services import payments
    from tests.builders import wallet_balance

    _signed, agent, product = shop
    placed = order_services.order_place(buyer=agent.user, product_id=product.pk, quantity=1, idempotency_key="k-1")
    Order.objects.filter(pk=placed.pk).update(status=Order.Status.CANCELLED)
    before = wallet_balance(agent.user)
    with pytest.raises(payments.PaymentError):
        payments.balance_pay(order_number=placed.number, buyer=agent.user, order=placed)
    assert placed.status == Order.Status.CANCELLED
    assert wallet_balance(agent.user) == before and not Payment.objects.filter(order=placed).exists()
    other = order_services.order_place(buyer=agent.user, product_id=product.pk, quantity=1, idempotency_key="k-2")
    paid = payments.balance_pay(order_number=other.number, buyer=agent.user, order=other)
    assert paid.order is other and other.status == Order.Status.PAID
    assert Order.objects.get(pk=other.pk).status == Order.Status.PAID
    assert wallet_balance(agent.user) == before - other.total


def test_the_order_body_is_what_the_order_serializer_renders(shop, django_capture_on_commit_callbacks):
    """``api.views._order_body`` builds the response without DRF's serializer: field for field
    what ``OrderSerializer`` (the documented schema) renders, for orders in every shape."""
    from datetime import timedelta

    from api import services as api_services
    from api.serializers import OrderSerializer
    from api.views import _order_body
    from marketing.models import Coupon
    from marketing.services import coupons
    from orders.services import orders as order_services

    signed, agent, product = shop
    coupons.coupon_create(
        name="Promo",
        kind=Coupon.Kind.FIXED,
        amount=D("2.50"),
        ends_at=timezone.now() + timedelta(days=1),
        public_code="BODY25",
        per_user_limit=None,
    )
    pending = order_services.order_place(
        buyer=agent.user,
        product_id=product.pk,
        quantity=1,
        idempotency_key="api:B-0",
        channel=Order.Channel.API,
        agent_order_no="B-0",
    )
    assert pending.status == Order.Status.PENDING
    with django_capture_on_commit_callbacks(execute=True):  # the delivery, eagerly
        assert order(signed, product, "B-1").status_code == 201
    coupon = signed.post(
        "/api/v1/orders/", {"product_id": product.pk, "quantity": 2, "agent_order_no": "B-2", "coupon_code": "body25"}
    )
    assert coupon.status_code == 201 and coupon.json()["coupon_code"] == "BODY25"
    Order.objects.filter(agent_order_no="B-1").update(topup_values={"phone": "13812345678", "zone": ""})
    shapes = list(Order.objects.filter(agent=agent).order_by("id"))
    assert [o.agent_order_no for o in shapes] == ["B-0", "B-1", "B-2"]
    key = ApiKey.objects.get(key_id=signed.key_id)
    for placed in [pending, *shapes]:  # as placed (in memory) and as read back
        codes = api_services.api_order_codes(key=key, order=placed, ip="127.0.0.1")
        fast = _order_body(placed, codes)
        placed.revealed_codes = codes
        placed.coupon_code_used = api_services.order_coupon_code(placed)
        assert fast == dict(OrderSerializer(placed).data), placed.agent_order_no
    bodies = [_order_body(o) for o in shapes]
    assert bodies[0]["paid_at"] is None and bodies[1]["delivered_at"] is not None and bodies[2]["discount"] == "2.50"


@pytest.mark.postgres
def test_an_api_orders_delivery_without_a_callback_costs_two_statements_more(
    shop, broker_recorded, django_capture_on_commit_callbacks
):
    """The delivery of an API order whose key has no URL: the plain fulfilment's statements, the
    callback probe (one statement of constant text, in the delivery's transaction) and the
    earning shares (one, compiled once); no transaction of its own for the callback."""
    signed, _agent, product = shop
    assert order(signed, product, "DELIVER-1").status_code == 201
    assert order(signed, product, "DELIVER-2").status_code == 201
    first, second = Order.objects.filter(agent_order_no__startswith="DELIVER-").order_by("pk")
    from orders.services import orders as order_services

    with django_capture_on_commit_callbacks(execute=True):  # warm: the ledger's accounts kept, the compiles
        assert order_services.order_fulfil(order_id=first.pk)
    with CaptureQueriesContext(connection) as ctx:
        assert order_services.order_fulfil(order_id=second.pk)
    sql = [q["sql"] for q in ctx.captured_queries]
    # The plain fulfilment's 6 (SAVEPOINT ... RELEASE: the test's transaction), and these two:
    assert len(sql) == 8, "\n".join(s[:120] for s in sql)
    assert sum("agents_apicallback" in s for s in sql) == 1
    assert sum('FROM "orders_ordershare"' in s for s in sql) == 1
    assert not [s for s in sql if s.startswith('SELECT "agents_apikey"')]
    second.refresh_from_db()
    assert second.status == Order.Status.DELIVERED
