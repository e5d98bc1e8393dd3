"""In real Chromium, at 390 px and 1366 px: the footer's link to the trust centre (platform page and
storefront), the trust centre over the demo data with its figures computed, and the certificate
lookup found and not found (issue 14). Screenshots trust-centre-*.png."""

import pytest
from django.core.management import call_command

from catalog.models import Supplier
from tests.browser_helpers import PHONE, SCREENSHOTS, new_page, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 860}


@pytest.fixture
def demo(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    call_command("seed_demo", "--quiet")
    call_command("seed_demo_agents", "--quiet")
    call_command("seed_demo_sales")
    call_command("seed_demo_aftersales")
    call_command("seed_demo_compliance", verbosity=0)
    call_command("trust_compute", verbosity=0)


def test_trust_centre_and_footer_at_phone_and_desktop_widths(browser, live_server, demo):
    supplier = Supplier.objects.filter(is_authorised=True, products__is_active=True).exclude(authorisation_cert_no="")
    cert = supplier.first().authorisation_cert_no
    for name, viewport in (("phone", PHONE), ("desktop", WIDE)):
        page = new_page(browser, live_server.url, viewport=viewport)
        page.goto("/s/jinpai/")
        link = page.locator("[data-testid=footer-trust]")
        assert "信任中心" in link.inner_text()
        page.locator("footer").screenshot(path=str(SCREENSHOTS / f"trust-centre-01-storefront-footer-{name}.png"))
        page.goto("/")
        page.locator("footer").screenshot(path=str(SCREENSHOTS / f"trust-centre-01-footer-{name}.png"))
        page.locator("[data-testid=footer-trust]").click()
        page.wait_for_url("**/trust/")

        text = page.locator("[data-testid=trust-centre]").inner_text()
        for heading in ("营业执照", "您的钱付给了谁", "供货商及其授权", "近 30 天", "近 90 天", "用户资金，单独核算"):
            assert heading in text, heading
        assert "杭州卡盟数字科技有限公司" in page.locator("[data-testid=trust-payee]").inner_text()
        assert "根据平台记录于" in page.locator("[data-testid=trust-computed-at]").inner_text()
        # Every figure is a value or a sentence saying there was nothing to count, never blank.
        figures = page.locator("[data-testid=trust-figure] dd").all_inner_texts()
        assert len(figures) == 12 and all(f.strip() for f in figures)
        assert page.locator("[data-testid=trust-owed-total]").inner_text().startswith("¥")
        shot(page, f"trust-centre-02-page-{name}")

        page.fill("#certificate-number", cert.lower())
        page.locator("[data-testid=certificate-form] button[type=submit]").click()
        found = page.locator("[data-testid=certificate-found]")
        assert supplier.first().name in found.inner_text()
        assert page.locator("[data-testid=certificate-products] div").count() >= 1
        shot(page, f"trust-centre-03-certificate-found-{name}")

        page.fill("#certificate-number", "ZZ-0000-FAKE")
        page.locator("[data-testid=certificate-form] button[type=submit]").click()
        assert "ZZ-0000-FAKE" in page.locator("[data-testid=certificate-not-found]").inner_text()
        shot(page, f"trust-centre-04-certificate-not-found-{name}")
        assert page.js_errors == []
