"""Helpers for the browser tests (Debian's Chromium through Playwright): pages in a phone or a
desktop viewport, screenshots under ``test-artifacts/screenshots/``, waiting for an order's status.
The ``browser`` fixture itself is in ``tests/conftest.py``."""

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def new_page(browser, base_url, *, viewport=PHONE):
    phone = viewport == PHONE
    context = browser.new_context(
        base_url=base_url,
        viewport=viewport,
        is_mobile=phone,
        has_touch=phone,
        device_scale_factor=2 if phone else 1,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # What the Content-Security-Policy refused (an inline script, a handler, an eval).
    page.on("console", lambda msg: "Content Security Policy" in msg.text and errors.append(msg.text))
    page.js_errors = errors
    return page


def shot(page, name):
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_status(page, status, *, attempts=10):
    """Wait for the order's status badge; reload in case delivery finished after the page was served."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    badge = page.locator(f'[data-testid="order-status"][data-status="{status}"]')
    for _ in range(attempts):
        try:
            badge.first.wait_for(state="visible", timeout=2_000)
            return
        except PlaywrightTimeoutError:
            page.reload()
    shown = page.locator("[data-testid=order-status]").all_inner_texts()
    raise AssertionError(f"order never reached {status!r}: {shown}")


def log_in(browser, live_server, user, **kwargs):
    """A new page (``new_page``'s keywords) signed in as ``user`` through the login form."""
    page = new_page(browser, live_server.url, **kwargs)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(live_server.url + "/")
    return page
