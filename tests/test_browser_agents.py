"""In real Chromium: a top agent sets what its downline pays, the downline agent prices a product
in its storefront, a buyer on a phone buys there and pays, and both agents' dashboards show the
sale and what each level earned. Screenshots go with the others (agents-*.png)."""

import re
from decimal import Decimal

import pytest

from agents.models import AgentLevel, Commission, PriceKind
from agents.services import agents as services
from orders.models import Order
from tests.browser_helpers import DESKTOP, log_in, shot, wait_for_status
from tests.factories import CategoryFactory, ProductFactory, UserFactory, add_stock, storefront_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
D = Decimal


def test_markup_storefront_price_sale_and_each_levels_earnings(browser, live_server):
    level = AgentLevel.objects.create(name="金牌", rank=4)
    product = ProductFactory(
        name="网易一卡通 100 点", slug="netease-100", category=CategoryFactory(name="游戏点卡"), price=D("100.00")
    )
    add_stock(product, 3)  # cost price 90.00 a code
    services.level_price_set(level=level, product=product, kind=PriceKind.FIXED, value="92.00")
    top = services.agent_create(user=UserFactory(email="top@example.com"), level=level)
    seller = services.agent_create(user=UserFactory(email="seller@example.com"), level=level, upline=top)
    storefront_create(agent=seller, slug="lucky-star", name="幸运星数码卡铺", notice="自动发货，售后无忧。")
    buyer = UserFactory(email="shopper@example.com")

    # The top agent: every downline agent pays 3.00 over its cost.
    top_page = log_in(browser, live_server, top.user, viewport=DESKTOP)
    top_page.goto("/agent/pricing/")
    top_page.select_option("#m-scope", "all")
    top_page.select_option("#m-kind", PriceKind.FIXED)
    top_page.fill('[data-testid="markup-value"]', "3.00")
    top_page.locator('[data-testid="markup-save"]').click()
    top_page.locator('[data-testid="markup-row"]').first.wait_for()
    row = top_page.locator('[data-testid="price-table"] tr', has_text=product.name)
    assert row.locator('[data-testid="cost"]').inner_text() == "¥92.00"
    assert row.locator('[data-testid="pays"]').first.inner_text() == "¥95.00"
    shot(top_page, "agents-01-top-sets-downline-markup")

    # The downline agent: its cost is 95.00; it sells at 108.80 in its storefront.
    seller_page = log_in(browser, live_server, seller.user, viewport=DESKTOP)
    seller_page.goto("/agent/storefront/prices/")
    price_row = seller_page.locator(f'[data-testid="price-row"][data-product="{product.slug}"]')
    assert price_row.locator('[data-testid="cost"]').inner_text() == "¥95.00"
    price_row.locator('input[name="price"]').fill("108.80")
    price_row.locator('button[value="set"]').click()  # htmx swaps the row in place
    price_row.locator('[data-testid="retail"]', has_text="¥108.80").wait_for()
    assert price_row.locator('[data-testid="margin"]').inner_text() == "¥13.80"
    shot(seller_page, "agents-02-seller-sets-retail-price")

    # A buyer on a phone buys two codes in the storefront and pays in the sandbox cashier.
    page = log_in(browser, live_server, buyer)
    page.goto("/s/lucky-star/")
    assert "幸运星数码卡铺" in page.locator("body").inner_text()
    shot(page, "agents-03-storefront-home")
    page.goto(f"/s/lucky-star/p/{product.slug}/")
    assert page.locator('[data-testid="price"]').inner_text().replace(" ", "") == "¥108.80"
    assert page.locator('[data-testid="qualifications"]').is_visible()  # every platform protection shown
    page.fill("#quantity", "2")
    shot(page, "agents-04-storefront-product")
    page.locator('[data-testid="channel-sandbox"] input').check()
    page.locator('[data-testid="buy-now"]').click()
    page.wait_for_url(re.compile(r"/pay/sandbox/"))
    assert page.locator('[data-testid="sandbox-amount"]').inner_text().strip() == "¥217.60"
    page.locator('[data-testid="sandbox-confirm"]').click()
    page.wait_for_url(re.compile(r"/orders/[^/]+/$"))
    wait_for_status(page, "delivered")
    order = Order.objects.get(buyer=buyer)
    assert (order.channel, order.agent_id, order.total) == (Order.Channel.STOREFRONT, seller.pk, D("217.60"))
    earned = {c.agent_id: c.amount for c in Commission.objects.filter(order=order)}
    assert earned == {seller.pk: D("27.60"), top.pk: D("6.00")}  # (108.80 − 95) × 2, 3.00 × 2

    # Each level's dashboard shows the sale and its own earnings (pending: the refund window is open).
    seller_page.goto("/agent/")
    assert seller_page.locator('[data-testid="today-orders"]').inner_text() == "1"
    assert seller_page.locator('[data-testid="today-earnings"]').inner_text() == "¥27.60"
    assert seller_page.locator('[data-testid="bal-pending"]').inner_text() == "¥27.60"
    shot(seller_page, "agents-05-seller-dashboard")
    top_page.goto("/agent/")
    assert top_page.locator('[data-testid="today-earnings"]').inner_text() == "¥6.00"
    assert top_page.locator('[data-testid="bal-pending"]').inner_text() == "¥6.00"
    top_page.goto("/agent/reports/")
    assert top_page.locator('[data-testid="total-orders"]').inner_text() == "1"  # the downline's sale
    assert top_page.locator('[data-testid="total-revenue"]').inner_text() == "¥217.60"
    assert top_page.locator('[data-testid="total-earnings"]').inner_text() == "¥6.00"
    row = top_page.locator('[data-testid="downline-report-row"]', has_text="seller")
    assert "¥217.60" in row.inner_text()
    shot(top_page, "agents-06-top-reports")
    for p in (top_page, seller_page, page):
        assert not p.js_errors, p.js_errors
        p.context.close()
