"""In real Chromium: after-sales end to end. A buyer on a phone pays two codes from the balance,
reveals one, opens a ticket about it (with a screenshot attached); staff on a desktop answer it in
admin with a resolution plan; the buyer reads the answer, refunds the unrevealed code without a
reason and finds the money back in the balance. Screenshots: aftersales-*.png."""

import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from aftersales.models import Kind, RefundRequest, ReplyTemplate, Ticket, TicketMessage
from catalog.models import CardCode
from orders.models import Order
from tests.browser_helpers import DESKTOP, PASSWORD, log_in, new_page, shot, wait_for_status
from tests.builders import wallet_balance
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
D = Decimal


def log_in_admin(browser, live_server, user):
    page = new_page(browser, live_server.url, viewport=DESKTOP)
    page.goto("/admin/")  # the admin's login is the site's (one password door, with its locks)
    page.wait_for_url(re.compile(r"/accounts/login/\?next="))
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(live_server.url + "/admin/")
    return page


def screenshot_png(tmp_path):
    """A small, real PNG, as a buyer's screenshot of the game's error message."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 200), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 310, 190), outline="red", width=4)
    draw.text((30, 90), "ERROR 1032: code already used", fill="red")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path = tmp_path / "error-screenshot.png"
    path.write_bytes(buffer.getvalue())
    return path


def local(dt):
    return timezone.localtime(dt).strftime("%Y-%m-%d %H:%M")


def test_ticket_answered_in_admin_then_unused_code_refunded_to_the_balance(browser, live_server, tmp_path):
    product = ProductFactory(name="网易一卡通 50 点", slug="netease-50", price=D("25.00"))
    add_stock(product, 3)
    buyer = UserFactory(email="aftersales-buyer@example.com")
    staff = UserFactory(email="support@example.com", is_staff=True, is_superuser=True)

    # 1. The buyer recharges 100 through the sandbox cashier.
    page = log_in(browser, live_server, buyer)
    page.goto("/wallet/")
    page.fill("#amount", "100")
    page.select_option("#gateway", "sandbox")
    page.locator("[data-testid=recharge]").click()
    page.wait_for_url(re.compile(r"/pay/sandbox/R\w+/$"))
    page.locator("[data-testid=sandbox-confirm]").click()
    page.wait_for_url(re.compile(r"/wallet/$"))
    assert page.locator("[data-testid=wallet-balance]").inner_text().strip() == "¥100.00"

    # 2. Buys two codes, pays from the balance, the order is delivered; reveals the first code.
    page.goto(f"/orders/checkout/{product.slug}/?quantity=2")
    page.locator("[data-testid=channel-balance] input").check()
    page.locator("[data-testid=place-order]").click()
    page.locator("[data-testid=pay-balance-confirm]").click()  # the balance payment's confirmation
    page.wait_for_url(re.compile(r"/orders/\w+/$"))
    wait_for_status(page, "delivered")
    order = Order.objects.get(buyer=buyer)
    assert (order.status, order.quantity, order.total) == (Order.Status.DELIVERED, 2, D("50.00"))
    revealed_oc, unused_oc = list(order.codes.order_by("id"))
    assert page.locator("[data-testid=refund-entry]").is_visible()  # the 7-day refund is offered
    page.locator("[data-testid=reveal]").first.click()
    page.locator("[data-testid=reveal-confirm-go]").click()  # revealing is confirmed first
    page.locator("[data-testid=revealed-secret]").wait_for(state="visible")
    assert page.locator("[data-testid=reveal]").count() == 1
    assert page.locator("[data-testid=report-problem]").is_visible()
    shot(page, "aftersales-01-order-one-code-revealed")

    # 3. "Problem with this code?" on the revealed code: a ticket about exactly that code.
    page.locator("[data-testid=report-code]").first.click()
    page.wait_for_url(re.compile(r"/support/new/\?order="))
    assert order.number in page.locator("[data-testid=ticket-order]").inner_text()
    assert page.locator("[data-testid=kind-invalid] input").is_checked()  # pre-selected from the link
    page.fill("#id_subject", "卡密提示已被使用")
    page.fill("#id_body", "在游戏充值页面输入卡密，提示“该卡密已被使用”（错误 1032），截图见附件。")
    picked = page.locator("[data-image-picker] [data-picked]")
    assert picked.inner_text() == "未选择图片"  # the page's language, not the browser's
    page.set_input_files("#id_attachments", str(screenshot_png(tmp_path)))
    assert picked.inner_text().endswith(".png")  # the chosen file is named
    shot(page, "aftersales-02-ticket-form")
    page.locator("[data-testid=submit-ticket]").click()
    page.wait_for_url(re.compile(r"/support/T?\w+/$"))
    ticket = Ticket.objects.get(user=buyer)
    assert page.url.endswith(f"/support/{ticket.number}/")
    assert (ticket.kind, ticket.order_id, ticket.order_code_id) == (Kind.INVALID, order.pk, revealed_oc.pk)
    assert abs(ticket.first_response_due_at - ticket.created_at - timedelta(hours=48)) < timedelta(seconds=5)
    assert ticket.first_responded_at is None
    first = ticket.messages.get()
    assert first.attachments.count() == 1
    sla = page.locator("[data-testid=sla-box]")
    assert "48" in sla.inner_text() and local(ticket.first_response_due_at) in sla.inner_text()
    assert page.locator("[data-testid=thread] img").count() == 1  # the buyer sees the image
    page.wait_for_function("document.querySelector('[data-testid=thread] img').naturalWidth > 0")
    shot(page, "aftersales-03-ticket-opened")

    page.goto("/support/")
    row = page.locator("[data-testid=ticket-row]", has_text=ticket.number)
    assert row.is_visible() and "卡密提示已被使用" in row.inner_text()
    assert row.locator("[data-testid=ticket-status]").get_attribute("data-status") == ticket.status
    assert "48" in page.locator("main").inner_text()  # the promise of an answer within 48 hours
    shot(page, "aftersales-04-support-list")

    # 4. Staff, on a desktop: the queue shows the time left; they answer with the resolution plan.
    ReplyTemplate.objects.create(title="已收到，正在核实", body="您好，已收到订单 {order} 的反馈，正在核实。")
    ReplyTemplate.objects.create(title="仅用于其他问题", body="…", kind=Kind.OTHER)  # not offered on this ticket
    admin = log_in_admin(browser, live_server, staff)
    admin.goto("/admin/aftersales/ticket/")
    admin_row = admin.locator("#result_list tbody tr", has_text=ticket.number)
    left = admin_row.locator("td.field-time_left [data-sla]")
    assert left.get_attribute("data-sla") == "running"
    assert re.match(r"剩余 4[67] 小时 \d\d 分", left.inner_text())
    shot(admin, "aftersales-05-admin-ticket-queue")
    admin_row.locator("a", has_text=ticket.number).first.click()
    admin.wait_for_url(re.compile(rf"/admin/aftersales/ticket/{ticket.pk}/change/$"))
    assert admin.locator("[data-testid=admin-message]").count() == 1
    assert admin.locator("[data-testid=admin-message] img").count() == 1  # the buyer's screenshot
    assert "剩余 47 小时" in admin.locator("[data-testid=ticket-actions]").inner_text()
    reply = admin.locator("[data-testid=admin-reply]")
    # A reply template goes into the box with the ticket's facts filled in, to edit before sending.
    reply.locator("[data-testid=reply-template]").select_option(label="已收到，正在核实")
    box_text = reply.locator("textarea[name=body]").input_value()
    assert f"订单 {order.number}" in box_text and "{order}" not in box_text
    plan = "已核实：第 1 张卡密在发货前已被使用。我们将为您补发一张新卡密，或按您的意愿退款。"
    reply.locator("textarea[name=body]").fill(plan)
    assert reply.locator("input[name=resolution_plan]").is_checked()  # the first answer is the plan
    assert not reply.locator("input[name=internal]").is_checked()
    shot(admin, "aftersales-06-admin-ticket-reply")
    reply.locator("[data-testid=admin-send]").click()
    admin.wait_for_url(re.compile(rf"/admin/aftersales/ticket/{ticket.pk}/change/"))
    admin.locator("[data-testid=admin-message]").nth(1).wait_for()
    assert admin.locator(".messagelist .success").count() == 1
    assert admin.locator("[data-testid=admin-message].plan").count() == 1
    shot(admin, "aftersales-07-admin-ticket-answered")
    ticket.refresh_from_db()
    assert ticket.first_responded_at is not None and ticket.first_responded_at <= ticket.first_response_due_at
    answer = ticket.messages.get(author=staff)
    assert (answer.body, answer.is_resolution_plan, answer.internal) == (plan, True, False)
    assert ticket.status == Ticket.Status.AWAITING_BUYER

    # 5. The buyer reloads the ticket: the staff's plan is in the thread.
    page.goto(f"/support/{ticket.number}/")
    staff_bubble = page.locator("[data-testid=message].staff")
    assert staff_bubble.count() == 1 and plan in staff_bubble.inner_text()
    assert "plan" in staff_bubble.get_attribute("class")
    assert page.locator("[data-testid=ticket-status]").first.get_attribute("data-status") == "awaiting_buyer"
    assert local(ticket.first_responded_at) in page.locator("[data-testid=sla-box]").inner_text()
    shot(page, "aftersales-08-buyer-sees-plan")

    # ... and refunds the unrevealed code from the order page.
    page.goto(f"/orders/{order.number}/")
    page.locator("[data-testid=refund-unused]").click()
    page.wait_for_url(re.compile(rf"/support/refunds/order/{order.number}/$"))
    unused = page.locator(f"#code-{unused_oc.pk}")
    revealed = page.locator(f"#code-{revealed_oc.pk}")
    assert unused.is_checked()  # pre-selected: unused codes
    assert not revealed.is_checked()
    assert page.locator(f'li:has(#code-{revealed_oc.pk}) [data-testid="code-revealed"]').is_visible()
    assert page.locator(f'li:has(#code-{unused_oc.pk}) [data-testid="code-unused"]').is_visible()
    assert page.locator("[data-testid=refund-total]").inner_text().strip() == "¥25.00"
    assert page.locator('#refund-outcome [data-outcome="auto"]').is_visible()
    shot(page, "aftersales-09-refund-form")
    page.locator("[data-testid=refund-submit]").click()
    page.wait_for_url(re.compile(r"/support/refunds/[0-9a-f-]{36}/$"))
    request = RefundRequest.objects.get(order=order)
    assert page.url.endswith(f"/support/refunds/{request.public_id}/")
    assert page.locator("[data-testid=request-status]").get_attribute("data-status") == "refunded"
    assert page.locator("[data-testid=refund-progress]").get_attribute("data-refund-status") == "succeeded"
    assert page.locator("[data-testid=refund-done]").is_visible()
    assert "25.00" in page.locator("[data-testid=refund-progress]").inner_text()
    shot(page, "aftersales-10-refunded")

    # The money is back in the balance; the code went back to stock; the revealed one stays sold.
    page.goto("/wallet/")
    assert page.locator("[data-testid=wallet-balance]").inner_text().strip() == "¥75.00"
    assert "+25.00" in page.locator("main").inner_text()
    shot(page, "aftersales-11-wallet-balance-back")
    assert wallet_balance(buyer) == D("75.00")
    assert request.status == RefundRequest.Status.REFUNDED and request.quantity == 1
    assert list(request.codes.values_list("pk", flat=True)) == [unused_oc.pk]
    unused_oc.refresh_from_db()
    assert unused_oc.released_at is not None
    assert CardCode.objects.get(pk=unused_oc.code_id).status == CardCode.Status.AVAILABLE
    assert CardCode.objects.get(pk=revealed_oc.code_id).status == CardCode.Status.SOLD
    assert CardCode.objects.filter(product=product, status=CardCode.Status.AVAILABLE).count() == 2
    order.refresh_from_db()
    assert order.refunded_quantity == 1

    # The order page now lists the refund and only the revealed code.
    page.goto(f"/orders/{order.number}/")
    assert page.locator("[data-testid=refund-request-status]").count() == 1
    assert page.locator("[data-testid=report-code]").count() == 1  # the refunded code left the order
    assert page.locator("[data-testid=code-refundable]").count() == 0
    shot(page, "aftersales-12-order-after-refund")
    assert TicketMessage.objects.filter(ticket=ticket).count() == 2
    for p in (page, admin):
        assert not p.js_errors, p.js_errors
        p.context.close()
