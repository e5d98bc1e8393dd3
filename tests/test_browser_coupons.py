"""In real Chromium, at 390 px and 1366 px: an agent creates a coupon for its storefront in the
agent centre; a guest types it at the storefront (使用优惠券), sees subtotal, discount and total,
and pays the discounted total in the sandbox; the agent's promotion report (推广效果) shows the
coupon's sale (issue 15). Screenshots coupons-*.png."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agents.models import PriceKind
from agents.services import agents as services
from agents.services import storefronts
from marketing.models import Coupon
from orders.models import Order
from tests.browser_helpers import PHONE, log_in, new_page, shot, wait_for_status
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


@pytest.fixture
def world(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    level = AgentLevelFactory(name="金牌", rank=1)
    games = CategoryFactory(name="游戏点卡", slug="games")
    product = ProductFactory(name="网易一卡通 50元", slug="netease-50", category=games, price=Decimal("50.00"))
    services.level_price_set(level=level, product=product, kind=PriceKind.FIXED, value="40.00")
    add_stock(product, 6, numbered=True)
    agent = services.agent_create(user=UserFactory(), level=level)
    verified_operator(agent)
    shop = storefronts.storefront_open(
        agent=agent,
        slug="xingyun",
        name="幸运星数字卡铺",
        default_markup_kind=PriceKind.FIXED,
        default_markup_value="8",
    )  # retail 48.00, the agent's cost 40.00
    return agent, shop, product


def test_a_guest_pays_the_discounted_total_with_an_agents_coupon(browser, live_server, world):
    agent, _shop, _product = world
    # The agent creates the coupon in the agent centre: ¥5 off, from ¥40.
    page = log_in(browser, live_server, agent.user, viewport=WIDE)
    page.goto("/agent/storefront/")
    page.locator("[data-testid=tab-coupons]").click()
    page.wait_for_url("**/agent/storefront/coupons/")
    page.fill("#c-name", "春季促销")
    page.fill("#c-amount", "5")
    page.fill("#c-min", "40")
    page.fill("#c-ends", (timezone.localdate() + timedelta(days=14)).isoformat())
    page.fill("#c-code", "spring5")
    page.fill("#c-gen", "20")
    page.locator("[data-testid=coupon-create]").click()
    page.wait_for_url(re.compile(r"/agent/storefront/coupons/\d+/$"))
    assert page.locator("[data-testid=public-code]").inner_text() == "SPRING5"
    assert not page.js_errors
    shot(page, "coupons-01-agent-coupon-1366")
    coupon = Coupon.objects.get()
    assert coupon.agent == agent and coupon.codes.count() == 21

    paid = []
    for name, viewport in (("390", PHONE), ("1366", WIDE)):
        email = f"coupon.buyer.{name}@example.net"
        guest = new_page(browser, live_server.url, viewport=viewport)
        guest.goto("/s/xingyun/p/netease-50/")
        guest.fill('[data-testid="coupon-code"]', "spring5")
        guest.locator('[data-testid="coupon-apply"]').click()
        guest.wait_for_selector('[data-testid="coupon-totals"]')
        assert guest.locator('[data-testid="coupon-subtotal"]').inner_text() == "¥48.00"
        assert guest.locator('[data-testid="coupon-discount"]').inner_text() == "−¥5.00"
        assert guest.locator('[data-testid="estimated-total"]').inner_text() == "¥43.00"
        assert not guest.js_errors
        shot(guest, f"coupons-02-applied-{name}")
        guest.fill('[data-testid="guest-email"]', email)
        guest.fill('[data-testid="guest-email-confirm"]', email)
        guest.locator('[data-testid="channel-sandbox"] input').check()
        guest.locator('[data-testid="buy-now"]').click()
        guest.wait_for_url(re.compile(r"/pay/sandbox/"))
        assert guest.locator('[data-testid="sandbox-amount"]').inner_text() == "¥43.00"
        guest.locator('[data-testid="sandbox-confirm"]').click()
        guest.wait_for_url(re.compile(r"/orders/guest/"))
        wait_for_status(guest, "delivered")
        shot(guest, f"coupons-03-order-{name}")
        order = Order.objects.get(guest_email=email)
        assert (order.discount, order.total, order.source) == (Decimal("5.00"), Decimal("43.00"), "coupon:SPRING5")
        paid.append(order)

    for name, viewport in (("390", PHONE), ("1366", WIDE)):
        page = log_in(browser, live_server, agent.user, viewport=viewport)
        page.goto("/agent/reports/")
        page.locator("[data-testid=link-sources]").click()
        page.wait_for_url("**/agent/reports/sources/**")
        row = page.locator("[data-testid=source-row][data-source='coupon:SPRING5']")
        assert "SPRING5" in row.inner_text() and "¥86.00" in row.inner_text()
        assert not page.js_errors
        shot(page, f"coupons-04-report-{name}")
        page.goto(f"/agent/storefront/coupons/{coupon.pk}/")
        assert page.locator("[data-testid=fig-sales]").inner_text() == "2"
        assert page.locator("[data-testid=fig-cost]").inner_text() == "¥10.00"
        shot(page, f"coupons-05-figures-{name}")
