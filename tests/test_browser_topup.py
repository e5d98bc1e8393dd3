"""A direct top-up (代充) in a real browser: a buyer on a phone fills the product's top-up fields
(typing the phone number twice: a mismatch is refused before payment), pays in the sandbox
cashier, waits while staff top it up by hand (the manual queue), and sees it done. Screenshots
of the checkout and the order page on a phone and a desktop under ``test-artifacts/screenshots/``."""

import re
from decimal import Decimal

import pytest

from catalog.models import Product
from orders.models import ManualTopup, Order
from orders.services import topup as manual
from tests.browser_helpers import DESKTOP, log_in, shot, wait_for_status
from tests.factories import CategoryFactory, ProductFactory, SupplierFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE_FIELDS = [
    {
        "name": "phone",
        "label": "手机号码",
        "pattern": r"^1[3-9]\d{9}$",
        "min_length": 11,
        "max_length": 11,
        "confirm": True,
        "help": "11 位中国大陆手机号码，支持移动、联通、电信",
    }
]


@pytest.fixture
def huafei(db):
    return ProductFactory(
        category=CategoryFactory(name="话费充值", slug="huafei"),
        supplier=SupplierFactory(name="三网话费直充服务商"),
        name="全国三网话费 50 元 快充",
        slug="huafei-50",
        kind=Product.Kind.DIRECT_TOPUP,
        supply_mode=Product.SupplyMode.MANUAL,
        topup_fields=PHONE_FIELDS,
        face_value=Decimal("50.00"),
        price=Decimal("49.50"),
        supply_cost=Decimal("48.80"),
        max_per_order=5,
    )


def test_a_buyer_fills_the_topup_fields_pays_and_sees_it_done(browser, live_server, huafei):
    buyer = UserFactory(email="buyer@example.com")
    staff = UserFactory(is_staff=True, is_superuser=True)
    page = log_in(browser, live_server, buyer)

    page.goto(f"/p/{huafei.slug}/")
    assert "充值成功后不支持7天无理由退款" in page.locator('[data-testid="topup-no-return"]').first.inner_text()
    shot(page, "topup-01-product")
    page.locator('[data-testid="buy-now"]').click()
    page.wait_for_url(re.compile(rf"/orders/checkout/{huafei.slug}/"))

    # A mistyped confirmation is refused before anything is paid; what was typed stays.
    page.fill('[data-testid="topup-phone"]', "13812345678")
    page.fill('[data-testid="topup-phone-confirm"]', "13812345679")
    page.locator('[data-testid="topup-ack"]').check()
    page.locator('[data-testid="channel-sandbox"] input').check()
    page.locator('[data-testid="place-order"]').click()
    error = page.locator('[data-testid="topup-error-phone-confirm"]')
    error.wait_for(state="visible")
    assert "不一致" in error.inner_text()
    assert page.locator('[data-testid="topup-phone"]').input_value() == "13812345678"
    assert not Order.objects.exists()
    shot(page, "topup-02-checkout-mismatch")

    page.fill('[data-testid="topup-phone-confirm"]', "13812345678")
    page.locator('[data-testid="topup-ack"]').check()
    page.locator('[data-testid="channel-sandbox"] input').check()
    shot(page, "topup-03-checkout")
    page.locator('[data-testid="place-order"]').click()

    page.wait_for_url(re.compile(r"/pay/sandbox/"))
    assert page.locator('[data-testid="sandbox-amount"]').inner_text().strip() == "¥49.50"
    page.locator('[data-testid="sandbox-confirm"]').click()

    # Paid: waiting in the staff's queue.
    page.wait_for_url(re.compile(r"/orders/[^/]+/$"))
    wait_for_status(page, "paid")
    order = Order.objects.get(buyer=buyer)
    assert order.topup_values == {"phone": "13812345678"}
    state = page.locator('[data-testid="topup-state"]')
    assert state.get_attribute("data-state") == "waiting" and "等待充值" in state.inner_text()
    assert page.locator('[data-testid="topup-value-phone"]').inner_text() == "138****5678"
    shot(page, "topup-04-order-waiting")

    # Staff top it up (the admin's button calls this service).
    assert manual.manual_topup_done(topup_id=ManualTopup.objects.get(order=order).pk, actor=staff, note="流水 A1")

    wait_for_status(page, "delivered")
    assert page.locator('[data-testid="topup-state"]').get_attribute("data-state") == "done"
    assert "已充值" in page.locator('[data-testid="topup-state"]').inner_text()
    assert page.locator('[data-testid="reveal"]').count() == 0  # no code changes hands
    shot(page, "topup-05-order-done")

    page.set_viewport_size(DESKTOP)
    page.goto(f"/orders/checkout/{huafei.slug}/")
    shot(page, "topup-desktop-checkout")
    page.goto(f"/orders/{order.number}/")
    shot(page, "topup-desktop-order-done")
    page.goto("/orders/")
    assert (
        page.locator('[data-testid="order-row"]', has_text=huafei.name)
        .locator('[data-status="delivered"]')
        .is_visible()
    )
    assert not page.js_errors, page.js_errors
    page.context.close()


def test_staff_see_the_queue_and_mark_a_topup_done_in_admin(browser, live_server, huafei):
    from orders.services.orders import order_place
    from payments.services import payments

    buyer = UserFactory()
    values = {"phone": "13912345678", "phone__confirm": "13912345678"}
    order = order_place(buyer=buyer, product=huafei, quantity=1, idempotency_key="k1", topup=values)
    payments.sandbox_pay(order_number=order.number)
    staff = UserFactory(is_staff=True, is_superuser=True)
    page = log_in(browser, live_server, staff, viewport=DESKTOP)

    page.goto("/admin/orders/manualtopup/")
    assert order.number in page.locator("#result_list").inner_text()
    assert "13912345678" in page.locator("#result_list").inner_text()  # staff see the account in full
    shot(page, "topup-admin-queue")
    page.locator("#result_list a", has_text=order.number).first.click()
    page.fill('[data-testid="done-note"]', "运营商流水 8812")
    shot(page, "topup-admin-change")
    page.locator('[data-testid="mark-done"]').click()
    page.wait_for_url(re.compile(r"/admin/orders/manualtopup/"))
    assert "已标记为充值成功" in page.locator(".messagelist").inner_text()
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    page.context.close()
