"""order_place: races for the last codes, idempotency, bad input, expiry and cancel, and the
plan of the claim query on a table full of sold codes."""

import html
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.db.models import Count
from django.utils import timezone

from catalog import selectors as catalog_selectors
from catalog import services as stock_services
from catalog.models import CardCode, StockBatch
from orders.models import Order, OrderCode, OrderStatusChange
from orders.services import orders as services
from orders.services.orders import OrderError
from tests.builders import run_concurrently, transaction_held
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = pytest.mark.usefixtures("english")

Available, Reserved, Sold = CardCode.Status.AVAILABLE, CardCode.Status.RESERVED, CardCode.Status.SOLD


def code_statuses(product) -> dict[str, int]:
    rows = CardCode.objects.filter(product=product).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def assert_no_code_in_two_orders(product):
    live = (
        OrderCode.objects.filter(released_at__isnull=True, code__product=product)
        .values("code_id")
        .annotate(n=Count("id"))
    )
    assert all(row["n"] == 1 for row in live), [row for row in live if row["n"] > 1]


# --- The race for the last codes ---------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_buyers_race_for_twenty_codes():
    staff = UserFactory(is_staff=True, is_superuser=True)
    buyers = [UserFactory() for _ in range(50)]
    for round_no in range(10):
        product = ProductFactory()
        add_stock(product, 20, user=staff)

        def buy(i, product=product, round_no=round_no):
            return services.order_place(
                buyer=buyers[i], product_id=product.pk, quantity=1, idempotency_key=f"race-{round_no}-{i}"
            )

        results = run_concurrently(50, buy)

        unexpected = [r for r in results if not isinstance(r, Order | stock_services.OutOfStock)]
        assert not unexpected, f"round {round_no}: {unexpected!r}"
        placed = [r for r in results if isinstance(r, Order)]
        refused = [r for r in results if isinstance(r, stock_services.OutOfStock)]
        assert len(placed) == 20, f"round {round_no}"
        assert len(refused) == 30, f"round {round_no}"
        for exc in refused:
            assert exc.code == "out_of_stock" and exc.status == 409
            message = str(exc).lower()
            assert "sold out" in message or "in stock" in message, message

        assert Order.objects.filter(product=product).count() == 20
        assert len({o.buyer_id for o in placed}) == 20
        live = OrderCode.objects.filter(order__product=product, released_at__isnull=True)
        assert live.count() == 20
        assert live.values("code_id").distinct().count() == 20
        assert sorted(live.values_list("order_id", flat=True)) == sorted(o.pk for o in placed)
        assert_no_code_in_two_orders(product)
        assert code_statuses(product) == {Reserved: 20}
        assert catalog_selectors.stock_count(product.pk) == 0


# --- Double submits ------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stock", [40, 3], ids=["plenty-of-stock", "stock-equals-quantity"])
def test_concurrent_double_submit_gives_one_order(stock):
    buyer = UserFactory()
    product = ProductFactory()
    add_stock(product, stock)

    results = run_concurrently(
        10,
        lambda i: services.order_place(buyer=buyer, product_id=product.pk, quantity=3, idempotency_key="same-click"),
    )

    assert all(isinstance(r, Order) for r in results), results
    assert len({r.pk for r in results}) == 1
    order = Order.objects.get(buyer=buyer)
    assert order.quantity == 3
    assert order.codes.filter(released_at__isnull=True).count() == 3
    assert OrderCode.objects.count() == 3
    expected = {Reserved: 3, Available: stock - 3} if stock > 3 else {Reserved: 3}
    assert code_statuses(product) == expected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_double_submit_waits_at_the_order_row_holding_no_code():
    """The order row, the claim and the codes are one statement: the order is written first, so
    the second request of a double click waits at the (buyer, key) index before it locks any code
    (another buyer can still take the rest), then answers with the first request's order."""
    buyer = UserFactory()
    product = ProductFactory()
    add_stock(product, 2)

    def place():
        return services.order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="twice")

    second: dict = {}

    def place_again():
        try:
            second["order"] = place()
        except BaseException as exc:
            second["order"] = exc
        finally:
            connections.close_all()

    with transaction_held(place) as first:
        thread = threading.Thread(target=place_again, daemon=True)
        thread.start()
        waiting = 0
        for _ in range(200):  # until the second request waits on the first one's uncommitted order
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
                waiting = cursor.fetchone()[0]
            if waiting or not thread.is_alive():
                break
            time.sleep(0.05)
        assert waiting == 1, second
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM catalog_cardcode WHERE product_id = %s AND status = %s FOR UPDATE SKIP LOCKED",
                [product.pk, Available],
            )
            free = cursor.fetchall()
        assert len(free) == 1  # the code the first order did not take is locked by no one
        first.release()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(second["order"], Order) and second["order"].pk == first.value.pk
    assert code_statuses(product) == {Reserved: 1, Available: 1}
    assert Order.objects.count() == 1 and OrderStatusChange.objects.count() == 1


@pytest.mark.django_db
def test_sequential_double_submit_through_the_view(client, buyer):
    product = ProductFactory()
    add_stock(product, 5)
    client.force_login(buyer)
    url = f"/orders/checkout/{product.slug}/"

    first = client.post(url, {"quantity": 2, "idempotency_key": "k" * 32}, HTTP_ACCEPT_LANGUAGE="en")
    second = client.post(url, {"quantity": 2, "idempotency_key": "k" * 32}, HTTP_ACCEPT_LANGUAGE="en")

    order = Order.objects.get()
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == f"/pay/{order.number}/"
    assert order.codes.count() == 2
    assert code_statuses(product) == {Reserved: 2, Available: 3}


# --- Bad input -----------------------------------------------------------------------------


def assert_nothing_created(product, stock: int):
    assert Order.objects.count() == 0
    assert OrderCode.objects.count() == 0
    assert OrderStatusChange.objects.count() == 0
    assert catalog_selectors.stock_count(product.pk) == stock
    assert code_statuses(product) == {Available: stock}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("0", "Quantity must be at least 1."),
        ("-1", "Quantity must be at least 1."),
        ("abc", "Quantity must be a whole number."),
        ("1.5", "Quantity must be a whole number."),
        ("1; DROP TABLE orders_order", "Quantity must be a whole number."),
        ("11", "Buy at most 10 of this product per order."),
        ("99999999999999999999", "Buy at most 10 of this product per order."),
        ("6", "Only 5 left in stock, you asked for 6."),
    ],
)
def test_checkout_view_refuses_bad_quantity(client, buyer, quantity, message):
    product = ProductFactory(max_per_order=10)
    add_stock(product, 5)
    client.force_login(buyer)

    response = client.post(
        f"/orders/checkout/{product.slug}/",
        {"quantity": quantity, "idempotency_key": "a" * 32},
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 400
    assert response.context["error"] == message
    assert html.escape(message) in response.content.decode()
    assert 'data-testid="order-error"' in response.content.decode()
    assert_nothing_created(product, 5)


@pytest.mark.django_db
def test_checkout_view_below_minimum(client, buyer):
    product = ProductFactory(min_per_order=2, max_per_order=5)
    add_stock(product, 5)
    client.force_login(buyer)

    response = client.post(
        f"/orders/checkout/{product.slug}/", {"quantity": "1", "idempotency_key": "b" * 32}, HTTP_ACCEPT_LANGUAGE="en"
    )

    assert response.status_code == 400
    assert "Buy at least 2 of this product per order." in response.content.decode()
    assert_nothing_created(product, 5)


@pytest.mark.django_db
def test_checkout_sold_out_product(client, buyer):
    product = ProductFactory()
    client.force_login(buyer)

    response = client.post(
        f"/orders/checkout/{product.slug}/", {"quantity": "1", "idempotency_key": "c" * 32}, HTTP_ACCEPT_LANGUAGE="en"
    )

    assert response.status_code == 400
    assert "Sold out: no codes left for this product." in response.content.decode()
    assert Order.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["product", "category"])
def test_checkout_view_for_product_not_on_sale_is_404(client, buyer, what):
    product = ProductFactory()
    add_stock(product, 3)
    if what == "product":
        product.is_active = False
        product.save(update_fields=["is_active"])
    else:
        product.category.is_active = False
        product.category.save(update_fields=["is_active"])
    client.force_login(buyer)

    url = f"/orders/checkout/{product.slug}/"
    assert client.get(url).status_code == 404
    assert client.post(url, {"quantity": "1", "idempotency_key": "d" * 32}).status_code == 404
    assert_nothing_created(product, 3)


@pytest.mark.django_db
def test_checkout_view_unknown_slug_is_404(client, buyer):
    client.force_login(buyer)
    assert client.post("/orders/checkout/no-such-product/", {"quantity": "1"}).status_code == 404
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_checkout_view_ignores_posted_prices(client, buyer):
    product = ProductFactory(price=Decimal("97.00"))
    add_stock(product, 5)
    client.force_login(buyer)

    response = client.post(
        f"/orders/checkout/{product.slug}/",
        {
            "quantity": "2",
            "idempotency_key": "e" * 32,
            "price": "0.01",
            "unit_price": "0.01",
            "total": "0.01",
            "subtotal": "0.01",
            "discount": "194.00",
            "product_id": "999999",
        },
    )

    order = Order.objects.get()
    assert response.status_code == 302
    assert order.product_id == product.pk
    assert order.unit_price == Decimal("97.00")
    assert order.subtotal == order.total == Decimal("194.00")
    assert order.discount == Decimal("0")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message", "error"),
    [
        ({"quantity": 0}, "Quantity must be at least 1.", OrderError),
        ({"quantity": -1}, "Quantity must be at least 1.", OrderError),
        ({"quantity": "abc"}, "Quantity must be a whole number.", OrderError),
        ({"quantity": None}, "Quantity must be a whole number.", OrderError),
        ({"quantity": 11}, "Buy at most 10 of this product per order.", OrderError),
        ({"quantity": 6}, "Only 5 left in stock, you asked for 6.", stock_services.OutOfStock),
        ({"product_id": 987654321}, "This product does not exist.", OrderError),
        ({"product_id": "abc"}, "This product does not exist.", OrderError),
        ({"product_id": None}, "This product does not exist.", OrderError),
        ({"idempotency_key": ""}, "This form has expired: reload the page and try again.", OrderError),
        ({"idempotency_key": "x" * 65}, "This form has expired: reload the page and try again.", OrderError),
    ],
)
def test_order_place_refuses_bad_input(buyer, kwargs, message, error):
    product = ProductFactory(max_per_order=10)
    add_stock(product, 5)
    call = {"buyer": buyer, "product_id": product.pk, "quantity": 1, "idempotency_key": "f" * 32, **kwargs}

    with pytest.raises(error) as excinfo:
        services.order_place(**call)

    assert type(excinfo.value) is error and str(excinfo.value) == message
    assert_nothing_created(product, 5)


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["product", "category"])
def test_order_place_refuses_product_not_on_sale(buyer, what):
    product = ProductFactory()
    add_stock(product, 3)
    target = product if what == "product" else product.category
    target.is_active = False
    target.save(update_fields=["is_active"])

    with pytest.raises(OrderError) as excinfo:
        services.order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="g" * 32)

    assert str(excinfo.value) == "This product is not on sale."

    assert_nothing_created(product, 3)


@pytest.mark.django_db
def test_order_place_snapshots_price_and_holds_codes(buyer):
    product = ProductFactory(price=Decimal("33.33"), name="Steam ¥30")
    add_stock(product, 4)

    order = services.order_place(buyer=buyer, product_id=str(product.pk), quantity=" 3 ", idempotency_key="h")

    assert order.status == Order.Status.PENDING
    assert (order.quantity, order.unit_price, order.total) == (3, Decimal("33.33"), Decimal("99.99"))
    assert order.product_name == "Steam ¥30"
    assert order.expires_at > timezone.now() + timedelta(minutes=14)
    assert order.codes.filter(released_at__isnull=True).count() == 3
    assert code_statuses(product) == {Reserved: 3, Available: 1}
    assert list(order.history.values_list("from_status", "to_status")) == [("", "pending")]
    # The price changes afterwards: the order keeps what it was sold at.
    product.price = Decimal("50.00")
    product.save(update_fields=["price"])
    order.refresh_from_db()
    assert order.total == Decimal("99.99")


# --- Expiry and cancel ---------------------------------------------------------------------


@pytest.mark.django_db
def test_unpaid_order_past_its_time_expires_and_frees_its_codes(buyer):
    product = ProductFactory()
    add_stock(product, 3)
    order = services.order_place(buyer=buyer, product_id=product.pk, quantity=2, idempotency_key="exp")
    fresh = services.order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="fresh")
    assert services.orders_expire_due() == 0  # nothing is due yet
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert services.orders_expire_due() == 1

    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED
    assert order.codes.count() == 2
    assert order.codes.filter(released_at__isnull=True).count() == 0
    assert code_statuses(product) == {Available: 2, Reserved: 1}
    assert list(order.history.values_list("from_status", "to_status")) == [("", "pending"), ("pending", "expired")]
    fresh.refresh_from_db()
    assert fresh.status == Order.Status.PENDING
    assert fresh.codes.filter(released_at__isnull=True).count() == 1

    released = list(order.codes.values_list("released_at", flat=True))
    assert services.orders_expire_due() == 0  # a second run changes nothing
    assert services.order_expire(order_id=order.pk) is False
    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED
    assert list(order.codes.values_list("released_at", flat=True)) == released
    assert order.history.count() == 2
    assert code_statuses(product) == {Available: 2, Reserved: 1}

    # The freed codes can be bought again.
    again = services.order_place(buyer=buyer, product_id=product.pk, quantity=2, idempotency_key="again")
    assert code_statuses(product) == {Reserved: 3}
    assert_no_code_in_two_orders(product)
    assert again.codes.count() == 2


@pytest.mark.django_db
def test_order_expire_refuses_an_order_not_yet_due(buyer):
    product = ProductFactory()
    add_stock(product, 1)
    order = services.order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="k")
    assert services.order_expire(order_id=order.pk) is False
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert code_statuses(product) == {Reserved: 1}


@pytest.mark.django_db
def test_buyer_cancels_and_codes_go_back(client, buyer):
    product = ProductFactory()
    add_stock(product, 2)
    order = services.order_place(buyer=buyer, product_id=product.pk, quantity=2, idempotency_key="c1")
    client.force_login(buyer)

    response = client.post(f"/orders/{order.number}/cancel/")

    assert response.status_code == 302
    assert response["Location"] == f"/orders/{order.number}/"
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert order.codes.filter(released_at__isnull=True).count() == 0
    assert code_statuses(product) == {Available: 2}
    change = order.history.get(to_status="cancelled")
    assert (change.from_status, change.actor_id) == ("pending", buyer.pk)
    # Cancelling again changes nothing.
    assert services.order_cancel(order_id=order.pk, buyer=buyer) is False
    assert order.history.count() == 2


@pytest.mark.django_db
def test_another_user_cannot_cancel(client, buyer, other_buyer):
    product = ProductFactory()
    add_stock(product, 2)
    order = services.order_place(buyer=buyer, product_id=product.pk, quantity=2, idempotency_key="c2")

    with pytest.raises(Order.DoesNotExist):
        services.order_cancel(order_id=order.pk, buyer=other_buyer)
    client.force_login(other_buyer)
    assert client.post(f"/orders/{order.number}/cancel/").status_code == 404

    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert order.history.count() == 1
    assert code_statuses(product) == {Reserved: 2}


# --- The claim query's plan ----------------------------------------------------------------


def _claim_plan(product_id: int, limit: int) -> dict:
    """EXPLAIN (JSON) of the exact statement catalog.services.stock_reserve sends."""
    sql = stock_services.claim_sql("postgresql")
    params = [Reserved, timezone.now(), product_id, Available, limit]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        return cursor.fetchone()[0][0]["Plan"]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _bulk_codes(product, batch, count: int, status: str, start: int) -> list[CardCode]:
    return [
        CardCode(
            product=product,
            batch=batch,
            secret_enc="dummy",
            secret_hash=f"{product.pk:08d}{n:056d}",
            status=status,
        )
        for n in range(start, start + count)
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_claim_query_uses_the_available_index_when_most_codes_are_sold():
    staff = UserFactory(is_staff=True)
    hot = ProductFactory()
    others = [ProductFactory() for _ in range(3)]

    def batch(product):
        return StockBatch.objects.create(
            product=product,
            supplier=product.supplier,
            cost_price=Decimal("1.00"),
            created_by=staff,
            status=StockBatch.Status.DONE,
        )

    # The hot product: 27,000 codes in 9 batches of 3,000; the oldest 90% are sold.
    rows: list[CardCode] = []
    hot_batches = [batch(hot) for _ in range(9)]
    n = 0
    for b in hot_batches:
        for _ in range(3000):
            rows.extend(_bulk_codes(hot, b, 1, Sold if n < 24_300 else Available, n))
            n += 1
    # A few other products: 3,000 codes, some sold, some reserved, most available.
    for i, product in enumerate(others):
        b = batch(product)
        rows += _bulk_codes(product, b, 200, Sold, 0)
        rows += _bulk_codes(product, b, 50 + i, Reserved, 200)
        rows += _bulk_codes(product, b, 750 - i, Available, 1000)
    assert len(rows) == 30_000
    CardCode.objects.bulk_create(rows, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_cardcode")

    for limit in (1, 5, 50):
        plan = _claim_plan(hot.pk, limit)
        nodes = list(_nodes(plan))
        assert not [n for n in nodes if n["Node Type"] in ("Seq Scan", "Sort", "Incremental Sort")], plan
        # The picking part (under LockRows) reads only the partial index of available codes;
        # the primary key serves only the UPDATE's lookup of the rows picked.
        (lock_rows,) = [n for n in nodes if n["Node Type"] == "LockRows"]
        picking = [n.get("Index Name") for n in _nodes(lock_rows) if "Scan" in n["Node Type"]]
        assert picking == ["cardcode_available_idx"], plan

    expected = list(
        CardCode.objects.filter(product=hot, status=Available)
        .order_by("batch_id", "id")
        .values_list("id", flat=True)[:5]
    )
    with transaction.atomic():
        claimed = stock_services.stock_reserve(product_id=hot.pk, quantity=5)
    assert claimed == expected
    assert set(CardCode.objects.filter(pk__in=claimed).values_list("status", flat=True)) == {Reserved}
    assert code_statuses(hot) == {Sold: 24_300, Available: 2_695, Reserved: 5}
    # The oldest batch holding available codes is served first.
    assert set(CardCode.objects.filter(pk__in=claimed).values_list("batch_id", flat=True)) == {hot_batches[8].pk}
    # Asking for more than is left claims nothing.
    with pytest.raises(stock_services.OutOfStock), transaction.atomic():
        stock_services.stock_reserve(product_id=hot.pk, quantity=2_696)
    assert code_statuses(hot)[Available] == 2_695
