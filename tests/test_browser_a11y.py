"""Accessibility: axe-core (vendored under ``tests/assets/axe-core/``, a test asset never served)
runs in Debian's Chromium on every page of the buyer's path, the public pages and the agent centre,
on a phone (390x844) in zh-hans, against WCAG 2.0/2.1 A and AA (which GB/T 37668-2019 follows) and
axe's best practices. Any violation of impact "serious" or "critical" fails the test, listed with its
rule, impact, targets and help URL; so do the lesser rules in ALSO_FAILING, and anything that sticks
out past the phone's width when the text is twice its size (the member's pages and the agent
centre also in English, whose words are longer).

One browser, one context per kind of user (a visitor, a member, the member in English, an agent).
Screenshots a11y-*.png."""

import re
from decimal import Decimal
from pathlib import Path
from smtplib import SMTPRecipientsRefused

import pytest
from django.core.management import call_command

from aftersales.models import Kind
from aftersales.services.tickets import ticket_open, ticket_reply
from agents.services import agents as agent_services
from orders.models import Order
from orders.services.orders import email_refusal_record
from tests.browser_helpers import PASSWORD, SCREENSHOTS, new_page, shot, wait_for_status
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
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING = {"serious", "critical"}
# Moderate findings fixed once and kept fixed: everything inside a landmark (the promises bar and the
# agreements banner are asides), each search landmark named apart from the header's, one h1 a page,
# no table column without a header (the agent's price list's buttons).
ALSO_FAILING = {
    "region",
    "landmark-unique",
    "page-has-heading-one",
    "landmark-one-main",
    "bypass",
    "empty-table-header",
}
# Large text (WCAG 1.4.4, a phone's font-size setting): at twice the root font size, nothing may stick
# out past the phone's width (content cut off or a page that scrolls sideways); what a box scrolls or
# clips on purpose (a table that scrolls, a line truncated with an ellipsis) is that box's design.
STICKING_OUT = """([size, width]) => {
  document.documentElement.style.fontSize = size;
  const inBox = e => { for (let n = e.parentElement; n && n !== document.body; n = n.parentElement) {
    const style = getComputedStyle(n);
    if (/(auto|scroll)/.test(style.overflowX) || style.textOverflow === "ellipsis") return true;
  } return false; };
  const out = e => e.getClientRects().length && e.getBoundingClientRect().right > width + 1
    && getComputedStyle(e).position !== "absolute";
  const found = [...document.querySelectorAll("body *")]
    .filter(e => out(e) && ![...e.children].some(out) && !inBox(e))
    .map(e => e.tagName.toLowerCase() + [...e.classList].map(c => "." + c).join("")
      + " (" + e.textContent.trim().slice(0, 30) + ")");
  document.documentElement.style.fontSize = "";
  return found;
}"""

# Violations known and accepted, as (page name, rule id; "large-text" for the 200% text check):
# none. Keep it that way: a pair here needs a reason beside it.
KNOWN: set[tuple[str, str]] = set()


# The agent centre's pages (their forms, tabs and figures), in zh-hans and in English.
AGENT_PAGES = [
    ("agent-home", "/agent/"),
    ("agent-storefront", "/agent/storefront/"),
    ("agent-prices", "/agent/storefront/prices/"),
    ("agent-posters", "/agent/storefront/posters/"),
    ("agent-coupons", "/agent/storefront/coupons/"),
    ("agent-operator", "/agent/storefront/operator/"),
    ("agent-pricing", "/agent/pricing/"),
    ("agent-downline", "/agent/downline/"),
    ("agent-api-keys", "/agent/api-keys/"),
    ("agent-reports", "/agent/reports/"),
    ("agent-withdrawals", "/agent/withdrawals/"),
    ("agent-invitations", "/agent/invitations/"),
]


def page_problems(page, name):
    """axe-core's serious and critical violations on the page as it is now, and what sticks out past
    the screen under large text, as readable lines."""
    # Evaluated through the DevTools protocol, so the Content-Security-Policy (no inline script)
    # does not apply to it; nothing is added to the page's own markup.
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    results = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        TAGS,
    )
    shot(page, f"a11y-{name}")
    sticking_out = page.evaluate(STICKING_OUT, ["200%", page.viewport_size["width"]])
    lines = []
    for violation in results["violations"]:
        failing = violation["impact"] in FAILING or violation["id"] in ALSO_FAILING
        if not failing or (name, violation["id"]) in KNOWN:
            continue
        targets = [_target(node) for node in violation["nodes"]]
        lines.append(
            f"{name} ({page.url}): {violation['id']} [{violation['impact']}] {violation['help']}\n"
            f"    targets: {'; '.join(targets[:8])}{' ...' if len(targets) > 8 else ''}\n"
            f"    {violation['helpUrl']}"
        )
    if sticking_out and (name, "large-text") not in KNOWN:
        lines.append(f"{name} ({page.url}): at 200% text, past the screen's edge: {'; '.join(sticking_out[:6])}")
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


def keyboard_problems(page):
    """With the keyboard: the first Tab reaches a visible "skip to content" link; the search box,
    whose own focus ring the design removes, shows where the focus is (WCAG 2.4.1, 2.4.7)."""
    problems = []
    page.goto("/")
    page.keyboard.press("Tab")
    first = page.evaluate(
        "() => { const e = document.activeElement, r = e.getBoundingClientRect();"
        " return [e.getAttribute('href'), e.textContent.trim(), r.width > 1 && r.height > 1]; }"
    )
    if first != ["#main", "跳到正文", True]:
        problems.append(f"home: the first Tab stop is not a visible skip link: {first}")
    page.locator("[data-testid=search-input]").focus()
    ring = page.evaluate("() => getComputedStyle(document.activeElement.closest('.input-group')).outlineStyle")
    page.screenshot(path=str(SCREENSHOTS / "a11y-home-search-focus.png"))
    if ring == "none":
        problems.append("home: the focused search box shows no focus ring")
    return problems


@pytest.fixture
def world(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    call_command("seed_demo_legal")  # the agreements in force (and the legal pages)
    call_command("seed_demo_compliance")  # the footer's licences, the business licence's link among them
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


def log_in_accepting(browser, live_server, email, **kwargs):
    """A page signed in as ``email``, the agreements in force accepted if asked."""
    page = new_page(browser, live_server.url, **kwargs)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_load_state()
    if "/legal/accept/" in page.url:
        page.locator("[data-testid=legal-accept-box]").check()
        page.locator("[data-testid=legal-accept-submit]").click()
        page.wait_for_url(re.compile(r"^(?!.*/legal/accept/)"))
    return page


def english(page):
    """The page's context switched to English, as the language switch leaves it (its cookie)."""
    page.context.add_cookies([{"name": "django_language", "value": "en", "url": page.url}])
    return page


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
        ("guest-checkout", f"/orders/checkout/{product.slug}/"),
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
        found += page_problems(page, name)
    found += keyboard_problems(page)
    page.goto("/")
    page.locator(".navbar-toggler").click()  # the phone's menu, opened
    page.locator("#nav.show").wait_for()
    found += page_problems(page, "home-menu")
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
    found += page_problems(page, "legal-accept")
    page.locator("[data-testid=legal-accept-box]").check()
    page.locator("[data-testid=legal-accept-submit]").click()
    page.wait_for_url(live_server.url + "/")
    assert page.goto(f"/orders/checkout/{product.slug}/").ok
    found += page_problems(page, "checkout")
    page.locator("[data-testid=channel-sandbox] input").check()
    page.locator("[data-testid=place-order]").click()
    page.wait_for_url(re.compile(r"/pay/sandbox/(\w+)/"))
    number = re.search(r"/pay/sandbox/(\w+)/", page.url).group(1)
    found += page_problems(page, "sandbox-cashier")
    assert page.goto(f"/pay/{number}/").ok
    found += page_problems(page, "choose-payment")
    assert page.goto(f"/orders/{number}/").ok
    found += page_problems(page, "order-pending")
    page.goto(f"/pay/sandbox/{number}/")
    page.locator("[data-testid=sandbox-confirm]").click()
    page.wait_for_url(re.compile(rf"/orders/{number}/$"))
    wait_for_status(page, "delivered")
    page.locator("[data-testid=reveal]").first.click()
    page.locator("[data-testid=reveal-confirm-go]").click()
    page.locator("[data-testid=revealed-secret]").wait_for(state="visible")
    page.locator(".modal-backdrop").wait_for(state="detached")  # the confirmation has faded out
    found += page_problems(page, "order-delivered")
    for name, url in [
        ("orders", "/orders/"),
        ("wallet", "/wallet/"),
        ("tickets", "/support/"),
        ("ticket-new", f"/support/new/?order={number}"),
        ("profile", "/accounts/profile/"),
    ]:
        assert page.goto(url).ok, url  # the page itself, not an error page
        found += page_problems(page, name)
    ticket = ticket_open(
        user=buyer, kind=Kind.INVALID, subject="卡密提示已被使用", body="充值页面提示该卡密已被使用。", order=number
    )
    ticket_reply(ticket=ticket, author=buyer, body="截图稍后补充。")
    assert page.goto(f"/support/{ticket.number}/").ok
    found += page_problems(page, "ticket")  # the thread's bubbles: their times on a tinted background
    assert not page.js_errors, page.js_errors
    page.context.close()

    # The member in English: longer words under large text (status badges, the orders list's rows,
    # the order's history with its times), the order's address refused by the mail server (the
    # list's marker, the order page's notice).
    refused = SMTPRecipientsRefused({buyer.email: (550, b"5.1.1 User unknown")})
    email_refusal_record(order=Order.objects.get(number=number), refused=refused)
    page = english(log_in_accepting(browser, live_server, buyer.email))
    for name, url in [
        ("en-home", "/"),
        ("en-product", f"/p/{product.slug}/"),
        ("en-checkout", f"/orders/checkout/{product.slug}/"),
        ("en-orders", "/orders/"),
        ("en-order-delivered", f"/orders/{number}/"),
        ("en-ticket", f"/support/{ticket.number}/"),
        ("en-trust", "/trust/"),
        ("en-rights-register", "/rights/notices/"),
    ]:
        assert page.goto(url).ok, url
        assert page.locator("html").get_attribute("lang") == "en", url
        found += page_problems(page, name)
    assert not page.js_errors, page.js_errors
    page.context.close()

    # An agent: the agent centre's pages (their forms, tabs and figures).
    page = log_in_accepting(browser, live_server, shop.agent.user.email)
    for name, url in [*AGENT_PAGES, ("operator-page", f"/s/{shop.slug}/operator/")]:
        assert page.goto(url).ok, url
        found += page_problems(page, name)
    # The same in English: longer labels on its buttons and choices under large text.
    page.goto("/")
    english(page)  # the cookie for the whole site: set from its root
    for name, url in AGENT_PAGES:
        assert page.goto(url).ok, url
        assert page.locator("html").get_attribute("lang") == "en", url
        found += page_problems(page, f"en-{name}")
    assert not page.js_errors, page.js_errors
    page.context.close()

    assert not found, "accessibility problems (axe-core's serious and critical, large text, keyboard):\n" + "\n".join(
        found
    )
