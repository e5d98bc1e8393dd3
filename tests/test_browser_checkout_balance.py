"""In real Chromium: the checkout's balance option follows the quantity (site.js): offered while
the balance covers the estimated total, disabled with the reason and a recharge link past it."""

from decimal import Decimal

import pytest

from tests.api_helpers import top_up
from tests.browser_helpers import new_page, shot
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_balance_option_follows_the_quantity(browser, live_server, settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    user = UserFactory(email="balance@example.com")  # password: correct-horse-battery
    top_up(user, Decimal("60.00"))
    product = ProductFactory(name="腾讯视频 VIP 月卡", price=Decimal("25.00"))
    add_stock(product, 5)
    page = new_page(browser, live_server.url)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", "correct-horse-battery")
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(live_server.url + "/")

    page.goto(f"/orders/checkout/{product.slug}/?channel=balance")
    radio = page.locator('[data-testid="channel-balance"] input')
    reason = page.locator('[data-testid="channel-balance-short"]')
    recharge = page.locator('[data-testid="channel-balance-recharge"]')
    assert radio.is_enabled() and radio.is_checked() and not reason.is_visible() and not recharge.is_visible()

    page.fill("#quantity", "3")  # 75.00 > 60.00
    page.locator("#quantity").dispatch_event("change")
    assert radio.is_disabled() and not radio.is_checked()
    assert page.locator('[data-testid="channel-sandbox"] input').is_checked()  # another way to pay chosen
    assert reason.is_visible() and recharge.is_visible()
    shot(page, "checkout-balance-short-390")

    page.fill("#quantity", "2")  # 50.00: covered again
    page.locator("#quantity").dispatch_event("change")
    assert radio.is_enabled() and not reason.is_visible() and not recharge.is_visible()
