"""The WeChat Pay (APIv3) adapter against a fake gateway, and its callbacks through the pipeline.

Every key is generated in the test process (tests/fake_wechatpay.py). Callbacks carry real
RSA signatures and AES-GCM-encrypted resources; the SDK's verifier is never mocked. API
calls go over HTTP to a fake server that checks the merchant's request signatures and signs
its replies with the platform key.
"""

import json
import socket
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import requests
from django.utils import timezone

from catalog.models import CardCode
from marketplace.money import to_fen
from orders.models import Order, OrderStatusChange
from payments.gateways import Device, GatewayError, NotificationRejected, enabled_gateways
from payments.gateways.wechat import WeChatPayGateway, parse_bill
from payments.models import Notification, Payment
from tests.builders import place
from tests.factories import ProductFactory, add_stock
from tests.fake_wechatpay import (
    bill_row,
    bill_text,
    callback,
    configure,
    generated_keys,
    new_key,
    private_pem,
    refund_resource,
    transaction_resource,
)

NOTIFY = "/payments/notify/wechat/"
Outcome = Notification.Outcome


@pytest.fixture
def keys():
    return generated_keys()


@pytest.fixture
def gateway(fake_wechatpay) -> WeChatPayGateway:
    return WeChatPayGateway()


@pytest.fixture
def no_network(monkeypatch):
    """Every use of ``requests`` is recorded and fails."""
    calls = []

    def refuse(session, request, **kwargs):
        calls.append(request.url)
        raise AssertionError(f"network used: {request.url}")

    monkeypatch.setattr(requests.Session, "send", refuse)
    return calls


def notify(client, body: bytes, headers: dict[str, str]):
    meta = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    return client.post(NOTIFY, data=body, content_type="application/json", **meta)


def paid_callback(keys, order: Order, **overrides) -> tuple[bytes, dict[str, str]]:
    return callback(
        keys, transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total), **overrides)
    )


def assert_rejected(response) -> None:
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "FAIL"
    assert response.json()["message"]


@pytest.fixture
def order(fake_wechatpay, buyer):
    product = ProductFactory(price=Decimal("88.00"))
    add_stock(product, 3)
    return place(buyer, product, quantity=2)


def stock_state(order) -> dict:
    return dict(CardCode.objects.filter(product=order.product).values_list("id", "status"))


# --- callbacks through POST /payments/notify/wechat/ ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_genuine_callback_delivers_once_and_replays_change_nothing(client, fake_wechatpay, keys, buyer):
    product = ProductFactory(price=Decimal("88.00"))
    add_stock(product, 3)
    order = place(buyer, product, quantity=2)
    body, headers = paid_callback(keys, order)

    for attempt in range(4):  # the callback, then 3 replays of it
        response = notify(client, body, headers)
        assert (response.status_code, response.content) == (204, b""), attempt

    payment = Payment.objects.get()
    assert (payment.order_id, payment.gateway, payment.status) == (order.pk, "wechat", Payment.Status.SUCCEEDED)
    assert payment.amount == order.total == Decimal("176.00")
    assert payment.trade_no.startswith("42000")
    assert payment.paid_at is not None and abs(payment.paid_at - timezone.now()) < timedelta(minutes=1)
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


def _forged(keys, order):
    return paid_callback_signed_by(keys, order, keys.forger)


def paid_callback_signed_by(keys, order, key):
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total))
    return callback(keys, resource, sign_key=key)


def _tampered_after_signing(keys, order):
    body, headers = paid_callback(keys, order)
    event = json.loads(body)
    event["summary"] = "改过"
    return json.dumps(event, ensure_ascii=False).encode(), headers


def _wrong_mchid(keys, order):
    return paid_callback(keys, order, mchid="1900000999")


def _wrong_appid(keys, order):
    return paid_callback(keys, order, appid="wx0000000000000000")


def _one_fen_more(keys, order):
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total) + 1)
    return callback(keys, resource)


def _one_fen_less(keys, order):
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total) - 1)
    return callback(keys, resource)


def _unknown_order(keys, order):
    resource = transaction_resource(keys, order_number="2401010000NOSUCHORDER0000000", total_fen=to_fen(order.total))
    return callback(keys, resource)


def _ten_minutes_old(keys, order):
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total))
    return callback(keys, resource, timestamp=int(time.time()) - 600)


def _ten_minutes_ahead(keys, order):
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total))
    return callback(keys, resource, timestamp=int(time.time()) + 600)


def _wrong_apiv3_key(keys, order):
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total))
    return callback(keys, resource, apiv3_key="b" * 32)


def _other_signature_type(keys, order):
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total))
    return callback(keys, resource, signature_type="WECHATPAY2-SM2-WITH-SM3")


def _other_currency(keys, order):
    amount = {"total": to_fen(order.total), "currency": "USD"}
    return paid_callback(keys, order, amount=amount)


def _fractional_amount(keys, order):
    return paid_callback(keys, order, amount={"total": float(to_fen(order.total)), "currency": "CNY"})


def _signature_headers_missing(keys, order):
    body, headers = paid_callback(keys, order)
    del headers["Wechatpay-Signature"]
    return body, headers


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(_forged, "bad signature or key", id="signed-by-another-key"),
        pytest.param(_tampered_after_signing, "bad signature or key", id="body-changed-after-signing"),
        pytest.param(_signature_headers_missing, "bad signature or key", id="no-signature"),
        pytest.param(_wrong_mchid, "mchid", id="wrong-mchid"),
        pytest.param(_wrong_appid, "appid", id="wrong-appid"),
        pytest.param(_one_fen_more, "amount", id="one-fen-more"),
        pytest.param(_one_fen_less, "amount", id="one-fen-less"),
        pytest.param(_other_currency, "currency", id="other-currency"),
        pytest.param(_fractional_amount, "amount.total", id="amount-not-integer"),
        pytest.param(_unknown_order, "unknown order", id="unknown-order"),
        pytest.param(_ten_minutes_old, "Wechatpay-Timestamp", id="ten-minutes-old"),
        pytest.param(_ten_minutes_ahead, "Wechatpay-Timestamp", id="ten-minutes-ahead"),
        pytest.param(_wrong_apiv3_key, "bad signature or key", id="undecryptable-resource"),
        pytest.param(_other_signature_type, "Signature-Type", id="other-signature-type"),
    ],
)
def test_bad_callback_is_rejected_and_changes_nothing(client, keys, order, make, reason):
    body, headers = make(keys, order)
    before = stock_state(order)
    history_before = order.history.count()

    response = notify(client, body, headers)

    assert_rejected(response)
    assert Payment.objects.count() == 0
    order.refresh_from_db()
    assert (order.status, order.paid_at) == (Order.Status.PENDING, None)
    assert order.history.count() == history_before
    assert stock_state(order) == before
    record = Notification.objects.get()
    assert (record.gateway, record.outcome) == ("wechat", Outcome.REJECTED)
    assert reason in record.reason


def test_genuine_callback_passes_the_same_checks(client, keys, order):
    """The control for the rejections above: the same order, honestly signed, is applied."""
    response = notify(client, *paid_callback(keys, order))
    assert (response.status_code, response.content) == (204, b"")
    assert Notification.objects.get().outcome == Outcome.APPLIED
    order.refresh_from_db()
    assert order.status == Order.Status.PAID  # fulfilment is queued on commit


def test_serial_not_our_public_key_id_is_refused_without_network(client, settings, keys, order, no_network):
    settings.WECHATPAY_GATEWAY_URL = ""  # the SDK's real host: any attempt would be a real request
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total))
    # A platform-certificate serial: the SDK would try to download certificates for it.
    body, headers = callback(keys, resource, serial="5157F09EFDC096DE15EBE81A47057A7232F1B8E1")

    started = time.monotonic()
    response = notify(client, body, headers)

    assert time.monotonic() - started < 2
    assert_rejected(response)
    assert no_network == []
    record = Notification.objects.get()
    assert record.outcome == Outcome.REJECTED
    assert "Wechatpay-Serial" in record.reason
    assert Payment.objects.count() == 0

    # The control: the right serial is verified offline too, and applied.
    assert notify(client, *paid_callback(keys, order)).status_code == 204
    assert no_network == []
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("state", ["NOTPAY", "CLOSED"])
def test_unpaid_trade_states_are_ignored(client, keys, order, state):
    before = stock_state(order)
    response = notify(client, *paid_callback(keys, order, trade_state=state))
    assert (response.status_code, response.content) == (204, b"")  # acknowledged, nothing paid
    assert Payment.objects.count() == 0
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert stock_state(order) == before
    record = Notification.objects.get()
    assert record.outcome == Outcome.IGNORED
    assert state in record.reason


def test_refund_event_is_verified_and_left_to_the_pipeline(client, keys, order):
    resource = refund_resource(
        keys, order_number=order.number, refund_no="R" + order.number, total_fen=17600, refund_fen=8800
    )
    body, headers = callback(keys, resource, event_type="REFUND.SUCCESS")

    verified = WeChatPayGateway().verify(headers=headers, body=body)
    assert verified.paid is False
    assert verified.state == "REFUND.SUCCESS"
    assert (verified.order_number, verified.refund_no) == (order.number, "R" + order.number)
    assert (verified.amount, verified.refund_amount) == (Decimal("176.00"), Decimal("88.00"))

    response = notify(client, body, headers)
    assert response.status_code == 204
    assert Notification.objects.get().outcome == Outcome.IGNORED
    assert Payment.objects.count() == 0


def test_other_event_types_are_acknowledged_and_ignored(client, keys, order):
    resource = transaction_resource(keys, order_number=order.number, total_fen=to_fen(order.total))
    response = notify(client, *callback(keys, resource, event_type="TRANSACTION.SOMETHING_NEW"))
    assert response.status_code == 204
    record = Notification.objects.get()
    assert (record.outcome, record.order_number) == (Outcome.IGNORED, order.number)
    assert "TRANSACTION.SOMETHING_NEW" in record.reason
    assert Payment.objects.count() == 0


def test_refund_event_for_another_merchant_is_rejected(keys, fake_wechatpay):
    resource = refund_resource(keys, order_number="2401010000X", refund_no="R1", total_fen=100, refund_fen=100)
    resource["mchid"] = "1900000999"
    body, headers = callback(keys, resource, event_type="REFUND.SUCCESS")
    with pytest.raises(NotificationRejected, match="mchid"):
        WeChatPayGateway().verify(headers=headers, body=body)


def test_verify_reads_any_header_spelling(keys, fake_wechatpay):
    resource = transaction_resource(keys, order_number="2401010000ANYORDER", total_fen=1234)
    body, headers = callback(keys, resource)
    gateway = WeChatPayGateway()
    spellings = [
        headers,
        {name.lower(): value for name, value in headers.items()},
        {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},  # request.META
    ]
    for spelling in spellings:
        verified = gateway.verify(headers=spelling, body=body)
        assert (verified.order_number, verified.amount, verified.paid) == ("2401010000ANYORDER", Decimal("12.34"), True)
        assert verified.paid_at.utcoffset() == timedelta(hours=8)


def test_reply():
    gateway = WeChatPayGateway()
    ok = gateway.reply(ok=True)
    assert (ok.status_code, ok.content) == (204, b"")
    fail = gateway.reply(ok=False)
    assert fail.status_code == 400
    assert json.loads(fail.content)["code"] == "FAIL"


# --- calls to the gateway -------------------------------------------------------------


def start(gateway, order_number: str, device: Device, **kwargs):
    args = {
        "order_number": order_number,
        "amount": Decimal("88.50"),
        "subject": "游戏点卡 100元",
        "device": device,
        "client_ip": "203.0.113.7",
        "notify_url": "https://shop.example.com/payments/notify/wechat/",
        "return_url": "",
        "expires_at": timezone.now() + timedelta(minutes=15),
    }
    args.update(kwargs)
    return gateway.start_payment(**args)


def test_start_payment_native_gives_the_code_url(gateway, fake_wechatpay, keys):
    expires_at = timezone.now() + timedelta(minutes=15)
    result = start(gateway, "2401010000NATIVE0000001", Device.DESKTOP, expires_at=expires_at)

    assert result.qr_text.startswith("weixin://wxpay/bizpayurl?pr=")
    assert result.redirect_url == ""
    (seen,) = fake_wechatpay.seen
    assert seen.authorized, seen.reason
    assert (seen.method, seen.path) == ("POST", "/v3/pay/transactions/native")
    assert seen.body["amount"] == {"total": 8850, "currency": "CNY"}
    assert (seen.body["mchid"], seen.body["appid"]) == (keys.mchid, keys.appid)
    assert seen.body["out_trade_no"] == "2401010000NATIVE0000001"
    assert seen.body["description"] == "游戏点卡 100元"
    assert seen.body["notify_url"] == "https://shop.example.com/payments/notify/wechat/"
    assert seen.body["time_expire"] == timezone.localtime(expires_at).isoformat(timespec="seconds")
    assert seen.body["time_expire"].endswith("+08:00")
    assert "scene_info" not in seen.body


def test_start_payment_h5_gives_the_h5_url(gateway, fake_wechatpay):
    result = start(gateway, "2401010000H5000000000001", Device.MOBILE, return_url="https://shop.example.com/o/1?x=1")

    assert result.qr_text == ""
    assert result.redirect_url.startswith("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=")
    assert result.redirect_url.endswith("&redirect_url=https%3A%2F%2Fshop.example.com%2Fo%2F1%3Fx%3D1")
    (seen,) = fake_wechatpay.seen
    assert seen.authorized, seen.reason
    assert seen.path == "/v3/pay/transactions/h5"
    assert seen.body["scene_info"] == {"payer_client_ip": "203.0.113.7", "h5_info": {"type": "Wap"}}
    assert seen.body["amount"]["total"] == 8850


def test_start_payment_default_notify_url(settings, gateway, fake_wechatpay):
    settings.SITE_URL = "https://shop.example.com"
    start(gateway, "2401010000DEFAULTNOTIFY1", Device.DESKTOP, notify_url="")
    assert fake_wechatpay.seen[0].body["notify_url"] == "https://shop.example.com/payments/notify/wechat/"


def test_fake_refuses_requests_not_signed_by_our_merchant_key(settings, gateway, fake_wechatpay):
    """The fake's signature check can fail: the other tests' "authorized" means something."""
    settings.WECHATPAY_PRIVATE_KEY = private_pem(new_key())
    with pytest.raises(GatewayError, match="401 SIGN_ERROR"):
        start(gateway, "2401010000UNSIGNED000001", Device.DESKTOP)
    assert fake_wechatpay.seen[0].authorized is False


def test_query(gateway, fake_wechatpay):
    fake_wechatpay.add_trade("2401010000PAID0000000001", 8850, state="SUCCESS")
    fake_wechatpay.add_trade("2401010000WAIT0000000001", 100, state="NOTPAY")
    fake_wechatpay.add_trade("2401010000SHUT0000000001", 100, state="CLOSED")

    paid = gateway.query(order_number="2401010000PAID0000000001")
    assert (paid.exists, paid.paid, paid.closed, paid.state) == (True, True, False, "SUCCESS")
    assert paid.amount == Decimal("88.50")
    assert paid.trade_no == fake_wechatpay.trades["2401010000PAID0000000001"]["transaction_id"]
    assert paid.paid_at is not None

    waiting = gateway.query(order_number="2401010000WAIT0000000001")
    assert (waiting.exists, waiting.paid, waiting.closed, waiting.state) == (True, False, False, "NOTPAY")
    closed = gateway.query(order_number="2401010000SHUT0000000001")
    assert (closed.exists, closed.paid, closed.closed) == (True, False, True)
    missing = gateway.query(order_number="2401010000NONE0000000001")
    assert missing.exists is False
    assert all(seen.authorized for seen in fake_wechatpay.seen)
    assert fake_wechatpay.seen[0].path == "/v3/pay/transactions/out-trade-no/2401010000PAID0000000001?mchid=1900000109"


def test_close(gateway, fake_wechatpay):
    fake_wechatpay.add_trade("2401010000OPEN0000000001", 100)
    gateway.close(order_number="2401010000OPEN0000000001")
    assert fake_wechatpay.trades["2401010000OPEN0000000001"]["state"] == "CLOSED"
    gateway.close(order_number="2401010000OPEN0000000001")  # already closed: fine
    gateway.close(order_number="2401010000NONE0000000001")  # unknown: fine
    assert [s.path.rsplit("/", 1)[1] for s in fake_wechatpay.seen] == ["close"] * 3
    assert all(seen.authorized for seen in fake_wechatpay.seen)

    fake_wechatpay.add_trade("2401010000PAID0000000001", 100, state="SUCCESS")
    with pytest.raises(GatewayError, match="ORDERPAID"):
        gateway.close(order_number="2401010000PAID0000000001")


def test_refund_twice_with_the_same_refund_no_refunds_once(settings, gateway, fake_wechatpay):
    settings.SITE_URL = "https://shop.example.com"
    fake_wechatpay.add_trade("2401010000PAID0000000001", 17600, state="SUCCESS")
    args = {
        "order_number": "2401010000PAID0000000001",
        "refund_no": "RF2401010000000001",
        "amount": Decimal("88.00"),
        "total": Decimal("176.00"),
        "reason": "7天无理由退款",
        "notify_url": "",
    }

    first = gateway.refund(**args)
    second = gateway.refund(**args)

    assert first == second
    assert (first.refund_no, first.done, first.state, first.amount) == (
        "RF2401010000000001",
        False,
        "PROCESSING",
        Decimal("88.00"),
    )
    assert first.gateway_refund_id.startswith("50300")
    assert fake_wechatpay.refund_requests == {"RF2401010000000001": 2}
    assert list(fake_wechatpay.refunds) == ["RF2401010000000001"]
    sent = fake_wechatpay.requests_to("/v3/refund/domestic/refunds")[0]
    assert sent.authorized, sent.reason
    assert sent.body["amount"] == {"refund": 8800, "total": 17600, "currency": "CNY"}
    assert sent.body["out_trade_no"] == "2401010000PAID0000000001"
    assert sent.body["reason"] == "7天无理由退款"
    # Refund events come to our endpoint, by an explicit URL.
    assert sent.body["notify_url"] == "https://shop.example.com/payments/notify/wechat/"


def test_refund_of_an_unknown_trade_is_an_error(gateway, fake_wechatpay):
    with pytest.raises(GatewayError, match="404 RESOURCE_NOT_EXISTS"):
        gateway.refund(
            order_number="2401010000NONE0000000001",
            refund_no="RF1",
            amount=Decimal("1.00"),
            total=Decimal("1.00"),
            reason="",
            notify_url="https://shop.example.com/refund-notify/",
        )


def test_refund_query(gateway, fake_wechatpay):
    fake_wechatpay.add_trade("2401010000PAID0000000001", 17600, state="SUCCESS")
    gateway.refund(
        order_number="2401010000PAID0000000001",
        refund_no="RF2401010000000001",
        amount=Decimal("176.00"),
        total=Decimal("176.00"),
        reason="",
        notify_url="https://shop.example.com/payments/notify/wechat/",
    )

    pending = gateway.refund_query(order_number="2401010000PAID0000000001", refund_no="RF2401010000000001")
    assert (pending.done, pending.state, pending.amount) == (False, "PROCESSING", Decimal("176.00"))

    fake_wechatpay.refunds["RF2401010000000001"]["status"] = "SUCCESS"
    done = gateway.refund_query(order_number="2401010000PAID0000000001", refund_no="RF2401010000000001")
    assert (done.done, done.state, done.amount) == (True, "SUCCESS", Decimal("176.00"))
    assert done.gateway_refund_id == pending.gateway_refund_id

    unknown = gateway.refund_query(order_number="2401010000PAID0000000001", refund_no="RF-NEVER-SENT")
    assert (unknown.done, unknown.state) == (False, "NOT_FOUND")

    with pytest.raises(GatewayError, match="another order"):
        gateway.refund_query(order_number="2401010000OTHER000000001", refund_no="RF2401010000000001")
    assert all(seen.authorized for seen in fake_wechatpay.seen)


def _a_bill(keys) -> str:
    rows = [
        bill_row(
            keys,
            交易时间="2024-01-02 10:04:51",
            微信订单号="4200000001202401020000000001",
            商户订单号="2401021004PAIDORDER00000001",
            交易类型="NATIVE",
            交易状态="SUCCESS",
            应结订单金额="88.00",
            商品名称="游戏点卡, 100元",  # an unescaped comma, as WeChat writes them
            订单金额="88.00",
            申请退款金额="0.00",
            退款金额="0.00",
            微信退款单号="0",
            商户退款单号="0",
        ),
        bill_row(
            keys,
            交易时间="2024-01-02 11:00:00",
            微信订单号="4200000001202401020000000002",
            商户订单号="2401021004REFUNDED000000001",
            交易类型="NATIVE",
            交易状态="REFUND",
            应结订单金额="0.00",
            订单金额="0.00",
            微信退款单号="50300000012024010200000001",
            商户退款单号="RF2401020000000001",
            申请退款金额="30.00",
            退款金额="30.00",
            退款状态="SUCCESS",
            商品名称="月卡",
        ),
        bill_row(keys, 交易时间="2024-01-02 12:00:00", 商户订单号="2401021200REVOKED0000000001", 交易状态="REVOKED"),
    ]
    return "\ufeff" + bill_text(rows, totals="`3,`88.00,`30.00,`0.00,`0.53000,`88.00,`30.00")


def test_bill(gateway, fake_wechatpay, keys):
    fake_wechatpay.set_bill("2024-01-02", _a_bill(keys))

    lines = gateway.bill(day=date(2024, 1, 2))

    payment, refund = lines
    assert (payment.kind, payment.order_number, payment.trade_no, payment.amount, payment.refund_no) == (
        "payment",
        "2401021004PAIDORDER00000001",
        "4200000001202401020000000001",
        Decimal("88.00"),
        "",
    )
    assert payment.at == datetime(2024, 1, 2, 10, 4, 51, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert payment.raw["商品名称"] == "游戏点卡, 100元"
    assert payment.raw["费率"] == "0.60%"
    assert (refund.kind, refund.order_number, refund.refund_no, refund.amount) == (
        "refund",
        "2401021004REFUNDED000000001",
        "RF2401020000000001",
        Decimal("30.00"),
    )
    paths = [seen.path for seen in fake_wechatpay.seen]
    assert paths == [
        "/v3/bill/tradebill?bill_date=2024-01-02&bill_type=ALL&tar_type=GZIP",
        "/v3/billdownload/file?token=2024-01-02",
    ]
    assert all(seen.authorized for seen in fake_wechatpay.seen)

    assert gateway.bill(day=date(2024, 1, 3)) == []  # NO_STATEMENT_EXIST: no trades that day


def test_bill_with_a_wrong_hash_is_refused(gateway, fake_wechatpay, keys):
    fake_wechatpay.set_bill("2024-01-02", _a_bill(keys))
    fake_wechatpay.bill_hash_override = "0" * 40
    with pytest.raises(GatewayError, match="SHA1"):
        gateway.bill(day=date(2024, 1, 2))


def test_parse_bill_refuses_a_broken_amount(keys):
    text = bill_text([bill_row(keys, 交易时间="2024-01-02 10:04:51", 交易状态="SUCCESS", 订单金额="8.8.0")])
    with pytest.raises(GatewayError, match="line 2"):
        parse_bill(text)
    assert parse_bill("") == []


def test_reply_signed_by_another_key_is_an_error(gateway, fake_wechatpay, keys):
    fake_wechatpay.add_trade("2401010000PAID0000000001", 100, state="SUCCESS")
    fake_wechatpay.add_trade("2401010000OPEN0000000001", 100)
    fake_wechatpay.reply_key = keys.forger
    with pytest.raises(GatewayError, match="not signed by WeChat Pay"):
        gateway.query(order_number="2401010000PAID0000000001")
    with pytest.raises(GatewayError, match="not signed by WeChat Pay"):
        gateway.close(order_number="2401010000OPEN0000000001")  # even an empty 204 is signed
    with pytest.raises(GatewayError, match="not signed by WeChat Pay"):
        start(gateway, "2401010000NATIVE0000001", Device.DESKTOP)


def test_server_error_is_an_error(gateway, fake_wechatpay):
    fake_wechatpay.fail_status = 500
    with pytest.raises(GatewayError, match="HTTP 500 SYSTEM_ERROR"):
        gateway.query(order_number="2401010000PAID0000000001")
    with pytest.raises(GatewayError, match="HTTP 500"):
        start(gateway, "2401010000NATIVE0000001", Device.DESKTOP)
    with pytest.raises(GatewayError, match="HTTP 500"):
        gateway.bill(day=date(2024, 1, 2))


def test_unreachable_gateway_is_an_error(settings, gateway, fake_wechatpay):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.WECHATPAY_GATEWAY_URL = f"http://127.0.0.1:{port}"  # nothing listens there
    with pytest.raises(GatewayError, match="unreachable"):
        gateway.query(order_number="2401010000PAID0000000001")


# --- is_enabled ---------------------------------------------------------------------------


def test_enabled_with_full_credentials_and_listed(settings, keys, no_network):
    configure(settings, keys)
    assert WeChatPayGateway.is_enabled()
    assert "wechat" in enabled_gateways()
    assert no_network == []  # public-key mode: building the client touched no network


def test_disabled_without_credentials(settings):
    settings.WECHATPAY_MCHID = settings.WECHATPAY_APPID = settings.WECHATPAY_PRIVATE_KEY = ""
    assert not WeChatPayGateway.is_enabled()
    assert "wechat" not in enabled_gateways()


@pytest.mark.parametrize(
    "setting",
    [
        "WECHATPAY_MCHID",
        "WECHATPAY_APPID",
        "WECHATPAY_PRIVATE_KEY",
        "WECHATPAY_CERT_SERIAL_NO",
        "WECHATPAY_APIV3_KEY",
        "WECHATPAY_PUBLIC_KEY",
        "WECHATPAY_PUBLIC_KEY_ID",
    ],
)
def test_disabled_when_one_setting_is_missing(settings, keys, setting):
    configure(settings, keys)
    setattr(settings, setting, "")
    assert not WeChatPayGateway.is_enabled()


@pytest.mark.parametrize("apiv3_key", ["a" * 31, "a" * 33, "a" * 31 + "é"], ids=["31-chars", "33-chars", "non-ascii"])
def test_disabled_with_a_bad_apiv3_key(settings, keys, caplog, apiv3_key):
    configure(settings, keys)
    settings.WECHATPAY_APIV3_KEY = apiv3_key
    assert not WeChatPayGateway.is_enabled()
    assert "WECHATPAY_APIV3_KEY must be exactly 32 ASCII characters" in caplog.text
    assert apiv3_key not in caplog.text


def test_disabled_with_a_key_that_does_not_load(settings, keys, caplog):
    configure(settings, keys)
    settings.WECHATPAY_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"
    assert not WeChatPayGateway.is_enabled()
    assert "cannot be built" in caplog.text


def test_pkcs1_private_key_is_accepted(settings, keys, gateway, fake_wechatpay):
    from cryptography.hazmat.primitives.serialization import PrivateFormat

    settings.WECHATPAY_PRIVATE_KEY = private_pem(keys.merchant, PrivateFormat.TraditionalOpenSSL)
    assert WeChatPayGateway.is_enabled()
    start(gateway, "2401010000PKCS1000000001", Device.DESKTOP)
    assert fake_wechatpay.seen[0].authorized
