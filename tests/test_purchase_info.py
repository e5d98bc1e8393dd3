"""What a viewer pays, computed once: orders.selectors.orders.purchase_info(s) and orders.forms.CheckoutForm.

The pages, the API and order_place read the same answer: these tests pin each reason, the
price for each kind of viewer, that the page's price is what order_place charges, the
constant number of queries for a grid, and the checkout form's parsing and clamping.
"""

from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from agents.models import PriceKind as MarkupKind
from agents.selectors import NotForSale
from agents.services import agents as agent_services
from agents.services import storefronts
from catalog import selectors as catalog_selectors
from catalog.services import OutOfStock
from orders.forms import CheckoutForm
from orders.selectors import orders as selectors
from orders.selectors.orders import PriceKind, ReasonCode, purchase_info, purchase_infos
from orders.services import orders as services
from tests.factories import CategoryFactory, ProductFactory, UserFactory, add_stock, verified_operator

D = Decimal
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


@pytest.fixture
def product(level):
    p = ProductFactory(price=D("120.00"), face_value=D("130.00"), slug="steam-100")
    agent_services.level_price_set(level=level, product=p, kind=MarkupKind.FIXED, value="92.00")
    add_stock(p, 5)
    return p


@pytest.fixture
def chain(level, product):
    """A (top) → B → C: costs 92.00, 101.20, 106.75 (as in test_storefronts)."""
    a = agent_services.agent_create(user=UserFactory(), level=level)
    b = agent_services.agent_create(user=UserFactory(), level=level, upline=a)
    c = agent_services.agent_create(user=UserFactory(), level=level, upline=b)
    agent_services.markup_set(agent=a, kind=MarkupKind.PERCENT, value="10")
    agent_services.markup_set(agent=b, kind=MarkupKind.FIXED, value="5.55")
    return a, b, c


@pytest.fixture
def shop(chain):
    """C's shop: 7.5% over C's cost of 106.75 is 114.76."""
    verified_operator(chain[2])
    return storefronts.storefront_open(
        agent=chain[2], slug="lucky-star", name="Lucky Star", default_markup_kind="percent", default_markup_value="7.5"
    )


def code(info):
    return info.reason.code if info.reason is not None else None


# --- prices by viewer ------------------------------------------------------------------------------


def test_buyer_pays_the_public_price(product, buyer):
    info = purchase_info(product=product, viewer=buyer)
    assert (info.price, info.price_kind, info.list_price, info.face_value) == (
        D("120.00"),
        PriceKind.PUBLIC,
        D("120.00"),
        D("130.00"),
    )
    assert info.can_buy and info.reason is None and info.agent_price is None
    assert (info.stock, info.min_quantity, info.max_quantity) == (5, 1, 10)


def test_agent_pays_its_own_cost_on_the_platform(product, chain):
    info = purchase_info(product=product, viewer=chain[2].user)
    assert (info.price, info.price_kind, info.agent_price, info.list_price) == (
        D("106.75"),
        PriceKind.AGENT,
        D("106.75"),
        D("120.00"),
    )
    assert info.can_buy and info.is_agent_price
    assert purchase_info(product=product, viewer=chain[0].user).price == D("92.00")


def test_everyone_pays_the_retail_price_in_a_storefront(product, chain, shop, buyer):
    for viewer in (buyer, chain[0].user, chain[2].user, AnonymousUser()):
        info = purchase_info(product=product, viewer=viewer, storefront=shop)
        assert (info.price, info.price_kind, info.list_price) == (D("114.76"), PriceKind.RETAIL, D("120.00"))
        assert info.agent_price is None
    # The shop's own agent may buy there, as before (it is not refused by order_place either).
    assert purchase_info(product=product, viewer=chain[2].user, storefront=shop).can_buy


def test_anonymous_visitor_sees_the_public_price_and_can_buy_as_a_guest(product):
    # Issue 12: a visitor buys as a guest at the public price; no login stands in the way.
    for viewer in (AnonymousUser(), None):
        info = purchase_info(product=product, viewer=viewer)
        assert info.price == D("120.00") and info.price_kind == PriceKind.PUBLIC
        assert info.can_buy and not info.needs_login and info.reason is None


# --- each reason ---------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["product", "category"])
def test_inactive(product, buyer, what):
    target = product if what == "product" else product.category
    target.is_active = False
    target.save(update_fields=["is_active"])
    product.refresh_from_db()
    info = purchase_info(product=product, viewer=buyer)
    assert (info.can_buy, code(info), info.reason.message) == (
        False,
        ReasonCode.INACTIVE,
        "This product is not on sale.",
    )


def test_unlisted_or_closed_shop_is_not_for_sale(product, shop, buyer):
    storefronts.product_unlist(storefront=shop, product=product)
    info = purchase_info(product=product, viewer=buyer, storefront=shop)
    assert (code(info), info.price, info.listed) == (ReasonCode.NOT_FOR_SALE, None, False)
    assert info.reason.message == "This shop does not sell this product."
    storefronts.product_relist(storefront=shop, product=product)
    assert purchase_info(product=product, viewer=buyer, storefront=shop).can_buy
    storefronts.storefront_close(storefront=shop)
    shop.refresh_from_db()
    assert code(purchase_info(product=product, viewer=buyer, storefront=shop)) == ReasonCode.NOT_FOR_SALE


def test_out_of_stock_comes_before_the_login(buyer):
    product = ProductFactory()
    for viewer in (buyer, AnonymousUser()):
        info = purchase_info(product=product, viewer=viewer)
        assert (info.stock, code(info)) == (0, ReasonCode.OUT_OF_STOCK)
        assert info.reason.message == "Sold out: no codes left for this product." and not info.needs_login


def test_fewer_codes_than_the_minimum_cannot_be_bought(buyer):
    product = ProductFactory(min_per_order=3)
    add_stock(product, 2)
    info = purchase_info(product=product, viewer=buyer)
    assert (info.stock, code(info)) == (2, ReasonCode.NOT_ENOUGH_STOCK)
    assert info.reason.message == "Only 2 left in stock, fewer than the 3 per order minimum."
    # order_place agrees: the minimum cannot be reserved (catalog's refusal reaches the buyer as it is).
    with pytest.raises(OutOfStock):
        services.order_place(buyer=buyer, product=product, quantity=3, idempotency_key="k" * 8)


def test_reasons_are_translated(product):
    with translation.override("zh-hans"):
        info = purchase_info(product=ProductFactory(), viewer=None)
    assert info.reason.code == ReasonCode.OUT_OF_STOCK and info.reason.message == "已售罄：该商品暂无库存。"


# --- the page and the service never disagree ------------------------------------------------------


@pytest.mark.parametrize("who", ["buyer", "top agent", "agent", "shop visitor", "shop owner"])
def test_order_place_charges_what_purchase_info_shows(product, chain, shop, buyer, who):
    viewer = {"buyer": buyer, "top agent": chain[0].user, "agent": chain[2].user}.get(who)
    storefront = shop if who.startswith("shop") else None
    if who == "shop visitor":
        viewer = buyer
    elif who == "shop owner":
        viewer = chain[2].user
    info = purchase_info(product=product, viewer=viewer, storefront=storefront)
    order = services.order_place(
        buyer=viewer, product=product, quantity=2, idempotency_key=f"agree-{who}", storefront=storefront
    )
    assert order.unit_price == info.price and order.total == info.price * 2


def test_order_place_refuses_what_purchase_info_refuses(product, shop, buyer):
    storefronts.product_unlist(storefront=shop, product=product)
    info = purchase_info(product=product, viewer=buyer, storefront=shop)
    with pytest.raises(NotForSale) as exc:
        services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k1", storefront=shop)
    assert str(exc.value) == info.reason.message


# --- a grid in a constant number of queries --------------------------------------------------------


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def _grid(n: int, level):
    category = CategoryFactory()
    products = [ProductFactory(category=category) for _ in range(n)]
    for p in products[:3]:
        add_stock(p, 1)
    return list(catalog_selectors.products_on_sale().filter(pk__in=[p.pk for p in products]))


@pytest.mark.parametrize("where", ["platform", "storefront"])
def test_purchase_infos_queries_do_not_grow_with_the_page(level, chain, shop, where, django_assert_num_queries):
    small, large = _grid(3, level), _grid(30, level)
    viewer = chain[2].user
    storefront = shop if where == "storefront" else None
    getattr(viewer, "agent", None)  # the request's user comes with its agent looked up once
    counts = [_queries(lambda ps=ps: purchase_infos(ps, viewer=viewer, storefront=storefront)) for ps in (small, large)]
    assert counts[0] == counts[1]
    # One price resolution (chain, platform prices, markups[, retail prices]) and one stock count.
    with django_assert_num_queries(4 if where == "platform" else 5):
        infos = purchase_infos(large, viewer=viewer, storefront=storefront)
    assert [i.product.pk for i in infos] == [p.pk for p in large]
    assert sum(i.stock for i in infos) == 3


def test_public_price_grid_is_one_query(buyer, level, django_assert_num_queries):
    products = _grid(20, level)
    getattr(buyer, "agent", None)  # looked up once per request (not an agent: remembered as such)
    with django_assert_num_queries(1):  # the stock count: the public price is on the product
        infos = purchase_infos(products, viewer=buyer)
    assert {i.price_kind for i in infos} == {PriceKind.PUBLIC}
    assert purchase_infos([], viewer=buyer) == []


def test_catalogue_pages_queries_do_not_grow_with_the_catalogue(client, level, chain):
    client.force_login(chain[2].user)
    client.get("/")  # the session's first request
    _grid(3, level)
    few = _queries(lambda: client.get("/"))
    _grid(30, level)
    many = _queries(lambda: client.get("/"))
    assert few == many
    page = client.get("/").content.decode()
    assert page.count('data-testid="agent-price"') == 3 + 30 + 1  # with the fixture's product


# --- pages ---------------------------------------------------------------------------------------


def test_product_page_buy_button_follows_the_reason(client, buyer):
    ProductFactory(slug="sold-out")
    short = ProductFactory(slug="short", min_per_order=3)
    add_stock(short, 2)
    on_sale = ProductFactory(slug="on-sale")
    add_stock(on_sale, 2)
    for viewer in (None, buyer):
        if viewer is not None:
            client.force_login(viewer)
        page = client.get("/p/sold-out/").content.decode()
        assert 'data-testid="buy-now" disabled' in page and "Sold out" in page
        page = client.get("/p/short/").content.decode()
        assert 'data-testid="buy-now" disabled' in page and "fewer than the 3 per order minimum" in page
        page = client.get("/p/on-sale/").content.decode()  # a visitor is sent to log in by the checkout
        assert 'data-testid="buy-now" >' in page and "Buy now" in page


def test_storefront_product_page_offers_guest_checkout_to_a_visitor(client, product, shop, buyer):
    # Issue 12: a visitor buys as a guest (an email, typed twice) instead of logging in first.
    page = client.get(f"/s/lucky-star/p/{product.slug}/").content.decode()
    assert 'data-testid="buy-now" >' in page and "Buy now" in page and "114.76" in page
    assert 'data-testid="guest-email"' in page and "Log in to buy" not in page
    client.force_login(buyer)
    page = client.get(f"/s/lucky-star/p/{product.slug}/?quantity=99").content.decode()
    # The quantity clamped to what can be bought: the maximum per order (10), but only 5 in stock.
    assert "Buy now" in page and 'value="5"' in page
    assert 'data-testid="guest-email"' not in page  # a member buys as themselves
    assert "¥573.80" in page


def test_api_products_show_what_purchase_info_says(product, chain):
    from tests.api_helpers import issue_key

    api = issue_key(chain[2])
    body = api.get(f"/api/v1/products/{product.pk}/").json()
    info = purchase_info(product=product, viewer=chain[2].user)
    assert (body["price"], body["list_price"], body["stock"]) == (str(info.price), str(info.list_price), info.stock)
    assert (body["min_per_order"], body["max_per_order"], body["category"]) == (1, 10, product.category.name)


# --- the checkout form -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [(None, 2), ("", 2), ("abc", 2), ("1", 2), ("0", 2), ("-3", 2), ("4", 4), (" 5 ", 5), ("99", 6), ("1.5", 2)],
)
def test_form_clamps_the_quantity_shown(raw, shown):
    product = ProductFactory(min_per_order=2, max_per_order=6)
    data = {} if raw is None else {"quantity": raw}
    assert CheckoutForm(data, product=product).quantity_shown == shown
    assert CheckoutForm(product=product).quantity_shown == 2  # unbound: the minimum


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"quantity": "abc"}, "Quantity must be a whole number."),
        ({"quantity": ""}, "Quantity must be a whole number."),
        ({"quantity": "1.5"}, "Quantity must be a whole number."),
        ({"quantity": "0"}, "Quantity must be at least 1."),
        ({"quantity": "1"}, "Buy at least 2 of this product per order."),
        ({"quantity": "7"}, "Buy at most 6 of this product per order."),
        ({"quantity": "3", "idempotency_key": "x" * 65}, "This form has expired: reload the page and try again."),
        ({"quantity": "abc", "idempotency_key": "x" * 65}, "This form has expired: reload the page and try again."),
    ],
)
def test_form_refuses_with_order_place_messages(data, error):
    product = ProductFactory(min_per_order=2, max_per_order=6)
    form = CheckoutForm(data, product=product)
    assert not form.is_valid() and form.error == error


def test_form_accepts_and_parses():
    product = ProductFactory(min_per_order=2, max_per_order=6)
    form = CheckoutForm({"quantity": " 3 ", "idempotency_key": " tok ", "price": "0.01"}, product=product)
    assert form.is_valid() and form.error is None
    assert form.cleaned_data == {"quantity": 3, "idempotency_key": "tok", "product_id": product.pk}
    # A post without the form's token is a new attempt: it gets a fresh one.
    fresh = CheckoutForm({"quantity": "3"}, product=product)
    assert fresh.is_valid() and len(fresh.cleaned_data["idempotency_key"]) == 32


@pytest.mark.parametrize("raw", ["", "x", "0", "-1", "1.0", "٣", str(2**63)])
def test_form_without_a_product_parses_the_product_id(raw):
    form = CheckoutForm({"product_id": raw, "quantity": "1", "idempotency_key": "k"})
    assert form.error == "This product does not exist."
    ok = CheckoutForm({"product_id": "12", "quantity": "500", "idempotency_key": "k"})
    assert ok.is_valid() and ok.cleaned_data["product_id"] == 12 and ok.cleaned_data["quantity"] == 500


def test_quantity_rules_are_those_of_order_place(buyer):
    product = ProductFactory(min_per_order=2, max_per_order=6)
    add_stock(product, 8)
    for raw in ["abc", "0", "1", "7", None]:
        why = selectors.quantity_refusal(selectors.quantity_parse(raw), product=product)
        with pytest.raises(services.OrderError) as exc:
            services.order_place(buyer=buyer, product=product, quantity=raw, idempotency_key=f"q{raw}")
        assert str(exc.value) == why.message
