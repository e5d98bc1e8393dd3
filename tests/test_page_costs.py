"""The work the buyer's pages no longer do (issue 17), and that what they show stays exact.

- The status poll reads the order's status only, one statement, and still answers 404 for
  another buyer's order.
- ``User.is_agent`` follows the agent profile: no query of the agents table per page.
- Product cards and order rows drawn once per process are reused only for the same values:
  a new stock count, price or status shows at once.
"""

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from agents.services import agents as agent_services
from catalog.templatetags import catalog_cards
from orders.models import Order
from orders.templatetags import order_rows
from tests.builders import delivered_order, place
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = pytest.mark.django_db


def test_status_poll_reads_only_the_status(client, buyer):
    product = ProductFactory(price=Decimal("10.00"))
    add_stock(product, 2)
    order = place(buyer, product)
    client.force_login(buyer)
    client.get("/")  # the session and the user are loaded the same way on every request
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/orders/{order.number}/status/?seen=pending", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'data-status="pending"' in response.content
    order_reads = [q["sql"] for q in ctx.captured_queries if '"orders_order"' in q["sql"]]
    assert len(order_reads) == 1 and '"orders_order"."status"' in order_reads[0]
    assert not [q for q in ctx.captured_queries if "orders_ordercode" in q["sql"] or "statuschange" in q["sql"]]
    # A status that moved since the page was drawn: reload.
    assert client.get(f"/orders/{order.number}/status/?seen=paid", HTTP_HX_REQUEST="true")["HX-Refresh"] == "true"
    assert client.get(f"/orders/{order.number}/status/").json()["status"] == "pending"
    # Another buyer's order does not exist for this one.
    client.force_login(UserFactory())
    assert client.get(f"/orders/{order.number}/status/", HTTP_HX_REQUEST="true").status_code == 404


def test_is_agent_follows_the_agent_profile(client, level):
    user = UserFactory()
    assert not user.is_agent
    agent = agent_services.agent_create(user=user, level=level)
    user.refresh_from_db()
    assert user.is_agent
    client.force_login(user)
    assert b'data-testid="nav-agent"' in client.get("/").content
    Agent.objects.filter(pk=agent.pk).delete()
    user.refresh_from_db()
    assert not user.is_agent


def test_buyer_pages_ask_nothing_of_the_agents_table(client, buyer):
    ProductFactory(price=Decimal("10.00"))
    client.force_login(buyer)
    client.get("/")
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/")
    assert response.status_code == 200 and b'data-testid="nav-agent"' not in response.content
    assert not [q for q in ctx.captured_queries if '"agents_agent"' in q["sql"]]


def test_product_card_shows_new_stock_and_price_at_once(client):
    product = ProductFactory(price=Decimal("10.00"), slug="card-a")
    add_stock(product, 2)

    def card() -> tuple[str, str]:
        """The card's price and stock figures."""
        html = client.get("/").content.decode()
        html = html[html.index('href="/p/card-a/"') :]
        price = re.search(r'data-testid="price"><small>¥</small>([^<]+)<', html)
        stock = re.search(r'data-testid="stock">\s*\D*?(\d+)', html)
        assert price and stock
        return price.group(1), stock.group(1)

    assert card() == ("10.00", "2")
    assert len(catalog_cards._cards) >= 1  # drawn and kept
    add_stock(product, 3)
    assert card() == ("10.00", "5")
    product.price = Decimal("12.50")
    product.save(update_fields=["price"])
    assert card() == ("12.50", "5")


@pytest.mark.django_db(transaction=True)  # delivery is a task queued on commit
def test_order_row_shows_a_new_status_at_once(client, buyer):
    order = delivered_order(buyer)
    client.force_login(buyer)
    assert 'data-status="delivered"' in client.get("/orders/").content.decode()
    assert order_rows._rows
    Order.objects.filter(pk=order.pk).update(status=Order.Status.REFUNDED)
    assert 'data-status="refunded"' in client.get("/orders/").content.decode()


def _statements(client, path: str) -> list[str]:
    client.get(path)  # warm: the session, the per-process copies
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200
    # The tests' sessions are in the database (production's are in the cache): not counted.
    return [q["sql"] for q in ctx.captured_queries if '"django_session"' not in q["sql"]]


@pytest.mark.parametrize(
    ("path", "pinned"),
    [
        # the user; the product with its stock (catalog.selectors.product_on_sale(counted=True))
        ("/p/pinned-card/", {"catalog_product": 1, "catalog_cardcode": 1, "all": 2}),
        # the same, and the wallet's balance (ledger.selectors.balances_of: one statement)
        ("/orders/checkout/pinned-card/?quantity=1", {"catalog_product": 1, "ledger_": 1, "all": 3}),
        # the user; the count and the page of orders (Paged: two compiled statements)
        ("/orders/", {"orders_order": 2, "all": 3}),
    ],
)
def test_shop_pages_statements_are_pinned(client, buyer, path, pinned):
    """Issue 17's shop pages, for a member: the statements pinned (stock read with the product,
    the wallet in one statement, the orders list's count and page). Before: product 3, checkout 4
    (product, stock count and the balance's two-table read each on its own)."""
    product = ProductFactory(price=Decimal("10.00"), slug="pinned-card")
    add_stock(product, 3)
    place(buyer, product)
    client.force_login(buyer)
    found = _statements(client, path)
    counts = {name: sum(name in sql for sql in found) for name in pinned if name != "all"}
    assert {**counts, "all": len(found)} == pinned, found


def test_member_home_list_is_read_once_per_window(client, buyer, settings):
    """The catalogue's home for a member, PAGE_CACHE_SECONDS on: the list (products, stock) is
    read once per window per process; the page itself then sends only the user's statement."""
    settings.PAGE_CACHE_SECONDS = 3
    add_stock(ProductFactory(price=Decimal("10.00")), 2)
    client.force_login(buyer)
    found = _statements(client, "/")
    assert not [sql for sql in found if "catalog_" in sql] and len(found) == 1, found
