"""End to end in a real browser: Debian's Chromium driven by Playwright against ``live_server``.

A buyer on a phone signs up, finds a product, buys two codes, pays in the sandbox cashier,
sees the order delivered, reveals a code and copies it. Every step is saved as a screenshot
under ``test-artifacts/screenshots/`` (kept out of git) so the pages can be looked at.
"""

import re
from decimal import Decimal

import pytest

from catalog.models import Product
from orders.models import CodeReveal, Order
from tests.browser_helpers import DESKTOP, SCREENSHOTS, new_page, shot, wait_for_status
from tests.factories import CategoryFactory, ProductFactory, SupplierFactory, add_stock

PASSWORD = "Kamen-Test-2024!"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_nav_if_collapsed(page, target):
    """On a phone the account links live in the collapsed menu."""
    if not target.is_visible():
        page.locator(".navbar-toggler").click()
        page.locator("#nav.show").wait_for()  # the collapse animation has finished
        target.wait_for(state="visible")


def visible_text(page, text):
    return page.locator(f'text="{text}" >> visible=true')


@pytest.fixture
def catalogue(db):
    games = CategoryFactory(name="游戏点卡", slug="games")
    mobile = CategoryFactory(name="手游充值", slug="mobile-games", parent=games)
    software = CategoryFactory(name="软件激活码", slug="software")
    tencent = SupplierFactory(name="腾讯游戏授权经销商", authorisation_cert_no="TX-AUTH-2024-0088")
    product = ProductFactory(
        name="王者荣耀 100点券",
        slug="wzry-100",
        category=mobile,
        supplier=tencent,
        face_value=Decimal("10.00"),
        price=Decimal("9.50"),
        description="官方正规渠道点券卡密，购买后在订单页查看卡密，登录游戏内「充值」页面兑换。\n到账时间：即时。",
    )
    secrets = add_stock(product, 5, numbered=True)
    office = ProductFactory(
        name="Microsoft Office 2021 专业增强版 激活密钥（永久授权，绑定微软账户）",
        slug="office-2021",
        category=software,
        kind=Product.Kind.LICENCE_KEY,
        supplier=SupplierFactory(name="软件分销商", is_authorised=False, authorisation_cert_no=""),
        face_value=Decimal("2899.00"),
        price=Decimal("1288.00"),
    )
    add_stock(office, 2)
    ProductFactory(
        name="腾讯视频 VIP 月卡",
        slug="tencent-video-vip",
        category=games,
        kind=Product.Kind.MEMBERSHIP,
        supplier=tencent,
        face_value=Decimal("30.00"),
        price=Decimal("25.00"),
    )  # no stock: shown as sold out
    return product, secrets


def test_buyer_signs_up_buys_pays_and_reveals_on_a_phone(browser, live_server, catalogue):
    product, secrets = catalogue
    page = new_page(browser, live_server.url)

    # Home page, in Chinese by default.
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert page.locator('[data-testid="product-card"]', has_text=product.name).is_visible()
    shot(page, "01-home")

    # Sign up with email and password (twice).
    signup = page.locator('[data-testid="nav-signup"]')
    open_nav_if_collapsed(page, signup)
    page.screenshot(path=str(SCREENSHOTS / "01-home-menu.png"))  # the phone menu, opened
    signup.click()
    page.wait_for_url(re.compile(r"/accounts/signup/"))
    email = "buyer@example.com"
    page.fill('input[name="email"]', email)
    page.fill('input[name="password1"]', PASSWORD)
    page.fill('input[name="password2"]', PASSWORD)
    shot(page, "02-signup")
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(live_server.url + "/")
    account = page.locator('[data-testid="nav-account"]')
    open_nav_if_collapsed(page, account)
    assert email in account.inner_text()

    # Find the product through the search box and open it.
    page.fill('[data-testid="search-input"]', "王者荣耀")
    page.press('[data-testid="search-input"]', "Enter")
    page.wait_for_url(re.compile(r"/search/"))
    shot(page, "02b-search-results")
    page.locator('[data-testid="product-card"]', has_text=product.name).click()
    page.wait_for_url(re.compile(rf"/p/{product.slug}/"))
    assert page.locator("h1").inner_text() == product.name
    assert "5" in page.locator('[data-testid="stock"]').inner_text()
    page.locator('[data-step="1"]').click()
    assert page.locator("#quantity").input_value() == "2"
    shot(page, "03-product")
    page.locator('[data-testid="buy-now"]').click()

    # Checkout: the quantity carried over; place the order.
    page.wait_for_url(re.compile(rf"/orders/checkout/{product.slug}/"))
    assert page.locator("#quantity").input_value() == "2"
    total = page.locator('[data-testid="estimated-total"]')
    assert total.inner_text().strip() == "¥19.00"
    page.locator('[data-step="1"]').click()
    assert total.inner_text().strip() == "¥28.50"  # follows the quantity as it changes
    page.locator('[data-step="-1"]').click()
    assert total.inner_text().strip() == "¥19.00"
    # The channel is chosen on the checkout itself: the live ones, the balance for a member.
    assert page.locator('[data-testid="channel-balance"]').is_visible()
    page.locator('[data-testid="channel-sandbox"] input').check()
    shot(page, "04-checkout")
    page.locator('[data-testid="place-order"]').click()

    # The sandbox cashier.
    page.wait_for_url(re.compile(r"/pay/sandbox/"))
    assert page.locator('[data-testid="sandbox-amount"]').inner_text().strip() == "¥19.00"
    shot(page, "06-sandbox-cashier")
    page.locator('[data-testid="sandbox-confirm"]').click()

    # The order page: delivered (tasks run inline in tests, but poll to be safe).
    page.wait_for_url(re.compile(r"/orders/[^/]+/$"))
    wait_for_status(page, "delivered")
    order = Order.objects.get(buyer__email=email)
    assert order.status == Order.Status.DELIVERED
    assert order.quantity == 2
    assert order.total == Decimal("19.00")
    reveal_buttons = page.locator('[data-testid="reveal"]')
    assert reveal_buttons.count() == 2
    assert page.locator('[data-testid="revealed-secret"]').count() == 0  # nothing shown before a reveal
    shot(page, "07-order-delivered")

    # Reveal the first code through htmx: the secret is one that was imported, and it is logged.
    reveal_buttons.first.click()
    page.locator('[data-testid="reveal-confirm-go"]').click()  # revealing is confirmed first
    secret = page.locator('[data-testid="revealed-secret"]')
    secret.wait_for(state="visible")
    revealed = secret.inner_text().strip()
    assert revealed in secrets
    assert page.url.endswith(f"/orders/{order.number}/")  # swapped in place, no navigation
    assert CodeReveal.objects.filter(order_code__order=order).count() == 1
    shot(page, "08-code-revealed")

    # Copy it.
    copy = page.locator('[data-testid="copy-secret"]').first
    copy.click()
    page.wait_for_function("el => el.dataset.copied === 'true'", arg=copy.element_handle())
    assert "已复制" in copy.inner_text()
    assert page.evaluate("navigator.clipboard.readText()") == revealed

    # The order list shows it delivered.
    page.goto("/orders/")
    row = page.locator('[data-testid="order-row"]', has_text=product.name)
    assert row.locator('[data-status="delivered"]').is_visible()
    shot(page, "09-order-list")

    # The same order pages on a desktop-sized window.
    page.set_viewport_size(DESKTOP)
    page.goto(f"/orders/{order.number}/")
    assert page.locator('[data-testid="revealed-secret"]').count() == 0  # a reload hides the codes again
    shot(page, "desktop-04-order-detail")
    page.goto("/accounts/profile/")
    shot(page, "desktop-05-profile")
    assert not page.js_errors, page.js_errors
    page.context.close()


def test_desktop_pages_and_english_switch(browser, live_server, catalogue):
    product, _ = catalogue
    page = new_page(browser, live_server.url, viewport=DESKTOP)
    page.goto("/")
    assert page.locator('[data-testid="product-card"]').count() == 3
    shot(page, "desktop-01-home")
    page.locator('[data-testid="product-card"]', has_text=product.name).click()
    page.wait_for_url(re.compile(rf"/p/{product.slug}/"))
    shot(page, "desktop-02-product")

    # Switch to English: the same pages now speak English, and the choice sticks.
    page.goto("/")
    assert visible_text(page, "登录").count() >= 1
    page.locator('[data-testid="lang-switch"]').click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert visible_text(page, "Log in").count() >= 1
    assert visible_text(page, "7-day refund of unused codes").count() >= 1
    assert visible_text(page, "登录").count() == 0
    shot(page, "desktop-03-home-en")
    page.goto(f"/p/{product.slug}/")
    assert page.locator('[data-testid="buy-now"]').inner_text().strip() == "Buy now"
    assert not page.js_errors, page.js_errors
    page.context.close()


def test_account_pages_on_a_phone(browser, live_server, catalogue, mailoutbox):
    """Password reset by email, log in, and the account pages, all as proper forms."""
    from tests.factories import UserFactory

    user = UserFactory(email="member@example.com")
    new_password = "Neues-Passwort-2024!"
    page = new_page(browser, live_server.url)
    submit = page.locator('main form button[type="submit"]')

    # Forgot the password: ask for a reset link.
    page.goto("/accounts/login/")
    page.locator('main a[href="/accounts/password/reset/"]').first.click()
    page.wait_for_url(re.compile(r"/accounts/password/reset/$"))
    assert page.locator("input[name=email].form-control").is_visible()
    shot(page, "account-01-password-reset")
    page.fill("input[name=email]", user.email)
    submit.first.click()
    page.wait_for_url(re.compile(r"/accounts/password/reset/done/"))
    shot(page, "account-02-password-reset-done")

    # Follow the emailed link and choose a new password: that also logs the user in.
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [user.email]
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+", mailoutbox[0].body).group(0)
    page.goto(link)
    page.locator("input[name=password1]").wait_for(state="visible")
    page.fill("input[name=password1]", new_password)
    page.fill("input[name=password2]", new_password)
    shot(page, "account-03-password-reset-new")
    submit.first.click()
    page.wait_for_url(live_server.url + "/")  # ACCOUNT_LOGIN_ON_PASSWORD_RESET: logged in, back home
    page.locator("main .alert-success").first.wait_for(state="visible")
    shot(page, "account-04-password-reset-complete")
    user.refresh_from_db()
    assert user.check_password(new_password)

    # Log in again: a wrong password is refused with a visible message, the new one works.
    page.context.clear_cookies()
    page.goto("/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", "correct-horse-battery")
    submit.first.click()
    page.locator("main .alert-danger").first.wait_for(state="visible")
    shot(page, "account-05-login-error")
    page.fill("input[name=password]", new_password)
    submit.first.click()
    page.wait_for_url(live_server.url + "/")

    for name, url in [
        ("account-06-profile", "/accounts/profile/"),
        ("account-07-password-change", "/accounts/password/change/"),
        ("account-08-email", "/accounts/email/"),
        ("account-09-orders-empty", "/orders/"),
    ]:
        page.goto(url)
        assert page.locator("main h1").first.is_visible(), url
        shot(page, name)
    assert not page.js_errors, page.js_errors
    page.context.close()
