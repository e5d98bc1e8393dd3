"""Two instances of this product on one machine (issue 16): A buys from B as one of B's agents.

B is a second process of this project (gunicorn and a Celery worker with beat, ``tests.instance_b``)
on a database of its own, seeded with a product and two imported codes and an agent (A) with an
API key and 100.00 prepaid. A is this test process: its Celery tasks run in place, the test plays
A's beat (``upstream_due_orders``), and A serves on ``live_server``, where B's signed delivery
callback arrives (it carries no codes: A asks B for them at once). B's processes are killed and
its database dropped at the end, pass or fail.
"""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import Product
from ledger.selectors import problems
from orders.models import Order, OrderCode, UpstreamOrder
from orders.services import supply_reconciliation
from orders.services.orders import order_code_reveal
from orders.tasks import upstream_due_orders
from payments.services import payments
from supply import services as supply
from supply.adapters.base import OrderState
from supply.models import SupplierCallback, SupplierConnection, UpstreamProduct
from tests.builders import place
from tests.factories import ProductFactory, SupplierFactory, UserFactory
from tests.instance_b import B_PRICE, InstanceB

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]

D = Decimal


@pytest.fixture
def instance_b(transactional_db):
    b = InstanceB()
    try:
        b.create()
        seeded = b.run("from tests.instance_b import seed; seed()")
        b.start()
        yield b, seeded
    except BaseException:
        print(f"\n===== instance B's log =====\n{b.output()}")
        raise
    finally:
        b.stop()
        assert not b.alive()


def b_report(b: InstanceB, product_id: int) -> dict:
    return b.run(f"from tests.instance_b import report; report({product_id})")


def connect_to(b: InstanceB, seeded: dict) -> SupplierConnection:
    """On A: B as a supplier, reached through its agent API with the key B issued to A."""
    connection = SupplierConnection.objects.create(
        supplier=SupplierFactory(name="instance B"),
        name="instance B",
        kind=SupplierConnection.Kind.KAMARKET,
        base_url=b.url,
        app_id=seeded["key_id"],
        timeout_seconds=10,
        state=SupplierConnection.State.ENABLED,
    )
    supply.connection_secret_set(connection=connection, secret=seeded["secret"])
    connection.refresh_from_db()
    return connection


def test_a_buys_from_b_through_its_agent_api_and_b_delivers_from_stock(instance_b):
    """The harness and B's side: A's kamarket adapter lists B's product at A's agent price, reads
    A's balance at B, places an order that B pays from that balance and delivers from stock (B's
    worker), and reads the code back; B's stock is one less and B's ledger balances."""
    b, seeded = instance_b
    product_id = seeded["product_id"]
    connection = connect_to(b, seeded)
    adapter = supply.connection_adapter(connection)

    (listed,) = [p for p in adapter.products() if p.ref == str(product_id)]
    assert listed.cost == D(B_PRICE) and listed.available == 2
    assert supply.connection_balance_refresh(connection_id=connection.pk).amount == D("100.00")

    placed = adapter.order_place(our_number="A-0001", product_ref=str(product_id), quantity=1)
    assert placed.cost == D(B_PRICE) and placed.supplier_order_no
    found = placed
    deadline = time.monotonic() + 60
    while found.state != OrderState.DONE and time.monotonic() < deadline:
        time.sleep(0.5)
        found = adapter.order_query(our_number="A-0001")
    assert found.state == OrderState.DONE, f"B did not deliver:\n{b.output()}"

    after = b_report(b, product_id)
    (code,) = found.codes
    assert after["sold"] == [code.secret] and code.secret in seeded["codes"]
    assert after["available"] == 1
    assert [(o["agent_order_no"], o["status"]) for o in after["orders"]] == [("A-0001", "delivered")]
    assert supply.connection_balance_refresh(connection_id=connection.pk).amount == D("100.00") - D(B_PRICE)
    assert adapter.order_place(our_number="A-0001", product_ref=str(product_id), quantity=1).supplier_order_no == (
        placed.supplier_order_no
    )  # idempotent on A's number: still one order at B
    assert len(b_report(b, product_id)["orders"]) == 1

    check = b.manage("ledger_check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert problems() == []


def test_a_buyer_on_a_receives_the_code_b_delivers_and_both_books_agree(instance_b, live_server, settings):
    """The issue's test: A's buyer buys an upstream product and pays; A's fulfilment places the
    supplier order at B through the agent API (paid from A's prepaid balance at B); B delivers from
    its stock; A's beat asks B and delivers the very code to A's buyer. B's stock is one less, both
    ledgers check, A's books say what B holds for A, and the day reconciles with nothing to explain."""
    b, seeded = instance_b
    settings.SITE_URL = live_server.url  # where B's delivery callback reaches A
    connection = connect_to(b, seeded)
    staff = UserFactory(is_staff=True, is_superuser=True)
    # A topped up its balance at B by bank transfer, and booked it.
    supply.supplier_prepayment_record(connection=connection, amount="100.00", reference="A-TO-B-1", actor=staff)
    product = ProductFactory(price=D("35.00"), supply_mode=Product.SupplyMode.UPSTREAM, name="A 的点卡 30 元")
    UpstreamProduct.objects.create(product=product, connection=connection, supplier_ref=str(seeded["product_id"]))
    buyer = UserFactory()

    order = place(buyer, product)
    assert order.fulfilment == Order.Fulfilment.UPSTREAM
    payments.sandbox_pay(order_number=order.number)  # A's fulfilment places the order at B (after commit)
    deadline = time.monotonic() + 90
    while order.status != Order.Status.DELIVERED and time.monotonic() < deadline:
        time.sleep(1)
        upstream_due_orders()  # A's beat: the supplier order asked again when due
        order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED, f"not delivered on A:\n{b.output()}"

    after = b_report(b, seeded["product_id"])
    up = UpstreamOrder.objects.get(order=order)
    # B called A back when it delivered, signed with A's key, over A's callback URL; A verified it.
    callback = None
    for _ in range(60):
        callback = SupplierCallback.objects.filter(connection=connection, our_number=order.number).first()
        if callback is not None:
            break
        time.sleep(0.5)
    assert callback is not None and callback.state == OrderState.DONE, f"no callback from B:\n{b.output()}"
    assert up.state == UpstreamOrder.State.DONE and up.cost == D(B_PRICE) and up.attempts >= 1
    (b_order,) = after["orders"]
    assert (b_order["agent_order_no"], b_order["status"], b_order["total"]) == (order.number, "delivered", B_PRICE)
    assert up.supplier_order_no == b_order["number"]
    # A's buyer sees the code B sold: the same plaintext; B has one code left.
    (held,) = OrderCode.objects.filter(order=order)
    _number, secret = order_code_reveal(
        buyer=buyer, order_number=order.number, order_code_id=held.pk, ip="127.0.0.1", user_agent="test"
    )
    assert after["sold"] == [secret] and secret in seeded["codes"]
    assert after["available"] == 1

    # Both ledgers balance; A's books say B holds 100 − 27.50 of ours, and B says the same.
    assert problems() == []
    check = b.manage("ledger_check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    book = supply.supplier_book_balances([connection.supplier])[connection.supplier_id]
    balance = supply.connection_balance_refresh(connection_id=connection.pk).amount
    assert book == -(D("100.00") - D(B_PRICE)) and balance == D("100.00") - D(B_PRICE) == -book

    # The day's reconciliation against B (the supplier order dated yesterday): nothing to explain.
    UpstreamOrder.objects.filter(pk=up.pk).update(created_at=timezone.now() - timedelta(days=1))
    run = supply_reconciliation.supply_reconcile(connection_id=connection.pk, day=supply_reconciliation.yesterday())
    assert (run.orders_checked, run.mismatches) == (1, 0)
    assert run.our_cost == run.supplier_cost == D(B_PRICE)
