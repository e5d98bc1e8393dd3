"""The checkout POST's cost (issue 17), pinned: a plain order is 7 statements (the session's
user, the product, the risk screen's one read, BEGIN, the order, the claim with its codes and
history row, COMMIT), and what the folded statements write is what the ORM wrote before."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import CardCode
from orders.models import Order, OrderCode, OrderStatusChange
from orders.services import orders as services
from tests.factories import ProductFactory, add_stock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def post(client, product, key: str, quantity: int = 1):
    return client.post(f"/orders/checkout/{product.slug}/", {"quantity": str(quantity), "idempotency_key": key})


def test_a_plain_checkout_post_costs_at_most_seven_statements(client, buyer):
    product = ProductFactory()
    add_stock(product, 5)
    client.force_login(buyer)
    assert post(client, product, "w" * 32).status_code == 302  # warm: levels, ledger, sessions
    with CaptureQueriesContext(connection) as ctx:
        response = post(client, product, "p" * 32)
    assert response.status_code == 302
    # The session is read from the database here (a cached_db session's cache is Redis in
    # production, where bench/steps.py counts 7): not the checkout's own work.
    sql = [q["sql"] for q in ctx.captured_queries if '"django_session"' not in q["sql"]]
    assert len(sql) <= 7, "\n\n".join(sql)
    # The credit probe, the blacklist and the holdings: one read.
    screen = [s for s in sql if "risk_blockentry" in s]
    assert len(screen) == 1 and "compliance_creditevent" in screen[0] and "orders_order" in screen[0]
    # The claim writes the order's codes and its first history row in the same statement.
    claim = [s for s in sql if "catalog_cardcode" in s]
    assert len(claim) == 1 and "orders_ordercode" in claim[0] and "orders_orderstatuschange" in claim[0]


def test_the_folded_rows_are_those_the_orm_wrote(buyer):
    product = ProductFactory()
    add_stock(product, 3)
    order = services.order_place(buyer=buyer, product=product, quantity=2, idempotency_key="k1")
    change = OrderStatusChange.objects.get(order=order)
    assert (change.from_status, change.to_status, change.actor, change.note) == ("", "pending", buyer, "placed")
    assert change.at is not None
    codes = list(OrderCode.objects.filter(order=order).select_related("code"))
    assert len(codes) == 2 and all(c.reserved_at and c.released_at is None for c in codes)
    assert {c.code.status for c in codes} == {CardCode.Status.RESERVED}
    # A guest's first history row has no actor.
    guest = services.order_place(
        buyer=None, guest_email="G@Example.com", product=product, quantity=1, idempotency_key="k2"
    )
    assert OrderStatusChange.objects.get(order=guest).actor is None
    assert guest.guest_email == "g@example.com"


def test_too_few_codes_refuse_the_whole_order_and_keep_the_stock(client, buyer):
    product = ProductFactory()
    add_stock(product, 2)
    client.force_login(buyer)
    response = post(client, product, "s" * 32, quantity=3)
    assert response.status_code == 400
    assert "Only 2 left in stock, you asked for 3." in response.content.decode()
    assert not Order.objects.exists() and not OrderCode.objects.exists() and not OrderStatusChange.objects.exists()
    assert set(CardCode.objects.filter(product=product).values_list("status", flat=True)) == {CardCode.Status.AVAILABLE}
    # The same buyer then buys what is there.
    assert post(client, product, "t" * 32, quantity=2).status_code == 302
    assert Order.objects.get().codes.count() == 2
