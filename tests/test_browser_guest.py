"""A guest buys on the platform in a real browser (Debian's Chromium): no account, an email
typed twice and a query password; pays in the sandbox cashier; the order page shows no code
until the query password is entered; then a code is revealed. The emailed link, opened in a
desktop browser, shows the order, and the password unlocks it there too. Screenshots at 390 px
and 1366 px of the guest checkout and the guest order page.

After-sales on the guest order page: locked until the proof, then the no-reason refund of an
unrevealed code (to the sandbox channel), a ticket about a code with a screenshot, its thread.
Screenshots guest-1x-*.png at 390 and 1366 px.
"""

import re
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core import mail

from aftersales.models import RefundRequest, Ticket
from catalog.services import code_plaintext
from orders.models import CodeReveal, Order
from orders.services import guest as guest_services
from orders.services import orders as order_services
from payments.models import Refund
from payments.services.payments import sandbox_pay
from tests.browser_helpers import new_page, shot, wait_for_status
from tests.factories import CategoryFactory, ProductFactory, SupplierFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 900}
EMAIL = "guest.buyer@example.net"
QUERY_PASSWORD = "cha-xun-2024"


@pytest.fixture
def product(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    games = CategoryFactory(name="游戏点卡", slug="games")
    p = ProductFactory(
        name="王者荣耀 100点券",
        slug="wzry-100",
        category=games,
        supplier=SupplierFactory(name="腾讯游戏授权经销商", authorisation_cert_no="TX-AUTH-2024-0088"),
        face_value=Decimal("10.00"),
        price=Decimal("9.50"),
    )
    add_stock(p, 5, numbered=True)
    return p


def test_a_guest_buys_pays_and_reveals_with_the_query_password(browser, live_server, product):
    page = new_page(browser, live_server.url)
    page.goto(f"/p/{product.slug}/")
    page.locator('[data-testid="buy-now"]').click()
    page.wait_for_url(re.compile(r"/orders/checkout/"))
    page.fill('[data-testid="guest-email"]', EMAIL)
    page.fill('[data-testid="guest-email-confirm"]', "other@example.net")
    page.locator('[data-step="1"]').click()
    page.locator('[data-testid="place-order"]').click()
    # Two different addresses: refused, nothing placed, the form keeps what was typed.
    assert page.locator('[data-testid="order-error"]').is_visible()
    assert not Order.objects.exists()
    page.fill('[data-testid="guest-email-confirm"]', EMAIL)
    page.fill('[data-testid="query-password"]', QUERY_PASSWORD)
    assert page.locator("#quantity").input_value() == "2"  # kept from the refused attempt
    assert page.locator('[data-testid="channel-balance"]').count() == 0  # balance is for members
    page.locator('[data-testid="channel-sandbox"] input').check()
    shot(page, "guest-01-checkout-390")
    page.locator('[data-testid="place-order"]').click()
    page.wait_for_url(re.compile(r"/pay/sandbox/"))
    page.locator('[data-testid="sandbox-confirm"]').click()
    page.wait_for_url(re.compile(r"/orders/guest/"))
    wait_for_status(page, "delivered")
    order = Order.objects.get()
    assert order.buyer is None and order.guest_email == EMAIL and order.quantity == 2
    secrets = [code_plaintext(oc.code)[1] for oc in order.codes.select_related("code").order_by("id")]
    # Delivered, but no code before the proof.
    assert page.locator('[data-testid="guest-proof"]').is_visible()
    assert page.locator('[data-testid="reveal"]').count() == 0
    assert not any(s in page.content() for s in secrets)
    shot(page, "guest-03-order-locked-390")

    page.fill('[data-testid="password-form"] [data-testid="query-password"]', QUERY_PASSWORD)
    page.locator('[data-testid="unlock"]').click()
    page.locator('[data-testid="reveal"]').first.click()
    page.locator('[data-testid="reveal-confirm-go"]').click()  # revealing is confirmed first
    page.locator('[data-testid="revealed-secret"]').first.wait_for()
    assert page.locator('[data-testid="revealed-secret"]').first.inner_text() == secrets[0]
    assert secrets[1] not in page.content()
    assert CodeReveal.objects.count() == 1
    shot(page, "guest-04-order-revealed-390")
    assert not page.js_errors

    # The emailed link in a desktop browser: the order, and the codes after the password.
    (message,) = mail.outbox
    link = re.search(r"https?://\S+/orders/g/\S+/", message.body).group(0)
    desk = new_page(browser, live_server.url, viewport=WIDE)
    desk.goto(urlsplit(link).path)
    desk.wait_for_url(re.compile(rf"/orders/guest/{order.number}/$"))
    assert desk.locator('[data-testid="order-total"]').inner_text().strip() == "¥19.00"
    assert not any(s in desk.content() for s in secrets)
    shot(desk, "guest-05-order-locked-1366")
    desk.fill('[data-testid="password-form"] [data-testid="query-password"]', QUERY_PASSWORD)
    desk.locator('[data-testid="unlock"]').click()
    desk.locator('[data-testid="reveal"]').nth(1).click()
    desk.locator('[data-testid="reveal-confirm-go"]').click()
    desk.locator('[data-testid="revealed-secret"]').first.wait_for()
    shot(desk, "guest-06-order-revealed-1366")
    desk.goto(f"/orders/checkout/{product.slug}/")
    desk.fill('[data-testid="guest-email"]', EMAIL)
    shot(desk, "guest-07-checkout-1366")
    assert not desk.js_errors


def _screenshot_png(tmp_path):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 200), "white")
    ImageDraw.Draw(image).text((20, 90), "ERROR 0x1F: code already used", fill="red")
    path = tmp_path / "error.png"
    image.save(path)
    return path


def test_a_guest_uses_after_sales_on_the_order_page(browser, live_server, product, tmp_path):
    order = order_services.order_place(
        buyer=None, guest_email=EMAIL, query_password=QUERY_PASSWORD, product=product, quantity=2, idempotency_key="g"
    )
    sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    _first, second = order.codes.order_by("id")
    link = guest_services.guest_link_url(order=order)

    # The emailed link on a phone: the order, and after-sales waits for the proof.
    page = new_page(browser, live_server.url)
    page.goto(urlsplit(link).path)
    page.wait_for_url(re.compile(rf"/orders/guest/{order.number}/$"))
    assert page.locator('[data-testid="guest-aftersales-locked"]').is_visible()
    assert page.locator('[data-testid="refund-entry"]').count() == 0
    shot(page, "guest-10-aftersales-locked-390")
    page.fill('[data-testid="password-form"] [data-testid="query-password"]', QUERY_PASSWORD)
    page.locator('[data-testid="unlock"]').click()
    page.locator('[data-testid="refund-entry"]').wait_for()
    assert page.locator('[data-testid="code-refundable"]').count() == 2
    assert page.locator('[data-testid="report-problem"]').is_visible()
    shot(page, "guest-11-aftersales-390")

    # The no-reason refund of one unrevealed code: chosen, confirmed, approved at once.
    page.locator('[data-testid="refund-unused"]').click()
    page.wait_for_url(re.compile(rf"/orders/guest/{order.number}/refund/$"))
    page.locator(f"#code-{second.pk}").uncheck()
    assert page.locator("[data-testid=refund-total]").inner_text().strip() == "¥9.50"
    shot(page, "guest-12-refund-form-390")
    page.locator("[data-testid=refund-submit]").click()
    page.wait_for_url(re.compile(rf"/orders/guest/{order.number}/refunds/[0-9a-f-]{{36}}/$"))
    assert page.locator("[data-testid=request-status]").get_attribute("data-status") == "refunded"
    shot(page, "guest-13-refunded-390")
    refund = Refund.objects.get()
    assert refund.payment.gateway == "sandbox" and RefundRequest.objects.get().user is None

    # A ticket about the other code, with a screenshot.
    page.goto(f"/orders/guest/{order.number}/")
    page.locator('[data-testid="report-code"]').first.click()
    page.wait_for_url(re.compile(rf"/orders/guest/{order.number}/tickets/new/"))
    assert page.locator("[data-testid=kind-invalid] input").is_checked()
    page.fill("#id_subject", "充值提示卡密已使用")
    page.fill("#id_body", "在游戏内兑换时提示：卡密已被使用。")
    page.set_input_files("#id_attachments", str(_screenshot_png(tmp_path)))
    page.locator("[data-testid=submit-ticket]").click()
    page.wait_for_url(re.compile(rf"/orders/guest/{order.number}/tickets/T[A-Z0-9]+/$"))
    ticket = Ticket.objects.get()
    assert ticket.user is None and ticket.order_code_id == second.pk
    assert page.locator(".thumbs img").count() == 1
    shot(page, "guest-14-ticket-390")
    page.goto(f"/orders/guest/{order.number}/")
    assert page.locator('[data-testid="guest-ticket"]').count() == 1
    shot(page, "guest-15-aftersales-after-390")
    assert not page.js_errors

    # The same on a desktop.
    desk = new_page(browser, live_server.url, viewport=WIDE)
    desk.goto(urlsplit(link).path)
    desk.wait_for_url(re.compile(rf"/orders/guest/{order.number}/$"))
    shot(desk, "guest-16-aftersales-locked-1366")
    desk.fill('[data-testid="password-form"] [data-testid="query-password"]', QUERY_PASSWORD)
    desk.locator('[data-testid="unlock"]').click()
    desk.locator('[data-testid="guest-ticket"]').wait_for()
    shot(desk, "guest-17-aftersales-1366")
    desk.locator('[data-testid="guest-ticket"]').click()
    desk.wait_for_url(re.compile(r"/tickets/T[A-Z0-9]+/$"))
    shot(desk, "guest-18-ticket-1366")


def test_a_guest_finds_orders_again_on_the_lookup_page(browser, live_server, product, settings):
    """The lookup page from the header, on a phone: the order number and the query password
    open the order; the list of this browser's orders. On a desktop: an email alone sends the
    one-time link, whose page asks before using it; then the orders it found, listed."""
    import uuid

    from orders.services import orders as order_services
    from tests.builders import pay_and_deliver

    def guest_order(password=QUERY_PASSWORD):
        order = order_services.order_place(
            buyer=None,
            product_id=product.pk,
            quantity=1,
            idempotency_key=uuid.uuid4().hex,
            guest_email=EMAIL,
            query_password=password,
        )
        return pay_and_deliver(order)

    first, second = guest_order(), guest_order(password="")
    mail.outbox.clear()
    page = new_page(browser, live_server.url)
    page.goto("/")
    page.locator('[data-testid="nav-lookup-icon"]').click()
    page.wait_for_url(re.compile(r"/orders/lookup/$"))
    assert page.locator('[data-testid="recent-empty"]').is_visible()
    shot(page, "lookup-01-empty-390")
    # A wrong password: the one refusal, which says nothing about the order.
    page.fill('[data-testid="lookup-query"]', first.number)
    page.fill('[data-testid="lookup-password"]', "not-it")
    page.locator('[data-testid="lookup-submit"]').click()
    assert page.locator('[data-testid="lookup-error"]').is_visible()
    shot(page, "lookup-02-refused-390")
    page.fill('[data-testid="lookup-password"]', QUERY_PASSWORD)
    page.locator('[data-testid="lookup-submit"]').click()
    page.wait_for_url(re.compile(rf"/orders/guest/{first.number}/$"))
    page.locator('[data-testid="reveal"]').first.click()
    page.locator('[data-testid="reveal-confirm-go"]').click()
    page.locator('[data-testid="revealed-secret"]').first.wait_for()
    page.locator('[data-testid="guest-lookup-link"]').click()
    page.wait_for_url(re.compile(r"/orders/lookup/$"))
    assert page.locator('[data-testid="recent-order"]').count() == 1
    shot(page, "lookup-03-recent-390")
    # Past the limit for this network: the 429 page, in Chinese, with the time to wait.
    settings.GUEST_LOOKUP_IP_LIMIT = 2
    page.fill('[data-testid="lookup-query"]', "someone@example.org")
    page.fill('[data-testid="lookup-password"]', "guess")
    page.locator('[data-testid="lookup-submit"]').click()
    assert page.locator('[data-testid="too-many-requests"]').is_visible()
    assert "分钟后重试" in page.locator('[data-testid="retry-wait"]').inner_text()
    shot(page, "lookup-07-throttled-390")
    settings.GUEST_LOOKUP_IP_LIMIT = 30
    assert not page.js_errors

    desk = new_page(browser, live_server.url, viewport=WIDE)
    desk.goto("/orders/lookup/")
    desk.fill('[data-testid="lookup-query"]', EMAIL)
    desk.locator('[data-testid="lookup-send-link"]').click()
    desk.wait_for_url(re.compile(r"/orders/lookup/$"))
    assert "一次性" in desk.locator(".alert-info").inner_text()
    shot(desk, "lookup-04-link-sent-1366")
    (message,) = mail.outbox
    link = re.search(r"https?://\S+/orders/lookup/link/\S+/", message.body).group(0)
    desk.goto(urlsplit(link).path)
    assert desk.locator('[data-testid="lookup-link-confirm"]').is_visible()
    shot(desk, "lookup-05-link-confirm-1366")
    desk.locator('[data-testid="lookup-link-confirm"]').click()
    desk.wait_for_url(re.compile(r"/orders/lookup/$"))
    assert desk.locator('[data-testid="recent-order"]').count() == 2
    shot(desk, "lookup-06-recent-1366")
    desk.locator('[data-testid="recent-order"]').nth(0).click()
    desk.wait_for_url(re.compile(rf"/orders/guest/{second.number}/$"))
    assert desk.locator('[data-testid="reveal"]').count() == 1  # the link proved it: codes here
    assert not desk.js_errors


def test_a_misspelt_mail_provider_is_pointed_out_and_fixed_in_one_click(browser, live_server, product):
    """qq.con typed twice (copied): the checkout points out qq.com; one click puts it in both boxes
    and the order goes to the right address. Screenshot guest-typo-390."""
    page = new_page(browser, live_server.url)
    page.goto(f"/orders/checkout/{product.slug}/")
    page.fill('[data-testid="guest-email"]', "zhang.san@qq.con")
    page.fill('[data-testid="guest-email-confirm"]', "zhang.san@qq.con")
    page.locator('[data-testid="channel-sandbox"] input').check()
    page.locator('[data-testid="place-order"]').click()
    suggestion = page.locator('[data-testid="guest-email-suggestion"]')
    suggestion.wait_for()
    assert "zhang.san@qq.com" in suggestion.inner_text()
    assert not Order.objects.exists()
    shot(page, "guest-typo-390")
    suggestion.click()
    assert page.locator('[data-testid="guest-email"]').input_value() == "zhang.san@qq.com"
    assert page.locator('[data-testid="guest-email-confirm"]').input_value() == "zhang.san@qq.com"
    assert suggestion.count() == 0
    page.locator('[data-testid="place-order"]').click()
    page.wait_for_url(re.compile(r"/pay/sandbox/"))
    assert Order.objects.get().guest_email == "zhang.san@qq.com"
