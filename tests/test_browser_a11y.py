"""Accessibility: axe-core (vendored under ``tests/assets/axe-core/``, a test asset never served)
runs in Debian's Chromium on every page of the buyer's path and on the public pages, on a phone
(390x844) in zh-hans, against WCAG 2.0/2.1 A and AA (which GB/T 37668-2019 follows). Any violation
of impact "serious" or "critical" fails the test, listed with its rule, impact, targets and help URL.

One browser, one context per kind of user (a visitor, a member). Screenshots a11y-*.png."""

import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

from agents.services import agents as agent_services
from tests.browser_helpers import PASSWORD, new_page, shot, wait_for_status
from tests.factories import (
    AgentLevelFactory,
    CategoryFactory,
    ProductFactory,
    UserFactory,
    add_stock,
    storefront_create,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent / "assets" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING = {"serious", "critical"}

# Known violations on the order page, whose templates (templates/orders/order_detail.html and its
# partials) another change owns at the time of writing: the lead fixes them after merging and
# removes the pairs here. (page name, rule id); kept as small as possible.
KNOWN: set[tuple[str, str]] = set()


def axe_violations(page, name):
    """axe-core's serious and critical violations on the page as it is now, as readable lines."""
    # Evaluated through the DevTools protocol, so the Content-Security-Policy (no inline script)
    # does not apply to it; nothing is added to the page's own markup.
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    results = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        TAGS,
    )
    shot(page, f"a11y-{name}")
    lines = []
    for violation in results["violations"]:
        if violation["impact"] not in FAILING or (name, violation["id"]) in KNOWN:
            continue
        targets = [_target(node) for node in violation["nodes"]]
        lines.append(
            f"{name} ({page.url}): {violation['id']} [{violation['impact']}] {violation['help']}\n"
            f"    targets: {'; '.join(targets[:8])}{' ...' if len(targets) > 8 else ''}\n"
            f"    {violation['helpUrl']}"
        )
    return lines


def _target(node):
    """A node's selector, with the colours and ratio when it is a contrast failure."""
    where = ", ".join(" ".join(t) if isinstance(t, list) else t for t in node["target"])
    data = next((check.get("data") for check in node["any"] if check["id"] == "color-contrast"), None)
    if isinstance(data, dict) and data.get("contrastRatio"):
        where += (
            f" ({data['fgColor']} on {data['bgColor']}: {data['contrastRatio']}, needs {data['expectedContrastRatio']})"
        )
    return where


@pytest.fixture
def world(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    call_command("seed_demo_legal")  # the agreements in force (and the legal pages)
    games = CategoryFactory(name="游戏点卡", slug="games")
    product = ProductFactory(
        name="王者荣耀 100点券",
        slug="wzry-100",
        category=games,
        face_value=Decimal("10.00"),
        price=Decimal("9.50"),
        description="官方正规渠道点券卡密，购买后在订单页查看卡密。",
    )
    add_stock(product, 5, numbered=True)
    ProductFactory(name="腾讯视频 VIP 月卡", slug="tencent-video-vip", category=games)  # sold out
    agent = agent_services.agent_create(user=UserFactory(), level=AgentLevelFactory(name="金牌", rank=1))
    shop = storefront_create(agent=agent, slug="xingyun", name="幸运星数字卡铺", notice="官方渠道 · 秒发货")
    return product, shop


def test_pages_have_no_serious_accessibility_violations(browser, live_server, world):
    product, shop = world
    found = []

    # A visitor: the public pages.
    page = new_page(browser, live_server.url)
    for name, url in [
        ("home", "/"),
        ("category", "/c/games/"),
        ("search", "/search/?q=王者"),
        ("product", f"/p/{product.slug}/"),
        ("login", "/accounts/login/"),
        ("signup", "/accounts/signup/"),
        ("guest-lookup", "/orders/lookup/"),
        ("trust", "/trust/"),
        ("storefront", f"/s/{shop.slug}/"),
        ("storefront-product", f"/s/{shop.slug}/p/{product.slug}/"),
        ("legal", "/legal/"),
        ("legal-document", "/legal/user-agreement/"),
    ]:
        assert page.goto(url).ok, url  # the page itself, not an error page
        found += axe_violations(page, name)
    assert not page.js_errors, page.js_errors
    page.context.close()

    # A member: checkout, paying, the order pending and delivered, and the member's own pages.
    buyer = UserFactory(email="a11y@example.com")
    page = new_page(browser, live_server.url)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", buyer.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(re.compile(r"/legal/accept/"))  # the agreements in force, not yet accepted
    found += axe_violations(page, "legal-accept")
    page.locator("[data-testid=legal-accept-box]").check()
    page.locator("[data-testid=legal-accept-submit]").click()
    page.wait_for_url(live_server.url + "/")
    assert page.goto(f"/orders/checkout/{product.slug}/").ok
    found += axe_violations(page, "checkout")
    page.locator("[data-testid=channel-sandbox] input").check()
    page.locator("[data-testid=place-order]").click()
    page.wait_for_url(re.compile(r"/pay/sandbox/(\w+)/"))
    number = re.search(r"/pay/sandbox/(\w+)/", page.url).group(1)
    found += axe_violations(page, "sandbox-cashier")
    assert page.goto(f"/pay/{number}/").ok
    found += axe_violations(page, "choose-payment")
    assert page.goto(f"/orders/{number}/").ok
    found += axe_violations(page, "order-pending")
    page.goto(f"/pay/sandbox/{number}/")
    page.locator("[data-testid=sandbox-confirm]").click()
    page.wait_for_url(re.compile(rf"/orders/{number}/$"))
    wait_for_status(page, "delivered")
    page.locator("[data-testid=reveal]").first.click()
    page.locator("[data-testid=reveal-confirm-go]").click()
    page.locator("[data-testid=revealed-secret]").wait_for(state="visible")
    page.locator(".modal-backdrop").wait_for(state="detached")  # the confirmation has faded out
    found += axe_violations(page, "order-delivered")
    for name, url in [
        ("orders", "/orders/"),
        ("wallet", "/wallet/"),
        ("tickets", "/support/"),
        ("ticket-new", f"/support/new/?order={number}"),
    ]:
        assert page.goto(url).ok, url  # the page itself, not an error page
        found += axe_violations(page, name)
    assert not page.js_errors, page.js_errors
    page.context.close()

    assert not found, "axe-core found serious or critical violations:\n" + "\n".join(found)
