"""Two instances of this product on one machine (issue 16): A buys from B as one of B's agents.

B is a second process of this project (gunicorn and a Celery worker with beat, ``tests.instance_b``)
on a database of its own, seeded with a product and two imported codes and an agent (A) with an
API key and 100.00 prepaid. A is this test process, serving on ``live_server`` so B's delivery
callbacks reach it. B's processes are killed and its database dropped at the end, pass or fail.
"""

import time
from decimal import Decimal

import pytest

from ledger.selectors import problems
from supply import services as supply
from supply.adapters.base import OrderState
from supply.models import SupplierConnection
from tests.factories import SupplierFactory
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
