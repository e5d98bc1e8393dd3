"""A guest order's after-sales (issue 12): the 7-day no-reason refund, tickets (with images),
disputes and arbitration work for a guest through the order's page, with the same services as
a member's, and the money goes back to the channel it came from.

The guest's browser holds a view grant (it placed the order, or opened the signed link) and,
for a while after a proof (query password, emailed code), a reveal grant. After-sales needs the
proof: without it every POST is refused (403, or 404 without even the view grant) and writes
nothing; pages send the guest to the proof form. Another browser, a member or another guest
never sees the guest's tickets, requests or images.
"""

import io
import re
import uuid
import zipfile
from decimal import Decimal

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone
from PIL import Image

from aftersales.models import ArbitrationCase, RefundRequest, Ticket, TicketAttachment, TicketMessage
from aftersales.services import arbitration, disputes, no_reason, tickets
from compliance.models import AuditEvent, CreditEvent
from compliance.selectors import credit_summary
from ledger.models import Line
from marketplace.errors import Forbidden
from orders.models import CodeReveal, Order
from orders.services import orders as order_services
from payments.models import Refund
from tests.factories import ProductFactory, UserFactory, add_stock

D = Decimal
# Transactional: payment, fulfilment, refunds and the emails run after their commits.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english", "sandbox", "private_root")]
EMAIL = "Guest.Buyer@Example.net"
STORED = "guest.buyer@example.net"
LINK = re.compile(r"https?://[^\s]+/orders/g/[^\s/]+/")


@pytest.fixture
def sandbox(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True


@pytest.fixture
def private_root(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"


@pytest.fixture
def product(db):
    p = ProductFactory(price=D("50.00"), face_value=D("50.00"), slug="steam-50")
    add_stock(p, 8)
    return p


def buy_as_guest(client: Client, product, *, email: str = EMAIL, password: str = "secret-pw") -> Order:
    """Checkout as a guest (2 codes), pay in the sandbox: delivered, this browser holds the order."""
    response = client.post(
        f"/orders/checkout/{product.slug}/",
        {
            "quantity": "2",
            "idempotency_key": uuid.uuid4().hex,
            "guest_email": email,
            "guest_email_confirm": email,
            "query_password": password,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    number = response["Location"].strip("/").split("/")[-1]
    started = client.post(f"/pay/{number}/start/sandbox/")
    assert client.post(started["Location"]).status_code == 302
    order = Order.objects.get(number=number)
    assert order.status == Order.Status.DELIVERED and order.buyer_id is None
    return order


def prove(client: Client, order: Order, password: str = "secret-pw") -> None:
    client.post(f"/orders/guest/{order.number}/unlock/", {"query_password": password})


def base(order: Order) -> str:
    return f"/orders/guest/{order.number}"


def png(colour=(200, 30, 30)) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 14), colour).save(buffer, format="PNG")
    buffer.seek(0)
    buffer.name = "screenshot.png"
    return buffer


def codes(order: Order) -> list:
    return list(order.codes.filter(released_at__isnull=True).order_by("pk"))


def counts() -> tuple:
    return (
        Ticket.objects.count(),
        TicketMessage.objects.count(),
        TicketAttachment.objects.count(),
        RefundRequest.objects.count(),
        Refund.objects.count(),
        CreditEvent.objects.count(),
        ArbitrationCase.objects.count(),
        CodeReveal.objects.count(),
    )


# --- the no-reason refund ---------------------------------------------------------------------


def test_a_proved_guest_refunds_one_unrevealed_code_at_once_to_the_original_channel(client, product):
    order = buy_as_guest(client, product)
    prove(client, order)
    page = client.get(base(order) + "/").content.decode()
    assert 'data-testid="refund-entry"' in page and f'href="{base(order)}/refund/"' in page
    assert 'data-testid="report-problem"' in page and 'data-testid="guest-aftersales-locked"' not in page

    form = client.get(base(order) + "/refund/")
    assert form.status_code == 200 and 'data-testid="refund-code"' in form.content.decode()
    first = codes(order)[0]
    mail.outbox.clear()
    key = uuid.uuid4().hex
    done = client.post(base(order) + "/refund/", {"codes": [first.pk], "idempotency_key": key})
    request = RefundRequest.objects.get()
    assert done.status_code == 302 and done["Location"] == f"{base(order)}/refunds/{request.public_id}/"
    assert (request.user, request.status, request.quantity) == (None, RefundRequest.Status.REFUNDED, 1)

    refund = request.refund
    refund.refresh_from_db()
    assert (refund.amount, refund.status, refund.payment.gateway) == (D("50.00"), Refund.Status.SUCCEEDED, "sandbox")
    # Back where it came from: the gateway's clearing account, never a wallet (a guest has none).
    paid_back = Line.objects.filter(entry__kind="refund_paid", entry__reference=refund.number, amount__lt=0)
    assert [line.account.code for line in paid_back] == ["asset:clearing:sandbox"]
    assert not Line.objects.filter(account__code__startswith="liability:wallet:").exists()
    # The refund notice goes to the guest address, with the signed link.
    notice = [m for m in mail.outbox if refund.number in m.subject]
    assert notice and notice[0].to == [STORED] and LINK.search(notice[0].body)

    # The credit event is the guest's, by the normalised address.
    event = CreditEvent.objects.get()
    assert (event.user, event.email, event.kind) == (None, STORED, CreditEvent.Kind.NO_REASON_REFUND)
    assert credit_summary(email=EMAIL) == [("No-reason refund", 1)]

    # The same form twice is the same request; its page shows where the money stands.
    again = client.post(base(order) + "/refund/", {"codes": [first.pk], "idempotency_key": key})
    assert again["Location"] == done["Location"] and RefundRequest.objects.count() == 1
    detail = client.get(done["Location"]).content.decode()
    assert 'data-testid="refund-progress"' in detail and refund.number in detail
    assert 'data-testid="refund-requests"' in client.get(base(order) + "/").content.decode()


def test_the_no_reason_limit_counts_a_guest_by_email_across_orders(client, product, settings):
    settings.NO_REASON_REFUND_LIMIT = 1
    first = buy_as_guest(client, product)
    prove(client, first)
    client.post(base(first) + "/refund/", {"codes": [codes(first)[0].pk], "idempotency_key": uuid.uuid4().hex})
    assert no_reason.no_reason_limit_reached(email=" GUEST.buyer@example.net")

    # The same person (another case of the address) on another order: now a dispute for staff.
    second = buy_as_guest(client, product, email="guest.BUYER@example.net", password="other-pw")
    prove(client, second, "other-pw")
    client.post(base(second) + "/refund/", {"codes": [codes(second)[0].pk], "idempotency_key": uuid.uuid4().hex})
    request = RefundRequest.objects.get(order=second)
    assert request.status == RefundRequest.Status.UNDER_REVIEW and "no-reason refunds" in request.review_reason
    ticket = request.ticket
    assert ticket.user is None and ticket.order == second and ticket.is_dispute
    # Another guest address is another person.
    assert not no_reason.no_reason_limit_reached(email="someone.else@example.net")


# --- tickets --------------------------------------------------------------------------------


def test_a_proved_guest_opens_a_ticket_staff_reply_reaches_the_guest_email_and_the_guest_replies(
    client, product, staff
):
    order = buy_as_guest(client, product)
    prove(client, order)
    code = codes(order)[1]
    new = client.get(f"{base(order)}/tickets/new/?code={code.pk}&kind=invalid")
    assert new.status_code == 200 and 'data-testid="ticket-order"' in new.content.decode()
    mail.outbox.clear()
    opened = client.post(
        f"{base(order)}/tickets/new/?code={code.pk}",
        {"kind": "invalid", "subject": "Already used", "body": "It says used.", "code": code.pk, "attachments": png()},
    )
    ticket = Ticket.objects.get()
    assert opened.status_code == 302 and opened["Location"] == f"{base(order)}/tickets/{ticket.number}/"
    assert (ticket.user, ticket.order, ticket.order_code) == (None, order, code)
    first = ticket.messages.get()
    assert first.author is None and not first.from_staff and first.attachments.count() == 1
    received = [m for m in mail.outbox if m.to == [STORED]]
    assert len(received) == 1 and ticket.number in received[0].subject and LINK.search(received[0].body)

    # Staff answer with a plan: the email goes to the guest address, with the signed link.
    mail.outbox.clear()
    tickets.ticket_reply(ticket=ticket, author=staff, body="We check the code.", staff=True, resolution_plan=True)
    assert [m.to for m in mail.outbox] == [[STORED]] and LINK.search(mail.outbox[0].body)
    assert "/support/" not in mail.outbox[0].body

    # The guest reads the thread (and their image) on the order's page and replies.
    page = client.get(opened["Location"]).content.decode()
    assert "We check the code." in page and "It says used." in page
    image = first.attachments.get()
    assert f"{base(order)}/attachments/{image.public_id}/" in page
    served = client.get(f"{base(order)}/attachments/{image.public_id}/")
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    listed = client.get(base(order) + "/").content.decode()
    assert 'data-testid="guest-ticket"' in listed and ticket.number in listed

    reply = client.post(opened["Location"], {"body": "Here is another screenshot.", "attachments": png((1, 2, 3))})
    assert reply.status_code == 302
    ticket.refresh_from_db()
    last = ticket.messages.last()
    assert (last.author, last.from_staff, last.attachments.count()) == (None, False, 1)
    assert ticket.status == Ticket.Status.AWAITING_STAFF

    # Staff see "guest <email>" where a member's account would be.
    admin = Client()
    admin.force_login(staff)
    assert f"guest {STORED}" in admin.get(f"/admin/aftersales/ticket/{ticket.pk}/change/").content.decode()
    assert f"guest {STORED}" in admin.get("/admin/aftersales/ticket/").content.decode()
    # ... and the images (staff with the ticket admin's permission).
    assert admin.get(f"/support/attachments/{image.public_id}/").status_code == 200

    # The guest closes it.
    assert client.post(f"{base(order)}/tickets/{ticket.number}/close/").status_code == 302
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.CLOSED


def test_without_a_proof_every_after_sales_post_is_refused_and_writes_nothing(client, product, settings):
    order = buy_as_guest(client, product)
    ticket = tickets.ticket_open(user=None, kind="other", subject="Question", body="Hello", order=order)
    image_ticket = tickets.ticket_open(
        user=None, kind="other", subject="Image", body="See", order=order, attachments=[png()]
    )
    image = TicketAttachment.objects.get(message__ticket=image_ticket)
    mail.outbox.clear()
    before = counts()
    code = codes(order)[0]
    posts = {
        "/refund/": {"codes": [code.pk], "idempotency_key": uuid.uuid4().hex},
        "/tickets/new/": {"kind": "other", "subject": "S", "body": "B"},
        f"/tickets/{ticket.number}/": {"body": "A reply"},
        f"/tickets/{ticket.number}/reopen/": {"body": "Again"},
        f"/tickets/{ticket.number}/close/": {},
        f"/tickets/{ticket.number}/arbitration/": {"statement": "I disagree"},
    }
    # The browser that holds the order (a view grant) but made no proof: 403, audited.
    for suffix, data in posts.items():
        assert client.post(base(order) + suffix, data).status_code == 403, suffix
    assert client.get(f"{base(order)}/attachments/{image.public_id}/").status_code == 403
    assert AuditEvent.objects.filter(action="guest_order.aftersales", target=order.number).count() == len(posts) + 1
    # Its pages send it to the proof form, which says after-sales needs it.
    for suffix in ("/refund/", "/tickets/new/", f"/tickets/{ticket.number}/"):
        sent = client.get(base(order) + suffix)
        assert sent.status_code == 302 and sent["Location"] == f"{base(order)}/#guest-proof", suffix
    page = client.get(base(order) + "/").content.decode()
    assert 'data-testid="guest-proof"' in page and 'data-testid="guest-aftersales-locked"' in page
    assert 'data-testid="refund-entry"' not in page and 'data-testid="report-problem"' not in page
    assert ticket.number not in page

    # A browser that does not even hold the order: 404 for everything.
    stranger = Client()
    for suffix, data in posts.items():
        assert stranger.post(base(order) + suffix, data).status_code == 404, suffix
        assert stranger.get(base(order) + suffix).status_code in (404, 405), suffix
    assert stranger.get(f"{base(order)}/attachments/{image.public_id}/").status_code == 404

    # A proof that has expired counts for nothing.
    settings.GUEST_PROOF_MINUTES = 0
    prove(client, order)
    assert client.post(base(order) + "/tickets/new/", posts["/tickets/new/"]).status_code == 403

    assert counts() == before and mail.outbox == []


def test_another_browser_member_or_guest_cannot_see_the_guest_ticket(client, product):
    order = buy_as_guest(client, product)
    prove(client, order)
    client.post(
        base(order) + "/tickets/new/",
        {"kind": "other", "subject": "Mine", "body": "Private words", "attachments": png()},
    )
    ticket = Ticket.objects.get()
    image = TicketAttachment.objects.get()
    request_key = uuid.uuid4().hex
    client.post(base(order) + "/refund/", {"codes": [codes(order)[0].pk], "idempotency_key": request_key})
    request = RefundRequest.objects.get()

    # Another guest, proved on their own order, asks for this order's things under theirs.
    other = Client()
    theirs = buy_as_guest(other, product, email="other@example.net", password="their-pw")
    prove(other, theirs, "their-pw")
    for url in (
        f"{base(theirs)}/tickets/{ticket.number}/",
        f"{base(theirs)}/tickets/{ticket.number}/arbitration/",
        f"{base(theirs)}/attachments/{image.public_id}/",
        f"{base(theirs)}/refunds/{request.public_id}/",
    ):
        response = other.get(url)
        assert response.status_code == 404 and b"Private words" not in response.content, url
    assert other.post(f"{base(theirs)}/tickets/{ticket.number}/", {"body": "x"}).status_code == 404
    assert other.get(f"{base(order)}/tickets/{ticket.number}/").status_code == 404  # not their order
    assert "Mine" not in other.get(base(theirs) + "/").content.decode()

    # A member: the member's doors do not open a guest's ticket, request or image.
    member = Client()
    member.force_login(UserFactory())
    for url in (
        f"/support/{ticket.number}/",
        f"/support/attachments/{image.public_id}/",
        f"/support/refunds/{request.public_id}/",
        f"/support/refunds/order/{order.number}/",
    ):
        assert member.get(url).status_code == 404, url
    assert TicketMessage.objects.count() == 1


# --- disputes and arbitration -----------------------------------------------------------------


def test_a_guest_dispute_is_decided_and_escalated_to_arbitration_through_the_order_page(client, product, staff):
    order = buy_as_guest(client, product)
    prove(client, order)
    revealed = codes(order)[0]
    assert client.post(f"{base(order)}/codes/{revealed.pk}/reveal/").status_code == 200
    client.post(
        base(order) + "/refund/",
        {"codes": [revealed.pk], "reason": "It did not work", "idempotency_key": uuid.uuid4().hex},
    )
    request = RefundRequest.objects.get()
    ticket = request.ticket
    assert request.status == RefundRequest.Status.UNDER_REVIEW and ticket.user is None and ticket.is_dispute

    mail.outbox.clear()
    disputes.dispute_reject(ticket=ticket, staff=staff, reason="The code was redeemed.")
    assert CreditEvent.objects.get(kind=CreditEvent.Kind.DISPUTE_LOST).email == STORED
    assert [m.to for m in mail.outbox] == [[STORED]]
    thread = client.get(f"{base(order)}/tickets/{ticket.number}/").content.decode()
    # The rejection names the guest's arbitration page, and the page offers it.
    assert f"{base(order)}/tickets/{ticket.number}/arbitration/" in thread
    assert 'data-testid="escalate"' in thread

    escalated = client.post(f"{base(order)}/tickets/{ticket.number}/arbitration/", {"statement": "It never worked."})
    assert escalated.status_code == 302
    case = ArbitrationCase.objects.get()
    assert (case.requested_by, case.buyer_statement) == (None, "It never worked.")
    assert ticket.messages.filter(author__isnull=True, body__contains="It never worked.").exists()

    arbitration.arbitration_submit(case=case, staff=staff, third_party="Consumer Association", case_number="CA-1")
    dossier = arbitration.arbitration_dossier(case=case, staff=staff)
    with zipfile.ZipFile(io.BytesIO(dossier)) as zf:
        assert f"guest {STORED}" in zf.read("summary.html").decode()
        assert STORED in zf.read("orders.csv").decode()
    arbitration.arbitration_decide(case=case, staff=staff, outcome="buyer", note="Refund it.")
    refund = Refund.objects.get(idempotency_key__startswith=f"dispute:{ticket.pk}:")
    refund.refresh_from_db()
    assert (refund.payment.gateway, refund.status) == ("sandbox", Refund.Status.SUCCEEDED)
    assert CreditEvent.objects.get(kind=CreditEvent.Kind.ARBITRATION_WON).email == STORED
    page = client.get(f"{base(order)}/tickets/{ticket.number}/").content.decode()
    assert 'data-testid="arbitration-outcome"' in page and "Refund it." in page


# --- the model's rules ------------------------------------------------------------------------


def test_the_services_take_the_guest_identity_only_on_a_guest_order(product):
    member = UserFactory()
    member_order = order_services.order_place(buyer=member, product=product, quantity=1, idempotency_key="m1")
    with pytest.raises(Forbidden):
        tickets.ticket_open(user=None, kind="other", subject="x", body="y", order=member_order)
    with pytest.raises(tickets.TicketError):
        tickets.ticket_open(user=None, kind="other", subject="x", body="y")  # a guest's ticket names its order
    with pytest.raises(Order.DoesNotExist):
        no_reason.refund_request_create(user=None, order=member_order, order_code_ids=["1"], idempotency_key="k")
    member_ticket = tickets.ticket_open(user=member, kind="other", subject="x", body="y")
    with pytest.raises(Forbidden):
        tickets.ticket_reply(ticket=member_ticket, author=None, body="as a guest")
    with pytest.raises(Forbidden):
        tickets.ticket_close(ticket=member_ticket, actor=None)
    assert not arbitration.arbitration_eligibility(ticket=member_ticket, user=None).allowed


def test_the_database_holds_a_guests_records_to_their_order_and_address(product):
    guest_order = order_services.order_place(
        buyer=None, guest_email=EMAIL, product=product, quantity=1, idempotency_key="g1"
    )
    deadlines = tickets.sla_deadlines("other", timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        Ticket.objects.create(kind="other", subject="no user, no order", **deadlines)
    ticket = Ticket.objects.create(kind="other", subject="a guest's", order=guest_order, **deadlines)
    with pytest.raises(IntegrityError), transaction.atomic():
        TicketMessage.objects.create(ticket=ticket, body="staff without a name", from_staff=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEvent.objects.create(kind=CreditEvent.Kind.REISSUE)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEvent.objects.create(user=UserFactory(), email=STORED, kind=CreditEvent.Kind.REISSUE)
    RefundRequest.objects.create(order=guest_order, quantity=1, status="approved", idempotency_key="same")
    with pytest.raises(IntegrityError), transaction.atomic():
        RefundRequest.objects.create(order=guest_order, quantity=1, status="approved", idempotency_key="same")
    with pytest.raises(ValueError):
        no_reason.no_reason_limit_reached(None)  # nobody: neither a member nor a guest address


def test_the_guest_after_sales_pages_speak_chinese_to_a_chinese_reader(product, settings):
    from tests.test_pages_display import english_fragments, visible_text

    settings.LANGUAGE_CODE = "zh-hans"
    fragments = english_fragments()
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    order = buy_as_guest(client, product)
    pages = [client.get(base(order) + "/")]  # locked: the proof form says after-sales needs it
    prove(client, order)
    client.post(base(order) + "/tickets/new/", {"kind": "other", "subject": "问题", "body": "你好"})
    ticket = Ticket.objects.get()
    client.post(base(order) + "/refund/", {"codes": [codes(order)[0].pk], "idempotency_key": uuid.uuid4().hex})
    request = RefundRequest.objects.get()
    for suffix in ("/", "/refund/", "/tickets/new/", f"/tickets/{ticket.number}/", f"/refunds/{request.public_id}/"):
        pages.append(client.get(base(order) + suffix))
    english = []
    for response in pages:
        assert response.status_code == 200
        text = visible_text(response.content.decode())
        english += [f for f in fragments if f in text]
    assert english == []
    assert "售后" in visible_text(pages[0].content.decode())


def test_the_guest_order_page_title_is_only_the_order_and_holds_one_reveal_confirmation(client, product):
    """The reveal confirmation modal was drawn inside <title> too (until 2026-12-06): the tab
    showed its markup as text."""
    order = buy_as_guest(client, product)
    for proved in (False, True):
        if proved:
            prove(client, order)
        html = client.get(base(order) + "/").content.decode()
        title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
        assert "<" not in title and "\n" not in title and title.startswith("Order ")
        assert len(re.findall(r'\sid="reveal-confirm"', html)) == (1 if proved else 0)
        assert ('data-testid="reveal"' in html) is proved
