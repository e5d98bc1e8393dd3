"""The integration API: signed requests (real HMAC), prices per agent, orders paid from the
balance and idempotent on the agent's order number, codes read with a log, refusals audited,
rate limits, the OpenAPI schema and its docs page, and the API-keys dashboard."""

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from agents.models import ApiKey, ApiNonce, PriceKind
from agents.services import agents as services
from agents.services import api_keys
from agents.tasks import purge_api_nonces
from catalog.models import CardCode
from compliance.models import AuditEvent
from marketplace import crypto
from orders.models import CodeReveal, Order
from payments.models import Payment
from tests.api_helpers import Signed, issue_key, level, make_agent, set_level_price, top_up
from tests.builders import run_concurrently, wallet_balance
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = pytest.mark.usefixtures("english")

D = Decimal


@pytest.fixture
def world(db):
    """Two agents in different chains: A (gold, top) and B (below C, who marks up 3.00)."""
    gold, basic = level("金牌", 4), level("普通", 1)
    product = ProductFactory(price=D("97.00"))
    codes = add_stock(product, 6)
    a = make_agent(level_obj=gold)
    set_level_price(gold, product, "92.00")
    c = make_agent(level_obj=basic)
    b = make_agent(level_obj=basic, upline=c)
    services.markup_set(agent=c, kind=PriceKind.FIXED, value="3.00")
    return {"product": product, "codes": codes, "a": a, "b": b, "c": c}


def audited(code: str) -> AuditEvent:
    events = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.DENIED, detail__startswith=f"{code}:")
    assert events.count() == 1, list(AuditEvent.objects.values_list("action", "detail"))
    return events.get()


def order_payload(product, no="SHOP-1", quantity=1, **extra):
    return {"product_id": product.pk, "quantity": quantity, "agent_order_no": no, **extra}


# --- products --------------------------------------------------------------------------------


def test_products_show_the_calling_agents_own_price_and_live_stock(world):
    ProductFactory(is_active=False)  # not on sale: not listed
    shop_a, shop_b = issue_key(world["a"]), issue_key(world["b"])
    pid = world["product"].pk

    body_a = shop_a.get("/api/v1/products/").json()
    body_b = shop_b.get("/api/v1/products/").json()

    assert body_a["count"] == body_b["count"] == 1
    (pa,), (pb,) = body_a["results"], body_b["results"]
    assert (pa["id"], pa["price"], pa["list_price"], pa["stock"]) == (pid, "92.00", "97.00", 6)
    assert (pb["id"], pb["price"], pb["stock"]) == (pid, "100.00", 6)  # C's cost 97 + C's markup 3

    detail = shop_b.get(f"/api/v1/products/{pid}/")
    assert detail.status_code == 200 and detail.json()["price"] == "100.00"
    assert shop_b.get("/api/v1/products/999999/").json()["code"] == "not_found"


def test_products_are_paginated_with_a_constant_number_of_queries(world, django_assert_max_num_queries):
    for _ in range(7):
        add_stock(ProductFactory(), 1)
    shop = issue_key(world["b"])
    first = shop.get("/api/v1/products/?page_size=5").json()
    assert first["count"] == 8 and len(first["results"]) == 5 and first["next"].endswith("page=2&page_size=5")
    second = shop.get("/api/v1/products/?page=2&page_size=5").json()
    assert len(second["results"]) == 3
    with django_assert_max_num_queries(14):
        assert shop.get("/api/v1/products/?page_size=200").status_code == 200


# --- placing orders ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_place_pay_and_deliver_from_the_balance(world):
    a, product = world["a"], world["product"]
    top_up(a.user, "500")
    shop = issue_key(a)

    response = shop.post("/api/v1/orders/", order_payload(product, "SHOP-1", quantity=2))

    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get()
    assert (order.buyer, order.agent, order.channel) == (a.user, a, Order.Channel.API)
    assert (order.agent_order_no, order.idempotency_key) == ("SHOP-1", "api:SHOP-1")
    assert body["order_number"] == order.number and body["status"] == "delivered"
    assert (body["unit_price"], body["total"]) == ("92.00", "184.00")
    delivered = {c["secret"] for c in body["codes"]}
    assert len(delivered) == 2 and delivered <= set(world["codes"])
    assert wallet_balance(a.user) == D("316.00")
    assert Payment.objects.get(order=order).amount == D("184.00")
    reveals = CodeReveal.objects.filter(order_code__order=order)
    key = ApiKey.objects.get(key_id=shop.key_id)
    assert reveals.count() == 2 and set(reveals.values_list("user_agent", flat=True)) == {f"api:{key.key_id}"}

    # The same number again: the same order, no second order or charge; the codes read again, logged.
    again = shop.post("/api/v1/orders/", order_payload(product, "SHOP-1", quantity=2))
    assert again.status_code == 200 and again.json()["order_number"] == order.number
    assert Order.objects.count() == 1 and Payment.objects.filter(order__isnull=False).count() == 1
    assert wallet_balance(a.user) == D("316.00")
    assert reveals.count() == 4

    # Reading it, by the agent's number and by ours.
    read = shop.get("/api/v1/orders/SHOP-1/")
    assert read.status_code == 200 and read.json()["codes"] == body["codes"]
    assert shop.get(f"/api/v1/orders/by-number/{order.number}/").json()["agent_order_no"] == "SHOP-1"
    assert reveals.count() == 8
    key.refresh_from_db()
    assert key.last_used_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_same_number_for_another_product_or_quantity_is_a_conflict(world):
    top_up(world["a"].user, "500")
    shop = issue_key(world["a"])
    assert shop.post("/api/v1/orders/", order_payload(world["product"], "N-1")).status_code == 201
    response = shop.post("/api/v1/orders/", order_payload(world["product"], "N-1", quantity=2))
    assert response.status_code == 409 and response.json()["code"] == "agent_order_no_conflict"
    assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_insufficient_balance_cancels_the_order_and_releases_its_codes(world):
    a, product = world["a"], world["product"]
    top_up(a.user, "100")
    shop = issue_key(a)

    response = shop.post("/api/v1/orders/", order_payload(product, "POOR-1", quantity=2))

    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "insufficient_balance" and body["total"] == "184.00" and body["balance"] == "100.00"
    order = Order.objects.get()
    assert order.status == Order.Status.CANCELLED
    assert CardCode.objects.filter(product=product, status=CardCode.Status.AVAILABLE).count() == 6
    assert wallet_balance(a.user) == D("100.00") and not Payment.objects.filter(order__isnull=False).exists()
    # The number is used: a retry says so instead of placing a second order.
    again = shop.post("/api/v1/orders/", order_payload(product, "POOR-1", quantity=2))
    assert again.status_code == 409 and again.json()["code"] == "order_closed"
    # A new number after topping up works.
    top_up(a.user, "100")
    assert shop.post("/api/v1/orders/", order_payload(product, "POOR-2", quantity=2)).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_invalid_orders_are_refused_with_field_messages(world):
    top_up(world["a"].user, "500")
    shop = issue_key(world["a"])
    bad = shop.post("/api/v1/orders/", {"product_id": "x", "quantity": 0, "agent_order_no": "no spaces"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_request"
    assert set(bad.json()["details"]) == {"product_id", "quantity", "agent_order_no"}
    too_many = shop.post("/api/v1/orders/", order_payload(world["product"], "BIG", quantity=11))
    assert too_many.status_code == 422 and too_many.json()["code"] == "order_refused"
    sold_out = shop.post("/api/v1/orders/", order_payload(world["product"], "OUT", quantity=7))
    assert sold_out.status_code == 409 and sold_out.json()["code"] == "out_of_stock"
    assert not Order.objects.exists() and wallet_balance(world["a"].user) == D("500.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_posts_with_one_number_give_one_order_and_one_charge(world):
    a, product = world["a"], world["product"]
    top_up(a.user, "1000")
    shop = issue_key(a)
    clients = [Signed(shop.key_id, shop.secret, Client()) for _ in range(50)]
    results = run_concurrently(
        50, lambda i: clients[i].post("/api/v1/orders/", order_payload(product, "RACE-1", quantity=3)), timeout=90
    )

    errors = [r for r in results if not hasattr(r, "status_code")]
    assert not errors, errors[:3]
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(201) == 1 and statuses.count(200) == 49, statuses
    numbers = {r.json()["order_number"] for r in results}
    assert len(numbers) == 1
    assert Order.objects.count() == 1 and Payment.objects.filter(order__isnull=False).count() == 1
    assert wallet_balance(a.user) == D("1000.00") - D("276.00")
    order = Order.objects.get()
    assert order.status == Order.Status.DELIVERED
    assert CardCode.objects.filter(product=product, status=CardCode.Status.SOLD).count() == 3


# --- reading orders and balances ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_another_agents_order_is_not_found_and_the_attempt_is_logged(world):
    a, b, product = world["a"], world["b"], world["product"]
    top_up(a.user, "500")
    shop_a, shop_b = issue_key(a), issue_key(b)
    order_number = shop_a.post("/api/v1/orders/", order_payload(product, "MINE-1")).json()["order_number"]
    reveals = CodeReveal.objects.count()

    by_theirs = shop_b.get("/api/v1/orders/MINE-1/")
    by_ours = shop_b.get(f"/api/v1/orders/by-number/{order_number}/")

    for response in (by_theirs, by_ours):
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert "secret" not in response.content.decode()
    events = AuditEvent.objects.filter(action="api.order_read", outcome=AuditEvent.Outcome.DENIED)
    assert events.count() == 2 and {e.actor for e in events} == {b.user}
    assert CodeReveal.objects.count() == reveals
    # A number nobody has is a plain 404.
    assert shop_b.get("/api/v1/orders/NOBODY/").status_code == 404
    assert events.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_pending_order_has_no_codes(world):
    a, product = world["a"], world["product"]
    from orders.services.orders import order_place

    order = order_place(
        buyer=a.user,
        product_id=product.pk,
        quantity=1,
        idempotency_key="api:WAIT-1",
        channel=Order.Channel.API,
        agent_order_no="WAIT-1",
    )
    body = issue_key(a).get("/api/v1/orders/WAIT-1/").json()
    assert (body["status"], body["codes"], body["order_number"]) == ("pending", None, order.number)
    assert not CodeReveal.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_balance_shows_the_wallet_and_commissions(world):
    b, c, product = world["b"], world["c"], world["product"]
    top_up(b.user, "300")
    assert issue_key(b).post("/api/v1/orders/", order_payload(product, "B-1", quantity=2)).status_code == 201
    mine = issue_key(b).get("/api/v1/balance/").json()
    assert mine == {
        "currency": "CNY",
        "balance": "100.00",
        "commission_pending": "0.00",
        "commission_available": "0.00",
    }
    upline = issue_key(c).get("/api/v1/balance/").json()
    assert (upline["balance"], upline["commission_pending"]) == ("0.00", "6.00")  # its markup, 2 × 3.00


# --- refusals ---------------------------------------------------------------------------------


@pytest.fixture
def shop(world):
    return issue_key(world["a"])


def test_a_good_signature_is_accepted(shop):
    assert shop.get("/api/v1/balance/").status_code == 200
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "case, status, code",
    [
        ("tampered_body", 401, "bad_signature"),
        ("tampered_path", 401, "bad_signature"),
        ("tampered_query", 401, "bad_signature"),
        ("wrong_secret", 401, "bad_signature"),
        ("old_timestamp", 401, "timestamp_out_of_window"),
        ("future_timestamp", 401, "timestamp_out_of_window"),
        ("unknown_key", 401, "unknown_key"),
        ("bad_nonce", 401, "invalid_nonce"),
        ("no_signature", 401, "missing_credentials"),
    ],
)
def test_bad_requests_are_refused_with_a_code_and_audited(shop, world, case, status, code):
    now = int(time.time())
    payload = order_payload(world["product"], "T-1")
    kw = {}
    method, path = "POST", "/api/v1/orders/"
    if case == "tampered_body":
        kw["sign_body"] = json.dumps({**payload, "quantity": 5}).encode()
    elif case == "tampered_path":
        kw["sign_path"] = "/api/v1/balance/"
    elif case == "tampered_query":
        method, path, payload, kw["sign_path"] = "GET", "/api/v1/products/?page=2", None, "/api/v1/products/?page=1"
    elif case == "wrong_secret":
        kw["secret"] = "sk_not-the-secret"
    elif case == "old_timestamp":
        kw["timestamp"] = str(now - 310)
    elif case == "future_timestamp":
        kw["timestamp"] = str(now + 310)
    elif case == "unknown_key":
        kw["key_id"] = "ak_000000000000000000000000"
    elif case == "bad_nonce":
        kw["nonce"] = "short"
    elif case == "no_signature":
        kw["headers"] = {"X-Signature": ""}

    response = shop.call(method, path, payload, **kw)

    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert response["WWW-Authenticate"].startswith("X-Signature")
    event = audited(code)
    assert event.action == "api.auth" and event.path == path and event.ip == "127.0.0.1"
    assert not Order.objects.exists()


def test_a_reused_nonce_is_refused(shop):
    assert shop.get("/api/v1/balance/", nonce="n" * 16).status_code == 200
    again = shop.get("/api/v1/balance/", nonce="n" * 16)
    assert again.status_code == 401 and again.json()["code"] == "nonce_reused"
    audited("nonce_reused")
    assert ApiNonce.objects.count() == 1


def test_a_revoked_key_is_refused(shop, world):
    key = ApiKey.objects.get(key_id=shop.key_id)
    assert api_keys.apikey_revoke(agent=world["a"], key_id=key.pk) is True
    response = shop.get("/api/v1/balance/")
    assert response.status_code == 401 and response.json()["code"] == "key_revoked"
    assert audited("key_revoked").actor == world["a"].user


def test_an_address_outside_the_allow_list_is_refused(world):
    shop = issue_key(world["a"], ip_allowlist="203.0.113.0/24\n198.51.100.7")
    assert shop.get("/api/v1/balance/", ip="203.0.113.44").status_code == 200
    assert shop.get("/api/v1/balance/", ip="198.51.100.7").status_code == 200
    response = shop.get("/api/v1/balance/", ip="198.51.100.8")
    assert response.status_code == 403 and response.json()["code"] == "ip_not_allowed"
    audited("ip_not_allowed")


def test_the_allow_list_uses_the_client_address_behind_proxies(world, settings):
    settings.NUM_PROXIES = 1
    shop = issue_key(world["a"], ip_allowlist="203.0.113.9")
    ok = shop.get("/api/v1/balance/", ip="10.0.0.2", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.9"})
    assert ok.status_code == 200
    spoofed = shop.get("/api/v1/balance/", ip="10.0.0.2", headers={"X-Forwarded-For": "203.0.113.9, 1.2.3.4"})
    assert spoofed.status_code == 403


def test_a_disabled_agent_is_refused(shop, world):
    user = world["a"].user
    user.is_active = False
    user.save(update_fields=["is_active"])
    response = shop.get("/api/v1/balance/")
    assert response.status_code == 403 and response.json()["code"] == "agent_inactive"
    audited("agent_inactive")


def test_a_rotated_secret_works_during_the_grace_period_then_not(shop, world):
    key = ApiKey.objects.get(key_id=shop.key_id)
    old_secret = shop.secret
    key, new_secret = api_keys.apikey_rotate(agent=world["a"], key_id=key.pk)
    assert new_secret != old_secret
    assert key.previous_valid_until - timezone.now() > timedelta(hours=23, minutes=59)

    assert shop.get("/api/v1/balance/").status_code == 200  # old secret, in grace
    assert shop.get("/api/v1/balance/", secret=new_secret).status_code == 200

    ApiKey.objects.filter(pk=key.pk).update(previous_valid_until=timezone.now() - timedelta(seconds=1))
    response = shop.get("/api/v1/balance/")
    assert response.status_code == 401 and response.json()["code"] == "bad_signature"
    assert shop.get("/api/v1/balance/", secret=new_secret).status_code == 200


def test_the_rate_limit_answers_429_with_retry_after(shop, settings):
    settings.AGENT_API_RATE_PER_MINUTE = 3
    for _ in range(3):
        assert shop.get("/api/v1/balance/").status_code == 200
    response = shop.get("/api/v1/balance/")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited" and 0 < int(response["Retry-After"]) <= 60


def test_the_rate_limit_is_per_key(world, settings):
    settings.AGENT_API_RATE_PER_MINUTE = 1
    one, two = issue_key(world["a"]), issue_key(world["a"])
    assert one.get("/api/v1/balance/").status_code == 200
    assert one.get("/api/v1/balance/").status_code == 429
    assert two.get("/api/v1/balance/").status_code == 200


def test_the_api_uses_no_session_and_no_csrf(shop, world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["a"].user)
    # A logged-in browser session is not a credential.
    assert client.get("/api/v1/balance/").status_code == 401
    signed = Signed(shop.key_id, shop.secret, client)
    assert signed.get("/api/v1/balance/").status_code == 200
    assert "sessionid" not in signed.get("/api/v1/balance/").cookies


def test_old_nonces_are_purged(shop, settings):
    shop.get("/api/v1/balance/")
    shop.get("/api/v1/balance/")
    ApiNonce.objects.filter(pk=ApiNonce.objects.order_by("id").first().pk).update(
        seen_at=timezone.now() - timedelta(seconds=settings.AGENT_API_MAX_SKEW * 2 + 5)
    )
    assert purge_api_nonces() == 1
    assert ApiNonce.objects.count() == 1


# --- keys: the services -------------------------------------------------------------------------


def test_secrets_are_stored_encrypted_and_inputs_checked(world):
    key, secret = api_keys.apikey_create(agent=world["a"], name="Shop", ip_allowlist="10.0.0.1, 10.1.0.0/16")
    assert secret not in key.secret and crypto.decrypt(key.secret) == secret
    assert key.ip_allowlist == "10.0.0.1\n10.1.0.0/16"
    with pytest.raises(api_keys.AgentError, match="not an IP address"):
        api_keys.apikey_update(agent=world["a"], key_id=key.pk, name="Shop", ip_allowlist="10.0.0.300", callback_url="")
    with pytest.raises(api_keys.AgentError, match="http:// or https://"):
        api_keys.apikey_update(agent=world["a"], key_id=key.pk, name="Shop", ip_allowlist="", callback_url="ftp://x.y/")
    with pytest.raises(ApiKey.DoesNotExist):  # another agent's key
        api_keys.apikey_revoke(agent=world["b"], key_id=key.pk)


# --- schema and docs -----------------------------------------------------------------------------


def test_the_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/products/", "/api/v1/orders/", "/api/v1/orders/{agent_order_no}/", "/api/v1/balance/"):
        assert f"{path}:" in text
    assert "X-Signature" in text and "insufficient_balance" in text


def test_the_schema_endpoint_is_public_json(client, db):
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.") and "/api/v1/orders/" in schema["paths"]
    assert set(schema["components"]["securitySchemes"]) == {"ApiKey", "Timestamp", "Nonce", "Signature"}


def test_the_docs_page_uses_vendored_assets(client, db):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "/static/vendor/swagger-ui/swagger-ui.css" in html
    assert "/api/v1/schema/?format=json" in html
    for cdn in ("unpkg", "jsdelivr", "cdnjs", "//cdn"):
        assert cdn not in html
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    js = client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200 and "javascript" in js["Content-Type"]


# --- the dashboard page ---------------------------------------------------------------------------


@pytest.fixture
def agent_client(world):
    client = Client()
    client.force_login(world["a"].user)
    return client


def test_creating_a_key_shows_the_secret_once(agent_client, world):
    page = agent_client.get("/agent/api-keys/")
    assert page.status_code == 200 and "Integration guide" in page.content.decode()

    response = agent_client.post(
        "/agent/api-keys/", {"name": "Taobao", "callback_url": "https://shop.example.com/cb", "ip_allowlist": ""}
    )

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(agent=world["a"])
    secret = crypto.decrypt(key.secret)
    html = response.content.decode()
    assert secret in html and key.key_id in html and 'data-copy-target="#issued-secret"' in html
    later = agent_client.get("/agent/api-keys/").content.decode()
    assert key.key_id in later and secret not in later
    # The key works.
    assert Signed(key.key_id, secret).get("/api/v1/balance/").status_code == 200


def test_bad_key_input_is_explained(agent_client, world):
    response = agent_client.post("/agent/api-keys/", {"name": "X", "ip_allowlist": "not-an-ip", "callback_url": ""})
    assert response.status_code == 400 and "is not an IP address" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_rotate_edit_and_revoke_from_the_dashboard(agent_client, world):
    key, old_secret = api_keys.apikey_create(agent=world["a"], name="Shop")
    rotated = agent_client.post(f"/agent/api-keys/{key.pk}/rotate/")
    key.refresh_from_db()
    new_secret = crypto.decrypt(key.secret)
    assert rotated.status_code == 200 and new_secret in rotated.content.decode() and new_secret != old_secret

    edit = agent_client.post(
        f"/agent/api-keys/{key.pk}/edit/",
        {"name": "Shop 2", "ip_allowlist": "192.0.2.1", "callback_url": "https://s.example.com/cb"},
    )
    assert edit.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.ip_allowlist, key.callback_url) == ("Shop 2", "192.0.2.1", "https://s.example.com/cb")

    assert agent_client.post(f"/agent/api-keys/{key.pk}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None and key.previous_secret == ""
    assert Signed(key.key_id, new_secret).get("/api/v1/balance/").json()["code"] == "key_revoked"


@pytest.mark.parametrize("action", ["rotate", "revoke", "edit"])
def test_another_agents_key_is_not_found_and_logged(world, action):
    key, _secret = api_keys.apikey_create(agent=world["b"], name="B's shop")
    client = Client()
    client.force_login(world["a"].user)
    response = client.post(f"/agent/api-keys/{key.pk}/{action}/", {"name": "mine now"})
    assert response.status_code == 404
    assert AuditEvent.objects.filter(action=f"agents.api_key_{action}", outcome="denied").count() == 1
    key.refresh_from_db()
    assert key.revoked_at is None and key.name == "B's shop" and not key.rotated_at


def test_a_non_agent_gets_the_become_an_agent_page(client, db):
    client.force_login(UserFactory())
    response = client.get("/agent/api-keys/")
    assert response.status_code == 200 and "agents/become_agent.html" in [t.name for t in response.templates]


def test_admin_lists_keys_without_secrets_and_revokes(world, staff):
    key, secret = api_keys.apikey_create(agent=world["a"], name="Shop")
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/agents/apikey/?q=" + key.key_id)
    assert listing.status_code == 200 and key.key_id in listing.content.decode()
    detail = client.get(f"/admin/agents/apikey/{key.pk}/change/").content.decode()
    assert secret not in detail and key.secret not in detail
    response = client.post(
        "/admin/agents/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]}, follow=True
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked_at is not None
