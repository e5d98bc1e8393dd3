"""The shop pages' compiled and kept reads (issue 17) give what the ORM gives.

- ``catalog.selectors.product_on_sale``: the product on sale and, counted, its stock in one
  statement; the product and checkout pages show a sale's new stock at once.
- ``orders.selectors.home_infos``: the catalogue's home list kept per process for
  PAGE_CACHE_SECONDS, one per language for public prices and one per agent for agents' own costs:
  each viewer sees their own prices; the stock is at most that old.
- ``orders.selectors.orders_for_buyer_paged``: the orders list's pages and count equal the ORM's.
- ``ledger.selectors.balances_of``: one statement on PostgreSQL, the balances the lines make.
"""

import copy
import re
import uuid
from decimal import Decimal

import pytest
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog import selectors as catalog
from catalog.models import Product
from ledger import selectors as ledger_selectors
from ledger import services as ledger
from ledger.models import Account, Line
from marketplace import localcache
from orders.models import Order
from orders.selectors import orders as order_selectors
from tests.api_helpers import make_agent, set_level_price
from tests.builders import place
from tests.factories import AgentLevelFactory, ProductFactory, UserFactory, add_stock

pytestmark = pytest.mark.django_db


def _fields(p: Product) -> tuple:
    return (p.pk, p.name, p.slug, p.price, p.category.name, p.supplier.name if p.supplier else None)


def test_product_on_sale_equals_the_orm_with_its_stock():
    product = ProductFactory(price=Decimal("12.00"))
    add_stock(product, 4)
    place(UserFactory(), product)  # one code reserved: no longer available
    orm = catalog.products_on_sale().get(slug=product.slug)
    for counted in (False, True):
        got = catalog.product_on_sale(product.slug, counted=counted)
        assert _fields(got) == _fields(orm)
        assert hasattr(got, "codes_available") is counted
    assert catalog.product_on_sale(product.slug, counted=True).codes_available == catalog.stock_count(product.pk) == 3
    assert catalog.product_on_sale(ProductFactory().slug, counted=True).codes_available == 0  # no code at all
    # Off sale, held or unknown: None, as products_on_sale() has no such row.
    Product.objects.filter(pk=product.pk).update(sale_hold="notice")
    assert catalog.product_on_sale(product.slug) is None
    Product.objects.filter(pk=product.pk).update(sale_hold="", sale_authorised_until=timezone.localdate())
    assert catalog.product_on_sale(product.slug) is not None  # valid through today
    Product.objects.filter(pk=product.pk).update(is_active=False)
    assert catalog.product_on_sale(product.slug) is None
    assert catalog.product_on_sale("no-such-product") is None


def test_product_and_checkout_pages_show_a_sale_at_once(client, buyer):
    product = ProductFactory(price=Decimal("12.00"), slug="fresh-card")
    add_stock(product, 5)
    client.force_login(buyer)

    def shown() -> tuple[int, int]:
        """The product page's stock figure and the checkout's largest quantity (the stock)."""
        page = client.get("/p/fresh-card/").content.decode()
        stock = re.search(r'data-testid="stock">\s*<i[^>]*></i>\s*\D*?(\d+)', page)
        form = client.get("/orders/checkout/fresh-card/?quantity=1").content.decode()
        most = re.search(r'id="quantity"[^>]* max="(\d+)"', form)
        assert stock and most
        return int(stock.group(1)), int(most.group(1))

    assert shown() == (5, 5)
    place(UserFactory(), product, quantity=2)
    assert shown() == (3, 3)  # read with the product on every view: never older than the request


def _price_on_home(client, slug: str) -> str:
    """What the home page's card of ``slug`` says this viewer pays: an agent's own cost, else the price."""
    html = client.get("/").content.decode()
    card = next(
        c for c in html.split('data-testid="product-card"')[1:] if f'/p/{slug}/"' in html[: html.index(c)][-300:]
    )
    agent = re.search(r'data-testid="agent-price">.*?<strong>([^<]+)<', card, re.S)
    price = re.search(r'data-testid="price"><small>¥</small>([^<]+)<', card)
    assert price
    return agent.group(1) if agent else price.group(1)


@pytest.fixture
def kept_for_3s(settings):
    settings.PAGE_CACHE_SECONDS = 3
    localcache.local_clear()
    yield
    localcache.local_clear()


def test_home_list_is_kept_per_viewer_price_and_each_sees_their_own(client, kept_for_3s):
    product = ProductFactory(price=Decimal("50.00"), slug="priced-card")
    add_stock(product, 3)
    gold, silver = AgentLevelFactory(name="gold", rank=1), AgentLevelFactory(name="silver", rank=2)
    set_level_price(gold, product, "40.00")
    set_level_price(silver, product, "45.00")
    agent_gold, agent_silver = make_agent(level_obj=gold).user, make_agent(level_obj=silver).user
    buyer_one, buyer_two = UserFactory(), UserFactory()
    expected = {buyer_one: "50.00", agent_gold: "40.00", agent_silver: "45.00", buyer_two: "50.00"}
    for _ in range(2):  # the second round is served from the kept lists
        for user, price in expected.items():
            client.force_login(user)
            assert _price_on_home(client, "priced-card").endswith(price), user
    # And they are the ORM's answers: the purchase_infos of each viewer.
    for user, price in expected.items():
        fresh = order_selectors.purchase_infos(catalog.product_search(), viewer=user)
        assert [i.price for i in fresh if i.product.slug == "priced-card"] == [Decimal(price)]


def test_home_list_kept_reads_nothing_and_its_stock_ages_at_most_the_window(client, buyer, kept_for_3s, monkeypatch):
    product = ProductFactory(price=Decimal("10.00"), slug="window-card")
    add_stock(product, 4)
    clock = [1000.0]
    monkeypatch.setattr(localcache, "_now", lambda: clock[0])
    client.force_login(buyer)

    def stock() -> int:
        html = client.get("/").content.decode()
        html = html[html.index('href="/p/window-card/"') :]
        found = re.search(r'data-testid="stock">\s*\D*?(\d+)', html)
        assert found
        return int(found.group(1))

    assert stock() == 4
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/").status_code == 200
    assert not [q for q in ctx.captured_queries if "catalog_" in q["sql"]]  # the kept list: no read
    place(UserFactory(), product)
    clock[0] += 2.9
    assert stock() == 4  # within the window: the figure read at most 3 s ago
    clock[0] += 0.2
    assert stock() == 3  # past it: read again


def _orders_for(buyer, n: int) -> None:
    """``n`` orders of ``buyer``: one placed, the others copies of it with their own numbers."""
    product = ProductFactory(price=Decimal("5.00"))
    add_stock(product, 1)
    first = place(buyer, product)
    copies = []
    for i in range(n - 1):
        row = copy.copy(first)
        row.pk = None
        row.number = f"{first.number[:-4]}{i:04d}"
        row.idempotency_key = uuid.uuid4().hex
        copies.append(row)
    Order.objects.bulk_create(copies)


def test_orders_list_pages_equal_the_orms(client):
    buyer, other = UserFactory(), UserFactory()
    _orders_for(buyer, 45)
    _orders_for(other, 3)
    paged = Paginator(order_selectors.orders_for_buyer_paged(buyer), 20)
    orm = Paginator(order_selectors.orders_for_buyer(buyer), 20)
    assert paged.count == orm.count == 45 and paged.num_pages == orm.num_pages == 3
    for number in (1, 2, 3):
        got, want = paged.page(number).object_list, list(orm.page(number).object_list)
        assert [(o.pk, o.number, o.status, o.total, o.product.kind) for o in got] == [
            (o.pk, o.number, o.status, o.total, o.product.kind) for o in want
        ]
    assert Paginator(order_selectors.orders_for_buyer_paged(UserFactory()), 20).count == 0
    client.force_login(buyer)
    html = client.get("/orders/?page=3").content.decode()
    assert all(o.number in html for o in orm.page(3).object_list)
    assert not any(o.number in html for o in orm.page(2).object_list)


def test_balances_of_equals_the_lines(django_assert_max_num_queries):
    buyer, agent = UserFactory(), UserFactory()
    specs = [ledger.wallet(buyer), ledger.wallet(agent), ledger.commission_pending(agent), ledger.SALES]
    specs.append(ledger.clearing("compiled"))
    ledger.transfer(
        debit=ledger.clearing("compiled"), credit=ledger.wallet(buyer), amount=Decimal("30.00"), kind="recharge"
    )
    ledger.transfer(debit=ledger.wallet(buyer), credit=ledger.HELD, amount=Decimal("12.34"), kind="balance_payment")
    ledger.transfer(debit=ledger.HELD, credit=ledger.SALES, amount=Decimal("12.34"), kind="delivery")
    ledger.transfer(
        debit=ledger.clearing("compiled"), credit=ledger.wallet(agent), amount=Decimal("0.01"), kind="recharge"
    )
    statements = 1 if connection.vendor == "postgresql" else 2
    with django_assert_max_num_queries(statements):
        found = ledger_selectors.balances_of(*specs)
    # What the lines make, each account read on its own through the ORM.
    for spec in specs:
        account = Account.objects.filter(code=spec.code).first()
        net = (
            Line.objects.filter(account=account).aggregate(s=Sum("amount"))["s"] or Decimal(0)
            if account
            else Decimal(0)
        )
        assert found[spec.code] == (net if spec.debit_normal else -net), spec.code
    assert found[ledger.wallet(buyer).code] == Decimal("17.66")
    # Each part alone (a wallet: the balance row; a platform account: its lines), and none.
    assert ledger_selectors.balances_of(ledger.wallet(buyer)) == {ledger.wallet(buyer).code: Decimal("17.66")}
    assert ledger_selectors.balances_of(ledger.SALES) == {ledger.SALES.code: Decimal("12.34")}
    assert ledger_selectors.balances_of() == {}
    assert found[ledger.commission_pending(agent).code] == Decimal("0.00")  # never opened
