"""Supplier connections (issue 16, first part): the generic signed-HTTP adapter against a fake
supplier that checks our signatures for real, callbacks (forged, tampered, replayed, duplicate),
the agent-API adapter against this very instance's API over HTTP (live_server), secrets
encrypted at rest and write-only in admin."""

import json
import time
from decimal import Decimal

import pytest
from django.urls import reverse

from agents.services import api_keys
from catalog.models import CardCode
from compliance.models import AuditEvent
from orders.models import Order
from supply import services
from supply.adapters import adapter_for
from supply.adapters.base import (
    CallbackRejected,
    OrderState,
    SupplyOutcomeUnknown,
    SupplyRefused,
    SupplyUnavailable,
)
from supply.models import SupplierCallback, SupplierConnection
from tests.api_helpers import level, make_agent, set_level_price, top_up
from tests.builders import wallet_balance
from tests.factories import ProductFactory, SupplierFactory, add_stock
from tests.fake_supplier import FakeSupplier, Rule, running

pytestmark = pytest.mark.usefixtures("english")

D = Decimal


def connect(fake: FakeSupplier, *, secret: str | None = None, **config) -> SupplierConnection:
    rule = fake.rule
    connection = SupplierConnection.objects.create(
        supplier=SupplierFactory(),
        name=config.pop("name", "fake supplier"),
        kind=SupplierConnection.Kind.GENERIC_HTTP,
        base_url=fake.url,
        app_id=FakeSupplier.APP_ID,
        sign_algorithm=rule.algorithm,
        sign_key_placement=rule.key_placement,
        sign_uppercase=rule.uppercase,
        sign_field=rule.sign_field,
        body_format=rule.body,
        timeout_seconds=config.pop("timeout_seconds", 2),
        state=SupplierConnection.State.ENABLED,
        **config,
    )
    services.connection_secret_set(connection=connection, secret=secret or rule.secret)
    connection.refresh_from_db()
    return connection


RULES = [
    pytest.param(
        Rule(algorithm="md5", key_placement="key_param", uppercase=True, body="json"), id="md5-key-param-upper-json"
    ),
    pytest.param(Rule(algorithm="md5", key_placement="raw", uppercase=False, body="form"), id="md5-raw-lower-form"),
    pytest.param(
        Rule(algorithm="hmac_sha256", uppercase=False, sign_field="signature", body="json"), id="hmac-lower-json"
    ),
    pytest.param(Rule(algorithm="hmac_sha256", uppercase=True, body="form"), id="hmac-upper-form"),
]


@pytest.mark.parametrize("rule", RULES)
def test_each_signing_rule_is_accepted_by_the_supplier_and_its_replies_verified(db, rule):
    with running(FakeSupplier(rule)) as fake:
        adapter = services.connection_adapter(connect(fake))

        products = {p.ref: p for p in adapter.products()}
        order = adapter.order_place(our_number="KM0001", product_ref="P100", quantity=2, fields={"account": "u@qq"})
        balance = adapter.balance()

    assert products["P100"].cost == D("95.50") and products["P100"].available == 20
    assert products["P50"].available == 0 and products["P50"].name == "游戏点卡 50 元"
    assert order.state == OrderState.DONE and order.cost == D("191.00") and len(order.codes) == 2
    assert order.supplier_order_no == fake.orders["KM0001"].supplier_order_no
    assert [c.secret for c in order.codes] == [c["card_secret"] for c in fake.orders["KM0001"].codes]
    assert fake.orders["KM0001"].extra == {"account": "u@qq"}  # the top-up field went along, signed
    assert balance.amount == D("809.00")
    assert fake.bad_signatures == 0
    # The body really was JSON or a form, as configured (the fake refuses the other with a 400).
    path, params = fake.requests[1]
    assert path == "/order/place" and params["order_no"] == "KM0001" and rule.sign_field in params


def test_a_wrong_secret_is_refused_by_the_supplier(db):
    with running(FakeSupplier()) as fake:
        adapter = services.connection_adapter(connect(fake, secret="not-the-key"))
        # The supplier answers "invalid sign", signed with its key: we cannot verify that either.
        with pytest.raises(SupplyOutcomeUnknown):
            adapter.balance()
    assert fake.bad_signatures == 1


def test_a_reply_signed_with_another_key_is_not_trusted(db):
    with running(FakeSupplier()) as fake:
        adapter = services.connection_adapter(connect(fake))
        fake.sign_replies_with = "an-impostor"
        with pytest.raises(SupplyOutcomeUnknown, match="not signed"):
            adapter.order_place(our_number="KM0002", product_ref="P100", quantity=1)


def test_field_names_are_mapped_per_supplier(db):
    names = {"order_no": "out_trade_no", "product_id": "goods_id", "quantity": "num", "cost": "amount"}
    with running(FakeSupplier(names=names)) as fake:
        connection = connect(fake, field_map=names)
        adapter = services.connection_adapter(connection)
        order = adapter.order_place(our_number="KM0003", product_ref="P100", quantity=1)
        assert adapter.order_query(our_number="KM0003").supplier_order_no == order.supplier_order_no
    assert fake.requests[0][1]["out_trade_no"] == "KM0003" and fake.requests[0][1]["num"] == "1"
    assert order.cost == D("95.50")


def test_placing_the_same_number_twice_places_one_order_charged_once(db):
    with running(FakeSupplier()) as fake:
        adapter = services.connection_adapter(connect(fake))
        first = adapter.order_place(our_number="KM0004", product_ref="P100", quantity=1)
        again = adapter.order_place(our_number="KM0004", product_ref="P100", quantity=1)
    assert first == again
    assert len(fake.orders) == 1 and fake.balance == D("904.50") and fake.products["P100"]["stock"] == 19


def test_a_timeout_leaves_the_outcome_unknown_and_the_query_finds_the_order_placed(db):
    with running(FakeSupplier()) as fake:
        adapter = services.connection_adapter(connect(fake, timeout_seconds=1))
        fake.timeout_next = 2.5  # places it, then answers too late
        started = time.monotonic()
        with pytest.raises(SupplyOutcomeUnknown):
            adapter.order_place(our_number="KM0005", product_ref="P100", quantity=1)
        assert time.monotonic() - started < 2.4  # our timeout cut it, not the supplier's answer

        found = adapter.order_query(our_number="KM0005")
        assert found.exists and found.state == OrderState.DONE and len(found.codes) == 1
        assert not adapter.order_query(our_number="KM-NEVER").exists
        # A retry after the query is the same order: nothing paid twice.
        assert adapter.order_place(our_number="KM0005", product_ref="P100", quantity=1) == found
    assert len(fake.orders) == 1 and fake.balance == D("904.50")


def test_errors_say_whether_anything_may_have_been_placed(db):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        adapter = services.connection_adapter(connection)
        fake.fail_next = 1
        with pytest.raises(SupplyOutcomeUnknown, match="HTTP 500"):
            adapter.order_place(our_number="KM0006", product_ref="P100", quantity=1)
        with pytest.raises(SupplyRefused, match="out of stock") as refused:
            adapter.order_place(our_number="KM0007", product_ref="P50", quantity=1)
        assert refused.value.extra["supplier_code"] == "40005"
        url = fake.url
    connection.base_url = url  # the server is gone: connection refused, never sent
    with pytest.raises(SupplyUnavailable):
        adapter_for(connection, fake.rule.secret).balance()


def test_balance_refresh_keeps_the_balance_and_errors_on_the_connection(db):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        assert services.connection_balance_refresh(connection_id=connection.pk).amount == D("1000.00")
        connection.refresh_from_db()
        assert connection.balance == D("1000.00") and connection.balance_at is not None
        fake.fail_next = 1
        with pytest.raises(SupplyOutcomeUnknown):
            services.connection_balance_refresh(connection_id=connection.pk)
    connection.refresh_from_db()
    assert "HTTP 500" in connection.last_error and connection.last_error_at is not None
    assert connection.balance == D("1000.00")  # the last good reading stays


@pytest.mark.parametrize("body", ["json", "form"])
def test_callbacks_forged_tampered_replayed_refused_duplicates_recognised(db, body):
    with running(FakeSupplier(Rule(body=body))) as fake:
        connection = connect(fake)
        services.connection_adapter(connection).order_place(our_number="KM0008", product_ref="P100", quantity=1)

    good = fake.callback("KM0008", notify_id="N1", nonce="nonce-aaaa")
    accepted = services.callback_accept(connection=connection, headers={}, body=good)
    assert not accepted.duplicate and accepted.callback.order.state == OrderState.DONE
    assert accepted.callback.order.our_number == "KM0008" and len(accepted.callback.order.codes) == 1

    # The very same request again: a replay (its nonce was used), refused.
    with pytest.raises(CallbackRejected, match="replayed"):
        services.callback_accept(connection=connection, headers={}, body=good)
    # The supplier sending the same event again (fresh nonce): recognised, changes nothing.
    again = services.callback_accept(connection=connection, headers={}, body=fake.callback("KM0008", notify_id="N1"))
    assert again.duplicate
    assert SupplierCallback.objects.get(connection=connection, event_id="N1").times_seen == 2

    # Tampered: the status changed after signing.
    tampered = good.replace(b"success", b"failed")
    assert tampered != good
    with pytest.raises(CallbackRejected, match="signature"):
        services.callback_accept(connection=connection, headers={}, body=tampered)
    # Forged: signed with another key.
    forger = FakeSupplier(Rule(secret="guessed", body=body))
    forger.orders = fake.orders
    with pytest.raises(CallbackRejected, match="signature"):
        services.callback_accept(connection=connection, headers={}, body=forger.callback("KM0008", notify_id="N2"))
    # Stale: signed correctly, but an hour old.
    with pytest.raises(CallbackRejected, match="too old"):
        services.callback_accept(
            connection=connection,
            headers={},
            body=fake.callback("KM0008", notify_id="N3", timestamp=int(time.time()) - 3600),
        )
    assert SupplierCallback.objects.filter(connection=connection).count() == 1
    assert AuditEvent.objects.filter(action="supply.callback", outcome=AuditEvent.Outcome.DENIED).count() == 3
    # A disabled connection takes no callbacks, even well signed ones.
    services.connection_state_set(connection=connection, enabled=False)
    with pytest.raises(CallbackRejected, match="disabled"):
        services.callback_accept(connection=connection, headers={}, body=fake.callback("KM0008", notify_id="N4"))


def test_secrets_are_encrypted_at_rest_audited_and_never_rendered_in_admin(admin_client, admin_user):
    with running(FakeSupplier()) as fake:
        connection = connect(fake, secret="TOPSECRET-one-123")
    assert "TOPSECRET" not in connection.secret_encrypted
    assert services.connection_secret(connection) == "TOPSECRET-one-123"
    assert AuditEvent.objects.filter(action="supply.secret_set", target=f"supplier_connection:{connection.pk}").exists()

    change = reverse("admin:supply_supplierconnection_change", args=[connection.pk])
    page = admin_client.get(change).content.decode()
    assert "TOPSECRET" not in page and connection.secret_encrypted not in page
    assert "Set ••••" in page and 'name="new_secret"' in page
    listing = admin_client.get(reverse("admin:supply_supplierconnection_changelist")).content.decode()
    assert "TOPSECRET" not in listing and "fake supplier" in listing

    # Replacing it: a new value through the write-only field, audited; empty keeps it.
    form = {
        "supplier": connection.supplier_id,
        "name": connection.name,
        "kind": connection.kind,
        "base_url": connection.base_url,
        "app_id": connection.app_id,
        "sign_algorithm": "md5",
        "sign_key_placement": "key_param",
        "sign_uppercase": "on",
        "sign_field": "sign",
        "body_format": "json",
        "success_code": "0",
        "not_found_code": "404",
        "field_map": "{}",
        "status_map": "{}",
        "paths": "{}",
        "timeout_seconds": "5",
        "new_secret": "TOPSECRET-two-456",
    }
    assert admin_client.post(change, form).status_code == 302
    connection.refresh_from_db()
    assert services.connection_secret(connection) == "TOPSECRET-two-456"
    replaced = AuditEvent.objects.get(action="supply.secret_replaced")
    assert replaced.actor == admin_user and "TOPSECRET" not in replaced.detail
    form["new_secret"] = ""
    assert admin_client.post(change, form).status_code == 302
    connection.refresh_from_db()
    assert services.connection_secret(connection) == "TOPSECRET-two-456"
    assert "TOPSECRET" not in admin_client.get(change).content.decode()


def test_admin_refreshes_the_balance_and_shows_errors(admin_client):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        changelist = reverse("admin:supply_supplierconnection_changelist")
        response = admin_client.post(
            changelist, {"action": "refresh_balance", "_selected_action": [connection.pk]}, follow=True
        )
        assert "balance 1000.00 CNY" in response.content.decode()
        fake.fail_next = 1
        response = admin_client.post(
            changelist, {"action": "refresh_balance", "_selected_action": [connection.pk]}, follow=True
        )
    page = response.content.decode()
    assert "HTTP 500" in page  # the error message, and the last error column
    connection.refresh_from_db()
    assert connection.balance == D("1000.00") and "HTTP 500" in connection.last_error


def test_a_connection_without_a_secret_cannot_be_enabled(db):
    connection = SupplierConnection.objects.create(
        supplier=SupplierFactory(), name="new", base_url="https://supplier.example", app_id="x"
    )
    from marketplace.errors import Conflict

    with pytest.raises(Conflict):
        services.connection_state_set(connection=connection, enabled=True)
    services.connection_secret_set(connection=connection, secret="k")
    services.connection_state_set(connection=connection, enabled=True)
    connection.refresh_from_db()
    assert connection.state == SupplierConnection.State.ENABLED


# --- another instance of this product, as its agent, over real HTTP ----------------------------


@pytest.fixture
def upstream(live_server, transactional_db):
    """This instance playing the supplier: an agent (us) with a key and balance, a product."""
    gold = level("金牌", 4)
    product = ProductFactory(price=D("30.00"), name="上游点卡")
    add_stock(product, 3)
    set_level_price(gold, product, "27.50")
    agent = make_agent(level_obj=gold)
    top_up(agent.user, D("100.00"))
    key, secret = api_keys.apikey_create(agent=agent, name="downstream instance")
    connection = SupplierConnection.objects.create(
        supplier=SupplierFactory(),
        name="kamarket upstream",
        kind=SupplierConnection.Kind.KAMARKET,
        base_url=live_server.url,
        app_id=key.key_id,
        timeout_seconds=10,
        state=SupplierConnection.State.ENABLED,
    )
    services.connection_secret_set(connection=connection, secret=secret)
    connection.refresh_from_db()
    return {"product": product, "agent": agent, "key": key, "secret": secret, "connection": connection}


def test_kamarket_adapter_buys_from_this_instance_through_its_signed_api(upstream):
    product, agent = upstream["product"], upstream["agent"]
    adapter = services.connection_adapter(upstream["connection"])

    (listed,) = [p for p in adapter.products() if p.ref == str(product.pk)]
    assert listed.cost == D("27.50") and listed.available == 3 and listed.name == "上游点卡"
    assert adapter.balance().amount == D("100.00")

    placed = adapter.order_place(our_number="KM-UP-1", product_ref=str(product.pk), quantity=2)
    assert placed.cost == D("55.00") and placed.supplier_order_no
    order = Order.objects.get(agent_order_no="KM-UP-1")
    assert order.number == placed.supplier_order_no and order.agent == agent

    # Delivery happens after commit (a task): query until it is done, as fulfilment will.
    found = adapter.order_query(our_number="KM-UP-1")
    for _ in range(50):
        if found.state == OrderState.DONE:
            break
        time.sleep(0.1)
        found = adapter.order_query(our_number="KM-UP-1")
    assert found.state == OrderState.DONE and len(found.codes) == 2
    sold = CardCode.objects.filter(product=product, status=CardCode.Status.SOLD).count()
    assert sold == 2

    # Idempotent on our number: the same call again is the same order, paid once.
    assert (
        adapter.order_place(our_number="KM-UP-1", product_ref=str(product.pk), quantity=2).supplier_order_no
        == order.number
    )
    assert Order.objects.filter(agent=agent).count() == 1
    assert adapter.balance().amount == D("45.00") == wallet_balance(agent.user)
    assert not adapter.order_query(our_number="KM-UP-NONE").exists

    # Refusals from the other side are refusals here: too many codes.
    with pytest.raises(SupplyRefused):
        adapter.order_place(our_number="KM-UP-2", product_ref=str(product.pk), quantity=5)


def test_kamarket_adapter_sends_a_direct_topups_fields_as_the_apis_topup_object(upstream):
    """A 代充 bought from another instance: the account to credit crosses as the API's ``topup``
    object, checked there before its balance is charged, and kept on its order for its staff."""
    from catalog.models import Product

    phone = [{"name": "phone", "label": "手机号", "pattern": r"^1[3-9]\d{9}$", "min_length": 11, "max_length": 11}]
    product = ProductFactory(
        price=D("50.00"),
        kind=Product.Kind.DIRECT_TOPUP,
        supply_mode=Product.SupplyMode.MANUAL,
        supply_cost=D("45.00"),
        topup_fields=phone,
    )
    adapter = services.connection_adapter(upstream["connection"])
    with pytest.raises(SupplyRefused):  # checked there: a number that is no phone number
        adapter.order_place(our_number="KM-TOP-0", product_ref=str(product.pk), quantity=1, fields={"phone": "12"})
    assert not Order.objects.filter(agent_order_no="KM-TOP-0").exists()

    placed = adapter.order_place(
        our_number="KM-TOP-1", product_ref=str(product.pk), quantity=1, fields={"phone": "13812345678"}
    )
    order = Order.objects.get(agent_order_no="KM-TOP-1")
    assert order.number == placed.supplier_order_no and order.topup_values == {"phone": "13812345678"}
    assert placed.state == OrderState.PENDING  # staff there top it up by hand (its manual queue)


def test_kamarket_adapter_with_a_wrong_secret_is_refused_by_the_upstream(upstream):
    adapter = adapter_for(upstream["connection"], "sk_wrong")
    with pytest.raises(SupplyRefused, match=r"bad_signature|signature"):
        adapter.balance()


def test_kamarket_delivery_callbacks_verify_with_the_products_own_signing(upstream):
    """The upstream signs callbacks with agents.services.api_keys (as orders.services.callbacks
    does); our adapter checks them: good accepted once, replay and tampering refused."""
    connection, key, secret = upstream["connection"], upstream["key"], upstream["secret"]
    path = "/supply/callback/7/?x=1"
    payload = {
        "event": "order.delivered",
        "callback_id": 41,
        "order_number": "M20260101000001",
        "agent_order_no": "KM-UP-9",
        "status": "delivered",
        "total": "27.50",
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = api_keys.signature_headers(key_id=key.key_id, secret=secret, method="POST", path=path, body=body)

    accepted = services.callback_accept(connection=connection, headers=headers, body=body, path=path)
    assert accepted.callback.order.state == OrderState.DONE and accepted.callback.order.our_number == "KM-UP-9"
    with pytest.raises(CallbackRejected, match="replayed"):
        services.callback_accept(connection=connection, headers=headers, body=body, path=path)
    with pytest.raises(CallbackRejected, match="signature"):
        services.callback_accept(
            connection=connection, headers=headers, body=body.replace(b"27.50", b"0.01"), path=path
        )
    with pytest.raises(CallbackRejected, match="signature"):
        services.callback_accept(connection=connection, headers=headers, body=body, path="/elsewhere/")
    resent = api_keys.signature_headers(key_id=key.key_id, secret=secret, method="POST", path=path, body=body)
    assert services.callback_accept(connection=connection, headers=resent, body=body, path=path).duplicate
    forged = api_keys.signature_headers(key_id=key.key_id, secret="sk_guess", method="POST", path=path, body=body)
    with pytest.raises(CallbackRejected):
        services.callback_accept(connection=connection, headers=forged, body=body, path=path)
