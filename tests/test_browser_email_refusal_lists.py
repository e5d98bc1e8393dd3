"""In real Chromium, on a phone (375 px) and a desktop (1280 px), in zh-hans and English:

- the member's orders list and the guest lookup's list mark an order whose address the mail server
  refused, with words (not a colour alone), and the row opens the order page at the explanation;
- a temporary refusal's "until" date and time stay on one line, whatever the address's length;
- a guest's after-sales card names the proof that works when no code can be emailed;
- the promises bar is never cut with "…" (English is longer), and zh-hans keeps it on one line each.

Screenshots refused-*.png and promises-*.png under test-artifacts/screenshots/."""

from datetime import timedelta
from decimal import Decimal
from smtplib import SMTPRecipientsRefused

import pytest
from django.utils import timezone

from orders.models import EmailRefusal, Order
from orders.services import guest as guest_services
from orders.services import orders as order_services
from payments.services.payments import sandbox_pay
from tests.browser_helpers import DESKTOP, SCREENSHOTS, log_in, new_page, shot
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PHONE_375 = {"width": 375, "height": 812}
VIEWPORTS = {"375": PHONE_375, "1280": DESKTOP}
UNKNOWN = (550, b"5.1.1 Recipient address rejected: User unknown")
FULL = (452, b"4.2.2 Mailbox full")


def refuse(order: Order, reply=UNKNOWN) -> None:
    order_services.email_refusal_record(order=order, refused=SMTPRecipientsRefused({order.buyer_email: reply}))


def deliver(order: Order) -> Order:
    sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order


def open_page(browser, live_server, viewport, language: str, *, user=None):
    """A page in ``language`` (the language cookie, as the switch leaves it), signed in as ``user``."""
    if user is None:
        page = new_page(browser, live_server.url, viewport=viewport)
    else:
        page = log_in(browser, live_server, user, viewport=viewport)
    page.context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    return page


def badge_problems(page, testid: str, want: dict[str, str]) -> list[str]:
    """The rows marked as ``want`` says (number -> "1" for good, "0" for now), each marker visible,
    with words, inside the screen."""
    problems = []
    shown = page.evaluate(
        """testid => [...document.querySelectorAll(`[data-testid="${testid}"]`)].map(row => {
          const b = row.querySelector('[data-testid=row-email-refused]'); if (!b) return [row.dataset.number, null];
          const r = b.getBoundingClientRect();
          return [row.dataset.number, b.dataset.permanent, b.innerText.trim(), r.width > 0 && r.height > 0,
                  r.right <= innerWidth + 1, row.getAttribute('href')]; })""",
        testid,
    )
    marked = {number: rest[0] for number, *rest in shown if rest[0] is not None}
    if marked != want:
        problems.append(f"marked {marked}, want {want}")
    for number, permanent, *rest in shown:
        if permanent is None:
            continue
        text, visible, inside, href = rest
        if len(text) < 4 or not visible or not inside or not href.endswith("/#email-refused"):
            problems.append(f"{number}: marker {text!r} visible={visible} inside={inside} href={href}")
    return problems


def until_lines(page, until: str) -> int:
    """The lines the "until" date and time of the notice take (a Range over its text: one line)."""
    return page.evaluate(
        """until => { const alert = document.querySelector('[data-testid=email-refused]');
          const walk = document.createTreeWalker(alert, NodeFilter.SHOW_TEXT);
          for (let n = walk.nextNode(); n; n = walk.nextNode()) {
            const at = n.data.indexOf(until); if (at < 0) continue;
            const range = document.createRange(); range.setStart(n, at); range.setEnd(n, at + until.length);
            return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; }
          return 0; }""",
        until,
    )


def test_the_members_list_marks_refused_orders_and_opens_the_explanation(browser, live_server, settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    buyer = UserFactory(email="refused.list@example.com")
    product = ProductFactory(name="王者荣耀 100点券", price=Decimal("9.50"))
    add_stock(product, 6)
    orders = [
        deliver(order_services.order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key=f"r{i}"))
        for i in range(6)
    ]
    refuse(orders[1])
    Order.objects.filter(pk=orders[3].pk).update(buyer_notified_at=None)  # refused for now, not sent since
    refuse(orders[3], FULL)
    want = {orders[1].number: "1", orders[3].number: "0"}
    problems = []
    for size, viewport in VIEWPORTS.items():
        for language in ("zh-hans", "en"):
            page = open_page(browser, live_server, viewport, language, user=buyer)
            page.goto("/orders/")
            problems += [f"{size} {language}: {p}" for p in badge_problems(page, "order-row", want)]
            shot(page, f"refused-orders-{size}-{language}")
            page.locator(f'[data-number="{orders[3].number}"]').click()
            page.wait_for_url(f"**/orders/{orders[3].number}/#email-refused")
            alert = page.locator("[data-testid=email-refused]")
            box = alert.bounding_box()
            if not (alert.is_visible() and box and 0 <= box["y"] < viewport["height"]):
                problems.append(f"{size} {language}: the explanation is not in view ({box})")
            shot(page, f"refused-order-temporary-{size}-{language}")
            page.context.close()
    assert not problems, "\n".join(problems)


def test_the_until_date_stays_on_one_line_at_1280(browser, live_server, settings):
    """A temporary refusal says until when the attempts go on: whatever the address's length puts
    the date at the end of a line, its date and time stay together."""
    settings.PAYMENTS_SANDBOX_ENABLED = True
    buyer = UserFactory(email="until@example.com")
    product = ProductFactory(price=Decimal("9.50"))
    add_stock(product, 1)
    order = deliver(order_services.order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="u"))
    Order.objects.filter(pk=order.pk).update(buyer_notified_at=None)
    refuse(order, FULL)
    order.refresh_from_db()
    until = timezone.localtime(order.delivered_at + timedelta(hours=settings.DELIVERY_EMAIL_MAX_AGE_HOURS))
    until_text = until.strftime("%Y-%m-%d %H:%M")
    wrapped = []
    for language in ("zh-hans", "en"):
        page = open_page(browser, live_server, DESKTOP, language, user=buyer)
        for n in range(1, 61, 2):  # the address's length moves the date along the line
            EmailRefusal.objects.filter(order=order).update(address=f"{'b' * n}@example.com")
            page.goto(f"/orders/{order.number}/")
            if until_lines(page, until_text) != 1:
                wrapped.append(f"{language}, address of {n + 12} characters")
                shot(page, f"refused-until-wrapped-{language}-{n}")
        shot(page, f"refused-until-1280-{language}")
        page.context.close()
    assert not wrapped, f"the date {until_text} wrapped: {wrapped}"


def test_the_guest_lists_and_after_sales_card(browser, live_server, settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    product = ProductFactory(name="腾讯视频 VIP 月卡", price=Decimal("25.00"))
    add_stock(product, 2)

    def guest_order(key: str, password: str) -> Order:
        order = order_services.order_place(
            buyer=None,
            guest_email="mistyped@exmaple.com",
            query_password=password,
            product_id=product.pk,
            quantity=1,
            idempotency_key=key,
        )
        return deliver(order)

    with_password, without = guest_order("gp", "pw-123456"), guest_order("gn", "")
    refuse(with_password)
    refuse(without)
    problems = []
    for size, viewport in VIEWPORTS.items():
        for language in ("zh-hans", "en"):
            page = open_page(browser, live_server, viewport, language)
            # Whoever holds the emailed link, without the query password: customer service.
            page.goto(f"/orders/g/{guest_services.guest_link_token(number=without.number)}/")
            locked = page.locator("[data-testid=guest-aftersales-locked]")
            if locked.get_attribute("data-way") != "support" or without.number not in locked.inner_text():
                problems.append(f"{size} {language}: card {locked.get_attribute('data-way')}: {locked.inner_text()}")
            locked.scroll_into_view_if_needed()
            shot(page, f"refused-guest-card-support-{size}-{language}")
            # The order with a query password, proved with it: the lookup's list marks it.
            page.goto(f"/orders/g/{guest_services.guest_link_token(number=with_password.number)}/")
            if page.locator("[data-testid=guest-aftersales-locked]").get_attribute("data-way") != "password":
                problems.append(f"{size} {language}: the password order's card does not name the password")
            page.fill("[data-testid=query-password]", "pw-123456")
            page.locator("[data-testid=unlock]").click()
            page.wait_for_url(f"**/orders/guest/{with_password.number}/")
            page.goto("/orders/lookup/")
            problems += [
                f"{size} {language}: {p}" for p in badge_problems(page, "recent-order", {with_password.number: "1"})
            ]
            page.locator("[data-testid=recent-orders]").scroll_into_view_if_needed()
            shot(page, f"refused-guest-lookup-{size}-{language}")
            page.locator(f'[data-number="{with_password.number}"]').click()
            page.wait_for_url(f"**/orders/guest/{with_password.number}/#email-refused")
            page.context.close()
    assert not problems, "\n".join(problems)


PROMISES = """() => [...document.querySelectorAll('.trust-list li')].map(li => {
  const r = li.getBoundingClientRect(), line = parseFloat(getComputedStyle(li).lineHeight);
  return [li.innerText.trim(), li.scrollWidth <= li.clientWidth + 1, getComputedStyle(li).textOverflow,
          r.right <= innerWidth + 1, Math.round(r.height / line)]; })"""


def test_the_promises_bar_is_never_cut_on_a_phone(browser, live_server):
    problems = []
    for language in ("zh-hans", "en"):
        page = open_page(browser, live_server, PHONE_375, language)
        page.goto("/")
        items = page.evaluate(PROMISES)
        assert len(items) == 4
        for text, fits, overflow, inside, lines in items:
            if not fits or not inside:
                problems.append(f"{language}: {text!r} cut (fits={fits}, text-overflow={overflow}, inside={inside})")
            if language == "zh-hans" and lines != 1:
                problems.append(f"zh-hans: {text!r} on {lines} lines")
        page.locator(".trustbar").screenshot(path=str(SCREENSHOTS / f"promises-375-{language}.png"))
        page.context.close()
    assert not problems, "\n".join(problems)
