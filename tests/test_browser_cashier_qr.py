"""In real Chromium: the cashier pages' QR codes, drawn by the browser (static/js/qr.js), are read
back by a real decoder (zxing-cpp) to the text the server meant, at the error correction the
server's drawing had; without JavaScript, the <noscript> image (the server's drawing, signed)
decodes to the same text. Screenshots of both pages on a phone and a desktop, in Chinese."""

import io

import pytest
import segno
import zxingcpp
from PIL import Image

from orders.services.orders import order_place
from tests.browser_helpers import DESKTOP, PHONE, log_in, shot
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SQUARE = 180 + 16 + 2  # static/css/site.css's .qr: the code, padding .5rem, a 1px border


def decoded(locator) -> list[tuple[str, str]]:
    """The QR codes in a screenshot of ``locator``: their text and error correction level."""
    image = Image.open(io.BytesIO(locator.screenshot()))
    return [
        (found.text, found.ec_level) for found in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    ]


def segno_level(text: str) -> str:
    """The error correction of the server's drawing (segno, error="m" boosted as it fits)."""
    return segno.make(text, error="m").error


@pytest.fixture
def order_of():
    user = UserFactory(email="qr@example.com")
    product = ProductFactory(name="爱奇艺 VIP 月卡", price="19.00")
    add_stock(product, 4)
    count = iter(range(100))
    return user, lambda: order_place(buyer=user, product_id=product.pk, quantity=1, idempotency_key=f"qr-{next(count)}")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_browser_draws_the_cashier_codes_that_decode(browser, live_server, alipay, fake, order_of, viewport):
    user, new_order = order_of
    page = log_in(browser, live_server, user, viewport=viewport)
    name = "phone" if viewport == PHONE else "desktop"

    # The sandbox cashier: its code opens the same cashier on another device.
    order = new_order()
    page.goto(f"/pay/sandbox/{order.number}/")
    box = page.locator("[data-testid=sandbox-qr]")
    svg = box.locator("svg")
    svg.wait_for()
    assert svg.get_attribute("aria-hidden") == "true" and box.locator("img").count() == 0
    assert svg.bounding_box()["width"] == pytest.approx(180, abs=1)
    assert box.bounding_box()["width"] == box.bounding_box()["height"] == SQUARE
    expected = f"{live_server.url}/pay/sandbox/{order.number}/"
    assert decoded(box) == [(expected, segno_level(expected))]
    shot(page, f"qr-01-sandbox-cashier-{name}")

    # Content htmx swaps in is drawn too; a short text gets the higher error correction segno
    # would give it in the same size (Q here, not the M asked for).
    short = "http://testserver/pay/sandbox/x/"
    assert segno_level(short) == "Q"
    page.evaluate(
        """text => htmx.swap("main", `<div class="qr" data-testid="swapped-qr" data-qr-text="${text}"
                              data-qr-scale="4"></div>`, {swapStyle: "afterbegin"})""",
        short,
    )
    swapped = page.locator("[data-testid=swapped-qr]")
    swapped.locator("svg").wait_for()
    assert decoded(swapped) == [(short, "Q")]

    # Alipay's QR page (precreate): the code of the trade, labelled for screen readers.
    order = new_order()
    page.goto(f"/pay/{order.number}/")
    page.locator("[data-testid=gateway-alipay-qr]").click()
    box = page.locator("[data-testid=pay-qr]")
    svg = box.locator("svg")
    svg.wait_for()
    assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-label") == "用支付宝扫码支付的二维码"
    expected = fake.qr_code(order.number)
    assert decoded(box) == [(expected, segno_level(expected))]
    shot(page, f"qr-02-alipay-qr-{name}")
    assert page.js_errors == []


def test_without_javascript_the_server_drawing_decodes(browser, live_server, order_of):
    user, new_order = order_of
    page = log_in(browser, live_server, user, viewport=PHONE)
    context = browser.new_context(
        base_url=live_server.url,
        viewport=PHONE,
        locale="zh-CN",
        java_script_enabled=False,
        storage_state=page.context.storage_state(),
    )
    order = new_order()
    nojs = context.new_page()
    nojs.goto(f"/pay/sandbox/{order.number}/")
    box = nojs.locator("[data-testid=sandbox-qr]")
    image = box.locator("img")
    image.wait_for()
    nojs.wait_for_function("document.querySelector('[data-testid=sandbox-qr] img').complete")
    assert image.evaluate("img => img.naturalWidth") > 0 and box.locator("svg").count() == 0
    expected = f"{live_server.url}/pay/sandbox/{order.number}/"
    assert decoded(box) == [(expected, segno_level(expected))]
    shot(nojs, "qr-03-sandbox-cashier-no-javascript")
    assert box.bounding_box()["width"] == box.bounding_box()["height"] == SQUARE
    context.close()


def test_the_square_is_there_before_the_code(browser, live_server, order_of):
    """While the script has not drawn (here: never, it is not served), the box already has the
    code's size: nothing moves when the code appears."""
    user, new_order = order_of
    page = log_in(browser, live_server, user, viewport=PHONE)
    page.route("**/js/qr.js", lambda route: route.abort())
    page.goto(f"/pay/sandbox/{new_order().number}/")
    box = page.locator("[data-testid=sandbox-qr]")
    assert box.locator("svg").count() == 0 and box.locator("img").count() == 0
    assert box.bounding_box()["width"] == box.bounding_box()["height"] == SQUARE
