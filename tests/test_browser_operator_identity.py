"""In real Chromium, at 390 px and 1366 px: an agent without a verified operator identity is told
so on the storefront page, submits a business identity with its licence, staff reject it with a
reason, the agent sees the reason, corrects it, staff verify it and the storefront opens (issue 14).
Screenshots operators-*.png."""

import pytest
from PIL import Image

from agents.models import OperatorIdentity
from agents.services import agents as services
from agents.services import operators
from tests.browser_helpers import PHONE, SCREENSHOTS, log_in, shot
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 860}
USCC = "91350100M000100Y43"


def licence_file(tmp_path):
    path = tmp_path / "licence.png"
    Image.new("RGB", (800, 560), "#f5efe0").save(path, format="PNG")
    return str(path)


@pytest.mark.parametrize(("name", "viewport"), [("phone", PHONE), ("desktop", WIDE)])
def test_the_agent_submits_is_rejected_corrects_and_opens(browser, live_server, level, staff, tmp_path, name, viewport):
    agent = services.agent_create(user=UserFactory(), level=level)
    page = log_in(browser, live_server, agent.user, viewport=viewport)

    page.goto("/agent/storefront/")
    gate = page.locator('[data-testid="operator-gate"]')
    assert gate.is_visible()
    gate.locator("a").click()
    page.wait_for_url("**/agent/storefront/operator/")

    # The individual's fields show for the default type; choosing a business shows the others.
    assert page.locator("#op-id").is_visible() and not page.locator("#op-uscc").is_visible()
    page.locator('[data-testid="kind-business"]').check()
    assert page.locator("#op-uscc").is_visible() and not page.locator("#op-id").is_visible()
    page.fill("#op-company", "杭州示例数码有限公司")
    page.fill("#op-uscc", USCC[:-1] + "4")  # a wrong check character first
    page.set_input_files("#op-licence", licence_file(tmp_path))
    page.fill("#op-name", "王五")
    page.fill("#op-address", "浙江省杭州市西湖区文三路 90 号")
    page.fill("#op-phone", "0571-87654321")
    page.locator('[data-testid="submit-operator"]').click()
    assert page.locator("#op-uscc.is-invalid").is_visible()
    assert "校验码" in page.locator("#op-uscc ~ .invalid-feedback").inner_text()
    shot(page, f"operators-01-refused-{name}")

    page.fill("#op-uscc", USCC)
    page.set_input_files("#op-licence", licence_file(tmp_path))
    page.locator('[data-testid="submit-operator"]').click()
    badge = page.locator('[data-testid="operator-status-badge"]')
    assert badge.inner_text().strip() == "待核验"

    identity = OperatorIdentity.objects.get(agent=agent)
    operators.operator_identity_reject(identity_id=identity.pk, by=staff, reason="营业执照图片不清晰，请重新上传")
    page.reload()
    assert "营业执照图片不清晰" in page.locator('[data-testid="operator-reject-reason"]').inner_text()
    shot(page, f"operators-02-rejected-{name}")

    page.set_input_files("#op-licence", licence_file(tmp_path))
    page.locator('[data-testid="submit-operator"]').click()
    assert page.locator('[data-testid="operator-status-badge"]').inner_text().strip() == "待核验"
    operators.operator_identity_verify(identity_id=identity.pk, by=staff)
    page.reload()
    assert page.locator('[data-testid="operator-status-badge"]').inner_text().strip() == "已验证"
    shot(page, f"operators-03-verified-{name}")

    page.goto("/agent/storefront/")
    assert page.locator('[data-testid="operator-gate"]').count() == 0
    page.fill("#sf-name", "示例数码卡铺")
    page.fill("#sf-slug", f"demo-{name}")
    page.locator('[data-testid="open-storefront"]').click()
    page.locator('[data-testid="storefront-summary"]').wait_for()
    page.goto(f"/s/demo-{name}/")
    assert "示例数码卡铺" in page.locator("body").inner_text()
    assert not page.js_errors, page.js_errors
    assert (SCREENSHOTS / f"operators-03-verified-{name}.png").exists()
