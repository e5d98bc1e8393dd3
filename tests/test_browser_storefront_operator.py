"""In real Chromium, at 390 px and 1366 px: a storefront's "经营者信息" footer block (电子商务法
第十五条) on its home and product pages, the operator page and the licence image for a business,
the masked name, region and 第十条 statement for an individual (issue 14). Screenshots
storefront-operator-*.png."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw

from agents.models import OperatorIdentity
from agents.services import agents as agent_services
from agents.services import operators, storefronts
from tests.browser_helpers import PHONE, SCREENSHOTS, new_page, shot
from tests.factories import AgentLevelFactory, ProductFactory, UserFactory, add_stock, id_number_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 860}
Kind = OperatorIdentity.Kind
ID_NUMBER = id_number_for(77)


def licence_upload() -> SimpleUploadedFile:
    image = Image.new("RGB", (900, 620), "#fbf6ea")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 880, 600), outline="#b8860b", width=8)
    draw.rectangle((380, 60, 520, 110), fill="#c0392b")
    for y in range(170, 520, 50):
        draw.line((90, y, 810, y), fill="#8a7a5a", width=3)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return SimpleUploadedFile("licence.png", out.getvalue(), content_type="image/png")


@pytest.fixture
def shops(staff):
    level = AgentLevelFactory()
    product = ProductFactory(name="Steam 钱包充值卡 100 元", slug="steam-100")
    add_stock(product, 3)
    company = agent_services.agent_create(user=UserFactory(), level=level)
    person = agent_services.agent_create(user=UserFactory(), level=level)
    business = operators.operator_identity_submit(
        agent=company,
        kind=Kind.BUSINESS,
        legal_name="王五",
        company_name="杭州示例数码有限公司",
        credit_code="91350100M000100Y43",
        address="浙江省杭州市西湖区文三路 90 号",
        phone="0571-87654321",
        licence_image=licence_upload(),
    )
    individual = operators.operator_identity_submit(
        agent=person,
        kind=Kind.INDIVIDUAL,
        legal_name="张小三",
        id_number=ID_NUMBER,
        address="广东省深圳市南山区科技园 8 栋 1203 室",
        phone="13800138000",
        small_sales_declared=True,
    )
    for identity in (business, individual):
        operators.operator_identity_verify(identity_id=identity.pk, by=staff)
    storefronts.storefront_open(agent=company, slug="shuma", name="示例数码旗舰店")
    storefronts.storefront_open(agent=person, slug="xiaosan", name="小张的卡铺")
    return product


def test_operator_information_at_phone_and_desktop_widths(browser, live_server, shops):
    for name, viewport in (("phone", PHONE), ("desktop", WIDE)):
        page = new_page(browser, live_server.url, viewport=viewport)

        # A business: its licence information on the home page's footer, then the operator page.
        page.goto("/s/shuma/")
        block = page.locator("[data-testid=shop-operator]")
        text = block.inner_text()
        licence = ("杭州示例数码有限公司", "91350100M000100Y43", "王五", "浙江省杭州市西湖区文三路 90 号")
        for shown in ("经营者信息", *licence):
            assert shown in text, shown
        assert "平台已核验 20" in text and "营业执照" in text
        block.screenshot(path=str(SCREENSHOTS / f"storefront-operator-01-business-footer-{name}.png"))
        page.goto("/s/shuma/p/steam-100/")
        assert "杭州示例数码有限公司" in page.locator("[data-testid=shop-operator]").inner_text()
        page.locator("[data-testid=operator-licence-link]").click()
        page.wait_for_url("**/s/shuma/operator/#licence")
        image = page.locator("[data-testid=operator-licence] img")
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        assert page.locator("[data-testid=operator-page]").inner_text().count("91350100M000100Y43") == 1
        page.evaluate("window.scrollTo(0, 0)")  # the sticky bar otherwise sits mid-page in a full shot
        shot(page, f"storefront-operator-02-business-page-{name}")

        # An individual: surname only, the region, the 第十条 statement; nothing private.
        page.goto("/s/xiaosan/")
        block = page.locator("[data-testid=shop-operator]")
        text = block.inner_text()
        assert "张**" in text and "广东省深圳市" in text
        assert "依照《电子商务法》第十条 无需办理市场主体登记（零星小额交易）" in text
        html = page.content()
        for private in ("张小三", ID_NUMBER, "南山区", "1203", "13800138000"):
            assert private not in html, private
        block.screenshot(path=str(SCREENSHOTS / f"storefront-operator-03-individual-footer-{name}.png"))
        page.locator("[data-testid=operator-page-link]").click()
        page.wait_for_url("**/s/xiaosan/operator/")
        assert "仅显示姓氏和所在地区" in page.locator("[data-testid=operator-privacy]").inner_text()
        assert page.locator("[data-testid=operator-licence]").count() == 0
        shot(page, f"storefront-operator-04-individual-page-{name}")

        page.locator("[data-testid=operator-page] a[href='/trust/']").click()
        page.wait_for_url("**/trust/")
        assert page.js_errors == []
