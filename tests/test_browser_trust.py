"""In real Chromium: revealing a code is confirmed in a modal (in Chinese), and the order page's
no-reason refund offer follows each reveal without a reload. Then the pages issue 12's trust
items touch, at 390 px and 1366 px: screenshots trust-*.png."""

import re
from decimal import Decimal

import pytest

from aftersales.models import Kind
from aftersales.services import disputes
from aftersales.services.tickets import ticket_open
from orders.models import CodeReveal
from payments.services import payments
from tests.browser_helpers import PHONE, log_in, shot
from tests.builders import chain_of, codes_of, delivered_order, place
from tests.factories import ProductFactory, UserFactory, add_stock, storefront_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
D = Decimal
WIDE = {"width": 1366, "height": 860}


def test_reveal_is_confirmed_and_the_refund_offer_follows(browser, live_server):
    buyer = UserFactory()
    order = delivered_order(buyer, quantity=2)
    page = log_in(browser, live_server, buyer)
    page.goto(order.get_absolute_url())
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    count = page.locator("[data-testid=refundable-count]")
    assert count.get_attribute("data-count") == "2"
    assert "2 张未显示的卡密现在可以退款" in count.inner_text()

    # The reveal button asks first, in Chinese; "not now" reveals nothing.
    page.locator("[data-testid=reveal]").first.click()
    modal = page.locator("[data-testid=reveal-confirm]")
    modal.wait_for(state="visible")
    assert "确定显示卡密吗" in modal.inner_text() and "无理由退款" in modal.inner_text()
    page.wait_for_timeout(400)  # the fade-in
    shot(page, "trust-01-reveal-confirm-phone")
    page.locator("[data-testid=reveal-cancel]").click()
    modal.wait_for(state="hidden")
    assert CodeReveal.objects.count() == 0
    assert page.locator("[data-testid=revealed-secret]").count() == 0

    # Confirmed: the code shows, and the offer counts one code fewer, in place.
    page.locator("[data-testid=reveal]").first.click()
    modal.wait_for(state="visible")
    page.locator("[data-testid=reveal-confirm-go]").click()
    page.locator("[data-testid=revealed-secret]").wait_for(state="visible")
    page.wait_for_function("document.querySelector('[data-testid=refundable-count]').dataset.count === '1'")
    assert "1 张未显示的卡密现在可以退款" in count.inner_text()
    assert page.locator("[data-testid=code-refundable]").count() == 1
    assert CodeReveal.objects.count() == 1
    modal.wait_for(state="hidden")
    page.locator(".modal-backdrop").wait_for(state="detached")  # the modal closed, nothing left over
    shot(page, "trust-02-revealed-one-phone")

    # The last unrevealed code: the offer goes.
    page.locator("[data-testid=reveal]").first.click()
    modal.wait_for(state="visible")
    page.locator("[data-testid=reveal-confirm-go]").click()
    page.locator("[data-testid=refund-entry]").wait_for(state="detached")
    assert page.locator("[data-testid=revealed-secret]").count() == 2
    assert CodeReveal.objects.count() == 2
    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    assert page.js_errors == []
    page.locator(".modal-backdrop").wait_for(state="detached")
    page.set_viewport_size(WIDE)
    shot(page, "trust-03-revealed-all-desktop")


def test_trust_pages_at_phone_and_desktop_widths(browser, live_server, level, staff):
    buyer = UserFactory()
    recharge = payments.recharge_create(user=buyer, amount="100")
    payments.sandbox_pay(order_number=recharge.number)
    product = ProductFactory(name="Steam 钱包充值卡 100 元", price=D("105.00"), face_value=D("100.00"))
    add_stock(product, 3)
    agent = chain_of(1, level)[0]
    shop = storefront_create(agent=agent, slug="trusty", name="Trusty 卡铺", default_markup_value=D(20))
    coins = ProductFactory(name="腾讯 Q 币 30 元", price=D("29.50"), face_value=D("30.00"))
    add_stock(coins, 2)
    pending = place(buyer, coins)
    reissued = delivered_order(buyer, quantity=3, spare=1)
    bad = codes_of(reissued)[1]
    ticket = ticket_open(
        user=buyer, kind=Kind.INVALID, subject="卡密无效", body="提示已被使用", order=reissued, order_code=bad
    )
    disputes.dispute_reissue(ticket=ticket, order_code=bad, staff=staff, reason="供应商确认")

    pages = {
        "product": product.get_absolute_url(),
        "checkout": f"/orders/checkout/{product.slug}/?quantity=999",
        "storefront-product": f"/s/{shop.slug}/p/{product.slug}/",
        "choose": f"/pay/{pending.number}/",
        "balance-confirm": f"/pay/{pending.number}/balance/",
        "reissued-order": reissued.get_absolute_url(),
    }
    for viewport, label in ((PHONE, "phone"), (WIDE, "desktop")):
        page = log_in(browser, live_server, buyer, viewport=viewport)
        for i, (name, url) in enumerate(pages.items(), start=4):
            page.goto(url)
            shot(page, f"trust-{i:02d}-{name}-{label}")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} scrolls sideways at {label} width"
        page.goto(pages["checkout"])
        assert page.locator("#quantity").input_value() == "3"  # the stock, not 999
        assert page.locator("[data-testid=estimated-total]").inner_text().strip() == "¥315.00"
        page.goto(pages["balance-confirm"])
        assert page.locator("[data-testid=balance-after]").inner_text().strip() == "¥70.50"
        page.goto(pages["reissued-order"])
        assert "补发卡密，替换 #2" in page.locator("[data-testid=replacement-badge]").inner_text()
        assert re.search("卡密 #2 已补发", page.locator("[data-testid=history-reissue]").inner_text())
        assert page.js_errors == []
        page.context.close()
