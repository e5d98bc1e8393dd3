"""In real Chromium, on a phone: recharge the balance through the sandbox cashier, pay an
order from the balance, and find both in the history. Screenshots go with the others."""

import re
from decimal import Decimal

import pytest

from orders.models import Order
from tests.browser_helpers import new_page, shot
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_recharge_then_pay_from_the_balance(browser, live_server):
    user = UserFactory(email="wallet@example.com")  # password: correct-horse-battery
    product = ProductFactory(name="腾讯视频 VIP 月卡", price=Decimal("25.00"))
    add_stock(product, 3)
    page = new_page(browser, live_server.url)
    submit = page.locator('main form button[type="submit"]')

    page.goto("/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", "correct-horse-battery")
    submit.first.click()
    page.wait_for_url(live_server.url + "/")

    # Recharge 100 through the sandbox cashier.
    page.goto("/wallet/")
    assert page.locator("[data-testid=wallet-balance]").inner_text().strip() == "¥0.00"
    page.fill("#amount", "100")
    page.select_option("#gateway", "sandbox")
    page.locator("[data-testid=recharge]").click()
    page.wait_for_url(re.compile(r"/pay/sandbox/R\w+/$"))
    assert page.locator("[data-testid=sandbox-amount]").inner_text().strip() == "¥100.00"
    shot(page, "wallet-01-recharge-cashier")
    page.locator("[data-testid=sandbox-confirm]").click()
    page.wait_for_url(re.compile(r"/wallet/$"))
    assert page.locator("[data-testid=wallet-balance]").inner_text().strip() == "¥100.00"
    shot(page, "wallet-02-recharged")

    # Buy two codes and pay from the balance: instant.
    page.goto(f"/orders/checkout/{product.slug}/?quantity=2")
    page.locator("[data-testid=channel-balance] input").check()  # the channel is chosen on the checkout
    shot(page, "wallet-03-choose-balance")
    page.locator("[data-testid=place-order]").click()
    page.wait_for_url(re.compile(r"/pay/\w+/balance/"))
    assert page.locator("[data-testid=balance-before]").inner_text().strip() == "¥100.00"
    assert page.locator("[data-testid=balance-after]").inner_text().strip() == "¥50.00"
    shot(page, "wallet-03b-confirm-balance")
    page.locator("[data-testid=pay-balance-confirm]").click()
    page.wait_for_url(re.compile(r"/orders/\w+/$"))
    page.locator('[data-testid=order-status][data-status="delivered"]').wait_for(timeout=15_000)
    shot(page, "wallet-04-paid-from-balance")
    order = Order.objects.get(buyer=user)
    assert order.status == Order.Status.DELIVERED and order.payments.get().gateway == "balance"

    # The history shows the recharge and the payment; the balance went down by 50.
    page.goto("/wallet/")
    assert page.locator("[data-testid=wallet-balance]").inner_text().strip() == "¥50.00"
    movements = page.locator("main").inner_text()
    assert "+100.00" in movements and "-50.00" in movements and order.number in movements
    shot(page, "wallet-05-history")
    assert not page.js_errors, page.js_errors
    page.context.close()
