"""Agents' storefronts: agents.services.storefronts services, the dashboard pages and the public shop."""

import io
import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, PngImagePlugin

from agents import selectors
from agents.models import PriceKind, RetailPrice, Storefront
from agents.services import agents as services
from agents.services import storefronts
from agents.services.agents import AgentError
from compliance.models import AuditEvent
from orders.models import Order, OrderShare
from orders.services import orders as order_services
from tests.factories import ProductFactory, UserFactory, add_stock, verified_operator

D = Decimal
FIXED, PERCENT = PriceKind.FIXED, PriceKind.PERCENT
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


@pytest.fixture
def product(level):
    p = ProductFactory(price=D("120.00"), face_value=D("130.00"), slug="steam-100")
    services.level_price_set(level=level, product=p, kind=FIXED, value="92.00")
    add_stock(p, 5)
    return p


@pytest.fixture
def chain(level, product):
    """A (top) → B → C. A adds 10% for its downline, B a fixed 5.55: costs 92.00, 101.20, 106.75."""
    a = services.agent_create(user=UserFactory(), level=level)
    b = services.agent_create(user=UserFactory(), level=level, upline=a)
    c = services.agent_create(user=UserFactory(), level=level, upline=b)
    services.markup_set(agent=a, kind=PERCENT, value="10")
    services.markup_set(agent=b, kind=FIXED, value="5.55")
    for agent in (a, b, c):
        verified_operator(agent)
    return a, b, c


@pytest.fixture
def shop(chain):
    return storefronts.storefront_open(
        agent=chain[2], slug="lucky-star", name="Lucky Star", default_markup_kind=PERCENT, default_markup_value="7.5"
    )


def cost_of(agent, product):
    return selectors.agent_costs(agent=agent, products=[product])[product.pk]


def retail_of(shop, product):
    shop.refresh_from_db()
    prices = selectors.storefront_prices(storefront=shop, products=[product])
    return prices[product.pk][1] if product.pk in prices else None


def png_bytes(size=(600, 300), mode="RGBA", fmt="PNG", **save) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30, 255) if mode == "RGBA" else (200, 30, 30)).save(out, format=fmt, **save)
    return out.getvalue()


# --- slug and opening ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "slug",
    ["ab", "a" * 41, "Lucky", "my_shop", "-shop", "shop-", "my--shop", "shop 1", "商店店", "admin", "official", ""],
)
def test_bad_slugs_are_refused(chain, slug):
    with pytest.raises(AgentError) as exc:
        storefronts.storefront_open(agent=chain[2], slug=slug, name="Shop")
    assert exc.value.field == "slug" and exc.value.code == "agent_refused"
    assert not Storefront.objects.exists()


@pytest.mark.parametrize("slug", ["abc", "my-shop-1", "a" * 40, "007"])
def test_good_slugs_are_accepted(chain, slug):
    sf = storefronts.storefront_open(agent=chain[2], slug=slug, name="Shop")
    assert Storefront.objects.get().slug == slug == sf.slug


def test_slug_is_unique_and_one_storefront_per_agent(chain, shop):
    _a, b, c = chain
    with pytest.raises(AgentError, match="This address is taken"):
        storefronts.storefront_open(agent=b, slug="lucky-star", name="Copycat")
    with pytest.raises(AgentError, match="already have a storefront"):
        storefronts.storefront_open(agent=c, slug="second-shop", name="Second")
    assert Storefront.objects.count() == 1


def test_settings_are_validated(shop):
    kwargs = dict(storefront=shop, name="Lucky", default_markup_kind=FIXED, default_markup_value="2", is_open=True)
    with pytest.raises(AgentError, match="Cannot be negative"):
        storefronts.storefront_update(**{**kwargs, "default_markup_value": "-1"})
    with pytest.raises(AgentError, match="two decimal places"):
        storefronts.storefront_update(**{**kwargs, "default_markup_value": "1.005"})
    with pytest.raises(AgentError, match="required"):
        storefronts.storefront_update(**{**kwargs, "name": "  "})
    sf = storefronts.storefront_update(**kwargs, notice="Open 9-22", contact="QQ 1234")
    sf.refresh_from_db()
    assert (sf.name, sf.default_markup_kind, sf.default_markup_value, sf.notice) == (
        "Lucky",
        FIXED,
        D("2"),
        "Open 9-22",
    )


# --- retail prices ----------------------------------------------------------------------------


def test_costs_along_the_chain(chain, product):
    assert [cost_of(x, product) for x in chain] == [D("92.00"), D("101.20"), D("106.75")]


def test_default_markup_applied_and_rounded(shop, product):
    # 106.75 × 7.5% = 8.00625 → 8.01
    assert retail_of(shop, product) == D("114.76")
    storefronts.storefront_update(
        storefront=shop, name=shop.name, default_markup_kind=FIXED, default_markup_value="3.3", is_open=True
    )
    assert retail_of(shop, product) == D("110.05")


def test_retail_price_below_cost_refused(shop, product):
    with pytest.raises(AgentError, match=r"below your cost of ¥106\.75"):
        storefronts.retail_price_set(storefront=shop, product=product, price="106.74")
    assert not RetailPrice.objects.exists()
    for bad in ["abc", "0", "-5", "12.345", ""]:
        with pytest.raises(AgentError):
            storefronts.retail_price_set(storefront=shop, product=product, price=bad)
    rp = storefronts.retail_price_set(storefront=shop, product=product, price="106.75")
    assert rp.price == D("106.75")
    storefronts.retail_price_set(storefront=shop, product=product, price="119.9")
    assert RetailPrice.objects.get().price == D("119.90")
    assert retail_of(shop, product) == D("119.90")
    storefronts.retail_price_clear(storefront=shop, product=product)
    assert retail_of(shop, product) == D("114.76")


def test_price_set_before_the_cost_rose_is_lifted_to_the_cost(chain, shop, product):
    storefronts.retail_price_set(storefront=shop, product=product, price="110.00")
    services.markup_set(agent=chain[1], kind=FIXED, value="10")  # C's cost: 101.20 + 10 = 111.20
    assert retail_of(shop, product) == D("111.20")
    (row,) = storefronts.storefront_price_rows(storefront=shop, products=[product], stock={})
    assert row.lifted and row.margin == 0 and row.own_price == D("110.00")


def test_unlisted_products_are_not_shown_nor_buyable(client, shop, product, buyer):
    other = ProductFactory(name="Other card")
    add_stock(other, 1)
    storefronts.product_unlist(storefront=shop, product=product)
    assert retail_of(shop, product) is None
    page = client.get("/s/lucky-star/").content.decode()
    assert "Other card" in page and product.name not in page
    assert client.get(f"/s/lucky-star/p/{product.slug}/").status_code == 404
    client.force_login(buyer)
    response = client.post(f"/s/lucky-star/p/{product.slug}/buy/", {"quantity": 1, "idempotency_key": "k1"})
    assert response.status_code == 404
    assert not Order.objects.exists()
    with pytest.raises(AgentError, match="unlisted"):
        storefronts.retail_price_clear(storefront=shop, product=product)
    storefronts.product_relist(storefront=shop, product=product)
    assert client.get(f"/s/lucky-star/p/{product.slug}/").status_code == 200


# --- buying through the storefront ----------------------------------------------------------------


def _buy(client, slug, product, quantity=2):
    page = client.get(f"/s/{slug}/p/{product.slug}/").content.decode()
    token = re.search(r'name="idempotency_key" value="(\w+)"', page).group(1)
    return client.post(f"/s/{slug}/p/{product.slug}/buy/", {"quantity": quantity, "idempotency_key": token})


def test_buying_through_the_storefront_snapshots_the_chain(client, chain, shop, product, buyer):
    a, b, c = chain
    storefronts.retail_price_set(storefront=shop, product=product, price="115.00")
    client.force_login(buyer)
    response = _buy(client, "lucky-star", product, quantity=2)
    order = Order.objects.get(buyer=buyer)
    assert response.status_code == 302 and response["Location"] == f"/pay/{order.number}/"
    assert (order.channel, order.agent, order.unit_price, order.total) == (
        Order.Channel.STOREFRONT,
        c,
        D("115.00"),
        D("230.00"),
    )
    shares = {s.agent_id: (s.depth, s.unit_cost, s.unit_earning) for s in OrderShare.objects.filter(order=order)}
    assert shares == {
        a.pk: (1, D("92.00"), D("9.20")),
        b.pk: (2, D("101.20"), D("5.55")),
        c.pk: (3, D("106.75"), D("8.25")),
    }
    # Later changes of markups and prices leave the placed order alone.
    services.markup_set(agent=a, kind=PERCENT, value="50")
    storefronts.retail_price_set(storefront=shop, product=product, price="200")
    order.refresh_from_db()
    assert order.unit_price == D("115.00") and order.total == D("230.00")
    assert {s.agent_id: (s.depth, s.unit_cost, s.unit_earning) for s in order.shares.all()} == shares
    # It is an ordinary order of the buyer.
    assert client.get("/orders/").content.decode().count(order.number) >= 1
    # Another visit to the page is another order.
    assert _buy(client, "lucky-star", product).status_code == 302
    assert Order.objects.filter(buyer=buyer).count() == 2  # a fresh page, a fresh token


def test_double_post_of_one_form_is_one_order(client, shop, product, buyer):
    client.force_login(buyer)
    data = {"quantity": 1, "idempotency_key": "same-token"}
    first = client.post(f"/s/lucky-star/p/{product.slug}/buy/", data)
    second = client.post(f"/s/lucky-star/p/{product.slug}/buy/", data)
    assert first["Location"] == second["Location"]
    assert Order.objects.count() == 1


def test_buy_errors_are_shown(client, shop, product, buyer):
    client.force_login(buyer)
    response = client.post(f"/s/lucky-star/p/{product.slug}/buy/", {"quantity": 99, "idempotency_key": "k"})
    assert response.status_code == 400
    assert "Buy at most 10" in response.content.decode()
    assert not Order.objects.exists()


def test_refusals_from_below_reach_the_buyer_as_they_are(client, shop, product, buyer):
    """Stock and the shop's listing refuse with their own errors (not re-labelled by orders):
    the storefront shows their message on the product page."""
    client.force_login(buyer)
    response = client.post(f"/s/lucky-star/p/{product.slug}/buy/", {"quantity": 6, "idempotency_key": "k6"})
    assert response.status_code == 400
    assert "Only 5 left in stock, you asked for 6." in response.content.decode()
    storefronts.product_unlist(storefront=shop, product=product)
    with pytest.raises(selectors.NotForSale) as refused:
        order_services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k7", storefront=shop)
    assert (refused.value.code, str(refused.value)) == ("not_for_sale", "This shop does not sell this product.")
    assert not Order.objects.exists()


def test_anonymous_buy_without_guest_email_is_refused_and_places_nothing(client, shop, product):
    # Issue 12: a visitor buys as a guest; without the guest email nothing is placed.
    response = client.post(f"/s/lucky-star/p/{product.slug}/buy/", {"quantity": 2, "idempotency_key": "k"})
    assert response.status_code == 400
    assert 'data-testid="guest-email"' in response.content.decode()
    assert not Order.objects.exists()


def test_public_pages_show_prices_stock_and_protections(client, shop, product):
    shop = storefronts.storefront_update(
        storefront=shop,
        name="Lucky Star",
        notice="New stock every morning",
        contact="QQ 55555",
        default_markup_kind=PERCENT,
        default_markup_value="7.5",
        is_open=True,
    )
    home = client.get("/s/lucky-star/").content.decode()
    assert "Lucky Star" in home and "New stock every morning" in home and "QQ 55555" in home
    assert "114.76" in home and "5 in stock" in home
    assert "Sold by Lucky Star on" in home and "official channels" in home
    assert "120.00" not in home  # the platform's public price is not the shop's
    page = client.get(f"/s/lucky-star/p/{product.slug}/").content.decode()
    assert "114.76" in page and "5 codes in stock" in page
    assert product.supplier.authorisation_cert_no in page and "Verify this authorisation" in page
    assert "7-day no-reason refund" in page  # the product's refund policy (platform default)
    assert "Sold by Lucky Star on" in page
    assert client.get("/s/lucky-star/?q=nothing-like-this").content.decode().count('data-testid="product-card"') == 0


def test_closed_or_unknown_storefront_is_404(client, shop, product, buyer):
    storefronts.storefront_close(storefront=shop)
    for url in ["/s/lucky-star/", f"/s/lucky-star/p/{product.slug}/", "/s/no-such-shop/"]:
        response = client.get(url)
        assert response.status_code == 404
        assert "This shop is closed" in response.content.decode()
    client.force_login(buyer)
    response = client.post(f"/s/lucky-star/p/{product.slug}/buy/", {"quantity": 1, "idempotency_key": "k"})
    assert response.status_code == 404
    assert not Order.objects.exists()


# --- logo ---------------------------------------------------------------------------------------


def test_valid_png_is_accepted_and_reencoded(shop):
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret location")
    upload = SimpleUploadedFile("logo.png", png_bytes(pnginfo=info), content_type="image/png")
    storefronts.storefront_logo_set(storefront=shop, uploaded_file=upload)
    shop.refresh_from_db()
    data = bytes(shop.logo)
    assert data.startswith(b"\x89PNG") and shop.logo_updated_at is not None
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.size == (256, 128)
        assert "Comment" not in img.info
    assert b"secret location" not in data


def test_jpeg_exif_is_stripped(shop):
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    upload = SimpleUploadedFile("logo.jpg", png_bytes((100, 80), "RGB", "JPEG", exif=exif), content_type="image/jpeg")
    storefronts.storefront_logo_set(storefront=shop, uploaded_file=upload)
    shop.refresh_from_db()
    data = bytes(shop.logo)
    assert b"CameraMaker" not in data
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.size == (100, 80) and not img.getexif()


def test_text_file_renamed_png_is_refused(shop):
    upload = SimpleUploadedFile("logo.png", b"<?php echo 'hi'; ?>\n" * 20, content_type="image/png")
    with pytest.raises(AgentError, match="not an image"):
        storefronts.storefront_logo_set(storefront=shop, uploaded_file=upload)
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, format="GIF")
    with pytest.raises(AgentError, match="PNG, JPEG or WebP"):
        storefronts.storefront_logo_set(storefront=shop, uploaded_file=SimpleUploadedFile("a.png", gif.getvalue()))
    shop.refresh_from_db()
    assert shop.logo is None


def test_oversized_logo_is_refused(shop):
    big = png_bytes((10, 10)) + b"\0" * (1024 * 1024)
    with pytest.raises(AgentError, match="at most 1 MB"):
        storefronts.storefront_logo_set(storefront=shop, uploaded_file=SimpleUploadedFile("big.png", big))
    shop.refresh_from_db()
    assert shop.logo is None


def test_logo_view_serves_png_with_cache_headers(client, shop):
    assert client.get("/s/lucky-star/logo.png").status_code == 404  # none yet
    storefronts.storefront_logo_set(storefront=shop, uploaded_file=SimpleUploadedFile("l.png", png_bytes()))
    response = client.get("/s/lucky-star/logo.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")
    assert "public" in response["Cache-Control"] and "max-age" in response["Cache-Control"]
    etag, modified = response["ETag"], response["Last-Modified"]
    assert client.get("/s/lucky-star/logo.png", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert client.get("/s/lucky-star/logo.png", HTTP_IF_MODIFIED_SINCE=modified).status_code == 304
    storefronts.storefront_logo_set(storefront=shop, uploaded_file=SimpleUploadedFile("l.png", png_bytes((50, 50))))
    changed = client.get("/s/lucky-star/logo.png", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag


def test_logo_upload_through_the_dashboard(client, chain, shop):
    client.force_login(chain[2].user)
    upload = SimpleUploadedFile("l.png", png_bytes(), content_type="image/png")
    response = client.post("/agent/storefront/logo/", {"storefront": shop.pk, "logo": upload})
    assert response.status_code == 302
    shop.refresh_from_db()
    assert shop.logo_updated_at is not None
    bad = SimpleUploadedFile("l.png", b"not an image at all", content_type="image/png")
    response = client.post("/agent/storefront/logo/", {"storefront": shop.pk, "logo": bad}, follow=True)
    assert "not an image" in response.content.decode()


# --- the dashboard ----------------------------------------------------------------------------------


def test_agent_opens_its_storefront_from_the_dashboard(client, chain):
    client.force_login(chain[2].user)
    page = client.get("/agent/storefront/")
    assert page.status_code == 200 and "Open your storefront" in page.content.decode()
    bad = client.post("/agent/storefront/", {"name": "Shop", "slug": "Bad Slug", "default_markup_kind": PERCENT})
    assert bad.status_code == 400 and "lowercase letters" in bad.content.decode()
    ok = client.post(
        "/agent/storefront/",
        {"name": "My shop", "slug": "my-shop", "default_markup_kind": FIXED, "default_markup_value": "2.50"},
    )
    assert ok.status_code == 302
    sf = Storefront.objects.get(agent=chain[2])
    assert (sf.slug, sf.default_markup_kind, sf.default_markup_value) == ("my-shop", FIXED, D("2.50"))
    page = client.get("/agent/storefront/").content.decode()
    assert "/s/my-shop/" in page and "Shop settings" in page


def test_dashboard_price_table_and_inline_forms(client, chain, shop, product):
    client.force_login(chain[2].user)
    page = client.get("/agent/storefront/prices/").content.decode()
    assert "106.75" in page and "114.76" in page and "8.01" in page  # cost, retail, margin
    url = f"/agent/storefront/prices/{product.pk}/"
    row = client.post(url, {"storefront": shop.pk, "action": "set", "price": "118"}, HTTP_HX_REQUEST="true")
    assert row.status_code == 200 and "118.00" in row.content.decode() and "11.25" in row.content.decode()
    refused = client.post(url, {"storefront": shop.pk, "action": "set", "price": "100"}, HTTP_HX_REQUEST="true")
    assert "below your cost" in refused.content.decode()
    assert RetailPrice.objects.get().price == D("118.00")
    response = client.post(url, {"storefront": shop.pk, "action": "unlist", "next": "/agent/storefront/prices/?q=x"})
    assert response["Location"] == "/agent/storefront/prices/?q=x"
    assert not RetailPrice.objects.get().is_listed
    response = client.post(url, {"storefront": shop.pk, "action": "relist", "next": "https://evil.example/"})
    assert response["Location"] == "/agent/storefront/prices/"
    client.post(url, {"storefront": shop.pk, "action": "clear"})
    assert not RetailPrice.objects.exists()


def test_settings_form_saves(client, chain, shop):
    client.force_login(chain[2].user)
    response = client.post(
        "/agent/storefront/",
        {
            "storefront": shop.pk,
            "name": "Lucky Star 2",
            "notice": "Hi",
            "contact": "QQ",
            "default_markup_kind": FIXED,
            "default_markup_value": "1.5",
        },
    )
    assert response.status_code == 302
    shop.refresh_from_db()
    assert (shop.name, shop.is_open, shop.default_markup_value) == ("Lucky Star 2", False, D("1.5"))


def test_agent_cannot_edit_another_agents_storefront(client, level, chain, shop, product):
    storefronts.retail_price_set(storefront=shop, product=product, price="115")
    intruder = services.agent_create(user=UserFactory(), level=level)
    verified_operator(intruder)
    own = storefronts.storefront_open(agent=intruder, slug="intruder", name="Intruder")
    client.force_login(intruder.user)
    before = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.DENIED).count()
    url = f"/agent/storefront/prices/{product.pk}/"
    for data in (
        {"storefront": shop.pk, "action": "set", "price": "200"},
        {"storefront": shop.pk, "action": "unlist"},
        {"storefront": shop.pk, "action": "clear"},
    ):
        assert client.post(url, data).status_code == 404
    settings_post = {"storefront": shop.pk, "name": "Hacked", "default_markup_kind": FIXED, "default_markup_value": 0}
    assert client.post("/agent/storefront/", settings_post).status_code == 404
    assert client.post("/agent/storefront/logo/", {"storefront": shop.pk, "action": "remove"}).status_code == 404
    denied = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.DENIED)
    assert denied.count() == before + 5
    assert denied.filter(actor=intruder.user, target=f"storefront:{shop.pk}").count() == 5
    rp = RetailPrice.objects.get(storefront=shop)
    assert (rp.price, rp.is_listed) == (D("115.00"), True)
    shop.refresh_from_db()
    assert shop.name == "Lucky Star"
    assert not RetailPrice.objects.filter(storefront=own).exists()
    # Its own pages never show the other shop.
    page = client.get("/agent/storefront/").content.decode()
    assert "lucky-star" not in page and "Lucky Star" not in page


def test_non_agent_gets_404_on_the_dashboard(client, buyer):
    client.force_login(buyer)
    for method, url in [
        ("get", "/agent/storefront/"),
        ("get", "/agent/storefront/prices/"),
        ("post", "/agent/storefront/"),
        ("post", "/agent/storefront/prices/1/"),
    ]:
        assert getattr(client, method)(url).status_code == 404
    assert AuditEvent.objects.filter(actor=buyer, outcome=AuditEvent.Outcome.DENIED).count() == 4


def test_anonymous_dashboard_redirects_to_login(client):
    response = client.get("/agent/storefront/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the platform site shows and charges an agent its own price ---------------------------------------


def test_agent_on_the_platform_site_sees_and_pays_its_cost(client, chain, product, buyer):
    c = chain[2]
    client.force_login(c.user)
    assert "Your agent price" in client.get(f"/p/{product.slug}/").content.decode()
    assert "106.75" in client.get("/").content.decode()
    page = client.get(f"/orders/checkout/{product.slug}/?quantity=2").content.decode()
    assert "Your agent price" in page and "¥213.50" in page
    token = re.search(r'name="idempotency_key" value="(\w+)"', page).group(1)
    client.post(f"/orders/checkout/{product.slug}/", {"quantity": 2, "idempotency_key": token})
    order = Order.objects.get(buyer=c.user)
    assert (order.channel, order.agent, order.unit_price, order.total) == (
        Order.Channel.WEB,
        c,
        D("106.75"),
        D("213.50"),
    )
    # A plain buyer sees and pays the public price.
    client.force_login(buyer)
    assert "Your agent price" not in client.get(f"/p/{product.slug}/").content.decode()
    assert "¥240.00" in client.get(f"/orders/checkout/{product.slug}/?quantity=2").content.decode()


def test_admin_can_close_a_storefront(client, staff, shop):
    client.force_login(staff)
    assert client.get("/admin/agents/storefront/").status_code == 200
    assert client.get(f"/admin/agents/storefront/{shop.pk}/change/").status_code == 200
    response = client.post("/admin/agents/storefront/", {"action": "close_storefronts", "_selected_action": [shop.pk]})
    assert response.status_code == 302
    shop.refresh_from_db()
    assert not shop.is_open
