"""The cashier pages' QR codes (payments.qr): the browser draws them from ``data-qr-text``, so a
cashier page draws nothing on the server; a browser without JavaScript gets the server's drawing
through a signed address, which draws only what this server signed (tests/test_browser_cashier_qr.py
decodes both drawings in Chromium)."""

import re
from html import unescape

import pytest
import segno
from django.core import signing

from orders.services.orders import order_place
from payments import qr
from tests.factories import ProductFactory, add_stock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pending(buyer):
    product = ProductFactory()
    add_stock(product, 2)
    return order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="k")


@pytest.fixture
def draws(monkeypatch):
    """Every segno drawing, counted; the caches emptied first, so a drawing is not a cache hit."""
    made = []
    real = segno.make

    def counting(*args, **kwargs):
        made.append(args[0])
        return real(*args, **kwargs)

    qr.qr_svg.cache_clear()
    monkeypatch.setattr(qr.segno, "make", counting)
    yield made
    qr.qr_svg.cache_clear()


def shown(html: str) -> tuple[str, str]:
    """The text the page asks the browser to draw, and its no-JavaScript image's address."""
    text = re.search(r'data-qr-text="([^"]+)"', html)
    image = re.search(r'<noscript><img src="([^"]+)"', html)
    assert text and image, html
    return unescape(text.group(1)), unescape(image.group(1))


def test_the_cashier_pages_draw_no_qr_on_the_server(client, buyer, pending, alipay, fake, draws):
    client.force_login(buyer)
    sandbox = client.get(f"/pay/sandbox/{pending.number}/")
    assert sandbox.status_code == 200
    text, image = shown(sandbox.content.decode())
    assert text == f"http://testserver/pay/sandbox/{pending.number}/"
    assert image.startswith("/pay/qr/") and image.endswith(".svg")
    assert 'aria-hidden="true"' in sandbox.content.decode()  # the sandbox's code is a convenience
    page = client.post(f"/pay/{pending.number}/start/alipay/", {"mode": "qr"})
    html = page.content.decode()
    assert page.status_code == 200 and fake.methods()[-1] == "alipay.trade.precreate"
    assert shown(html)[0] == fake.qr_code(pending.number)
    assert 'data-qr-label="' in html and "js/qr.js" in html and "qrcode-generator/qrcode.js" in html
    assert draws == []  # nothing drawn here: the browser draws


def test_the_fallback_image_draws_the_signed_text_once(client, buyer, pending, draws):
    client.force_login(buyer)
    text, image = shown(client.get(f"/pay/sandbox/{pending.number}/").content.decode())
    client.logout()  # the signed address is all it takes: an <img> of the page, no session needed
    answer = client.get(image)
    assert answer.status_code == 200 and answer["Content-Type"] == "image/svg+xml"
    assert answer.content.decode() == qr.qr_svg(text, 4)
    assert answer.content.startswith(b'<svg xmlns="http://www.w3.org/2000/svg" ')
    assert "private" in answer["Cache-Control"]
    assert client.get(image).status_code == 200
    assert draws == [text]  # drawn once, then from the caches


def test_the_fallback_refuses_a_token_it_did_not_sign(client, draws, monkeypatch):
    good = qr.fallback_token("https://qr.alipay.com/baxgood", 5)
    assert client.get(f"/pay/qr/{good}.svg").status_code == 200
    payload, stamp, signature = good.rsplit(":", 2)
    forged = qr.fallback_token("https://example.com/evil", 5).rsplit(":", 2)[0]
    tampered = (
        f"{forged}:{stamp}:{signature}",  # another text under this signature
        f"{payload}:{stamp}:{signature[:-2]}{'AA' if not signature.endswith('AA') else 'BB'}",
        "not-a-token",
        signing.dumps(["https://example.com/evil", 5]),  # signed, but not for this (no salt)
    )
    for token in tampered:
        assert client.get(f"/pay/qr/{token}.svg").status_code == 404, token
    assert client.get(f"/pay/qr/{qr.fallback_token('x', 99)}.svg").status_code == 404  # a scale not offered
    monkeypatch.setattr(qr, "CACHE_SECONDS", -1)  # every token older than its age limit
    assert client.get(f"/pay/qr/{good}.svg").status_code == 404
    assert draws == ["https://qr.alipay.com/baxgood"]


def test_the_fallback_is_rate_limited_per_network(client, settings, draws):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "qr_image": {"network": (2, 600)}}
    token = qr.fallback_token("https://qr.alipay.com/baxlimit", 5)
    assert [client.get(f"/pay/qr/{token}.svg").status_code for _ in range(3)] == [200, 200, 429]
    other = client.get(f"/pay/qr/{token}.svg", REMOTE_ADDR="198.51.100.7")
    assert other.status_code == 200
