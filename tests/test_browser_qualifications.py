"""In real Chromium, at 390 px and 1366 px: the qualifications in the footer of a platform page
and of a storefront, and the public qualifications page with the licence image (issue 14).
Screenshots qualifications-*.png."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance import services
from compliance.models import Qualification
from tests.browser_helpers import PHONE, SCREENSHOTS, new_page, shot
from tests.builders import chain_of
from tests.factories import storefront_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 860}


def test_footer_and_qualifications_page_at_phone_and_desktop_widths(browser, live_server, level, staff):
    call_command("seed_demo_compliance", verbosity=0)
    storefront_create(agent=chain_of(1, level)[0], slug="lucky-star", name="幸运星数码卡铺")
    for name, viewport in (("phone", PHONE), ("desktop", WIDE)):
        page = new_page(browser, live_server.url, viewport=viewport)
        for where, url in (("home", "/"), ("storefront", "/s/lucky-star/")):
            page.goto(url)
            footer = page.locator("[data-testid=footer-qualifications]")
            assert "统一社会信用代码 91330106MA2H3K7Q0C" in footer.inner_text()
            icp = footer.get_by_role("link", name="浙ICP备2021036521号-1")
            assert icp.get_attribute("href") == "https://beian.miit.gov.cn/"
            mps = footer.get_by_role("link", name="浙公网安备33010602011876号")
            assert mps.get_attribute("href") == "https://beian.mps.gov.cn/#/query/webSearch?code=33010602011876"
            assert "增值电信业务经营许可证：浙B2-20210452" in footer.inner_text()
            page.locator("footer").screenshot(path=str(SCREENSHOTS / f"qualifications-01-footer-{where}-{name}.png"))
        page.locator("[data-testid=footer-qualifications-page]").click()
        page.wait_for_url("**/trust/qualifications/")
        page.locator("[data-testid=qualification-image] img").scroll_into_view_if_needed()
        page.wait_for_function("document.querySelector('[data-testid=qualification-image] img').naturalWidth > 0")
        assert page.locator("[data-testid=qualification]").count() == 4
        assert page.locator("[data-expired]").count() == 0
        page.evaluate("window.scrollTo(0, 0)")
        shot(page, f"qualifications-02-page-{name}")
        assert page.js_errors == []

    # The telecom licence ends yesterday: expired on the page and in the footer, not left out.
    telecom = Qualification.objects.get(kind=Qualification.Kind.TELECOM_LICENCE)
    values = {f: getattr(telecom, f) for f in services.QUALIFICATION_FIELDS}
    values["valid_until"] = timezone.localdate() - timedelta(days=1)
    services.qualification_save(actor=staff, qualification_id=telecom.pk, values=values)
    page = new_page(browser, live_server.url, viewport=PHONE)
    page.goto("/trust/qualifications/")
    card = page.locator("[data-testid=qualification][data-expired]")
    assert "已过期（有效期至" in card.inner_text()
    assert "已过期" in page.locator("[data-testid=footer-qualifications] [data-expired]").inner_text()
    shot(page, "qualifications-03-expired-phone")
