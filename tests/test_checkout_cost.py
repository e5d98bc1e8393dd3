"""The checkout POST's cost (issue 17), pinned: a plain order is 6 statements (the session's
user, the product, the risk screen's one read, BEGIN, the order with its claim, codes and
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


@pytest.mark.postgres  # SQLite takes the ORM's path: one statement per row
def test_a_plain_checkout_post_costs_at_most_six_statements(client, buyer):
    product = ProductFactory()
    add_stock(product, 5)
    client.force_login(buyer)
    assert post(client, product, "w" * 32).status_code == 302  # warm: levels, ledger, sessions
    with CaptureQueriesContext(connection) as ctx:
        response = post(client, product, "p" * 32)
    assert response.status_code == 302
    # The session is read from the database here (a cached_db session's cache is Redis in
    # production, where bench/steps.py counts 6): not the checkout's own work.
    sql = [q["sql"] for q in ctx.captured_queries if '"django_session"' not in q["sql"]]
    assert len(sql) <= 6, "\n\n".join(sql)
    # The credit probe, the blacklist and the holdings: one read.
    screen = [s for s in sql if "risk_blockentry" in s]
    assert len(screen) == 1 and "compliance_creditevent" in screen[0] and "orders_order" in screen[0]
    # The order row, the claim, the order's codes and its first history row: one statement.
    claim = [s for s in sql if "catalog_cardcode" in s]
    assert len(claim) == 1 and "orders_ordercode" in claim[0] and "orders_orderstatuschange" in claim[0]
    assert claim[0].startswith('WITH o AS (INSERT INTO "orders_order"')
    assert [s for s in sql if "orders_order" in s and "INSERT" in s] == claim


def test_the_folded_rows_are_those_the_orm_wrote(buyer):
    product = ProductFactory()
    add_stock(product, 3)
    order = services.order_place(buyer=buyer, product=product, quantity=2, idempotency_key="k1")
    # The order row is written as save() writes it (defaults, auto_now_add), and the instance
    # returned is that row: saved, with its primary key and every value as read back.
    assert not order._state.adding and order._state.db == "default"
    row = Order.objects.get(pk=order.pk)
    assert [(f.attname, getattr(order, f.attname)) for f in Order._meta.concrete_fields] == [
        (f.attname, getattr(row, f.attname)) for f in Order._meta.concrete_fields
    ]
    assert (row.status, row.currency, row.refunded_quantity, row.topup_values) == ("pending", "CNY", 0, {})
    assert row.number and row.created_at is not None and row.expires_at > row.created_at
    assert (row.buyer, row.product, row.idempotency_key, row.total) == (buyer, product, "k1", product.price * 2)
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


def test_an_order_with_receivers_is_saved_by_the_orm_and_claims_the_same(buyer):
    """A post_save receiver on Order (none today) would not run for the folded INSERT: with one
    connected, the order is saved by the ORM (its receivers run), then claimed as before."""
    from django.db.models.signals import post_save

    product = ProductFactory()
    add_stock(product, 2)
    seen = []

    def receiver(sender, instance, created, **kwargs):
        seen.append((instance.pk, created))

    post_save.connect(receiver, sender=Order, weak=False)
    try:
        order = services.order_place(buyer=buyer, product=product, quantity=2, idempotency_key="r1")
    finally:
        post_save.disconnect(receiver, sender=Order)
    assert seen == [(order.pk, True)]
    assert OrderCode.objects.filter(order=order).count() == 2
    assert OrderStatusChange.objects.filter(order=order, to_status="pending").count() == 1
    assert set(CardCode.objects.filter(product=product).values_list("status", flat=True)) == {CardCode.Status.RESERVED}
