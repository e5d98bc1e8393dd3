"""In real Chromium (issue 14): a rights holder finds the notice form from the footer, files a
notice about a product on sale, gets the receipt, and the product is gone from the shop.
Screenshots rights-notice-*.png."""

import pytest
from django.core import mail

from catalog.models import Product
from rights.models import RightsNotice
from tests.browser_helpers import DESKTOP, PHONE, new_page, shot
from tests.factories import ProductFactory, SupplierFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_root(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"


def test_a_rights_holder_files_a_notice_and_the_product_leaves_the_shop(browser, live_server, private_root):
    product = ProductFactory(
        name="星辰点卡 100 元", slug="xingchen-100", supplier=SupplierFactory(contact_email="supply@example.com")
    )
    add_stock(product, 2)
    page = new_page(browser, live_server.url, viewport=PHONE)
    page.goto(f"/p/{product.slug}/")
    assert page.locator("h1").first.inner_text()
    page.locator("[data-testid=footer-rights]").click()
    page.wait_for_url("**/rights/notices/new/")
    assert "侵权" in page.locator("h1").inner_text()
    shot(page, "rights-notice-01-form-phone")

    page.fill("#id_notifier_name", "星辰互娱有限公司")
    page.fill("#id_notifier_email", "legal@xingchen.example")
    page.fill("#id_product_reference", f"{live_server.url}/p/{product.slug}/")
    page.select_option("#id_right_claimed", "trademark")
    page.fill("#id_right_detail", "第12345678号")
    page.fill("#id_evidence", "我司享有“星辰”注册商标专用权（第12345678号），该点卡并非我司授权渠道销售。")
    page.locator("[data-testid=rights-submit]").click()
    # Without the declaration the form comes back with the error.
    assert page.locator(".invalid-feedback").count() >= 1
    page.check("#id_declaration")
    page.locator("[data-testid=rights-submit]").click()
    page.wait_for_url("**/rights/notices/filed/")
    notice = RightsNotice.objects.get()
    assert notice.number in page.locator("[data-testid=rights-notice-number]").inner_text()
    shot(page, "rights-notice-02-filed-phone")

    assert Product.objects.get(pk=product.pk).sale_hold
    assert any(m.to == ["supply@example.com"] for m in mail.outbox)
    response = page.goto(f"/p/{product.slug}/")
    assert response.status == 404
    assert page.js_errors == []

    wide = new_page(browser, live_server.url, viewport=DESKTOP)
    wide.goto("/rights/notices/new/")
    shot(wide, "rights-notice-03-form-desktop")
    assert wide.js_errors == []
