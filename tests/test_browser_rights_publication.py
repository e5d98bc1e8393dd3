"""In real Chromium, at 390 px and 1366 px (issue 14, 电子商务法 第四十四条): a visitor finds the public
register of rights notices from the footer, filters it by status, searches it by product, opens a
notice and reads its timeline; nothing private is on the pages, and nothing overflows on a phone.
Screenshots rights-register-*.png."""

import pytest

from rights import services
from rights.models import RightsNotice
from tests.browser_helpers import PHONE, SCREENSHOTS, new_page, shot
from tests.factories import ProductFactory, SupplierFactory, UserFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 860}
EVIDENCE = "我司享有“星辰”注册商标专用权（第12345678号），该点卡并非我司授权渠道销售。"
COUNTER = "我方商品购自品牌授权经销商，附发票第 889 号及授权书，不存在侵权行为。"


@pytest.fixture
def notices(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"
    staff = UserFactory(is_staff=True)
    supplier = SupplierFactory(name="华南数卡供应链", contact_email="supply@example.com")
    products = {}
    for slug, name in (
        ("xingchen-100", "星辰点卡 100 元"),
        ("moon-50", "月光游戏礼品卡 50 元"),
        ("sun-30", "太阳币 30 元"),
    ):
        products[slug] = ProductFactory(name=name, slug=slug, supplier=supplier)
        add_stock(products[slug], 1)

    def file(slug, right="trademark", detail="第12345678号"):
        return services.notice_file(
            product_reference=slug,
            notifier_name="李四",
            notifier_email="lisi@private.example",
            right_claimed=right,
            right_detail=detail,
            evidence=EVIDENCE,
            declaration=True,
            ip="198.51.100.23",
        )

    upheld = file("xingchen-100")
    services.notice_counter_record(notice_id=upheld.pk, by=staff, text=COUNTER)
    services.notice_complaint_report(notice_id=upheld.pk, by=staff, note="杭州互联网法院 (2026)浙0192民初1号")
    withdrawn = file("sun-30", right="copyright", detail="")
    services.notice_withdraw(notice_id=withdrawn.pk, by=staff, note="权利人来函撤回")
    countered = file("moon-50", right="distribution", detail="授权书 HZ-2026-0042")
    services.notice_counter_record(notice_id=countered.pk, by=staff, text=COUNTER)
    down = file("xingchen-100", right="copyright", detail="国作登字-2026-F-00012345")
    return {"upheld": upheld, "withdrawn": withdrawn, "countered": countered, "down": down}


def no_private(page):
    content = page.content()
    for private in ("lisi", "private.example", "198.51.100.23", "李四", "发票第 889 号", "杭州互联网法院", "来函撤回"):
        assert private not in content, private


def no_overflow(page):
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_the_register_at_phone_and_desktop_widths(browser, live_server, notices):
    for name, viewport in (("phone", PHONE), ("desktop", WIDE)):
        page = new_page(browser, live_server.url, viewport=viewport)
        page.goto("/")
        link = page.locator("[data-testid=footer-rights-register]")
        assert link.inner_text().strip() == "知识产权通知公示"
        page.locator("footer").screenshot(path=str(SCREENSHOTS / f"rights-register-01-footer-{name}.png"))
        link.click()
        page.wait_for_url("**/rights/notices/")
        assert "知识产权通知公示" in page.locator("h1").inner_text()
        cards = page.locator("[data-testid=register-notice]")
        assert cards.count() == 4
        numbers = [cards.nth(i).get_attribute("data-number") for i in range(4)]
        expected = ["down", "countered", "withdrawn", "upheld"]
        assert numbers == [notices[k].number for k in expected]  # newest first
        first = cards.first.inner_text()
        for shown in (
            "星辰点卡 100 元",
            "华南数卡供应链",
            "著作权",
            "国作登字-2026-F-00012345",
            "权利人已提交通知",
            "商品已下架",
        ):
            assert shown in first, shown
        assert "已登记投诉或起诉：继续下架" in cards.nth(3).inner_text()
        assert "转送供货商" in cards.nth(3).inner_text() and "声明送达权利人" in cards.nth(3).inner_text()
        no_private(page)
        no_overflow(page)
        shot(page, f"rights-register-02-list-{name}")

        page.select_option("#rn-status", "counter_noticed")
        page.locator("[data-testid=register-submit]").click()
        page.wait_for_url("**status=counter_noticed**")
        assert cards.count() == 1 and cards.first.get_attribute("data-number") == notices["countered"].number
        assert "处理中" in cards.first.inner_text()

        page.locator("[data-testid=register-clear]").click()
        page.wait_for_url("**/rights/notices/")
        page.fill("#rn-q", "星辰")
        page.locator("[data-testid=register-submit]").click()
        page.wait_for_url("**q=**")
        assert cards.count() == 2
        assert page.locator("[data-testid=search-input]").input_value() == ""  # the site search is not filled
        shot(page, f"rights-register-03-search-{name}")

        page.locator(f"[data-number={notices['upheld'].number}] [data-testid=notice-number]").click()
        page.wait_for_url(f"**/rights/notices/{notices['upheld'].number}/")
        steps = page.locator("[data-testid=notice-timeline] li")
        assert [steps.nth(i).get_attribute("data-status") for i in range(steps.count())] == [
            "received",
            "taken_down",
            "counter_noticed",
            "upheld",
        ]
        assert all(t.strip() for t in page.locator("[data-testid=step-at]").all_inner_texts())
        assert "商品继续下架" in page.locator("[data-testid=notice-outcome]").inner_text()
        no_private(page)
        no_overflow(page)
        shot(page, f"rights-register-04-detail-{name}")
        assert page.js_errors == []


def test_the_trust_centre_links_to_the_register(browser, live_server, notices):
    page = new_page(browser, live_server.url, viewport=PHONE)
    page.goto("/trust/")
    page.locator("[data-testid=trust-rights-register]").click()
    page.wait_for_url("**/rights/notices/")
    assert page.locator("[data-testid=register-notice]").count() == len(RightsNotice.objects.all())
