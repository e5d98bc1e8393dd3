"""The Alipay adapter (payments.gateways.alipay) against a fake Alipay gateway on 127.0.0.1.

Keys are generated here: the merchant's app key (given to the adapter as PKCS#1 or PKCS#8, PEM or
bare base64) and the gateway's key (the fake signs replies and notifications with it; the adapter
is configured with its public key, as the Alipay console shows it). Nothing is mocked: the SDK
signs real requests, the fake checks them, and the adapter verifies real signatures.
"""

import base64
import json
import secrets
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone

from catalog.models import CardCode
from orders.models import Order, OrderStatusChange
from payments.gateways import Device, GatewayError, NotificationRejected, enabled_gateways
from payments.gateways.alipay import AlipayGateway, parse_bill
from payments.models import Notification, Payment
from tests.builders import place
from tests.factories import ProductFactory, add_stock
from tests.fake_alipay import APP_ID, PKCS1, FakeAlipay, notify, pem, request_signature_ok, sign_content

pytestmark = pytest.mark.usefixtures("english")


BEIJING = ZoneInfo("Asia/Shanghai")
Outcome = Notification.Outcome


# --- keys, settings and the fake gateway -----------------------------------------------------


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return _new_key()


def bare_base64(key: rsa.RSAPrivateKey, fmt) -> str:
    return base64.b64encode(key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())).decode()


PKCS8 = serialization.PrivateFormat.PKCS8


def stock_state(product) -> dict:
    return dict(CardCode.objects.filter(product=product).values_list("id", "status"))


@pytest.fixture
def order(alipay, buyer):
    product = ProductFactory()  # 97.00
    add_stock(product, 3)
    return place(buyer, product)


# --- notifications through the one pipeline ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_genuine_notification_delivers_once_and_replays_change_nothing(client, alipay, fake, buyer):
    product = ProductFactory()
    add_stock(product, 3)
    order = place(buyer, product, quantity=2)
    assert order.total == Decimal("194.00")
    body = fake.notification(out_trade_no=order.number, total_amount="194.00")

    for attempt in range(4):  # the first delivery and 3 replays
        response = notify(client, body)
        assert (response.status_code, response.content) == (200, b"success"), attempt

    payment = Payment.objects.get()
    trade_no = dict(parse_qsl(body.decode()))["trade_no"]
    assert (payment.order_id, payment.gateway, payment.trade_no) == (order.pk, "alipay", trade_no)
    assert (payment.status, payment.amount, payment.currency) == (Payment.Status.SUCCEEDED, Decimal("194.00"), "CNY")
    assert payment.paid_at is not None
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert OrderStatusChange.objects.filter(order=order, to_status=Order.Status.DELIVERED).count() == 1
    assert list(Notification.objects.order_by("id").values_list("outcome", flat=True)) == [
        Outcome.APPLIED,
        Outcome.REPLAY,
        Outcome.REPLAY,
        Outcome.REPLAY,
    ]
    assert CardCode.objects.filter(product=product, status=CardCode.Status.SOLD).count() == 2


def _params(fake, order, **overrides):
    return fake.notification_params(**{"out_trade_no": order.number, "total_amount": "97.00", **overrides})


def _form(params) -> bytes:
    return urlencode(params).encode()


def _forged(fake, order, other_key):
    return _form(fake.sign_notification(_params(fake, order), key=other_key))


def _sha1_rsa(fake, order, other_key):
    # The gateway's own key, but SHA-1 ("RSA"): the SDK's verify_with_rsa would accept it.
    return _form(fake.sign_notification(_params(fake, order), algorithm=hashes.SHA1(), sign_type="RSA"))


def _sha1_labelled_rsa2(fake, order, other_key):
    return _form(fake.sign_notification(_params(fake, order), algorithm=hashes.SHA1()))


def _rsa2_labelled_rsa(fake, order, other_key):
    return _form({**fake.sign_notification(_params(fake, order)), "sign_type": "RSA"})


def _wrong_app_id(fake, order, other_key):
    return _form(fake.sign_notification(_params(fake, order, app_id="2021009999999999")))


def _wrong_seller_id(fake, order, other_key):
    return _form(fake.sign_notification(_params(fake, order, seller_id="2088999999999999")))


def _no_seller_id(fake, order, other_key):
    return _form(fake.sign_notification(_params(fake, order, seller_id=None)))


def _one_cent_more(fake, order, other_key):
    return fake.notification(out_trade_no=order.number, total_amount="97.01")


def _one_cent_less(fake, order, other_key):
    return fake.notification(out_trade_no=order.number, total_amount="96.99")


def _amount_changed_after_signing(fake, order, other_key):
    params = fake.sign_notification(_params(fake, order, total_amount="0.01"))
    return _form({**params, "total_amount": "97.00"})


def _field_added_after_signing(fake, order, other_key):
    return _form({**fake.sign_notification(_params(fake, order)), "refund_fee": "97.00"})


def _unknown_order(fake, order, other_key):
    return fake.notification(out_trade_no="2401010000NOSUCHORDER0000000", total_amount="97.00")


def _signature_removed(fake, order, other_key):
    return _form({**fake.sign_notification(_params(fake, order)), "sign": ""})


def _garbage(fake, order, other_key):
    return b"\xff\xfe\x00garbage"


@pytest.mark.parametrize(
    ("make_body", "reason"),
    [
        pytest.param(_forged, "bad signature", id="forged-signature"),
        pytest.param(_sha1_rsa, "sign_type is not RSA2", id="sha1-sign-type-rsa"),
        pytest.param(_sha1_labelled_rsa2, "bad signature", id="sha1-labelled-rsa2"),
        pytest.param(_rsa2_labelled_rsa, "sign_type is not RSA2", id="rsa2-labelled-rsa"),
        pytest.param(_wrong_app_id, "app_id is not ours", id="wrong-app-id"),
        pytest.param(_wrong_seller_id, "seller_id is not ours", id="wrong-seller-id"),
        pytest.param(_no_seller_id, "seller_id is not ours", id="no-seller-id"),
        pytest.param(_one_cent_more, "amount 97.01 differs", id="amount-plus-0.01"),
        pytest.param(_one_cent_less, "amount 96.99 differs", id="amount-minus-0.01"),
        pytest.param(_amount_changed_after_signing, "bad signature", id="amount-tampered"),
        pytest.param(_field_added_after_signing, "bad signature", id="field-added"),
        pytest.param(_unknown_order, "unknown order", id="unknown-order"),
        pytest.param(_signature_removed, "signature is missing", id="no-signature"),
        pytest.param(_garbage, "not a form", id="garbage"),
    ],
)
def test_bad_notification_is_rejected_and_changes_nothing(client, fake, order, other_key, make_body, reason):
    before = stock_state(order.product)
    history = order.history.count()

    response = notify(client, make_body(fake, order, other_key))

    assert (response.status_code, response.content) == (400, b"failure")
    assert Payment.objects.count() == 0
    order.refresh_from_db()
    assert (order.status, order.paid_at, order.history.count()) == (Order.Status.PENDING, None, history)
    assert stock_state(order.product) == before
    record = Notification.objects.get()
    assert (record.gateway, record.outcome) == ("alipay", Outcome.REJECTED)
    assert reason in record.reason


def test_the_same_order_honestly_signed_is_applied(client, fake, order):
    """The control for the rejections above."""
    response = notify(client, fake.notification(out_trade_no=order.number, total_amount="97.00"))
    assert (response.status_code, response.content) == (200, b"success")
    assert Notification.objects.get().outcome == Outcome.APPLIED
    order.refresh_from_db()
    assert order.status in (Order.Status.PAID, Order.Status.DELIVERED)


def test_trade_no_of_another_order_is_rejected(client, alipay, fake, buyer):
    product = ProductFactory()
    add_stock(product, 3)
    order_a, order_b = place(buyer, product), place(buyer, product)
    trade_no = "2024" + secrets.token_hex(12)
    first = notify(client, fake.notification(out_trade_no=order_b.number, total_amount="97.00", trade_no=trade_no))
    assert first.content == b"success"
    payment_b = Payment.objects.get()
    before = stock_state(product)

    response = notify(client, fake.notification(out_trade_no=order_a.number, total_amount="97.00", trade_no=trade_no))

    assert (response.status_code, response.content) == (400, b"failure")
    assert list(Payment.objects.all()) == [payment_b]
    order_a.refresh_from_db()
    assert order_a.status == Order.Status.PENDING
    assert stock_state(product) == before
    record = Notification.objects.filter(order_number=order_a.number).get()
    assert record.outcome == Outcome.REJECTED
    assert "another order" in record.reason


@pytest.mark.parametrize("state", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_unpaid_states_are_acknowledged_and_ignored(client, fake, order, state):
    before = stock_state(order.product)
    response = notify(client, fake.notification(out_trade_no=order.number, total_amount="97.00", trade_status=state))
    assert (response.status_code, response.content) == (200, b"success")
    assert Payment.objects.count() == 0
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert stock_state(order.product) == before
    record = Notification.objects.get()
    assert (record.outcome, record.order_number) == (Outcome.IGNORED, order.number)
    assert state in record.reason


def test_empty_fields_are_not_signed(client, fake, order):
    """Alipay leaves empty values out of the signed text (the Python SDK's get_sign_content keeps them)."""
    params = _params(fake, order, body="", passback_params="")
    signed = fake.sign_notification(params)
    assert "body=" not in sign_content(signed, exclude=("sign", "sign_type"))
    response = notify(client, _form(signed))
    assert (response.status_code, response.content) == (200, b"success")
    assert Notification.objects.get().outcome == Outcome.APPLIED


def test_gbk_notification_is_verified(client, fake, order):
    """charset=gbk: the percent-escapes are GBK bytes, the signature is over the decoded text."""
    body = fake.notification(out_trade_no=order.number, total_amount="97.00", charset="gbk", encoding="gbk")
    assert "游戏点卡".encode("gbk") in unquote_to_bytes(body)
    response = notify(client, body)
    assert (response.status_code, response.content) == (200, b"success")


def test_verify_reads_times_and_refunds(alipay, fake):
    paid = fake.notification(out_trade_no="ORDER1", total_amount="97.00", gmt_payment="2024-03-01 10:20:30")
    verified = alipay.verify(headers={}, body=paid)
    assert (verified.order_number, verified.amount, verified.currency) == ("ORDER1", Decimal("97.00"), "CNY")
    assert (verified.paid, verified.state) == (True, "TRADE_SUCCESS")
    assert verified.paid_at == datetime(2024, 3, 1, 2, 20, 30, tzinfo=ZoneInfo("UTC"))  # Beijing is UTC+8
    assert (verified.refund_no, verified.refund_amount) == ("", None)

    # A partial refund's notification: still TRADE_SUCCESS, with the refunded total so far.
    refund = fake.notification(
        out_trade_no="ORDER1",
        total_amount="97.00",
        refund_fee="10.00",
        gmt_refund="2024-03-02 09:00:00.123",
        out_biz_no="R1",
    )
    verified = alipay.verify(headers={}, body=refund)
    assert (verified.paid, verified.refund_no, verified.refund_amount) == (True, "R1", Decimal("10.00"))

    closed = fake.notification(out_trade_no="ORDER1", total_amount="97.00", trade_status="TRADE_CLOSED")
    assert alipay.verify(headers={}, body=closed).paid is False

    with pytest.raises(NotificationRejected, match="sign_type"):
        alipay.verify(headers={}, body=b"")


@pytest.mark.django_db(transaction=True)
def test_refund_notification_after_payment_is_a_replay(client, alipay, fake, buyer):
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    trade_no = "2024" + secrets.token_hex(12)
    paid = fake.notification(out_trade_no=order.number, total_amount="97.00", trade_no=trade_no)
    refunded = fake.notification(
        out_trade_no=order.number, total_amount="97.00", trade_no=trade_no, refund_fee="97.00", out_biz_no="R1"
    )
    assert notify(client, paid).content == b"success"
    assert notify(client, refunded).content == b"success"
    assert Payment.objects.count() == 1
    # A refund notification is routed to refunds (which confirm with the gateway's refund
    # query); R1 is no refund of ours, so nothing changes.
    assert list(Notification.objects.order_by("id").values_list("outcome", "reason")) == [
        (Outcome.APPLIED, "paid"),
        (Outcome.IGNORED, "refund R1: unknown refund"),
    ]


# --- the channel needs all four settings -----------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["ALIPAY_APP_ID", "ALIPAY_SELLER_ID", "ALIPAY_APP_PRIVATE_KEY", "ALIPAY_PUBLIC_KEY"]
)
def test_disabled_without_credentials(client, alipay, fake, order, settings, missing):
    body = fake.notification(out_trade_no=order.number, total_amount="97.00")
    assert AlipayGateway.is_enabled()  # the control
    assert "alipay" in enabled_gateways()

    setattr(settings, missing, "")

    assert not AlipayGateway.is_enabled()
    assert "alipay" not in enabled_gateways()
    assert notify(client, body).status_code == 404
    assert Notification.objects.count() == 0
    assert Payment.objects.count() == 0


def test_name_and_no_channel_without_settings(settings):
    for name in ("ALIPAY_APP_ID", "ALIPAY_SELLER_ID", "ALIPAY_APP_PRIVATE_KEY", "ALIPAY_PUBLIC_KEY"):
        setattr(settings, name, "")
    assert not AlipayGateway.is_enabled()
    assert str(AlipayGateway.name) == "Alipay"


# --- starting a payment -------------------------------------------------------------------------


def _start(alipay, device, **kwargs):
    args = {
        "order_number": "2403011020ABCDEFGHJKLMNPQRST",
        "amount": Decimal("97"),
        "subject": "游戏点卡 100元 / Q币=充值&",
        "device": device,
        "client_ip": "203.0.113.9",
        "notify_url": "https://shop.example.com/payments/notify/alipay/",
        "return_url": "https://shop.example.com/orders/2403011020ABCDEFGHJKLMNPQRST/",
        "expires_at": datetime(2024, 3, 1, 2, 35, 0, tzinfo=ZoneInfo("UTC")),
    }
    args.update(kwargs)
    return alipay.start_payment(**args)


@pytest.mark.parametrize(
    ("device", "method", "product_code"),
    [
        (Device.DESKTOP, "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
        (Device.MOBILE, "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    ],
)
def test_cashier_url_is_signed(alipay, fake, app_key, device, method, product_code):
    start = _start(alipay, device)

    assert start.qr_text == ""
    url = urlsplit(start.redirect_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == fake.url
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    assert params["method"] == method
    assert (params["app_id"], params["sign_type"], params["charset"]) == (APP_ID, "RSA2", "utf-8")
    assert params["notify_url"] == "https://shop.example.com/payments/notify/alipay/"
    assert params["return_url"] == "https://shop.example.com/orders/2403011020ABCDEFGHJKLMNPQRST/"
    biz = json.loads(params["biz_content"])
    assert biz["out_trade_no"] == "2403011020ABCDEFGHJKLMNPQRST"
    assert biz["total_amount"] == "97.00"
    assert biz["product_code"] == product_code
    assert biz["time_expire"] == "2024-03-01 10:35:00"  # Beijing time
    assert "/" not in biz["subject"] and "=" not in biz["subject"] and "&" not in biz["subject"]
    assert biz["subject"].startswith("游戏点卡 100元")
    # Alipay's own check: the app's public key over every parameter but sign.
    assert request_signature_ok(params, app_key.public_key())
    assert not request_signature_ok(
        {**params, "biz_content": params["biz_content"].replace("97.00", "9.70")}, app_key.public_key()
    )
    # The request timestamp is Beijing time (the SDK uses the process's local time).
    stamp = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    assert abs(stamp - timezone.now()) < timedelta(minutes=2)
    assert fake.calls == []  # no network


@pytest.mark.parametrize(
    "private_key",
    [
        pytest.param(lambda key: pem(key, PKCS8), id="pkcs8-pem"),
        pytest.param(lambda key: bare_base64(key, PKCS1), id="pkcs1-base64"),
        pytest.param(lambda key: bare_base64(key, PKCS8), id="pkcs8-base64"),
        pytest.param(lambda key: pem(key, PKCS1).replace("\n", "\\n"), id="pkcs1-pem-escaped-newlines"),
    ],
)
def test_app_private_key_formats(alipay, fake, app_key, settings, private_key):
    settings.ALIPAY_APP_PRIVATE_KEY = private_key(app_key)
    params = dict(parse_qsl(urlsplit(_start(alipay, Device.DESKTOP).redirect_url).query))
    assert request_signature_ok(params, app_key.public_key())
    fake.add_trade("ORDER-FMT", "97.00")
    assert alipay.query(order_number="ORDER-FMT").paid  # the fake checked the request's signature too


def test_unusable_private_key_is_a_clear_gateway_error(alipay, settings):
    settings.ALIPAY_APP_PRIVATE_KEY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"  # truncated
    with pytest.raises(GatewayError, match="ALIPAY_APP_PRIVATE_KEY"):
        _start(alipay, Device.DESKTOP)


def test_wrong_app_key_is_refused_by_the_gateway(alipay, fake, settings, other_key):
    settings.ALIPAY_APP_PRIVATE_KEY = pem(other_key, PKCS1)
    with pytest.raises(GatewayError, match=r"isv\.invalid-signature"):
        alipay.query(order_number="ANY")


def test_precreate_returns_the_qr_code(alipay, fake):
    start = alipay.precreate(
        order_number="ORDER-QR",
        amount=Decimal("97.00"),
        subject="点卡",
        notify_url="https://shop.example.com/payments/notify/alipay/",
        expires_at=timezone.now() + timedelta(minutes=15),
    )
    assert start.qr_text == fake.qr_code("ORDER-QR")
    assert start.redirect_url == ""
    method, params = fake.calls[-1]
    assert method == "alipay.trade.precreate"
    assert params["notify_url"] == "https://shop.example.com/payments/notify/alipay/"
    assert json.loads(params["biz_content"])["total_amount"] == "97.00"
    assert fake.trades["ORDER-QR"].status == "WAIT_BUYER_PAY"


# --- query and close ------------------------------------------------------------------------------


def test_query(alipay, fake):
    trade = fake.add_trade("ORDER-PAID", "97.00", paid="2024-03-01 10:20:30")
    fake.add_trade("ORDER-WAIT", "97.00", status="WAIT_BUYER_PAY")
    fake.add_trade("ORDER-CLOSED", "97.00", status="TRADE_CLOSED")

    paid = alipay.query(order_number="ORDER-PAID")
    assert (paid.exists, paid.paid, paid.closed) == (True, True, False)
    assert (paid.trade_no, paid.amount, paid.state) == (trade.trade_no, Decimal("97.00"), "TRADE_SUCCESS")
    assert paid.paid_at == datetime(2024, 3, 1, 10, 20, 30, tzinfo=BEIJING)

    waiting = alipay.query(order_number="ORDER-WAIT")
    assert (waiting.exists, waiting.paid, waiting.closed, waiting.paid_at) == (True, False, False, None)
    closed = alipay.query(order_number="ORDER-CLOSED")
    assert (closed.exists, closed.paid, closed.closed) == (True, False, True)

    missing = alipay.query(order_number="ORDER-NONE")
    assert (missing.exists, missing.paid) == (False, False)
    assert fake.methods() == ["alipay.trade.query"] * 4


def test_close(alipay, fake):
    fake.add_trade("ORDER-WAIT", "97.00", status="WAIT_BUYER_PAY")
    alipay.close(order_number="ORDER-WAIT")
    assert fake.trades["ORDER-WAIT"].status == "TRADE_CLOSED"
    alipay.close(order_number="ORDER-WAIT")  # closing a closed trade is fine
    alipay.close(order_number="ORDER-NONE")  # so is closing one that never existed

    fake.add_trade("ORDER-PAID", "97.00")
    with pytest.raises(GatewayError, match="already paid"):
        alipay.close(order_number="ORDER-PAID")
    assert fake.trades["ORDER-PAID"].status == "TRADE_SUCCESS"


# --- refunds --------------------------------------------------------------------------------------------


def test_refund_is_idempotent_on_refund_no(alipay, fake):
    fake.add_trade("ORDER-R", "97.00")
    args = {
        "order_number": "ORDER-R",
        "refund_no": "RF2403010001",
        "amount": Decimal("30.00"),
        "total": Decimal("97.00"),
        "reason": "unused code, 7-day refund",
        "notify_url": "https://shop.example.com/payments/notify/alipay/",
    }

    first = alipay.refund(**args)
    second = alipay.refund(**args)

    assert (first.refund_no, first.done, first.amount) == ("RF2403010001", True, Decimal("30.00"))
    assert (second.refund_no, second.done, second.amount) == ("RF2403010001", True, Decimal("30.00"))
    assert fake.refunds_executed == 1
    assert fake.trades["ORDER-R"].refunded == Decimal("30.00")
    # The repeat answered fund_change=N; the adapter confirmed with the refund query.
    assert fake.methods() == ["alipay.trade.refund", "alipay.trade.refund", "alipay.trade.fastpay.refund.query"]
    biz = json.loads(fake.calls[0][1]["biz_content"])
    assert (biz["out_request_no"], biz["refund_amount"]) == ("RF2403010001", "30.00")

    alipay.refund(**{**args, "refund_no": "RF2403010002", "amount": Decimal("67.00")})
    assert fake.refunds_executed == 2
    assert fake.trades["ORDER-R"].status == "TRADE_CLOSED"

    with pytest.raises(GatewayError, match=r"ACQ\.REFUND_AMT_NOT_EQUAL_TOTAL"):
        alipay.refund(**{**args, "refund_no": "RF2403010003", "amount": Decimal("0.01")})
    with pytest.raises(GatewayError, match=r"ACQ\.TRADE_NOT_EXIST"):
        alipay.refund(**{**args, "order_number": "ORDER-NONE"})
    assert fake.refunds_executed == 2


def test_refund_query(alipay, fake):
    fake.add_trade("ORDER-R", "97.00")
    alipay.refund(
        order_number="ORDER-R",
        refund_no="RF1",
        amount=Decimal("97.00"),
        total=Decimal("97.00"),
        reason="",
        notify_url="",
    )

    done = alipay.refund_query(order_number="ORDER-R", refund_no="RF1")
    assert (done.refund_no, done.done, done.amount, done.state) == ("RF1", True, Decimal("97.00"), "REFUND_SUCCESS")

    unknown = alipay.refund_query(order_number="ORDER-R", refund_no="RF-NONE")
    assert (unknown.refund_no, unknown.done, unknown.amount) == ("RF-NONE", False, Decimal("0.00"))


# --- the daily bill ---------------------------------------------------------------------------------------


def test_bill_lines(alipay, fake):
    paid = fake.add_trade("ORDER-A", "97.00", paid="2024-03-01 10:20:30")
    refunded = fake.add_trade("ORDER-B", "194.00")
    fake.add_trade("ORDER-WAIT", "5.00", status="WAIT_BUYER_PAY")
    alipay.refund(
        order_number="ORDER-B",
        refund_no="RF-B1",
        amount=Decimal("97.00"),
        total=Decimal("194.00"),
        reason="",
        notify_url="",
    )

    lines = alipay.bill(day=date(2024, 3, 1))

    assert fake.bill_downloads == 1
    _method, params = fake.calls[-1]
    assert json.loads(params["biz_content"]) == {"bill_type": "trade", "bill_date": "2024-03-01"}
    by_kind = sorted((line.kind, line.order_number, line.trade_no, line.amount, line.refund_no) for line in lines)
    assert by_kind == [
        ("payment", "ORDER-A", paid.trade_no, Decimal("97.00"), ""),
        ("payment", "ORDER-B", refunded.trade_no, Decimal("194.00"), ""),
        ("refund", "ORDER-B", refunded.trade_no, Decimal("97.00"), "RF-B1"),
    ]
    line_a = next(line for line in lines if line.order_number == "ORDER-A")
    assert line_a.at == datetime(2024, 3, 1, 10, 20, 30, tzinfo=BEIJING)
    assert line_a.raw["商品名称"] == "商品"


def test_bill_parser_reads_a_plain_gbk_csv_and_refuses_bad_amounts():
    header = FakeAlipay.DETAIL_HEADER
    row = "2024030122001400000000000001\t,ORDER-A\t,交易\t,点卡,2024-03-01 10:00:00,2024-03-01 10:00:05," + ",".join(
        ["", "", "", "", "b***@x.com", "12.50", "12.50"] + ["0.00"] * 5 + ["", "0.00", "0.00", "", "-0.08", "0.00", ""]
    )
    text = "\n".join(
        [
            "#支付宝业务明细查询",
            "#------业务明细列表------",
            header,
            row,
            "#------业务明细列表结束------",
            "#交易合计：1笔",
        ]
    )
    [line] = parse_bill(text.encode("gbk"))
    assert (line.kind, line.order_number, line.amount) == ("payment", "ORDER-A", Decimal("12.50"))

    with pytest.raises(GatewayError, match="not an amount"):
        parse_bill(text.replace("12.50", "12.5x", 1).encode("gbk"))
    with pytest.raises(GatewayError, match="no detail"):
        parse_bill("#只有注释\n".encode("gbk"))


# --- transport and reply failures become GatewayError ---------------------------------------------------


def test_reply_with_a_bad_signature_is_a_gateway_error(alipay, fake, other_key):
    fake.add_trade("ORDER-PAID", "97.00")
    assert alipay.query(order_number="ORDER-PAID").paid  # the control
    fake.reply_key = other_key
    with pytest.raises(GatewayError, match="signature does not verify"):
        alipay.query(order_number="ORDER-PAID")


@pytest.mark.parametrize("status", [500, 502, 404])
def test_http_error_is_a_gateway_error_not_a_type_error(alipay, fake, status):
    fake.fail_status = status
    with pytest.raises(GatewayError, match=f"HTTP {status}"):
        alipay.query(order_number="ORDER-ANY")
    assert fake.methods() == ["alipay.trade.query"]


def test_unreachable_gateway_is_a_gateway_error(alipay, settings, fake):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.ALIPAY_SERVER_URL = f"http://127.0.0.1:{port}/gateway.do"  # nothing listens there
    with pytest.raises(GatewayError, match="cannot reach the gateway"):
        alipay.query(order_number="ORDER-ANY")
