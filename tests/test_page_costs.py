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
from django.utils import timezone

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


def test_orders_list_reads_only_what_its_rows_show_and_draws_them_as_the_loop_did(client, buyer, settings):
    """The list's read loads the rows' columns only (``ORDER_ROW_FIELDS``): a row drawn for the
    first time reads nothing more (a deferred column would be one statement per row), and
    ``{% order_rows %}`` draws what ``{% for %}`` over ``{% order_row %}`` drew, in both languages."""
    from django.template import engines
    from django.utils import translation

    from orders.selectors import orders as order_selectors

    product = ProductFactory(price=Decimal("10.00"))
    add_stock(product, 3)
    orders = [place(buyer, product) for _ in range(3)]
    Order.objects.filter(pk=orders[0].pk).update(status=Order.Status.CANCELLED)
    client.force_login(buyer)
    client.get("/")
    with CaptureQueriesContext(connection) as warm:
        client.get("/orders/")
    order_rows.order_rows_forget()
    with CaptureQueriesContext(connection) as cold:
        html = client.get("/orders/").content.decode()
    assert len(cold.captured_queries) == len(warm.captured_queries)
    assert html.count('data-testid="order-row"') == 3 and 'data-status="cancelled"' in html
    rows = order_selectors.orders_for_buyer_paged(buyer)[0:20]
    loaded = {f.attname for f in Order._meta.concrete_fields} - set(rows[0].get_deferred_fields())
    want = {"id", "number", "buyer_id", "status", "product_name", "quantity", "created_at", "total", "product_id"}
    assert loaded == want
    loop = engines["django"].from_string(
        '{% load order_rows %}{% for order in rows %}\n  {% order_row order "order-row" %}\n  {% endfor %}'
    )
    one = engines["django"].from_string('{% load order_rows %}{% order_rows rows "order-row" %}')
    for language in ("zh-hans", "en"):
        with translation.override(language):
            order_rows.order_rows_forget()
            drawn_by_loop = loop.render({"rows": rows})
            order_rows.order_rows_forget()
            assert one.render({"rows": rows}) == drawn_by_loop
            assert one.render({"rows": rows}) == drawn_by_loop  # kept
    assert ("已取消" in drawn_by_loop) is False and "Cancelled" in drawn_by_loop


# --- The order page, the reveal and the cashier: reads compiled once (marketplace.prepared) ---


def _orm_page_order(**where) -> Order:
    """The order page's rows as the ORM read them before (prefetches), for comparison."""
    from django.db.models import Count, Min, Prefetch

    from orders.models import OrderCode

    codes = OrderCode.objects.annotate(reveal_count=Count("reveals"), first_revealed_at=Min("reveals__at"))
    return (
        Order.objects.select_related("product", "product__supplier")
        .prefetch_related(Prefetch("codes", queryset=codes.order_by("id"), to_attr="all_codes"), "history")
        .get(**where)
    )


def _row(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def _page_view(order: Order) -> tuple:
    """What the page shows of an order read by the selector (order, product, supplier, codes in
    their places, timeline)."""
    return (
        _row(order),
        _row(order.product),
        _row(order.product.supplier),
        [(_row(oc), oc.reveal_count, oc.first_revealed_at) for oc in order.all_codes],
        [(oc.pk, oc.number, oc.replaces) for oc in order.live_codes],
        [(t.at, str(t.label), t.reissue) for t in order.timeline],
    )


def _postgres_only() -> None:
    """Statement counts are PostgreSQL's: elsewhere the compiled reads are ORM reads, the
    one-statement writes are ``save()`` and ``create()``, and the credit rating's query is
    PostgreSQL's."""
    if connection.vendor != "postgresql":
        pytest.skip("statement counts are pinned on PostgreSQL")


def _sql(ctx) -> list[str]:
    """The statements captured, but the session's (the tests keep sessions in the database,
    production in the cache: ``SESSION_ENGINE``)."""
    return [q["sql"] for q in ctx.captured_queries if '"django_session"' not in q["sql"]]


def _statements(client, path: str, **headers) -> tuple:
    """The statements of one warm GET (the user loads as on any page)."""
    client.get(path, **headers)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, **headers)
    return response, _sql(ctx)


@pytest.mark.django_db(transaction=True)  # delivery is a task queued on commit
def test_the_buyers_order_page_reads_what_the_orm_read(buyer):
    from orders.models import CodeReveal
    from orders.selectors import orders as selectors
    from tests.builders import codes_of

    order = delivered_order(buyer, quantity=3)
    first = codes_of(order)[0]
    CodeReveal.objects.create(order_code=first, user=buyer, ip="10.0.0.1")
    read = selectors.order_for_buyer(buyer, order.number)
    assert read is not None and read.credit_rated is False
    expected = selectors.order_page_extras(_orm_page_order(pk=order.pk))
    assert _page_view(read) == _page_view(expected)
    assert [oc.reveal_count for oc in read.all_codes] == [1, 0, 0]
    # The htmx reveal's read: the same order and codes, no history.
    codes = selectors.order_codes_for_buyer(buyer, order.number)
    assert codes is not None and not hasattr(codes, "timeline")
    assert [(_row(oc), oc.reveal_count) for oc in codes.all_codes] == [
        (_row(oc), oc.reveal_count) for oc in read.all_codes
    ]
    # Another buyer's order, and an unknown number, do not exist for this buyer: None, not a 404.
    other = UserFactory()
    assert selectors.order_for_buyer(other, order.number) is None
    assert selectors.order_codes_for_buyer(other, order.number) is None
    assert selectors.order_for_buyer(buyer, order.number + "X") is None
    assert selectors.order_for_guest(order.number) is None  # a member's order is never a guest's


@pytest.mark.django_db(transaction=True)
def test_the_codes_and_history_read_with_the_order_are_what_the_orm_read(buyer):
    """The order's codes and history come in its statement as JSON (``marketplace.rows``):
    times, reveal counts, first reveals, a released code and its replacement, the reissue's
    history row, each as the ORM builds them."""
    _postgres_only()
    from django.db import transaction

    from marketplace import rows
    from orders.models import CodeReveal, OrderCode, OrderStatusChange
    from orders.selectors import orders as selectors
    from orders.services import orders as order_services
    from tests.builders import codes_of

    order = delivered_order(buyer, quantity=3, spare=1)
    a, b, c = codes_of(order)
    for oc in (a, a, b):
        CodeReveal.objects.create(order_code=oc, user=buyer, ip="10.0.0.1")
    with transaction.atomic():
        new = order_services.order_code_replace(order=order, old_order_code_id=c.pk, actor=UserFactory(is_staff=True))
    read = selectors.order_for_buyer(buyer, order.number)
    assert read is not None and isinstance(read.codes_json, str) and isinstance(read.history_json, str)
    assert _page_view(read) == _page_view(selectors.order_page_extras(_orm_page_order(pk=order.pk)))
    assert [(oc.pk, oc.reveal_count) for oc in read.all_codes] == [(a.pk, 2), (b.pk, 1), (c.pk, 0), (new.pk, 0)]
    first = CodeReveal.objects.filter(order_code=a).order_by("at").first()
    assert read.all_codes[0].first_revealed_at == first.at and read.all_codes[2].released_at is not None
    assert [(oc.pk, oc.number, oc.replaces) for oc in read.live_codes] == [
        (a.pk, 1, None),
        (b.pk, 2, None),
        (new.pk, 3, 3),
    ]
    assert [t.reissue for t in read.timeline][-1] is True
    history = rows.json_rows(OrderStatusChange, read.history_json, using="default")
    assert [_row(h) for h in history] == [_row(h) for h in OrderStatusChange.objects.filter(order=order)]
    assert not history[0]._state.adding and history[0]._state.db == "default"
    # Fields without an exact JSON form are refused when composing, not read approximately.
    with pytest.raises(ValueError, match="no exact JSON form"):
        rows.json_rows_sql(CodeReveal, connection, alias="r", link="order_code", to="1", order=["id"])
    assert rows.json_rows(OrderCode, None, using="default") == []


@pytest.mark.django_db(transaction=True)
def test_the_product_read_with_the_order_is_what_the_orm_read(buyer):
    """The order's product comes in its statement as JSON, not joined (its planning cost about
    0.15 ms of PostgreSQL's CPU per view): decimals, a date, a JSON field, empty and null
    values, each as the ORM loads them, and changes seen on the next read."""
    _postgres_only()
    import datetime

    from catalog.models import Product
    from orders.selectors import orders as selectors

    order = delivered_order(buyer, price="12.30", quantity=1)
    values = {
        "face_value": Decimal("0.10"),
        "supply_cost": Decimal("7.05"),
        "sale_authorised_until": datetime.date(2027, 3, 1),
        "topup_fields": [{"name": "uid", "label": 'UID "1" ü', "n": 1.5, "ok": None}],
        "description": "",
    }
    Product.objects.filter(pk=order.product_id).update(**values)
    with CaptureQueriesContext(connection) as ctx:
        read = selectors.order_for_buyer(buyer, order.number)
    assert read is not None and isinstance(read.product_json, str)
    orm = Product.objects.get(pk=order.product_id)
    assert _row(read.product) == _row(orm)
    assert {k: getattr(read.product, k) for k in values} == values
    assert type(read.product.price) is Decimal and str(read.product.price) == "12.30"
    assert not read.product._state.adding and read.product._state.db == "default"
    assert _page_view(read) == _page_view(selectors.order_page_extras(_orm_page_order(pk=order.pk)))
    sql = " ".join(_sql(ctx))
    assert ' JOIN "catalog_product"' not in sql and len(_sql(ctx)) == 1
    # Null values, and a change: read again, never kept.
    Product.objects.filter(pk=order.product_id).update(
        supply_cost=None, sale_authorised_until=None, topup_fields=[], name="Renamed"
    )
    again = selectors.order_codes_for_buyer(buyer, order.number)
    assert _row(again.product) == _row(Product.objects.get(pk=order.product_id))
    assert again.product.topup_fields == [] and again.product.name == "Renamed"


@pytest.mark.django_db(transaction=True)
def test_the_guests_order_page_reads_what_the_orm_read(client):
    from orders.selectors import orders as selectors
    from orders.services import orders as order_services
    from payments.services.payments import sandbox_pay

    product = ProductFactory(price=Decimal("12.00"))
    add_stock(product, 2)
    order = order_services.order_place(
        buyer=None, guest_email="g@example.net", product_id=product.pk, quantity=2, idempotency_key="g1"
    )
    sandbox_pay(order_number=order.number)
    read = selectors.order_for_guest(order.number)
    assert read is not None and read.status == Order.Status.DELIVERED
    assert _page_view(read) == _page_view(selectors.order_page_extras(_orm_page_order(pk=order.pk)))
    assert len(selectors.order_codes_for_guest(order.number).all_codes) == 2
    assert selectors.order_for_buyer(UserFactory(), order.number) is None


def test_another_buyers_order_is_a_404_from_the_view(client, buyer):
    product = ProductFactory(price=Decimal("10.00"))
    add_stock(product, 1)
    order = place(buyer, product)
    client.force_login(UserFactory())
    assert client.get(f"/orders/{order.number}/").status_code == 404
    assert client.post(f"/orders/{order.number}/cancel/").status_code == 404
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING


@pytest.fixture
def pending(client, buyer) -> Order:
    """An order of ``buyer`` awaiting payment, the client logged in as ``buyer``."""
    product = ProductFactory(price=Decimal("10.00"))
    add_stock(product, 3)
    client.force_login(buyer)
    return place(buyer, product)


def test_a_pending_order_page_is_two_statements(client, pending):
    _postgres_only()
    order = pending
    response, sql = _statements(client, f"/orders/{order.number}/")
    assert response.status_code == 200 and b'data-status="pending"' in response.content
    # The user, the order with the credit probe and its history: a never-paid order's codes are
    # not the buyer's and are not read (the codes' subquery is guarded by the order's status).
    assert len(sql) == 2, sql
    assert "orders_orderstatuschange" in sql[1] and "NOT IN ('cancelled', 'expired', 'pending')" in sql[1]
    from orders.selectors import orders as selectors

    assert selectors.order_for_buyer(order.buyer, order.number).all_codes == []


@pytest.mark.django_db(transaction=True)
def test_a_delivered_order_page_is_two_statements_and_three_for_a_rated_buyer(client, buyer):
    _postgres_only()
    from compliance.models import CreditEvent
    from compliance.services import credit_event_record

    order = delivered_order(buyer, quantity=2)
    client.force_login(buyer)
    path = f"/orders/{order.number}/"
    response, sql = _statements(client, path)
    assert response.status_code == 200 and b'data-testid="refund-entry"' in response.content
    # The user, and the order with the buyer's credit probe, its codes, its history and whether
    # it has refund requests (one statement): the probe says the buyer has nothing on record, so
    # no rating is read, and the flag says there is no request, so none is read.
    assert len(sql) == 2, sql
    assert not [q for q in sql if "compliance_creditevent" in q.split(" FROM ", 1)[0]]
    assert not [q for q in sql if q.startswith('SELECT "aftersales_refundrequest"')]
    assert " ORDER BY " not in sql[1].rsplit('AS "credit_rated"', 1)[1]  # one row by its number
    # A buyer with a credit event: the rating is read (the refund offer asks whether a refund
    # would go to review).
    credit_event_record(user=buyer, kind=CreditEvent.Kind.NO_REASON_REFUND, reference="x")
    response, sql = _statements(client, path)
    assert response.status_code == 200 and len(sql) == 3, sql


@pytest.mark.django_db(transaction=True)  # delivery is a task queued on commit
def test_an_orders_refund_requests_are_read_when_its_read_says_it_has_some(client, buyer):
    """The order page's read of an order carries after-sales' flag (``order_page_flag``): false,
    the refund offer reads no request; true, it reads them and the page lists them."""
    _postgres_only()
    from aftersales.services import no_reason
    from orders.selectors import orders as selectors
    from tests.builders import ask, codes_of

    order = delivered_order(buyer, quantity=2)
    other = delivered_order(buyer, quantity=1)
    assert selectors.order_for_buyer(buyer, order.number).has_refund_requests is False
    request = ask(buyer, order, codes_of(order)[:1])
    read = selectors.order_for_buyer(buyer, order.number)
    assert read.has_refund_requests is True
    assert selectors.order_codes_for_buyer(buyer, order.number).has_refund_requests is True
    assert selectors.order_for_buyer(buyer, other.number).has_refund_requests is False
    with CaptureQueriesContext(connection) as ctx:
        options = no_reason.refund_options(order=read, user=buyer)
    assert [r.pk for r in options.requests] == [request.pk]
    assert [q for q in _sql(ctx) if '"aftersales_refundrequest"' in q.split(" WHERE ", 1)[0]]
    # The page: its statements and what it shows.
    client.force_login(buyer)
    response, sql = _statements(client, f"/orders/{order.number}/")
    # The user, the order, its requests, their codes (the requests' prefetch) and the buyer's
    # rating (the refund put a credit event on record), as before the flag.
    assert b'data-testid="refund-requests"' in response.content and len(sql) == 5, sql
    response, sql = _statements(client, f"/orders/{other.number}/")
    assert b'data-testid="refund-requests"' not in response.content and len(sql) == 3, sql  # and the rating
    # A flag is registered once; an order read without it (SQLite, or read otherwise) is asked.
    with pytest.raises(ValueError, match="registered once"):
        selectors.order_page_flag(no_reason.REQUESTS_FLAG, lambda order_id: "true")
    plain = Order.objects.get(pk=order.pk)
    assert [r.pk for r in no_reason.refund_options(order=plain, user=buyer).requests] == [request.pk]


@pytest.mark.django_db(transaction=True)
def test_an_htmx_reveal_is_three_statements_and_reads_no_history(client, buyer):
    _postgres_only()
    from orders.models import CodeReveal
    from tests.builders import codes_of

    order = delivered_order(buyer, quantity=2)
    first, second = codes_of(order)
    client.force_login(buyer)
    client.get("/")
    path = f"/orders/{order.number}/codes/{{}}/reveal/"
    client.post(path.format(first.pk), HTTP_HX_REQUEST="true")
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(path.format(second.pk), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b'data-testid="revealed-secret"' in response.content
    sql = _sql(ctx)
    # The user, the code read with its reveal's log row written (one statement), the order
    # with the credit probe, its codes and whether it has refund requests (one statement).
    assert len(sql) == 3, sql
    assert CodeReveal.objects.filter(order_code=second, user=buyer).count() == 1
    assert not [q for q in sql if "orderstatuschange" in q]
    # Another buyer cannot reveal it.
    client.force_login(UserFactory())
    assert client.post(path.format(first.pk), HTTP_HX_REQUEST="true").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_reveal_reads_only_a_live_code_of_the_owners_delivered_order(buyer):
    from orders.models import CodeReveal, OrderCode
    from orders.services import orders as order_services
    from tests.builders import codes_of

    order = delivered_order(buyer, quantity=2)
    first, second = codes_of(order)

    def reveal(who, code_id, number=order.number):
        return order_services.order_code_reveal(
            buyer=who, order_number=number, order_code_id=code_id, ip="10.0.0.1", user_agent="t"
        )

    before = timezone.now()
    _card_number, secret = reveal(buyer, first.pk)
    assert secret and CodeReveal.objects.filter(order_code=first, user=buyer).count() == 1
    logged = CodeReveal.objects.get(order_code=first)  # written with the read: as create() writes it
    assert (logged.ip, logged.user_agent) == ("10.0.0.1", "t") and before <= logged.at <= timezone.now()
    OrderCode.objects.filter(pk=second.pk).update(released_at=order.delivered_at)
    for who, code_id, number in (
        (UserFactory(), first.pk, order.number),  # another buyer
        (None, first.pk, order.number),  # as a guest: a member's order is not a guest's
        (buyer, second.pk, order.number),  # released (refunded)
        (buyer, first.pk, order.number + "X"),  # another number
    ):
        with pytest.raises(OrderCode.DoesNotExist):
            reveal(who, code_id, number)
    assert CodeReveal.objects.count() == 1


def test_choose_payment_and_start_read_the_order_once(client, buyer, pending):
    _postgres_only()
    from compliance.models import CreditEvent
    from compliance.services import credit_event_record

    order = pending
    response, sql = _statements(client, f"/pay/{order.number}/")
    assert response.status_code == 200 and f"/pay/{order.number}/start/sandbox/".encode() in response.content
    response, sql = _statements(client, f"/pay/sandbox/{order.number}/")
    assert response.status_code == 200 and len(sql) == 2, sql  # the user, the order
    client.get("/")
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(f"/pay/{order.number}/start/sandbox/")
    assert response.status_code == 302
    # The user, the order with the buyer's credit probe: a buyer with nothing on record pays as
    # the unrated level allows, without a rating read of its own.
    assert len(_sql(ctx)) == 2, _sql(ctx)
    credit_event_record(user=buyer, kind=CreditEvent.Kind.NO_REASON_REFUND, reference="x")
    with CaptureQueriesContext(connection) as ctx:
        assert client.post(f"/pay/{order.number}/start/sandbox/").status_code == 302
    assert len(_sql(ctx)) == 3, _sql(ctx)
    # Another buyer's order: 404.
    client.force_login(UserFactory())
    assert client.get(f"/pay/{order.number}/").status_code == 404
    assert client.post(f"/pay/{order.number}/start/sandbox/").status_code == 404


def test_the_order_number_filter_builds_what_format_html_built():
    from django.utils.html import format_html, format_html_join

    from marketplace.templatetags.display import order_no, order_no_format

    for value in ("2612031508ABCDEFGH", "", None, "<b>&\"'x</b>12", "ABC"):
        groups = order_no_format(value).split()
        before = format_html(
            '<span class="order-no" title="{}">{}</span>',
            "".join(groups),
            format_html_join("", "<span>{}</span>", ((g,) for g in groups)),
        )
        assert order_no(value) == before
        assert order_no(value, "text") == order_no_format(value)


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
    response, found = _statements(client, path)
    assert response.status_code == 200
    counts = {name: sum(name in sql for sql in found) for name in pinned if name != "all"}
    assert {**counts, "all": len(found)} == pinned, found


def test_member_home_list_is_read_once_per_window(client, buyer, settings):
    """The catalogue's home for a member, PAGE_CACHE_SECONDS on: the list (products, stock) is
    read once per window per process; the page itself then sends only the user's statement."""
    settings.PAGE_CACHE_SECONDS = 3
    add_stock(ProductFactory(price=Decimal("10.00")), 2)
    client.force_login(buyer)
    response, found = _statements(client, "/")
    assert response.status_code == 200
    assert not [sql for sql in found if "catalog_" in sql] and len(found) == 1, found


@pytest.mark.django_db(transaction=True)  # the payment commits; delivery is a task queued on commit
def test_the_cashiers_pay_locks_the_order_its_page_read_without_reading_it_again(client, buyer):
    """The cashier's POST reads the buyer's order (the permission check), then hands it to the
    verified pipeline: the row is locked reading back only what can have changed (status,
    expiry, buyer), not the whole order a second time."""
    _postgres_only()
    product = ProductFactory(price=Decimal("10.00"))
    add_stock(product, 1)
    client.force_login(buyer)
    order = place(buyer, product)
    client.get("/")
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(f"/pay/sandbox/{order.number}/")
    assert response.status_code == 302 and response["Location"] == f"/orders/{order.number}/"
    sql = _sql(ctx)
    table = Order._meta.db_table
    locks = [s for s in sql if "FOR UPDATE" in s and table in s]
    assert locks[0].startswith(f"SELECT status, expires_at, buyer_id FROM {table} WHERE id = "), locks
    moved = next(i for i, s in enumerate(sql) if s.startswith("WITH moved AS") and '"payments_payment"' in s)
    # The lock, then the payment's ledger lines (and its accounts, opened once per process), then
    # the move with the payment, its log row and the entry that seals the lines.
    assert sql[moved - 1].startswith('INSERT INTO "ledger_line"')
    between = sql[sql.index(locks[0]) + 1 : moved - 1]
    assert all("ledger_account" in s or "SAVEPOINT" in s for s in between), between
    assert sum(1 for s in sql[: moved + 1] if f'FROM "{table}"' in s or f"FROM {table}" in s) == 2  # page, lock
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED


def _cashier_pay_with_a_worker(client, monkeypatch, django_capture_on_commit_callbacks, order):
    """POST the cashier's pay as under a real worker: the delivery is queued (recorded), not run."""
    from marketplace.celery import app as celery_app

    celery_app.conf.task_always_eager = False  # the autouse fixture sets it back after the test
    sent = []
    monkeypatch.setattr("celery.app.task.Task.delay", lambda self, *args, **kw: sent.append((self.name, args)))
    client.get("/")
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
        response = client.post(f"/pay/sandbox/{order.number}/")
    assert response.status_code == 302 and response["Location"] == f"/orders/{order.number}/"
    sql = _sql(ctx)  # before the next request resets the connection's log
    return client.get(response["Location"]), sql, sent


@pytest.mark.parametrize("topup", [False, True])
def test_the_cashiers_pay_reads_nothing_after_its_commit_under_a_worker(
    client, buyer, monkeypatch, django_capture_on_commit_callbacks, topup
):
    """With a worker, nothing can have delivered the order between the commit and the answer but
    that worker: the message comes from the status the pipeline left (paid) and the product's kind
    read with the order, and no statement follows the payment's move (which writes its ledger entry)."""
    _postgres_only()
    import uuid

    from orders.services.orders import order_place
    from tests.test_topup import GOOD, topup_product

    if topup:
        order = order_place(
            buyer=buyer, product=topup_product(), quantity=1, idempotency_key=uuid.uuid4().hex, topup=GOOD
        )
    else:
        product = ProductFactory(price=Decimal("10.00"))
        add_stock(product, 1)
        order = place(buyer, product)
    client.force_login(buyer)
    response, sql, sent = _cashier_pay_with_a_worker(client, monkeypatch, django_capture_on_commit_callbacks, order)
    paid = sql.index(next(s for s in sql if s.startswith("WITH moved AS") and '"ledger_entry"' in s))
    assert not [s for s in sql[paid + 1 :] if "orders_order" in s], sql
    assert [s for s in sql[:paid] if '"orders_order"' in s and "product" in s and s.startswith("SELECT")]  # read once
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    from django.utils.translation import gettext, override

    with override("zh-hans"):  # the default language
        expected = gettext(
            "Payment received. We are topping up the account you gave."
            if topup
            else "Payment received. Your codes are being delivered."
        )
    assert [str(m) for m in response.context["messages"]] == [expected]
    assert ("orders.tasks.fulfil_order", (order.pk,)) in sent or topup
