"""Starting a payment at a real channel from our pages: the PC cashier, the mobile cashier,
Alipay's QR code and WeChat's Native QR; the return link only shows "confirming", and the
QR page moves on once the verified notification arrived."""

import re

import pytest

from orders.models import Order
from orders.services.orders import order_place
from tests.factories import ProductFactory, add_stock
from tests.fake_alipay import notify

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"


@pytest.fixture
def pending(buyer):
    product = ProductFactory()  # 97.00
    add_stock(product, 2)
    return order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="k")


@pytest.mark.django_db(transaction=True)
def test_alipay_cashier_on_a_computer_and_a_phone(client, alipay, fake, buyer, pending):
    client.force_login(buyer)
    choose = client.get(f"/pay/{pending.number}/").content.decode()
    assert 'data-testid="gateway-alipay"' in choose and 'data-testid="gateway-alipay-qr"' in choose
    desktop = client.post(f"/pay/{pending.number}/start/alipay/")
    assert desktop.status_code == 302 and "alipay.trade.page.pay" in desktop["Location"]
    assert "returned%3D1" in desktop["Location"] or "returned=1" in desktop["Location"]
    phone = client.post(f"/pay/{pending.number}/start/alipay/", HTTP_USER_AGENT=PHONE)
    assert "alipay.trade.wap.pay" in phone["Location"]
    on_phone = client.get(f"/pay/{pending.number}/", HTTP_USER_AGENT=PHONE).content.decode()
    assert 'data-testid="gateway-alipay"' in on_phone and "gateway-alipay-qr" not in on_phone


@pytest.mark.django_db(transaction=True)
def test_alipay_qr_code_page_polls_until_the_notification_arrives(client, alipay, fake, buyer, pending):
    client.force_login(buyer)
    page = client.post(f"/pay/{pending.number}/start/alipay/", {"mode": "qr"})
    html = page.content.decode()
    # The code is drawn by the browser from its text (tests/test_browser_cashier_qr.py decodes it).
    assert page.status_code == 200 and 'data-testid="pay-qr"' in html
    assert f'data-qr-text="{fake.qr_code(pending.number)}"' in html and "<noscript><img" in html
    assert fake.methods()[-1] == "alipay.trade.precreate"
    assert f"/pay/{pending.number}/status/" in html
    waiting = client.get(f"/pay/{pending.number}/status/")
    assert waiting.json() == {"status": "pending"} and "HX-Redirect" not in waiting
    fake.add_trade(pending.number, pending.total)
    body = fake.notification(
        out_trade_no=pending.number, total_amount="97.00", trade_no=fake.trades[pending.number].trade_no
    )
    assert notify(client, body).content == b"success"
    done = client.get(f"/pay/{pending.number}/status/")
    assert done["HX-Redirect"] == f"/orders/{pending.number}/"


@pytest.mark.django_db(transaction=True)
def test_coming_back_from_the_cashier_changes_nothing_and_waits(client, alipay, fake, buyer, pending):
    client.force_login(buyer)
    page = client.get(f"/orders/{pending.number}/?returned=1").content.decode()
    assert 'data-testid="confirming"' in page and "?seen=pending" in page
    pending.refresh_from_db()
    assert pending.status == Order.Status.PENDING  # the return link proves nothing
    still = client.get(f"/orders/{pending.number}/status/?seen=pending", HTTP_HX_REQUEST="true")
    assert "HX-Refresh" not in still


@pytest.mark.django_db(transaction=True)
def test_wechat_native_qr_and_h5(client, fake_wechatpay, buyer, pending):
    client.force_login(buyer)
    choose = client.get(f"/pay/{pending.number}/").content.decode()
    assert 'data-testid="gateway-wechat"' in choose
    page = client.post(f"/pay/{pending.number}/start/wechat/")
    html = page.content.decode()
    assert page.status_code == 200 and 'data-testid="pay-qr"' in html
    assert re.search(r'data-qr-text="weixin://[^"]+"', html) and "<noscript><img" in html
    h5 = client.post(f"/pay/{pending.number}/start/wechat/", HTTP_USER_AGENT=PHONE)
    assert h5.status_code == 302 and re.search(r"^https?://", h5["Location"])


@pytest.mark.django_db(transaction=True)
def test_a_gateway_error_is_a_clear_message_not_a_crash(client, alipay, fake, buyer, pending):
    fake.fail_status = 500
    client.force_login(buyer)
    response = client.post(f"/pay/{pending.number}/start/alipay/", {"mode": "qr"}, follow=True)
    assert response.status_code == 200
    assert "500" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_staff_see_each_channels_state_without_secrets(client, staff, alipay, settings):
    settings.WECHATPAY_MCHID = ""
    client.force_login(staff)
    page = client.get("/admin/payments/payment/channels/").content.decode()
    assert 'data-testid="channel-alipay"' in page and 'data-testid="channel-wechat"' in page
    alipay_row = page.split('data-testid="channel-alipay"')[1].split("</tr>")[0]
    wechat_row = page.split('data-testid="channel-wechat"')[1].split("</tr>")[0]
    assert "●" in alipay_row and "○" in wechat_row and "WECHATPAY_MCHID" in wechat_row
    assert settings.ALIPAY_APP_PRIVATE_KEY.splitlines()[1] not in page  # never a key


# --- The checkout chooses the channel itself -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_checkout_lists_the_live_channels_and_hands_the_choice_to_the_cashier(client, alipay, fake, buyer):
    product = ProductFactory()
    add_stock(product, 3)
    client.force_login(buyer)
    page = client.get(f"/orders/checkout/{product.slug}/").content.decode()
    assert 'data-testid="channel-alipay"' in page and 'data-testid="channel-balance"' in page
    radios = re.findall(r'name="channel" value="(\w+)" ?(checked)?', page)
    assert [checked for _code, checked in radios] == ["checked"] + [""] * (len(radios) - 1)  # the first live one
    form = {"quantity": "1", "idempotency_key": "k-alipay", "channel": "alipay"}
    placed = client.post(f"/orders/checkout/{product.slug}/", form)
    order = Order.objects.get(buyer=buyer)
    # 307: the same post (with its CSRF token) goes on to the cashier, which starts the payment.
    assert placed.status_code == 307 and placed["Location"] == f"/pay/{order.number}/start/alipay/"
    started = client.post(placed["Location"], form)
    assert started.status_code == 302 and "alipay.trade.page.pay" in started["Location"]
    # A double click places nothing new and leads to the same cashier.
    again = client.post(f"/orders/checkout/{product.slug}/", form)
    assert again["Location"] == placed["Location"] and Order.objects.filter(buyer=buyer).count() == 1


@pytest.mark.django_db(transaction=True)
def test_balance_goes_to_its_confirmation_and_a_bad_channel_to_the_choice(client, alipay, buyer, english):
    product = ProductFactory()
    add_stock(product, 3)
    client.force_login(buyer)
    url = f"/orders/checkout/{product.slug}/"
    by_balance = client.post(url, {"quantity": "1", "idempotency_key": "k-b", "channel": "balance"})
    first = Order.objects.get(buyer=buyer, idempotency_key="k-b")
    assert by_balance.status_code == 302 and by_balance["Location"] == f"/pay/{first.number}/balance/"
    confirm = client.get(by_balance["Location"])
    assert confirm.status_code == 200 and 'data-testid="balance-after"' in confirm.content.decode()
    assert first.status == Order.Status.PENDING  # nothing is paid before the confirmation
    odd = client.post(url, {"quantity": "1", "idempotency_key": "k-x", "channel": "../../admin"})
    second = Order.objects.get(buyer=buyer, idempotency_key="k-x")
    assert odd["Location"] == f"/pay/{second.number}/"
    # A channel that is not live: the cashier says so and offers the others; the order waits.
    off = client.post(url, {"quantity": "1", "idempotency_key": "k-w", "channel": "wechat"})
    third = Order.objects.get(buyer=buyer, idempotency_key="k-w")
    refused = client.post(off["Location"], {"channel": "wechat"}, follow=True)
    assert refused.redirect_chain[0][0] == f"/pay/{third.number}/"
    assert "not available right now" in refused.content.decode()
    third.refresh_from_db()
    assert third.status == Order.Status.PENDING


@pytest.mark.django_db(transaction=True)
def test_a_guest_is_offered_no_balance_and_a_posted_balance_choice_asks_again(client, alipay):
    product = ProductFactory()
    add_stock(product, 3)
    page = client.get(f"/orders/checkout/{product.slug}/").content.decode()
    assert 'data-testid="channel-alipay"' in page and 'data-testid="channel-balance"' not in page
    guest = {"guest_email": "g@example.net", "guest_email_confirm": "g@example.net", "quantity": "1"}
    placed = client.post(f"/orders/checkout/{product.slug}/", {**guest, "idempotency_key": "g1", "channel": "balance"})
    order = Order.objects.get(guest_email="g@example.net")
    assert placed["Location"] == f"/pay/{order.number}/"
