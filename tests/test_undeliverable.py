"""A paid order that will not be delivered (the supplier failed, a manual top-up failed): the
buyer is refunded in full, once, automatically, and the ledger follows the money."""

from decimal import Decimal

import pytest

from catalog.models import CardCode
from ledger import services as ledger
from orders.models import Order
from orders.services import orders as order_services
from orders.services.undeliverable import order_undeliverable
from payments.models import Refund
from payments.services import payments, refunds
from tests.builders import balance_of, place
from tests.factories import ProductFactory, add_stock

D = Decimal


@pytest.fixture
def paid_undelivered(buyer, monkeypatch):
    """An order paid through the sandbox whose fulfilment never ran."""
    monkeypatch.setattr(order_services, "_queue_fulfilment", lambda order_id: None)
    product = ProductFactory(price=D("25.00"))
    add_stock(product, 2)
    order = place(buyer, product, quantity=2)
    payments.sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    return order


@pytest.mark.django_db(transaction=True)
def test_undeliverable_order_is_refunded_once_in_full(paid_undelivered, mailoutbox):
    order = paid_undelivered
    assert balance_of(ledger.HELD) == D("50.00")
    assert order_undeliverable(order_id=order.pk, reason="supplier refused: out of stock") is True
    assert order_undeliverable(order_id=order.pk, reason="again") is False  # a repeat changes nothing
    order.refresh_from_db()
    assert order.status == Order.Status.REFUND_PENDING and order.delivery_due_at is None
    assert balance_of(ledger.HELD) == 0 and balance_of(ledger.REFUNDS_DUE) == D("50.00")
    # The codes it held are back on sale.
    assert CardCode.objects.filter(product=order.product, status=CardCode.Status.AVAILABLE).count() == 2
    assert any("未能交付" in m.body and "50.00" in m.body for m in mailoutbox)

    assert refunds.refunds_undeliverable_run() == 1
    assert refunds.refunds_undeliverable_run() == 0  # once
    refund = Refund.objects.get(order=order)
    order.refresh_from_db()
    assert (refund.amount, refund.status) == (D("50.00"), Refund.Status.SUCCEEDED)
    assert order.status == Order.Status.REFUNDED
    assert balance_of(ledger.REFUNDS_DUE) == 0 and balance_of(ledger.clearing("sandbox")) == 0
    assert balance_of(ledger.SALES) == 0  # never a sale


@pytest.mark.django_db(transaction=True)
def test_delivered_order_is_not_undeliverable(buyer):
    product = ProductFactory(price=D("10.00"))
    add_stock(product, 1)
    order = place(buyer, product)
    payments.sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert order_undeliverable(order_id=order.pk, reason="too late") is False
    assert refunds.refunds_undeliverable_run() == 0
