"""Notifications as gateways really deliver them: from the wrong gateway, out of order, and
while the order's own transaction is still open. Real signatures throughout."""

import threading
import time

import pytest

from marketplace.money import to_fen
from orders.models import Order
from orders.services.orders import order_place
from payments.models import Notification, Payment
from tests.builders import run_concurrently, transaction_held
from tests.factories import ProductFactory, add_stock
from tests.fake_wechatpay import callback, refund_resource, transaction_resource


def post_alipay(client, body):
    return client.post("/payments/notify/alipay/", body, content_type="application/x-www-form-urlencoded")


def post_wechat(client, body, headers):
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    return client.post("/payments/notify/wechat/", body, content_type="application/json", **meta)


@pytest.fixture
def order(buyer):
    product = ProductFactory()  # 97.00
    add_stock(product, 2)
    return order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="k")


def alipay_paid(fake, order, **extra):
    fake.add_trade(order.number, order.total)
    return fake.notification(
        out_trade_no=order.number, total_amount=str(order.total), trade_no=fake.trades[order.number].trade_no, **extra
    )


@pytest.mark.django_db(transaction=True)
def test_a_notification_sent_to_the_other_gateways_endpoint_changes_nothing(
    client, alipay, fake, fake_wechatpay, order
):
    alipay_body = alipay_paid(fake, order)
    wechat_body, wechat_headers = callback(
        fake_wechatpay.keys, transaction_resource(fake_wechatpay.keys, order_number=order.number, total_fen=9700)
    )
    refused_by_wechat = post_wechat(client, alipay_body, wechat_headers)  # Alipay's body, WeChat's headers
    refused_by_alipay = post_alipay(client, wechat_body)
    assert refused_by_wechat.status_code == 400 and refused_by_alipay.status_code == 400
    assert not Payment.objects.exists()
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert set(Notification.objects.values_list("outcome", flat=True)) == {"rejected"}
    # The same notifications at their own gateway's endpoint: the first pays, the second is a
    # real second payment (another channel) and goes back automatically.
    assert post_alipay(client, alipay_body).content == b"success"
    assert post_wechat(client, wechat_body, wechat_headers).status_code == 204
    statuses = sorted(Payment.objects.values_list("gateway", "status"))
    assert statuses == [("alipay", "succeeded"), ("wechat", "duplicate")]


@pytest.mark.django_db(transaction=True)
def test_closed_before_success_and_refund_before_payment_have_one_effect(client, alipay, fake, fake_wechatpay, order):
    keys = fake_wechatpay.keys
    refund_first, refund_headers = callback(
        keys,
        refund_resource(keys, order_number=order.number, refund_no="F1", total_fen=9700, refund_fen=9700),
        event_type="REFUND.SUCCESS",
    )
    closed, closed_headers = callback(
        keys, transaction_resource(keys, order_number=order.number, total_fen=9700, trade_state="CLOSED")
    )
    paid, paid_headers = callback(keys, transaction_resource(keys, order_number=order.number, total_fen=9700))
    assert post_wechat(client, refund_first, refund_headers).status_code == 204  # nothing to refund: ignored
    assert post_wechat(client, closed, closed_headers).status_code == 204  # not a payment: ignored
    for _ in range(2):
        assert post_wechat(client, paid, paid_headers).status_code == 204
    assert Payment.objects.count() == 1
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert order.history.filter(to_status=Order.Status.DELIVERED).count() == 1
    assert list(Notification.objects.order_by("id").values_list("outcome", flat=True)) == [
        "ignored",
        "ignored",
        "applied",
        "replay",
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_notification_before_the_order_is_committed_is_refused_then_applied_on_resend(client, alipay, fake, buyer):
    product = ProductFactory()
    add_stock(product, 1)
    with transaction_held(
        lambda: order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="slow")
    ) as placing:
        body = alipay_paid(fake, placing.value)
        early = post_alipay(client, body)  # the gateway is faster than our commit
        assert (early.status_code, early.content) == (400, b"failure")  # so it will resend
        assert Notification.objects.get().reason == "unknown order"
    assert post_alipay(client, body).content == b"success"  # the resend
    order = Order.objects.get(number=placing.value.number)
    assert order.status == Order.Status.DELIVERED and Payment.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_notification_waits_for_a_transaction_holding_the_order_then_applies_once(client, alipay, fake, order):
    # The order row held by another transaction (e.g. the expiry sweep at work) for 0.5 s.
    with transaction_held(lambda: Order.objects.select_for_update().get(pk=order.pk)) as holding:
        body = alipay_paid(fake, order)
        threading.Timer(0.5, holding.release).start()
        started = time.monotonic()
        assert post_alipay(client, body).content == b"success"
        assert time.monotonic() - started >= 0.4  # it waited for the lock instead of failing
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED and Payment.objects.count() == 1
    assert to_fen(Payment.objects.get().amount) == 9700


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_each_real_gateways_notification_replayed_concurrently_applies_once(alipay, fake, fake_wechatpay, buyer):
    from django.test import Client

    product = ProductFactory()
    add_stock(product, 2)
    by_alipay = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="a")
    by_wechat = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="w")
    alipay_body = alipay_paid(fake, by_alipay)
    keys = fake_wechatpay.keys
    wechat_body, wechat_headers = callback(
        keys, transaction_resource(keys, order_number=by_wechat.number, total_fen=9700)
    )
    alipay_codes = run_concurrently(6, lambda _i: post_alipay(Client(), alipay_body).status_code)
    wechat_codes = run_concurrently(6, lambda _i: post_wechat(Client(), wechat_body, wechat_headers).status_code)
    assert alipay_codes == [200] * 6 and wechat_codes == [204] * 6
    for order, gateway in ((by_alipay, "alipay"), (by_wechat, "wechat")):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert Payment.objects.filter(order=order, gateway=gateway).count() == 1
        assert order.history.filter(to_status=Order.Status.DELIVERED).count() == 1
        outcomes = sorted(Notification.objects.filter(order_number=order.number).values_list("outcome", flat=True))
        assert outcomes == ["applied"] + ["replay"] * 5


@pytest.mark.django_db(transaction=True)
def test_wechat_refunds_report_to_their_own_address_and_settle_once(client, fake_wechatpay, buyer):
    from payments.models import Refund
    from payments.services import refunds

    product = ProductFactory()
    add_stock(product, 1)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="r")
    fake_wechatpay.add_trade(order.number, 9700, state="SUCCESS")
    keys = fake_wechatpay.keys
    body, headers = callback(keys, transaction_resource(keys, order_number=order.number, total_fen=9700))
    assert post_wechat(client, body, headers).status_code == 204
    fake_wechatpay.new_refund_status = "PROCESSING"  # the gateway takes its time
    refund = refunds.order_refund(order=Order.objects.get(pk=order.pk), quantity=None, reason="dispute")
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PROCESSING
    asked = fake_wechatpay.refunds[refund.number]
    assert asked["notify_url"].endswith("/payments/notify/wechat/refund/")
    fake_wechatpay.refunds[refund.number]["status"] = "SUCCESS"  # done at the gateway
    refund_body, refund_headers = callback(
        keys,
        refund_resource(keys, order_number=order.number, refund_no=refund.number, total_fen=9700, refund_fen=9700),
        event_type="REFUND.SUCCESS",
    )
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in refund_headers.items()}
    for _ in range(2):  # the notification, and its resend
        response = client.post("/payments/notify/wechat/refund/", refund_body, content_type="application/json", **meta)
        assert response.status_code == 204
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert fake_wechatpay.refund_requests[refund.number] == 1  # confirmed by a query, not a second refund
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
