"""payments.services.payments.notification_receive through POST /payments/notify/sandbox/.

Every notification here carries a real RSA2 signature: made by the sandbox gateway's own
key (the "gateway side"), or by a key generated in the test for forgeries. The verifier is
never mocked.
"""

import base64
import os
import secrets
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.test import Client
from django.utils import timezone

from catalog.models import CardCode
from marketplace.money import from_fen, parse_yuan, quantize, to_fen, yuan_str
from orders.models import Order, OrderCode, OrderStatusChange
from orders.services import orders as order_services
from payments.gateways.sandbox import SandboxGateway, sign_content
from payments.models import Notification, Payment
from tests.builders import place, run_concurrently, values_and_errors
from tests.factories import ProductFactory, add_stock

NOTIFY = "/payments/notify/sandbox/"
BASE_DIR = Path(__file__).resolve().parent.parent
Outcome = Notification.Outcome


# --- helpers ----------------------------------------------------------------------------


def notify(client, body: bytes):
    return client.post(NOTIFY, data=body, content_type="application/x-www-form-urlencoded")


def params_for(order: Order, **overrides) -> dict[str, str]:
    params = {
        "app_id": settings.PAYMENTS_SANDBOX_APP_ID,
        "out_trade_no": order.number,
        "trade_no": "SBX" + secrets.token_hex(10).upper(),
        "total_amount": yuan_str(order.total),
        "currency": "CNY",
        "trade_status": "TRADE_SUCCESS",
        "gmt_payment": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
        "notify_id": secrets.token_hex(16),
    }
    params.update(overrides)
    return params


def signed(order: Order, **overrides) -> bytes:
    """Signed by the sandbox gateway's own private key: a genuine notification."""
    return SandboxGateway.sign(params_for(order, **overrides))


def sign_with(key: rsa.RSAPrivateKey, params: dict[str, str], *, algorithm=None, sign_type="RSA2") -> bytes:
    signature = key.sign(sign_content(params).encode(), padding.PKCS1v15(), algorithm or hashes.SHA256())
    return urlencode({**params, "sign_type": sign_type, "sign": base64.b64encode(signature).decode()}).encode()


def tampered(body: bytes, **changes) -> bytes:
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    params.update(changes)
    return urlencode(params).encode()


def sandbox_private_key() -> rsa.RSAPrivateKey:
    """The gateway side's key, as the sandbox keeps it (created on first use)."""
    from payments.gateways.sandbox import _keys

    return _keys()[0]


def stock_state(product) -> dict:
    return {
        "codes": dict(CardCode.objects.filter(product=product).values_list("id", "status")),
        "holders": sorted(OrderCode.objects.values_list("id", "order_id", "code_id", "released_at")),
    }


@pytest.fixture
def product(db):
    return ProductFactory(price=Decimal("88.00"))


@pytest.fixture
def stocked(product):
    secrets_in_stock = add_stock(product, 5)
    return product, secrets_in_stock


@pytest.fixture
def order(buyer, stocked):
    return place(buyer, stocked[0], quantity=2)


# --- forged, tampered and malformed notifications change nothing ----------------------


def _other_key_signature(order):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return sign_with(forger, params_for(order))


def _amount_changed_after_signing(order):
    body = signed(order)
    return tampered(body, total_amount=yuan_str(order.total + Decimal("0.01")))


def _order_changed_after_signing(order):
    body = signed(order)
    return tampered(body, out_trade_no=order.number[:-1] + ("A" if order.number[-1] != "A" else "B"))


def _signed_with_wrong_amount(order):
    return signed(order, total_amount=yuan_str(order.total - Decimal("0.01")))


def _signed_one_cent_more(order):
    return signed(order, total_amount=yuan_str(order.total + Decimal("0.01")))


def _unknown_order(order):
    return signed(order, out_trade_no="2401010000NOSUCHORDER000000")


def _wrong_app_id(order):
    return signed(order, app_id="someone-elses-app")


def _sha1_sign_type_rsa(order):
    return sign_with(sandbox_private_key(), params_for(order), algorithm=hashes.SHA1(), sign_type="RSA")


def _rsa2_signature_labelled_rsa(order):
    return tampered(signed(order), sign_type="RSA")


def _no_sign_type(order):
    params = dict(parse_qsl(signed(order).decode()))
    del params["sign_type"]
    return urlencode(params).encode()


def _signature_removed(order):
    return tampered(signed(order), sign="")


def _signature_not_base64(order):
    return tampered(signed(order), sign="not*base64!")


def _other_currency(order):
    return signed(order, currency="USD")


def _amount_three_places(order):
    return signed(order, total_amount=f"{order.total}1")


def _amount_only_a_dot(order):
    # Used to escape parse_yuan as decimal.InvalidOperation (a 500) instead of a rejection.
    return signed(order, total_amount=".")


def _amount_negative(order):
    return signed(order, total_amount="-" + yuan_str(order.total))


def _trade_no_missing(order):
    return signed(order, trade_no="")


@pytest.mark.parametrize(
    ("make_body", "reason"),
    [
        pytest.param(_other_key_signature, "bad signature", id="signed-by-another-key"),
        pytest.param(_amount_changed_after_signing, "bad signature", id="amount-changed-after-signing"),
        pytest.param(_order_changed_after_signing, "bad signature", id="order-changed-after-signing"),
        pytest.param(_signed_with_wrong_amount, "amount", id="signed-amount-one-cent-less"),
        pytest.param(_signed_one_cent_more, "amount", id="signed-amount-one-cent-more"),
        pytest.param(_unknown_order, "unknown order", id="unknown-order"),
        pytest.param(_wrong_app_id, "app_id", id="wrong-app-id"),
        pytest.param(_sha1_sign_type_rsa, "sign_type", id="sha1-sign-type-rsa"),
        pytest.param(_rsa2_signature_labelled_rsa, "sign_type", id="sign-type-rsa"),
        pytest.param(_no_sign_type, "sign_type", id="no-sign-type"),
        pytest.param(_signature_removed, "bad signature", id="empty-signature"),
        pytest.param(_signature_not_base64, "base64", id="signature-not-base64"),
        pytest.param(_other_currency, "currency", id="other-currency"),
        pytest.param(_amount_three_places, "total_amount", id="amount-three-places"),
        pytest.param(_amount_only_a_dot, "total_amount", id="amount-a-dot"),
        pytest.param(_amount_negative, "total_amount", id="amount-negative"),
        pytest.param(_trade_no_missing, "trade_no", id="trade-no-missing"),
        pytest.param(lambda order: b"\xff\xfe\x00\x81garbage", "not a form", id="garbage-bytes"),
        pytest.param(lambda order: b"hello world", "not a form", id="garbage-text"),
        pytest.param(lambda order: b'{"out_trade_no": "x", "trade_status": "TRADE_SUCCESS"}', "not a form", id="json"),
        pytest.param(lambda order: b"", "sign_type", id="empty-body"),
    ],
)
def test_bad_notification_is_rejected_and_changes_nothing(client, order, make_body, reason):
    body = make_body(order)
    before = stock_state(order.product)
    history_before = order.history.count()

    response = notify(client, body)

    assert response.status_code == 400
    assert response.content == b"failure"
    assert Payment.objects.count() == 0
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert order.paid_at is None
    assert order.history.count() == history_before
    assert stock_state(order.product) == before
    record = Notification.objects.get()
    assert record.outcome == Outcome.REJECTED
    assert reason in record.reason
    assert record.gateway == "sandbox"
    assert record.remote_addr == "127.0.0.1"


def test_genuine_notification_passes_the_same_checks(client, order):
    """The control for the rejections above: the same order, honestly signed, is applied."""
    response = notify(client, signed(order))
    assert (response.status_code, response.content) == (200, b"success")
    assert Notification.objects.get().outcome == Outcome.APPLIED
    order.refresh_from_db()
    assert order.status == Order.Status.PAID  # fulfilment is queued on commit (see transaction tests)


def test_trade_no_of_another_order_is_rejected(client, buyer, stocked):
    product, _ = stocked
    order_a = place(buyer, product)
    order_b = place(buyer, product)
    assert order_a.total == order_b.total
    trade_no = "SBX" + secrets.token_hex(10).upper()
    assert notify(client, signed(order_b, trade_no=trade_no)).content == b"success"
    payment_b = Payment.objects.get()
    before = stock_state(product)

    response = notify(client, signed(order_a, trade_no=trade_no))

    assert (response.status_code, response.content) == (400, b"failure")
    assert list(Payment.objects.all()) == [payment_b]
    assert payment_b.order_id == order_b.pk
    order_a.refresh_from_db()
    assert order_a.status == Order.Status.PENDING
    assert stock_state(product) == before
    record = Notification.objects.filter(order_number=order_a.number).get()
    assert record.outcome == Outcome.REJECTED
    assert "another order" in record.reason


@pytest.mark.parametrize("state", ["TRADE_CLOSED", "WAIT_BUYER_PAY"])
def test_not_paid_states_are_ignored(client, order, state):
    before = stock_state(order.product)
    response = notify(client, signed(order, trade_status=state))
    # Acknowledged so the gateway stops resending, but nothing is paid.
    assert (response.status_code, response.content) == (200, b"success")
    assert Payment.objects.count() == 0
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert stock_state(order.product) == before
    record = Notification.objects.get()
    assert record.outcome == Outcome.IGNORED
    assert state in record.reason


def test_notify_needs_post(client, db):
    assert client.get(NOTIFY).status_code == 405
    assert client.post("/payments/notify/alipay-fake/", data=b"x=1", content_type="text/plain").status_code == 404
    assert Notification.objects.count() == 0


def test_a_notification_answer_sets_no_cookie(client, buyer):
    """A gateway is a server, not a browser: no device cookie (risk.middleware), no session or
    CSRF cookie on its answer, applied or refused; a browser's page still gets its device cookie."""
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product, quantity=1)
    for body in (signed(order), tampered(signed(order), total_amount="0.01"), b"x=1"):
        response = notify(client, body)
        assert response.status_code in (200, 400)  # applied, refused (tampered), unreadable
        assert dict(response.cookies) == {}, response.cookies
    assert not client.cookies
    assert "mk_device" in client.get("/").cookies


# --- genuine notifications: applied once ----------------------------------------------


def delivered_changes(order) -> int:
    return OrderStatusChange.objects.filter(order=order, to_status=Order.Status.DELIVERED).count()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("state", ["TRADE_SUCCESS", "TRADE_FINISHED"])
def test_valid_notification_delivers_and_replays_change_nothing(client, buyer, state):
    product = ProductFactory(price=Decimal("88.00"))
    add_stock(product, 3)
    order = place(buyer, product, quantity=2)
    body = signed(order, trade_status=state)

    for attempt in range(4):
        response = notify(client, body)
        assert (response.status_code, response.content) == (200, b"success"), attempt

    payment = Payment.objects.get()
    assert (payment.order_id, payment.status, payment.amount) == (order.pk, Payment.Status.SUCCEEDED, order.total)
    assert payment.notifications.filter(outcome=Outcome.APPLIED).count() == 1
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert delivered_changes(order) == 1
    assert list(Notification.objects.order_by("id").values_list("outcome", flat=True)) == [
        Outcome.APPLIED,
        Outcome.REPLAY,
        Outcome.REPLAY,
        Outcome.REPLAY,
    ]
    codes = CardCode.objects.filter(product=product)
    assert codes.filter(status=CardCode.Status.SOLD).count() == 2
    assert codes.filter(status=CardCode.Status.AVAILABLE).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_same_notification_from_eight_threads_is_applied_once(buyer):
    product = ProductFactory(price=Decimal("30.00"))
    add_stock(product, 2)
    order = place(buyer, product)
    body = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
    threads_n = 8
    clients = [Client() for _ in range(threads_n)]

    def deliver(i):
        response = notify(clients[i], body)
        return response.status_code, response.content

    results, errors = values_and_errors(run_concurrently(threads_n, deliver))

    assert not errors
    assert results == [(200, b"success")] * threads_n
    assert Payment.objects.count() == 1
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert delivered_changes(order) == 1
    assert OrderStatusChange.objects.filter(order=order, to_status=Order.Status.PAID).count() == 1
    outcomes = sorted(Notification.objects.values_list("outcome", flat=True))
    assert outcomes == sorted([Outcome.APPLIED] + [Outcome.REPLAY] * (threads_n - 1))
    assert CardCode.objects.filter(product=product, status=CardCode.Status.SOLD).count() == 1


@pytest.mark.django_db(transaction=True)
def test_second_payment_for_a_paid_order_is_a_duplicate(client, buyer):
    product = ProductFactory(price=Decimal("50.00"))
    add_stock(product, 3)
    order = place(buyer, product)
    first = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
    second = SandboxGateway.build_notification(order_number=order.number, amount=order.total)

    assert notify(client, first).content == b"success"
    assert notify(client, second).content == b"success"

    payments = list(Payment.objects.order_by("id"))
    assert [p.status for p in payments] == [Payment.Status.SUCCEEDED, Payment.Status.DUPLICATE]
    assert payments[0].trade_no != payments[1].trade_no
    assert Notification.objects.order_by("id").last().reason == "already_paid"
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert delivered_changes(order) == 1
    assert CardCode.objects.filter(product=product, status=CardCode.Status.SOLD).count() == 1


def _expire(order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert order_services.orders_expire_due() == 1
    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED


@pytest.mark.django_db(transaction=True)
def test_late_payment_with_stock_left_is_reserved_again_and_delivered(client, buyer, mailoutbox):
    product = ProductFactory(price=Decimal("20.00"))
    add_stock(product, 2)
    order = place(buyer, product)
    _expire(order)
    assert CardCode.objects.filter(product=product, status=CardCode.Status.AVAILABLE).count() == 2

    response = notify(client, signed(order))

    assert (response.status_code, response.content) == (200, b"success")
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.SUCCEEDED
    assert Notification.objects.get().reason == "late_paid"
    moves = list(order.history.values_list("from_status", "to_status"))
    assert moves == [("", "pending"), ("pending", "expired"), ("expired", "paid"), ("paid", "delivered")]
    assert order.codes.filter(released_at__isnull=True).count() == 1
    assert CardCode.objects.filter(product=product, status=CardCode.Status.SOLD).count() == 1
    assert CardCode.objects.filter(product=product, status=CardCode.Status.AVAILABLE).count() == 1
    assert [m.to for m in mailoutbox] == [[buyer.email]]  # the "delivered" email only


@pytest.mark.django_db(transaction=True)
def test_the_cashier_pays_the_order_as_it_is_now_not_as_its_page_read_it(client, buyer):
    """The cashier hands the pipeline the order its page read; the lock reads back what changed
    since (here: expired), so the payment is a late one, as a gateway's notification would be."""
    from payments.services.payments import payable_for, sandbox_pay

    product = ProductFactory(price=Decimal("20.00"))
    add_stock(product, 2)
    order = place(buyer, product)
    page_read = payable_for(user=buyer, number=order.number)
    assert page_read.status == Order.Status.PENDING
    _expire(order)

    result = sandbox_pay(order_number=order.number, payable=page_read)

    assert (result.outcome, result.reason) == (Outcome.APPLIED, "late_paid")
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    moves = list(order.history.values_list("from_status", "to_status"))
    assert moves == [("", "pending"), ("pending", "expired"), ("expired", "paid"), ("paid", "delivered")]
    record = Notification.objects.get()  # the log row as for a notification: the signed body, verified
    assert (record.gateway, record.outcome, record.payment) == ("sandbox", Outcome.APPLIED, Payment.objects.get())
    assert "sign_type=RSA2" in record.body and f"out_trade_no={order.number}" in record.body
    # Paid again (a second click on a stale page): a duplicate payment, refunded, not a second sale.
    again = sandbox_pay(order_number=order.number, payable=page_read)
    assert (again.outcome, again.reason) == (Outcome.APPLIED, "already_paid")
    assert Payment.objects.filter(order=order, status=Payment.Status.SUCCEEDED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_late_payment_after_the_stock_sold_out_goes_to_refund(client, buyer, other_buyer, mailoutbox):
    product = ProductFactory(price=Decimal("66.00"))
    stock_secrets = add_stock(product, 1)
    late = place(buyer, product)
    _expire(late)
    # Meanwhile another buyer takes (and pays for) the only code.
    rival = place(other_buyer, product)
    assert notify(client, signed(rival)).content == b"success"
    rival.refresh_from_db()
    assert rival.status == Order.Status.DELIVERED
    before = stock_state(product)
    mailoutbox.clear()

    response = notify(client, signed(late))

    # The money is ours to return: acknowledge, so the gateway stops resending.
    assert (response.status_code, response.content) == (200, b"success")
    late.refresh_from_db()
    # Marked for refund, then refunded automatically to where the money came from (the sandbox
    # refunds at once; a real gateway confirms later).
    assert list(late.history.values_list("to_status", flat=True)) == [
        Order.Status.PENDING,
        Order.Status.EXPIRED,
        Order.Status.REFUND_PENDING,
        Order.Status.REFUNDED,
    ]
    assert late.status == Order.Status.REFUNDED
    payment = Payment.objects.get(order=late)
    assert payment.status == Payment.Status.UNFULFILLABLE
    refund = payment.refunds.get()
    assert (refund.amount, refund.status) == (Decimal("66.00"), "succeeded")
    assert Notification.objects.filter(order_number=late.number).get().reason == "refund_pending"
    assert stock_state(product) == before  # the rival's code is untouched
    assert not late.codes.filter(released_at__isnull=True).exists()
    rival.refresh_from_db()
    assert rival.status == Order.Status.DELIVERED

    assert len(mailoutbox) == 2  # "will be refunded", then "refunded"
    assert all(m.to == [buyer.email] for m in mailoutbox)
    assert refund.number in mailoutbox[1].subject
    message = mailoutbox[0]
    text = message.subject + "\n" + message.body
    assert late.number in text
    assert "refund" in text.lower() or "退款" in text
    assert "66.00" in message.body
    assert not any(secret in text for secret in stock_secrets)


# --- the sandbox is not a production gateway ------------------------------------------


def test_disabled_sandbox_has_no_endpoint_cashier_or_link(client, buyer, order, settings):
    body = signed(order)
    client.force_login(buyer)
    choose = client.get(f"/pay/{order.number}/").content.decode()
    assert 'data-testid="gateway-sandbox"' in choose  # the control: enabled, it is offered
    assert f"/pay/{order.number}/start/sandbox/" in choose
    started = client.post(f"/pay/{order.number}/start/sandbox/")
    assert started.status_code == 302 and started["Location"] == f"/pay/sandbox/{order.number}/"

    settings.PAYMENTS_SANDBOX_ENABLED = False

    assert notify(client, body).status_code == 404
    assert client.get(f"/pay/sandbox/{order.number}/").status_code == 404
    assert client.post(f"/pay/sandbox/{order.number}/").status_code == 404
    # A start at a channel that is off (e.g. chosen on a checkout page before it went off):
    # nothing starts, the buyer is sent back to choose among the live ones.
    refused = client.post(f"/pay/{order.number}/start/sandbox/")
    assert refused.status_code == 302 and refused["Location"] == f"/pay/{order.number}/"
    choose = client.get(f"/pay/{order.number}/")
    assert choose.status_code == 200
    html = choose.content.decode()
    assert "gateway-sandbox" not in html
    assert "/start/sandbox/" not in html
    assert Notification.objects.count() == 0
    assert Payment.objects.count() == 0
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING


def _production_env(tmp_path, **extra) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "DJANGO_PRODUCTION": "1",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "CARD_CODE_KEYS": Fernet.generate_key().decode(),
        "STOCK_HASH_KEY": secrets.token_hex(32),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "DJANGO_ALLOWED_HOSTS": "shop.example.com",
        "VAR_DIR": str(tmp_path / "var"),
        "REALNAME_APP_SECRET": secrets.token_hex(16),
    }
    env.update(extra)
    return env


def _load_settings(env):
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; settings.SECRET_KEY"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_the_sandbox(tmp_path):
    ok = _load_settings(_production_env(tmp_path))
    assert ok.returncode == 0, ok.stderr  # the control: the same production settings load

    refused = _load_settings(_production_env(tmp_path, PAYMENTS_SANDBOX_ENABLED="1"))
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr
    assert "sandbox payment gateway cannot be enabled in production" in refused.stderr


# --- money ----------------------------------------------------------------------------


def test_quantize_rounds_half_up_and_refuses_floats():
    assert quantize(Decimal("1.005")) == Decimal("1.01")
    assert quantize(Decimal("1.004")) == Decimal("1.00")
    assert quantize("2.5") == Decimal("2.50")
    assert quantize(3) == Decimal("3.00")
    with pytest.raises(TypeError):
        quantize(1.5)
    with pytest.raises(TypeError):
        quantize(0.1 + 0.2)
    with pytest.raises(ValueError):
        quantize("abc")


@pytest.mark.parametrize(
    ("text", "amount"),
    [("88.00", "88.00"), ("88", "88.00"), ("0.5", "0.50"), (" 12.30 ", "12.30"), ("1.000", "1.00")],
)
def test_parse_yuan_accepts_plain_amounts(text, amount):
    assert parse_yuan(text) == Decimal(amount)


@pytest.mark.parametrize(
    "text",
    ["1.001", "-1", "1e3", "", "   ", ".", "1.2.3", "1,00", "+1", "NaN", "Infinity", "²", "١٢.٥٠", "1" * 40, None],
)
def test_parse_yuan_refuses_anything_else(text):
    with pytest.raises(ValueError):
        parse_yuan(text)


def test_gateway_units():
    assert yuan_str(Decimal("88")) == "88.00"
    assert yuan_str(Decimal("0.005")) == "0.01"
    assert yuan_str(Decimal("1234.5")) == "1234.50"
    assert to_fen(Decimal("88.00")) == 8800
    assert to_fen(Decimal("0.01")) == 1
    assert to_fen(Decimal("19.99")) == 1999
    assert isinstance(to_fen(Decimal("1")), int)
    assert from_fen(8800) == Decimal("88.00")
    assert from_fen(1) == Decimal("0.01")
    for fen in (0, 1, 99, 100, 1999, 123456789):
        assert to_fen(from_fen(fen)) == fen
