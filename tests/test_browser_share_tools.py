"""In real Chromium, at 390 px and 1366 px: the agent's share posters (推广海报) page with its
server-drawn posters, a PNG downloaded; a guest who opens the poster's link buys and pays in the
sandbox, and the agent's promotion report (推广效果) shows that sale under the poster (issue 15).
Screenshots share-*.png."""

import re
from decimal import Decimal

import pytest
from PIL import Image

from agents.models import PriceKind
from agents.services import agents as services
from agents.services import storefronts
from marketplace import posters
from orders.models import Order
from tests.browser_helpers import PHONE, SCREENSHOTS, log_in, new_page, shot, wait_for_status
from tests.factories import (
    AgentLevelFactory,
    CategoryFactory,
    ProductFactory,
    UserFactory,
    add_stock,
    verified_operator,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 900}
EMAIL = "poster.buyer@example.net"


@pytest.fixture
def world(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    level = AgentLevelFactory(name="金牌", rank=1)
    games = CategoryFactory(name="游戏点卡", slug="games")
    products = [
        ProductFactory(name="王者荣耀 100点券", slug="wzry-100", category=games, price=Decimal("10.00")),
        ProductFactory(name="Steam 钱包充值卡 ¥100（国区）", slug="steam-100", category=games, price=Decimal("98.00")),
        ProductFactory(name="网易一卡通 50元", slug="netease-50", category=games, price=Decimal("50.00")),
    ]
    for p in products:
        services.level_price_set(level=level, product=p, kind=PriceKind.PERCENT, value="90")
        add_stock(p, 5, numbered=True)
    agent = services.agent_create(user=UserFactory(), level=level)
    verified_operator(agent)
    shop = storefronts.storefront_open(
        agent=agent,
        slug="xingyun",
        name="幸运星数字卡铺",
        default_markup_kind=PriceKind.PERCENT,
        default_markup_value="8",
        notice="官方渠道 · 秒发货",
    )
    storefronts.retail_price_set(storefront=shop, product=products[0], price="9.90")
    return agent, shop, products


def test_posters_page_a_poster_sale_and_the_promotion_report(browser, live_server, world, tmp_path):
    agent, _shop, products = world
    wzry = products[0]
    for name, viewport in (("390", PHONE), ("1366", WIDE)):
        page = log_in(browser, live_server, agent.user, viewport=viewport)
        page.goto("/agent/storefront/")
        page.locator("[data-testid=tab-posters]").click()
        page.wait_for_url("**/agent/storefront/posters/")
        assert "推广海报" in page.locator("h1").inner_text()
        rows = page.locator("[data-testid=poster-row]")
        assert rows.count() == 3
        row = page.locator(f"[data-testid=poster-row][data-product='{wzry.pk}']")
        assert row.locator("[data-testid=poster-price]").inner_text() == "¥9.90"
        # Every poster image has been drawn by the server and loaded.
        page.wait_for_function(
            "() => [...document.querySelectorAll('img.poster-thumb')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert not page.js_errors
        shot(page, f"share-01-posters-{name}")
    # The PNG, downloaded as the agent saves it.
    with page.expect_download() as download:
        row.locator("[data-testid=poster-png]").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    url = f"{live_server.url}/s/xingyun/p/wzry-100/?src=p{wzry.pk}"
    if posters.font_path() is not None:
        assert saved.suffix == ".png"
        image = Image.open(saved)
        assert image.size == (posters.WIDTH, posters.HEIGHT)
        image.save(SCREENSHOTS / "share-02-poster-product.png")
    # The poster itself, as a browser shows the SVG.
    page.goto(f"/agent/storefront/posters/p/{wzry.pk}.svg")
    page.screenshot(path=str(SCREENSHOTS / "share-02-poster-product-svg.png"))

    # A guest scans the code: the link carries the poster; they buy and pay.
    guest = new_page(browser, live_server.url)
    guest.goto(url.replace(live_server.url, ""))
    guest.fill('[data-testid="guest-email"]', EMAIL)
    guest.fill('[data-testid="guest-email-confirm"]', EMAIL)
    guest.locator('[data-testid="channel-sandbox"] input').check()
    guest.locator('[data-testid="buy-now"]').click()
    guest.wait_for_url(re.compile(r"/pay/sandbox/"))
    guest.locator('[data-testid="sandbox-confirm"]').click()
    guest.wait_for_url(re.compile(r"/orders/guest/"))
    wait_for_status(guest, "delivered")
    order = Order.objects.get(guest_email=EMAIL)
    assert order.source == f"poster:{wzry.pk}" and order.total == Decimal("9.90")

    for name, viewport in (("390", PHONE), ("1366", WIDE)):
        page = log_in(browser, live_server, agent.user, viewport=viewport)
        page.goto("/agent/reports/")
        page.locator("[data-testid=link-sources]").click()
        page.wait_for_url("**/agent/reports/sources/**")
        row = page.locator(f"[data-testid=source-row][data-source='poster:{wzry.pk}']")
        assert "王者荣耀 100点券" in row.inner_text() and "¥9.90" in row.inner_text()
        assert page.locator("[data-testid=shared-revenue]").inner_text() == "¥9.90"
        assert not page.js_errors
        shot(page, f"share-03-report-{name}")
