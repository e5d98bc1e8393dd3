"""Refunds: full or by code count, to the channel the money came from, never more than was
paid, one gateway call however many times it is asked, retried until done, booked in the ledger."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ledger import services as ledger
from orders.models import Order
from orders.services.orders import order_place
from payments.models import Payment, Refund
from payments.services import payments as services
from payments.services import refunds
from tests.builders import balance_of, delivered_order, run_concurrently, values_and_errors, wallet_balance
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.fake_alipay import notify

D = Decimal


@pytest.mark.django_db(transaction=True)
def test_full_refund_to_the_original_channel(buyer, staff, mailoutbox):
    order = delivered_order(buyer)
    mailoutbox.clear()
    refund = refunds.order_refund(order=order, quantity=None, reason="customer changed mind", requested_by=staff)
    refund.refresh_from_db()
    order.refresh_from_db()
    assert (refund.amount, refund.quantity, refund.status) == (D("90.00"), 3, Refund.Status.SUCCEEDED)
    assert order.status == Order.Status.REFUNDED
    assert balance_of(ledger.SALES) == 0  # the sale is undone
    assert balance_of(ledger.REFUNDS_DUE) == 0  # and the money paid back
    assert balance_of(ledger.clearing("sandbox")) == 0
    assert len(mailoutbox) == 1 and refund.number in mailoutbox[0].subject and mailoutbox[0].to == [buyer.email]


@pytest.mark.django_db(transaction=True)
def test_refund_by_code_count_then_the_rest_and_never_more(buyer, staff):
    order = delivered_order(buyer)
    first = refunds.order_refund(order=order, quantity=2, reason="two codes invalid", requested_by=staff)
    assert (first.amount, first.quantity) == (D("60.00"), 2)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED  # partly refunded
    assert order.refunded_quantity == 2
    with pytest.raises(refunds.RefundError):
        refunds.order_refund(order=order, quantity=2, reason="too many", requested_by=staff)
    last = refunds.order_refund(order=order, quantity=1, reason="the last one", requested_by=staff)
    assert last.amount == D("30.00")
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    with pytest.raises(refunds.RefundError):
        refunds.order_refund(order=order, quantity=1, reason="again", requested_by=staff)
    payment = order.payments.get()
    with pytest.raises(refunds.RefundError):  # straight to the service: still never more than paid
        refunds.refund_request(payment=payment, amount=D("0.01"), reason="x", idempotency_key="over")
    assert sum(r.amount for r in Refund.objects.all()) == payment.amount


@pytest.mark.django_db(transaction=True)
def test_a_balance_payment_is_refunded_to_the_balance(buyer, staff):
    recharge = services.recharge_create(user=buyer, amount="100")
    services.sandbox_pay(order_number=recharge.number)
    order = delivered_order(
        buyer,
        price="25.00",
        quantity=2,
        pay=lambda order_number: services.balance_pay(order_number=order_number, buyer=buyer),
    )
    assert wallet_balance(buyer) == D("50.00")
    refunds.order_refund(order=order, quantity=1, reason="one code did not work", requested_by=staff)
    assert wallet_balance(buyer) == D("75.00")
    assert balance_of(ledger.wallet(buyer)) == D("75.00")


@pytest.mark.django_db(transaction=True)
def test_the_same_request_twice_is_one_refund(buyer, staff):
    order = delivered_order(buyer)
    a = refunds.order_refund(order=order, quantity=None, reason="x", requested_by=staff, key="click-1")
    b = refunds.order_refund(order=Order.objects.get(pk=order.pk), quantity=None, reason="x", key="click-1")
    assert a.pk == b.pk and Refund.objects.count() == 1


def alipay_delivered_order(client, fake, buyer, quantity=2):
    product = ProductFactory()  # 97.00
    add_stock(product, quantity)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=quantity, idempotency_key=f"a{product.pk}")
    fake.add_trade(order.number, order.total)
    body = fake.notification(
        out_trade_no=order.number, total_amount=str(order.total), trade_no=fake.trades[order.number].trade_no
    )
    assert notify(client, body).content == b"success"
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_20_concurrent_refund_requests_make_one_gateway_call(client, alipay, fake):
    buyer = UserFactory()
    order = alipay_delivered_order(client, fake, buyer)

    def click(_i):
        # Two staff, many clicks: the same decision ("refund this order in full").
        return refunds.order_refund(
            order=Order.objects.get(pk=order.pk), quantity=None, reason="dispute won", key=f"order:{order.number}:full"
        ).pk

    results, errors = values_and_errors(run_concurrently(20, click))
    assert errors == [] and len(set(results)) == 1
    refund = Refund.objects.get()
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert fake.methods().count("alipay.trade.refund") == 1
    assert fake.refunds_executed == 1
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    # Asked again (a retried task, the beat): nothing more reaches the gateway.
    assert refunds.refund_execute(refund_id=refund.pk) == "not due"
    assert fake.methods().count("alipay.trade.refund") == 1


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_gateway_is_retried_with_backoff_then_surfaced(client, alipay, fake, buyer):
    order = alipay_delivered_order(client, fake, buyer, quantity=1)
    fake.fail_status = 500
    refund = refunds.order_refund(order=order, quantity=None, reason="x")
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PROCESSING and refund.attempts == 1
    assert "500" in refund.last_error and refund.next_attempt_at > timezone.now() + timedelta(seconds=90)
    for _ in range(refunds.MAX_ATTEMPTS):  # the beat, later and later
        Refund.objects.filter(pk=refund.pk).update(next_attempt_at=timezone.now())
        refunds.refund_execute(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == Refund.Status.FAILED  # for staff now
    assert fake.refunds_executed == 0
    assert balance_of(ledger.REFUNDS_DUE) == order.total  # still owed to the buyer, visibly


@pytest.mark.django_db(transaction=True)
def test_a_refund_that_timed_out_is_asked_again_safely(client, alipay, fake, buyer):
    order = alipay_delivered_order(client, fake, buyer, quantity=1)
    fake.fail_status = 500
    refund = refunds.order_refund(order=order, quantity=None, reason="x")
    fake.fail_status = None
    Refund.objects.filter(pk=refund.pk).update(next_attempt_at=timezone.now())
    assert refunds.refund_execute(refund_id=refund.pk) == "succeeded"
    assert fake.refunds_executed == 1
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_payment_is_refunded_automatically(client, buyer):
    from payments.gateways.sandbox import SandboxGateway

    product = ProductFactory(price=D("12.00"))
    add_stock(product, 1)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="dup")
    for _ in range(2):  # two different payments (two tabs)
        body = SandboxGateway.build_notification(order_number=order.number, amount=order.total)
        client.post("/payments/notify/sandbox/", body, content_type="application/x-www-form-urlencoded")
    duplicate = Payment.objects.get(order=order, status=Payment.Status.DUPLICATE)
    refund = duplicate.refunds.get()
    assert (refund.amount, refund.status) == (D("12.00"), Refund.Status.SUCCEEDED)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED  # the first payment stands
    assert balance_of(ledger.SALES) == D("12.00")


@pytest.mark.django_db(transaction=True)
def test_staff_refund_an_order_from_admin_once_per_click(client, staff, buyer, mailoutbox):
    order = delivered_order(buyer)
    client.force_login(staff)
    change = client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert f"/admin/payments/refund/order/{order.number}/" in change
    page = client.get(f"/admin/payments/refund/order/{order.number}/")
    assert page.status_code == 200
    empty = client.post(f"/admin/payments/refund/order/{order.number}/", {"token": "t1", "quantity": "1"})
    assert empty.status_code == 200 and Refund.objects.count() == 0  # a reason is required
    for _ in range(2):  # a double click
        response = client.post(
            f"/admin/payments/refund/order/{order.number}/", {"token": "t2", "quantity": "1", "reason": "bad code"}
        )
        assert response.status_code == 302
    refund = Refund.objects.get()
    assert (refund.amount, refund.requested_by, refund.status) == (D("30.00"), staff, Refund.Status.SUCCEEDED)
    assert client.get("/admin/payments/refund/").status_code == 200
    assert client.get(f"/admin/payments/refund/{refund.pk}/change/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_staff_can_retry_a_failed_refund(client, alipay, fake, buyer, staff):
    order = alipay_delivered_order(client, fake, buyer, quantity=1)
    fake.fail_status = 500
    refund = refunds.order_refund(order=order, quantity=None, reason="x")
    Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED)
    fake.fail_status = None
    client.force_login(staff)
    client.post("/admin/payments/refund/", {"action": "retry_failed", "_selected_action": [refund.pk]})
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED and fake.refunds_executed == 1


@pytest.mark.django_db(transaction=True)
def test_the_buyer_sees_refunds_in_their_history_and_csv(client, buyer, staff, english):
    order = delivered_order(buyer)
    refund = refunds.order_refund(order=order, quantity=1, reason="x", requested_by=staff)
    client.force_login(buyer)
    page = client.get("/wallet/").content.decode()
    assert refund.number in page and 'data-testid="refund-row"' in page
    export = client.get("/wallet/transactions.csv").content.decode("utf-8-sig")
    assert f"refund,{order.number},sandbox" in export and ",-30.00," in export
