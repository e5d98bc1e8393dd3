"""The guest's whole story in real Chromium (issue 12's browser test): a guest buys on the
platform and on an agent's storefront without an account, pays in the sandbox, opens the
emailed link, reveals a code with the query password, asks for the no-reason refund of the
other code (approved at once, back to the channel paid with), and finds both orders again
from a fresh browser by email and query password. Screenshots story-*.png at 390 and 1366 px.
"""

import re
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core import mail

from catalog.services import code_plaintext
from orders.models import CodeReveal, Order
from payments.models import Refund
from tests.browser_helpers import new_page, shot, wait_for_status
from tests.builders import chain_of
from tests.factories import CategoryFactory, ProductFactory, SupplierFactory, add_stock, storefront_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 900}
EMAIL = "xiaoming.li@example.net"
PASSWORD = "cha-xun-2026"
LINK = re.compile(r"https?://\S+/orders/g/\S+/")


@pytest.fixture
def product(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    p = ProductFactory(
        name="网易一卡通 50点",
        slug="netease-50",
        category=CategoryFactory(name="游戏点卡", slug="game-cards"),
        supplier=SupplierFactory(name="网易授权经销商", authorisation_cert_no="NE-AUTH-2026-0012"),
        face_value=Decimal("50.00"),
        price=Decimal("48.00"),
    )
    add_stock(p, 6, numbered=True)
    return p


@pytest.fixture
def shop(level):
    agent = chain_of(1, level)[0]
    return storefront_create(agent=agent, slug="star-cards", name="星辰卡铺", default_markup_value=Decimal(5))


def guest_checkout(page, *, quantity_steps: int = 0):
    """Fill the guest fields of the checkout on the page, choose the sandbox."""
    page.fill('[data-testid="guest-email"]', EMAIL)
    page.fill('[data-testid="guest-email-confirm"]', EMAIL)
    page.fill('[data-testid="query-password"]', PASSWORD)
    for _ in range(quantity_steps):
        page.locator('[data-step="1"]').click()
    assert page.locator('[data-testid="channel-balance"]').count() == 0  # no balance without an account
    page.locator('[data-testid="channel-sandbox"] input').check()


def pay_in_sandbox(page) -> Order:
    page.wait_for_url(re.compile(r"/pay/sandbox/"))
    page.locator('[data-testid="sandbox-confirm"]').click()
    page.wait_for_url(re.compile(r"/orders/guest/[A-Z0-9]+/$"))
    wait_for_status(page, "delivered")
    return Order.objects.get(number=page.url.rstrip("/").rsplit("/", 1)[1])


def test_a_guest_buys_twice_reveals_refunds_and_finds_the_orders_again(browser, live_server, product, shop):
    # 1. On the platform, on a phone: two codes.
    page = new_page(browser, live_server.url)
    page.goto(f"/p/{product.slug}/")
    page.locator('[data-testid="buy-now"]').click()
    page.wait_for_url(re.compile(r"/orders/checkout/"))
    guest_checkout(page, quantity_steps=1)
    shot(page, "story-01-checkout-390")
    page.locator('[data-testid="place-order"]').click()
    platform = pay_in_sandbox(page)
    assert (platform.buyer, platform.guest_email, platform.quantity) == (None, EMAIL, 2)
    assert page.locator('[data-testid="reveal"]').count() == 0  # no code before the proof
    shot(page, "story-02-paid-390")

    # 2. On the agent's storefront, the same guest: one code at the shop's price.
    page.goto(f"/s/{shop.slug}/p/{product.slug}/")
    guest_checkout(page)
    shot(page, "story-03-storefront-390")
    page.locator('[data-testid="buy-now"]').click()
    at_shop = pay_in_sandbox(page)
    assert (at_shop.channel, at_shop.agent_id) == (Order.Channel.STOREFRONT, shop.agent_id)
    assert at_shop.total > product.price  # the shop's retail price

    # 3. The delivery email of the platform order, opened on another phone.
    (link,) = [LINK.search(m.body).group(0) for m in mail.outbox if platform.number in m.body and LINK.search(m.body)]
    secrets = [code_plaintext(oc.code)[1] for oc in platform.codes.select_related("code").order_by("id")]
    phone = new_page(browser, live_server.url)
    phone.goto(urlsplit(link).path)
    phone.wait_for_url(re.compile(rf"/orders/guest/{platform.number}/$"))
    assert not any(s in phone.content() for s in secrets)
    phone.fill('[data-testid="password-form"] [data-testid="query-password"]', PASSWORD)
    phone.locator('[data-testid="unlock"]').click()
    phone.locator('[data-testid="reveal"]').first.click()
    phone.locator('[data-testid="reveal-confirm-go"]').click()  # revealing gives up the refund: confirmed
    phone.locator('[data-testid="revealed-secret"]').first.wait_for()
    assert phone.locator('[data-testid="revealed-secret"]').first.inner_text() == secrets[0]
    assert secrets[1] not in phone.content() and CodeReveal.objects.filter(order_code__order=platform).count() == 1
    phone.locator(".modal-backdrop").wait_for(state="detached")  # the confirmation has gone
    shot(phone, "story-04-revealed-390")

    # 4. The no-reason refund of the other code: the unrevealed one is chosen, not the revealed.
    phone.locator('[data-testid="refund-unused"]').click()
    phone.wait_for_url(re.compile(rf"/orders/guest/{platform.number}/refund/$"))
    assert phone.locator('input[name="codes"]:checked').count() == 1
    assert phone.locator('input[name="codes"]:checked').get_attribute("data-revealed") == "0"
    assert phone.locator("[data-testid=refund-total]").inner_text().strip() == "¥48.00"
    shot(phone, "story-05-refund-390")
    phone.locator("[data-testid=refund-submit]").click()
    phone.wait_for_url(re.compile(rf"/orders/guest/{platform.number}/refunds/[0-9a-f-]{{36}}/$"))
    assert phone.locator("[data-testid=request-status]").get_attribute("data-status") == "refunded"
    refund = Refund.objects.get()
    assert refund.payment.gateway == "sandbox" and refund.amount == Decimal("48.00")
    shot(phone, "story-06-refunded-390")
    assert not page.js_errors and not phone.js_errors

    # 5. A fresh browser on a computer: the lookup by email and query password finds both.
    desk = new_page(browser, live_server.url, viewport=WIDE)
    desk.goto("/")
    desk.locator('[data-testid="nav-lookup"]').click()
    desk.wait_for_url(re.compile(r"/orders/lookup/$"))
    desk.fill('[data-testid="lookup-query"]', EMAIL.upper())
    desk.fill('[data-testid="lookup-password"]', PASSWORD)
    desk.locator('[data-testid="lookup-submit"]').click()
    desk.wait_for_url(re.compile(r"/orders/lookup/$"))
    found = {desk.locator('[data-testid="recent-order"]').nth(i).get_attribute("data-number") for i in range(2)}
    assert found == {platform.number, at_shop.number}
    shot(desk, "story-07-found-1366")
    desk.locator(f'[data-testid="recent-order"][data-number="{platform.number}"]').click()
    desk.wait_for_url(re.compile(rf"/orders/guest/{platform.number}/$"))
    # The order as it stands: the revealed code can be shown again here, the refunded one is gone.
    assert desk.locator('[data-testid="reveal"]').count() == 1
    assert secrets[1] not in desk.content()
    shot(desk, "story-08-order-1366")
    assert not desk.js_errors
