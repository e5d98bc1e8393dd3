"""In real Chromium at 390 px: a member opens a game top-up's checkout, is sent to verify their
real name, mistypes the number (the local check says which part is wrong), verifies, comes back
to the checkout with the masked verification shown and places the order; the verify page then
shows the number masked. Screenshots realname-*.png."""

from datetime import date
from decimal import Decimal

import pytest

from compliance.identity import id_check_char
from orders.models import Order
from tests.browser_helpers import log_in, shot
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_verify_page_from_a_game_top_up_checkout(browser, live_server):
    first17 = f"110101{date(1992, 3, 8):%Y%m%d}457"
    number = first17 + id_check_char(first17)
    product = ProductFactory(
        name="王者荣耀 点券 60 元", slug="kings-60", price=Decimal("58.80"), is_game_topup=True, max_per_order=5
    )
    add_stock(product, 3)
    user = UserFactory()
    page = log_in(browser, live_server, user)
    page.goto(f"/orders/checkout/{product.slug}/")
    assert "游戏充值需要实名认证" in page.locator("[data-testid=realname-needed]").inner_text()
    page.locator("[data-testid=realname-verify-link]").click()
    page.wait_for_url("**/accounts/realname/?next=*")
    shot(page, "realname-01-form")

    page.fill("#real_name", "张三")
    page.fill("#id_number", number[:17] + ("1" if number[17] != "1" else "2"))
    page.locator("[data-testid=realname-submit]").click()
    error = page.locator("[data-testid=realname-error]")
    assert "末位校验码与前面各位不符" in error.inner_text()
    shot(page, "realname-02-local-check-error")

    page.fill("#id_number", number.lower())
    page.locator("[data-testid=realname-submit]").click()
    page.wait_for_url(f"**/orders/checkout/{product.slug}/")
    ok = page.locator("[data-testid=realname-ok]").inner_text()
    assert "张*" in ok and "1****************" + number[-1] in ok
    shot(page, "realname-03-checkout-verified")
    page.locator("[data-testid=place-order]").click()
    page.wait_for_url("**/pay/**")
    order = Order.objects.get(buyer=user)
    assert order.realname_verification.user == user

    page.goto("/accounts/realname/")
    assert page.locator("[data-testid=realname-number]").inner_text() == "1****************" + number[-1]
    assert number not in page.content()
    shot(page, "realname-04-verified")
