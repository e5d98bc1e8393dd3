"""Fulfilment from a supplier's system (issue 16) against the fake supplier on 127.0.0.1, which
checks our signatures: availability (cached, shown), orders placed without reserving, the
supplier order placed after payment and its codes delivered like imported ones; a timeout whose
query finds the order placed; failures refunded; callbacks (duplicate, forged); giving up and a
late delivery kept as stock; 50 concurrent purchases giving exactly 50 supplier orders."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from catalog.models import CardCode, Product, StockBatch
from catalog.services import code_plaintext
from ledger import services as ledger
from orders.models import Order, OrderCode, OrderStatusChange, UpstreamOrder
from orders.selectors.orders import purchase_info
from orders.services import orders as order_services
from orders.services import upstream as upstream_services
from orders.services.orders import OrderError
from payments.models import Refund
from payments.services import payments, refunds
from supply import services as supply_services
from supply.models import UpstreamProduct
from tests.builders import balance_of, place, run_concurrently, values_and_errors
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.fake_supplier import FakeSupplier, running
from tests.test_supply_adapters import connect

D = Decimal
UState = UpstreamOrder.State
OrderStatus = Order.Status


@pytest.fixture
def fake():
    with running(FakeSupplier()) as supplier:
        supplier.balance = D("100000.00")
        yield supplier


def upstream_product(fake, *, ref="P100", mode=Product.SupplyMode.UPSTREAM, price="120.00", **config):
    connection = connect(fake, **config)
    product = ProductFactory(price=D(price), supply_mode=mode)
    UpstreamProduct.objects.create(product=product, connection=connection, supplier_ref=ref)
    return product


def pay(order: Order) -> Order:
    payments.sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    return order


def supplier_order(order: Order) -> UpstreamOrder:
    return UpstreamOrder.objects.select_related("connection").get(order=order)


def make_due(up: UpstreamOrder) -> None:
    UpstreamOrder.objects.filter(pk=up.pk).update(next_check_at=timezone.now() - timedelta(seconds=1))


def payable_of(up: UpstreamOrder) -> Decimal:
    supplier = up.connection.supplier
    return balance_of(ledger.supplier_payable(supplier.pk, supplier.name))


@pytest.mark.django_db(transaction=True)
def test_success_delivers_the_suppliers_codes_like_imported_ones(buyer, fake):
    product = upstream_product(fake)
    info = purchase_info(product=product, viewer=buyer)
    assert info.can_buy and info.stock == 20 and info.upstream  # the supplier's figure, said so

    order = place(buyer, product, quantity=2)
    assert order.fulfilment == Order.Fulfilment.UPSTREAM
    assert not OrderCode.objects.filter(order=order).exists()  # nothing reserved
    assert UpstreamProduct.objects.get(product=product).available == 18  # the cached figure went down

    order = pay(order)
    assert order.status == OrderStatus.DELIVERED
    up = supplier_order(order)
    assert (up.state, up.attempts, up.cost) == (UState.DONE, 1, D("191.00"))
    at_fake = fake.orders[order.number]
    assert up.supplier_order_no == at_fake.supplier_order_no and len(fake.placed()) == 1
    # The codes: encrypted like imported ones, in a batch of the connection's supplier at its cost.
    codes = [oc.code for oc in OrderCode.objects.filter(order=order).select_related("code__batch")]
    assert sorted(code_plaintext(c) for c in codes) == sorted(
        (c["card_number"], c["card_secret"]) for c in at_fake.codes
    )
    assert all(c.status == CardCode.Status.SOLD and c.secret_enc != code_plaintext(c)[1] for c in codes)
    batch = codes[0].batch
    assert batch.status == StockBatch.Status.DONE and batch.cost_price == D("95.50")
    assert batch.supplier == up.connection.supplier and at_fake.supplier_order_no in batch.source_name
    # The sale booked like a stock sale: revenue, and the cost owed to the supplier.
    assert balance_of(ledger.HELD) == 0 and balance_of(ledger.SALES) == D("240.00")
    assert payable_of(up) == D("191.00") and balance_of(ledger.COST_OF_SALES) == D("191.00")
    # The reveal works as for any code.
    oc = OrderCode.objects.filter(order=order).first()
    shown = order_services.order_code_reveal(
        buyer=buyer, order_number=order.number, order_code_id=oc.pk, ip="127.0.0.1", user_agent="t"
    )
    assert shown == code_plaintext(oc.code)
    # Fulfilling again changes nothing (one supplier order, one delivery).
    assert order_services.order_fulfil(order_id=order.pk) is False
    assert len(fake.placed()) == 1
    assert OrderStatusChange.objects.filter(order=order, to_status=OrderStatus.DELIVERED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_supplier_cannot_cover_the_quantity_refuses_the_order_like_sold_out(buyer, fake):
    sold_out = upstream_product(fake, ref="P50")
    info = purchase_info(product=sold_out, viewer=buyer)
    assert not info.can_buy and info.reason.code == "out_of_stock" and info.stock == 0
    with pytest.raises(OrderError, match="售罄"):
        place(buyer, sold_out)
    assert not Order.objects.filter(product=sold_out).exists()


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_supplier_means_unknown_availability_and_no_sale(buyer, fake):
    product = upstream_product(fake)
    UpstreamProduct.objects.filter(product=product).update(
        available=5, available_at=timezone.now() - timedelta(minutes=2)
    )
    fake.fail_next = 5  # HTTP 500: the refresh fails
    availability = supply_services.upstream_availability([product.pk])[product.pk]
    assert not availability.known and availability.reason
    assert not purchase_info(product=product, viewer=buyer).can_buy
    with pytest.raises(OrderError):
        place(buyer, product)
    fake.fail_next = 0
    asked = len(fake.requests)
    assert not supply_services.upstream_availability([product.pk])[product.pk].known  # paused: not asked
    assert len(fake.requests) == asked
    supply_services.upstream_connections_refresh()  # beat asks all the same, and ends the pause
    # Fresh enough figures are not asked again.
    assert supply_services.upstream_availability([product.pk])[product.pk].available == 20
    before = len(fake.requests)
    assert supply_services.upstream_availability([product.pk])[product.pk].available == 20
    assert len(fake.requests) == before


@pytest.mark.django_db(transaction=True)
def test_stock_first_uses_stock_when_it_covers_the_order_else_upstream(buyer, fake):
    product = upstream_product(fake, mode=Product.SupplyMode.STOCK_FIRST)
    add_stock(product, 2)
    assert purchase_info(product=product, viewer=buyer).stock == 22
    from_stock = pay(place(buyer, product, quantity=2))
    assert from_stock.fulfilment == Order.Fulfilment.STOCK and from_stock.status == OrderStatus.DELIVERED
    assert fake.placed() == []
    add_stock(product, 1)
    from_upstream = pay(place(buyer, product, quantity=3))  # one source per order, no split
    assert from_upstream.fulfilment == Order.Fulfilment.UPSTREAM and from_upstream.status == OrderStatus.DELIVERED
    assert len(fake.placed()) == 1
    assert CardCode.objects.filter(product=product, status=CardCode.Status.AVAILABLE).count() == 1


@pytest.mark.django_db(transaction=True)
def test_timeout_then_the_query_finds_the_order_placed(buyer, fake):
    product = upstream_product(fake, timeout_seconds=1)
    order = place(buyer, product)
    fake.timeout_next = 2.5  # places it, answers too late
    order = pay(order)
    assert order.status == OrderStatus.PAID
    up = supplier_order(order)
    assert up.state == UState.PLACING and up.attempts == 1 and "outcome_unknown" in up.last_error
    assert up.next_check_at > timezone.now()
    # Not due yet: the sweeper's redelivery does not call the supplier.
    assert order_services.order_fulfil(order_id=order.pk) is False
    assert len(fake.requests) == 2  # products, place

    make_due(up)
    assert upstream_services.upstream_advance(upstream_id=up.pk) is True
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert [path for path, _ in fake.requests] == ["/products", "/order/place", "/order/query"]
    assert len(fake.orders) == 1 and len(fake.placed()) == 1
    assert supplier_order(order).attempts == 2


@pytest.mark.django_db(transaction=True)
def test_a_supplier_unreachable_at_placement_is_placed_on_the_next_check(buyer, fake):
    product = upstream_product(fake)
    order = place(buyer, product)
    fake.fail_next = 1  # HTTP 500 (nothing done there)
    order = pay(order)
    up = supplier_order(order)
    assert order.status == OrderStatus.PAID and up.state == UState.PLACING
    make_due(up)
    upstream_services.upstream_advance(upstream_id=up.pk)  # asks first: not there, places
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert [p for p, _ in fake.requests][-2:] == ["/order/query", "/order/place"] and len(fake.orders) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["failed_state", "refused"])
def test_a_failure_refunds_the_buyer(buyer, fake, how, mailoutbox):
    product = upstream_product(fake, ref="PFAIL" if how == "failed_state" else "P100", price="30.00")
    order = place(buyer, product)
    if how == "refused":
        fake.balance = D("0.00")  # "insufficient balance"
    order = pay(order)
    assert order.status == OrderStatus.REFUND_PENDING
    up = supplier_order(order)
    assert up.state == UState.FAILED and up.last_error
    assert balance_of(ledger.HELD) == 0 and balance_of(ledger.REFUNDS_DUE) == D("30.00")
    assert not CardCode.objects.filter(product=product).exists()

    assert refunds.refunds_undeliverable_run() == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert Refund.objects.get(order=order).amount == D("30.00")
    assert balance_of(ledger.REFUNDS_DUE) == 0 and balance_of(ledger.SALES) == 0
    assert payable_of(up) == 0  # nothing owed to the supplier


def _post_callback(client, up: UpstreamOrder, body: bytes):
    return client.post(reverse("supply:callback", args=[up.connection_id]), data=body, content_type="application/json")


@pytest.mark.django_db(transaction=True)
def test_a_callback_delivers_a_pending_order_and_its_duplicate_changes_nothing(buyer, fake, client):
    product = upstream_product(fake, ref="PSLOW")
    order = pay(place(buyer, product))
    up = supplier_order(order)
    assert order.status == OrderStatus.PAID and up.state == UState.PENDING and up.supplier_order_no

    fake.finish(order.number)
    response = _post_callback(client, up, fake.callback(order.number, notify_id="N-1"))
    assert response.status_code == 200 and response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED and supplier_order(order).state == UState.DONE
    codes_before = list(CardCode.objects.filter(product=product).values_list("pk", "status"))

    again = _post_callback(client, up, fake.callback(order.number, notify_id="N-1"))  # new nonce, same event
    assert again.status_code == 200
    assert list(CardCode.objects.filter(product=product).values_list("pk", "status")) == codes_before
    assert OrderStatusChange.objects.filter(order=order, to_status=OrderStatus.DELIVERED).count() == 1
    assert len(fake.placed()) == 1


@pytest.mark.django_db(transaction=True)
def test_a_forged_callback_is_refused_and_changes_nothing(buyer, fake, client):
    product = upstream_product(fake, ref="PSLOW")
    order = pay(place(buyer, product))
    up = supplier_order(order)
    fake.finish(order.number)
    secret, fake.rule.secret = fake.rule.secret, "an-impostors-key"
    forged = fake.callback(order.number)
    fake.rule.secret = secret
    assert _post_callback(client, up, forged).status_code == 400
    tampered = fake.callback(order.number).replace(b'"success"', b'"failed"')
    assert _post_callback(client, up, tampered).status_code == 400
    assert client.get(reverse("supply:callback", args=[up.connection_id])).status_code == 405
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and supplier_order(order).state == UState.PENDING
    assert not CardCode.objects.filter(product=product).exists()


@pytest.mark.django_db(transaction=True)
def test_given_up_refunds_the_buyer_and_a_late_delivery_goes_into_stock(buyer, fake):
    product = upstream_product(fake, ref="PSLOW", price="30.00")
    order = pay(place(buyer, product))
    up = supplier_order(order)
    UpstreamOrder.objects.filter(pk=up.pk).update(give_up_at=timezone.now() - timedelta(seconds=1))
    make_due(up)
    upstream_services.upstream_advance(upstream_id=up.pk)  # still processing, past its time
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUND_PENDING
    assert balance_of(ledger.REFUNDS_DUE) == D("30.00")
    assert supplier_order(order).state == UState.PENDING  # still followed

    fake.finish(order.number)
    make_due(up)
    assert upstream_services.upstream_advance(upstream_id=up.pk) is False  # not delivered: kept
    assert supplier_order(order).state == UState.DONE
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUND_PENDING and not OrderCode.objects.filter(order=order).exists()
    stock = CardCode.objects.filter(product=product, status=CardCode.Status.AVAILABLE)
    assert stock.count() == 1 and "late" in stock.get().batch.source_name
    # Like imported stock, its cost is owed to the supplier when it is sold.
    assert stock.get().batch.cost_price == D("10.00") and balance_of(ledger.SALES) == 0
    assert len(fake.placed()) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_purchases_make_exactly_fifty_supplier_orders(fake):
    fake.products["P100"]["stock"] = 60
    product = upstream_product(fake, timeout_seconds=10)
    buyers = [UserFactory() for _ in range(50)]

    def two_purchases(t: int) -> list:
        out = []
        for k in range(2):  # 25 threads (the server's connections are shared) x 2
            i = t * 2 + k
            try:
                out.append(pay(place(buyers[i], product)))
            except Exception as exc:
                out.append(exc)
        return out

    results = [r for batch in run_concurrently(25, two_purchases, timeout=120) for r in batch]
    orders, errors = values_and_errors(results)
    assert not errors, errors[:3]
    statuses = {o.number: o.status for o in orders}
    assert len(orders) == 50 and all(o.status == OrderStatus.DELIVERED for o in orders), statuses
    assert len(fake.orders) == 50 and len(fake.placed()) == 50
    assert {o.number for o in orders} == set(fake.orders)
    assert UpstreamOrder.objects.filter(state=UState.DONE).count() == 50
    assert OrderStatusChange.objects.filter(to_status=OrderStatus.DELIVERED).count() == 50
    assert CardCode.objects.filter(product=product, status=CardCode.Status.SOLD).count() == 50
    assert fake.products["P100"]["stock"] == 10


@pytest.mark.django_db(transaction=True)
def test_pages_show_the_suppliers_stock_and_say_so(client, fake):
    product = upstream_product(fake)
    page = client.get(product.get_absolute_url()).content.decode()
    assert "上游库存，1分钟内更新" in page and 'data-testid="stock-upstream"' in page and "20" in page
    stock_only = ProductFactory()
    add_stock(stock_only, 3)
    assert "上游库存" not in client.get(stock_only.get_absolute_url()).content.decode()
    home = client.get(reverse("catalog:home")).content.decode()
    assert "（上游）" in home


@pytest.mark.django_db(transaction=True)
def test_a_direct_topup_from_upstream_is_delivered_without_codes_and_its_cost_owed(buyer, fake):
    product = upstream_product(fake, price="100.00")
    Product.objects.filter(pk=product.pk).update(kind=Product.Kind.DIRECT_TOPUP)
    product.refresh_from_db()
    order = place(buyer, product)
    Order.objects.filter(pk=order.pk).update(topup_values={"account": "10086001"})  # the top-up form's part
    order = pay(order)
    assert order.status == OrderStatus.DELIVERED
    assert fake.orders[order.number].extra == {"account": "10086001"}  # sent along, signed
    assert not CardCode.objects.filter(product=product).exists() and not order.codes.exists()
    up = supplier_order(order)
    assert up.state == UState.DONE and up.cost == D("95.50")
    assert payable_of(up) == D("95.50") and balance_of(ledger.SALES) == D("100.00")
    assert balance_of(ledger.HELD) == 0


@pytest.mark.django_db(transaction=True)
def test_staff_see_supplier_orders_their_state_and_last_error(buyer, fake, admin_client):
    product = upstream_product(fake, ref="PSLOW")
    order = pay(place(buyer, product))
    up = supplier_order(order)
    UpstreamOrder.objects.filter(pk=up.pk).update(last_error="supply_outcome_unknown: read timeout")
    page = admin_client.get(reverse("admin:orders_upstreamorder_changelist")).content.decode()
    assert order.number in page and "read timeout" in page
    detail = admin_client.get(reverse("admin:orders_upstreamorder_change", args=[up.pk]))
    assert detail.status_code == 200 and up.supplier_order_no in detail.content.decode()
