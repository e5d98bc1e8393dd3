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
    assert page.status_code == 200 and 'data-testid="pay-qr"' in html and "<svg" in html
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
    assert page.status_code == 200 and "<svg" in page.content.decode()
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
