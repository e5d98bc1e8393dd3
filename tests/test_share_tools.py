"""Agents' share tools (issue 15): posters with the storefront's own price and a QR code to the
shop, attribution of an order to the poster that brought the buyer, and the promotion report."""

import csv
import io
import re
from decimal import Decimal
from xml.etree import ElementTree

import pytest
from django.core import signing
from django.urls import reverse
from PIL import Image

from agents import selectors as agent_selectors
from agents.models import PriceKind
from agents.services import agents as services
from agents.services import storefronts
from marketplace import posters
from orders.models import Order
from orders.selectors import reports
from orders.selectors import share as share_selectors
from orders.services.orders import order_place
from orders.views import share as share_views
from payments.services.payments import sandbox_pay
from tests.factories import ProductFactory, UserFactory, add_stock, verified_operator

D = Decimal
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


@pytest.fixture
def product(level):
    p = ProductFactory(price=D("120.00"), slug="steam-100", name="Steam 钱包 100")
    services.level_price_set(level=level, product=p, kind=PriceKind.FIXED, value="92.00")
    add_stock(p, 8)
    return p


@pytest.fixture
def other(level):
    p = ProductFactory(price=D("50.00"), slug="psn-50", name="PSN 50")
    services.level_price_set(level=level, product=p, kind=PriceKind.FIXED, value="40.00")
    add_stock(p, 4)
    return p


@pytest.fixture
def agent(level):
    a = services.agent_create(user=UserFactory(), level=level)
    verified_operator(a)
    return a


@pytest.fixture
def shop(agent, product, other):
    sf = storefronts.storefront_open(
        agent=agent,
        slug="lucky-star",
        name="幸运星卡铺",
        default_markup_kind=PriceKind.PERCENT,
        default_markup_value="7.5",
    )
    storefronts.retail_price_set(storefront=sf, product=product, price="105.50")
    return sf


def shop_price(shop, product):
    shop.refresh_from_db()
    return agent_selectors.storefront_prices(storefront=shop, products=[product])[product.pk][1]


def svg_matrix(data: bytes) -> tuple[list[list[bool]], ElementTree.Element]:
    """The QR code's modules read back from a poster's SVG path."""
    root = ElementTree.fromstring(data)
    ns = "{http://www.w3.org/2000/svg}"
    path = root.find(f"{ns}g/{ns}path")
    cells = {(int(x), int(y)) for x, y in re.findall(r"M(\d+),(\d+)h1v1h-1z", path.get("d"))}
    size = max(max(x for x, _ in cells), max(y for _, y in cells)) + 1 - posters.QR_BORDER
    return [[(x + posters.QR_BORDER, y + posters.QR_BORDER) in cells for x in range(size)] for y in range(size)], root


def png_matrix(data: bytes, url: str) -> list[list[bool]]:
    """The QR code's modules sampled from a poster's PNG at the centre of each module."""
    img = Image.open(io.BytesIO(data)).convert("L")
    assert img.size == (posters.WIDTH, posters.HEIGHT)
    n = len(posters.qr_matrix(url))
    left, top, side = posters.QR_BOX
    module = side / (n + 2 * posters.QR_BORDER)
    return [
        [
            img.getpixel(
                (
                    int(left + (x + posters.QR_BORDER + 0.5) * module),
                    int(top + (y + posters.QR_BORDER + 0.5) * module),
                )
            )
            < 128
            for x in range(n)
        ]
        for y in range(n)
    ]


# --- posters ----------------------------------------------------------------------------------


def test_product_poster_svg_shows_the_shop_price_and_a_qr_code_to_the_product(client, agent, shop, product):
    client.force_login(agent.user)
    response = client.get(reverse("agents:poster_product", args=[product.pk, "svg"]))
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert "private" in response["Cache-Control"] and "no-cache" in response["Cache-Control"]
    matrix, root = svg_matrix(response.content)
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "幸运星卡铺" in texts and "Steam 钱包 100" in texts
    assert shop_price(shop, product) == D("105.50")
    assert "¥105.50" in texts
    url = f"http://testserver/s/lucky-star/p/steam-100/?src=p{product.pk}"
    assert matrix == posters.qr_matrix(url)
    assert posters.qr_matrix(url) != posters.qr_matrix("http://testserver/s/lucky-star/p/steam-100/")


def test_poster_price_follows_the_storefront_price_not_a_stored_one(client, agent, shop, product, other):
    client.force_login(agent.user)
    storefronts.retail_price_set(storefront=shop, product=product, price="111.11")
    svg = client.get(reverse("agents:poster_product", args=[product.pk, "svg"])).content.decode()
    assert "¥111.11" in svg and "105.50" not in svg
    # No price of its own: the default markup (cost 92.00 + 7.5% = 98.90), as the shop page shows it.
    storefronts.retail_price_clear(storefront=shop, product=product)
    expected = shop_price(shop, product)
    svg = client.get(reverse("agents:poster_product", args=[product.pk, "svg"])).content.decode()
    assert f"¥{expected}" in svg
    page = client.get(f"/s/lucky-star/p/{product.slug}/").content.decode()
    assert str(expected) in page
    # The list shows the same prices as the shop.
    listing = client.get(reverse("agents:posters")).content.decode()
    assert f"¥{expected}" in listing and f"¥{shop_price(shop, other)}" in listing and "¥¥" not in listing


def test_product_poster_png_carries_the_right_qr_code(client, agent, shop, product):
    if posters.font_path() is None:
        pytest.skip("no CJK font on this machine (the PNG falls back to SVG, tested below)")
    client.force_login(agent.user)
    response = client.get(reverse("agents:poster_product", args=[product.pk, "png"]) + "?download=1")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == f'attachment; filename="poster-lucky-star-{product.pk}.png"'
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    url = f"http://testserver/s/lucky-star/p/steam-100/?src=p{product.pk}"
    assert png_matrix(response.content, url) == posters.qr_matrix(url)


def test_png_without_a_cjk_font_falls_back_to_svg(client, agent, shop, settings):
    settings.POSTER_FONTS = ["/nonexistent/font.ttc"]
    posters.font_path.cache_clear()
    try:
        client.force_login(agent.user)
        response = client.get(reverse("agents:poster_shop", args=["png"]) + "?download=1")
    finally:
        posters.font_path.cache_clear()
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert response["Content-Disposition"] == 'attachment; filename="poster-lucky-star-shop.svg"'
    matrix, _root = svg_matrix(response.content)
    assert matrix == posters.qr_matrix("http://testserver/s/lucky-star/?src=s")


def test_poster_text_is_escaped_and_long_names_are_cut(client, agent, shop, product):
    product.name = "<b>&" + "很长的名字" * 20
    product.save(update_fields=["name"])
    client.force_login(agent.user)
    data = client.get(reverse("agents:poster_product", args=[product.pk, "svg"])).content
    _matrix, root = svg_matrix(data)  # well-formed XML
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(t.startswith("<b>&") for t in texts) and any(t.endswith("…") for t in texts)


def test_posters_only_for_what_the_shop_sells_and_only_the_own_shop(client, agent, shop, product, other, level):
    client.force_login(agent.user)
    storefronts.product_unlist(storefront=shop, product=other)
    assert client.get(reverse("agents:poster_product", args=[other.pk, "svg"])).status_code == 404
    assert client.get(reverse("agents:poster_product", args=[999999, "png"])).status_code == 404
    assert client.get(reverse("agents:poster_product", args=[product.pk, "gif"])).status_code == 404
    listing = client.get(reverse("agents:posters")).content.decode()
    assert f'data-product="{product.pk}"' in listing and f'data-product="{other.pk}"' not in listing
    # Another agent without a shop: no posters (nothing of this shop).
    stranger = services.agent_create(user=UserFactory(), level=level)
    client.force_login(stranger.user)
    assert client.get(reverse("agents:poster_product", args=[product.pk, "svg"])).status_code == 404
    assert "Open your storefront first" in client.get(reverse("agents:posters")).content.decode()
    # A buyer: the "become an agent" page, no poster.
    client.force_login(UserFactory())
    response = client.get(reverse("agents:poster_shop", args=["svg"]))
    assert response.status_code == 200 and "svg" not in response["Content-Type"]


# --- attribution -----------------------------------------------------------------------------


def _buy(client, path, product, quantity=1, extra=None):
    page = client.get(path).content.decode()
    token = re.search(r'name="idempotency_key" value="(\w+)"', page).group(1)
    data = {"quantity": quantity, "idempotency_key": token, **(extra or {})}
    return client.post(f"/s/lucky-star/p/{product.slug}/buy/", data)


def test_a_visit_from_a_product_poster_then_a_purchase_records_the_source(client, shop, product, buyer):
    client.force_login(buyer)
    client.get(f"/s/lucky-star/p/{product.slug}/?src=p{product.pk}")
    response = _buy(client, f"/s/lucky-star/p/{product.slug}/", product)
    assert response.status_code == 302
    order = Order.objects.get(buyer=buyer)
    assert order.source == f"poster:{product.pk}" and order.unit_price == D("105.50")


def test_the_storefront_poster_counts_for_any_product_bought_after(client, shop, product, other):
    client.get("/s/lucky-star/?src=s")  # a guest
    guest = {"guest_email": "g@example.com", "guest_email_confirm": "g@example.com"}
    response = _buy(client, f"/s/lucky-star/p/{other.slug}/", other, extra=guest)
    assert response.status_code == 302, response.content.decode()[:500]
    assert Order.objects.get(guest_email="g@example.com").source == "poster:storefront"


def test_without_a_source_the_order_has_none(client, shop, product, buyer):
    client.force_login(buyer)
    _buy(client, f"/s/lucky-star/p/{product.slug}/", product)
    assert Order.objects.get(buyer=buyer).source == ""


@pytest.mark.parametrize(
    "src",
    ["p0", "x", "coupon:FREE", "poster:storefront", "p999999", "s ", "p1e3", "p" + "9" * 30, "<script>"],
)
def test_a_forged_or_unknown_src_is_ignored(client, shop, product, buyer, src):
    client.force_login(buyer)
    client.get(f"/s/lucky-star/p/{product.slug}/", {"src": src})
    _buy(client, f"/s/lucky-star/p/{product.slug}/", product, extra={"source": "poster:storefront"})
    order = Order.objects.get(buyer=buyer)
    assert order.source == ("poster:storefront" if src == "s " else "")


def test_another_products_poster_id_on_a_product_page_is_ignored(client, shop, product, other, buyer):
    client.force_login(buyer)
    client.get(f"/s/lucky-star/p/{product.slug}/?src=p{other.pk}")
    _buy(client, f"/s/lucky-star/p/{product.slug}/", product)
    assert Order.objects.get(buyer=buyer).source == ""


def test_a_session_value_not_signed_by_the_server_is_ignored(client, shop, product, buyer):
    client.force_login(buyer)
    session = client.session
    session[share_views.SESSION_KEY] = "poster:storefront"  # unsigned
    session.save()
    _buy(client, f"/s/lucky-star/p/{product.slug}/", product)
    assert Order.objects.get(buyer=buyer).source == ""
    session = client.session
    forged = signing.dumps({"sf": shop.pk, "src": "poster:storefront"}, salt="another.salt")
    session[share_views.SESSION_KEY] = forged
    session.save()
    _buy(client, f"/s/lucky-star/p/{product.slug}/", product)
    assert list(Order.objects.filter(buyer=buyer).values_list("source", flat=True)) == ["", ""]


def test_a_source_from_another_shop_does_not_count_here(client, shop, product, buyer, level):
    b = services.agent_create(user=UserFactory(), level=level)
    verified_operator(b)
    storefronts.storefront_open(agent=b, slug="second-shop", name="Second")
    client.force_login(buyer)
    client.get("/s/second-shop/?src=s")
    _buy(client, f"/s/lucky-star/p/{product.slug}/", product)
    assert Order.objects.get(buyer=buyer).source == ""


def test_order_place_refuses_a_malformed_source_and_keeps_a_good_one(shop, product, buyer):
    with pytest.raises(ValueError):
        order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k1", storefront=shop, source="x" * 41)
    with pytest.raises(ValueError):
        order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k1", storefront=shop, source="nocolon")
    order = order_place(
        buyer=buyer, product=product, quantity=1, idempotency_key="k2", storefront=shop, source="coupon:SPRING-24"
    )
    assert Order.objects.get(pk=order.pk).source == "coupon:SPRING-24"


# --- the promotion report --------------------------------------------------------------------


def _sold(shop, product, *, source="", quantity=1, key):
    order = order_place(
        buyer=UserFactory(), product=product, quantity=quantity, idempotency_key=key, storefront=shop, source=source
    )
    sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order


@pytest.fixture
def sales(settings, shop, product, other):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    return [
        _sold(shop, product, source=f"poster:{product.pk}", quantity=2, key="a"),
        _sold(shop, product, source=f"poster:{product.pk}", key="b"),
        _sold(shop, other, source="poster:storefront", key="c"),
        _sold(shop, other, source="coupon:SPRING", key="d"),
        _sold(shop, product, key="e"),
    ]


@pytest.mark.django_db(transaction=True)
def test_report_sums_match_the_orders(agent, product, sales):
    rows = reports.report_sources(agent=agent, period=reports.period_last(7))
    by = {r.source: r for r in rows}
    assert set(by) == {f"poster:{product.pk}", "poster:storefront", "coupon:SPRING", ""}
    for source, row in by.items():
        mine = [o for o in sales if o.source == source]
        assert row.orders == len(mine)
        assert row.codes == sum(o.quantity for o in mine)
        assert row.revenue == sum(o.total for o in mine)
        earned = sum(c.unit_amount * c.quantity for o in mine for c in o.commissions.filter(agent=agent))
        assert row.earnings == earned and earned > 0
    assert by[f"poster:{product.pk}"].label == "Product poster: Steam 钱包 100"
    assert by["coupon:SPRING"].label == "Coupon SPRING" and by["coupon:SPRING"].kind == "coupon"
    assert rows[-1].source == ""  # direct sales last
    total = reports.Row()
    for row in rows:
        total.add(row)
    assert total.revenue == sum(o.total for o in sales)


@pytest.mark.django_db(transaction=True)
def test_report_page_and_csv(client, agent, product, sales):
    client.force_login(agent.user)
    page = client.get(reverse("agents:reports_sources") + "?days=7").content.decode()
    assert "Product poster: Steam 钱包 100" in page and "Storefront poster" in page
    shared = sum(o.total for o in sales if o.source)
    assert f'data-testid="shared-revenue">¥{shared:,.2f}<' in page
    response = client.get(reverse("agents:reports_csv") + "?kind=sources&days=7")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Source", "Source code", "Orders"]
    found = {r[1]: r for r in rows[1:]}
    assert found[f"poster:{product.pk}"][2:5] == ["2", "3", str(sales[0].total + sales[1].total)]
    assert found["coupon:SPRING"][0] == "Coupon SPRING"


@pytest.mark.django_db(transaction=True)
def test_report_leaves_out_the_downline_and_other_periods(agent, level, product, sales):
    period = reports.period_parse({"start": "2020-01-01", "end": "2020-01-31"})[0]
    assert reports.report_sources(agent=agent, period=period) == []
    b = services.agent_create(user=UserFactory(), level=level, upline=agent)
    verified_operator(b)
    shop_b = storefronts.storefront_open(agent=b, slug="b-shop", name="B")
    _sold(shop_b, product, source="poster:storefront", key="z")
    rows = {r.source: r for r in reports.report_sources(agent=agent, period=reports.period_last(7))}
    assert rows["poster:storefront"].orders == 1  # B's poster sale is B's


def test_source_names_are_stable_for_unknown_products():
    names = share_selectors.source_names(["poster:424242", "poster:storefront", "", "campaign:x"])
    assert names["poster:424242"].label == "Product poster: product #424242"
    assert names["campaign:x"].label == "campaign:x" and names[""].kind == ""
