"""Tickets: the status table, the first-response clock (only a staff resolution plan stops it),
internal notes, emails on every reply, reopening within the window, image attachments stored
privately and served only to the parties, and the admin case page with its reply form."""

import io
import itertools
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from PIL import Image

from aftersales.models import TICKET_FLOW, Kind, SlaPolicy, Ticket, TicketAttachment, TicketMessage
from aftersales.services import tickets
from compliance.models import AuditEvent, CreditEvent
from compliance.services import credit_event_record
from marketplace.transitions import IllegalTransition
from tests.builders import delivered_order
from tests.factories import UserFactory

TicketStatus = Ticket.Status
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english")]


@pytest.fixture(autouse=True)
def _private_root(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"
    return settings.PRIVATE_MEDIA_ROOT


def image_file(fmt="PNG", name="shot.png", size=(40, 30)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
    types = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
    return SimpleUploadedFile(name, buffer.getvalue(), content_type=types[fmt])


def open_ticket(user, **kwargs) -> Ticket:
    defaults = {"kind": Kind.OTHER, "subject": "Help", "body": "Something is wrong"}
    return tickets.ticket_open(user=user, **{**defaults, **kwargs})


# --- the transitions table -------------------------------------------------------------------

ALL_MOVES = list(itertools.product(TicketStatus.values, TicketStatus.values))
ALLOWED = {
    (TicketStatus.OPEN, TicketStatus.AWAITING_STAFF),
    (TicketStatus.OPEN, TicketStatus.AWAITING_BUYER),
    (TicketStatus.OPEN, TicketStatus.RESOLVED),
    (TicketStatus.OPEN, TicketStatus.CLOSED),
    (TicketStatus.AWAITING_STAFF, TicketStatus.AWAITING_BUYER),
    (TicketStatus.AWAITING_STAFF, TicketStatus.RESOLVED),
    (TicketStatus.AWAITING_STAFF, TicketStatus.CLOSED),
    (TicketStatus.AWAITING_BUYER, TicketStatus.AWAITING_STAFF),
    (TicketStatus.AWAITING_BUYER, TicketStatus.RESOLVED),
    (TicketStatus.AWAITING_BUYER, TicketStatus.CLOSED),
    (TicketStatus.RESOLVED, TicketStatus.CLOSED),
    (TicketStatus.RESOLVED, TicketStatus.AWAITING_STAFF),
}


@pytest.mark.parametrize(("src", "dst"), ALL_MOVES)
def test_ticket_flow_allows_exactly_the_table(buyer, src, dst):
    ticket = open_ticket(buyer)
    Ticket.objects.filter(pk=ticket.pk).update(status=src)
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if src == dst:
            assert TICKET_FLOW.apply(locked, dst) is False  # a repeat changes nothing
        elif (src, dst) in ALLOWED:
            assert TICKET_FLOW.apply(locked, dst, actor=buyer) is True
        else:
            with pytest.raises(IllegalTransition):
                TICKET_FLOW.apply(locked, dst)
    ticket.refresh_from_db()
    assert ticket.status == (dst if (src, dst) in ALLOWED else src)
    if (src, dst) in ALLOWED:
        assert ticket.history.filter(from_status=src, to_status=dst).count() == 1


def test_the_table_in_the_model_is_the_one_tested():
    assert {(a, b) for a, b in ALL_MOVES if TICKET_FLOW.can(a, b)} == ALLOWED


# --- opening, with the SLA from the kind's policy ----------------------------------------------


def test_the_data_migration_creates_one_default_policy_per_kind_and_reverses():
    import importlib

    from django.apps import apps

    migration = importlib.import_module("aftersales.migrations.0002_default_sla_policies")
    SlaPolicy.objects.all().delete()  # transactional tests flush what the migration wrote
    SlaPolicy.objects.create(kind=Kind.REFUND, first_response_hours=24, warn_after_hours=12, resolution_hours=72)
    migration.create(apps, None)
    # Kinds added later get their policy in their own migration (credit appeals: 0011).
    importlib.import_module("aftersales.migrations.0011_credit_appeal_kind").sla_policy(apps, None)
    assert set(SlaPolicy.objects.values_list("kind", flat=True)) == set(Kind.values)
    rows = set(
        SlaPolicy.objects.exclude(kind=Kind.REFUND).values_list(
            "first_response_hours", "warn_after_hours", "resolution_hours"
        )
    )
    assert rows == {(48, 36, 168)}
    migration.remove(apps, None)
    left = set(SlaPolicy.objects.values_list("kind", flat=True))
    assert left == {Kind.REFUND, Kind.CREDIT_APPEAL}  # a tuned policy stays; 0002 removes only its own


def test_open_sets_deadlines_from_the_kinds_policy(buyer, mailoutbox):
    SlaPolicy.objects.update_or_create(
        kind=Kind.INVALID, defaults={"first_response_hours": 24, "warn_after_hours": 12, "resolution_hours": 72}
    )
    order = delivered_order(buyer, price="97.00", quantity=2)
    code = order.codes.first()
    mailoutbox.clear()
    before = timezone.now()
    ticket = tickets.ticket_open(
        user=buyer, kind=Kind.INVALID, subject="Already used", body="It says used", order=order, order_code=code
    )
    after = timezone.now()
    assert ticket.status == TicketStatus.OPEN and ticket.order == order and ticket.order_code == code
    assert before + timedelta(hours=24) <= ticket.first_response_due_at <= after + timedelta(hours=24)
    assert before + timedelta(hours=12) <= ticket.warn_at <= after + timedelta(hours=12)
    assert before + timedelta(hours=72) <= ticket.resolution_due_at <= after + timedelta(hours=72)
    assert ticket.first_responded_at is None
    assert list(ticket.messages.values_list("body", "from_staff")) == [("It says used", False)]
    assert ticket.history.get().to_status == TicketStatus.OPEN
    assert [m.to for m in mailoutbox] == [[buyer.email]]  # the buyer's receipt (no staff group yet)
    assert reverse("aftersales:ticket", args=[ticket.number]) in mailoutbox[0].body


def test_open_falls_back_to_48_hours_without_a_policy(buyer):
    SlaPolicy.objects.all().delete()
    ticket = open_ticket(buyer)
    assert ticket.first_response_due_at - ticket.created_at == pytest.approx(
        timedelta(hours=48), abs=timedelta(seconds=5)
    )
    assert ticket.warn_at - ticket.created_at == pytest.approx(timedelta(hours=36), abs=timedelta(seconds=5))


def test_open_on_another_users_order_is_refused_and_audited(buyer, other_buyer):
    order = delivered_order(other_buyer, price="97.00", quantity=2)
    with pytest.raises(PermissionDenied):
        tickets.ticket_open(user=buyer, kind=Kind.INVALID, subject="x", body="y", order=order)
    with pytest.raises(PermissionDenied):
        tickets.ticket_open(user=buyer, kind=Kind.INVALID, subject="x", body="y", order_code=order.codes.first())
    assert AuditEvent.objects.filter(actor=buyer, action="ticket.open", outcome=AuditEvent.Outcome.DENIED).count() == 2
    assert not Ticket.objects.exists()


def test_code_kinds_need_an_order_and_bad_input_gets_a_message(buyer):
    with pytest.raises(tickets.TicketError, match="order"):
        open_ticket(buyer, kind=Kind.NOT_RECEIVED)
    with pytest.raises(tickets.TicketError):
        open_ticket(buyer, kind="nonsense")
    with pytest.raises(tickets.TicketError):
        open_ticket(buyer, body="   ")
    assert not Ticket.objects.exists()


# --- replies and the clock ---------------------------------------------------------------------


def test_buyer_and_staff_replies_move_the_status(buyer, staff):
    ticket = open_ticket(buyer)
    tickets.ticket_reply(ticket=ticket, author=staff, body="Looking into it", staff=True)
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.AWAITING_BUYER
    assert ticket.assignee == staff  # the first staff member to answer takes it
    tickets.ticket_reply(ticket=ticket, author=buyer, body="Thanks, here is more")
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.AWAITING_STAFF
    tickets.ticket_reply(ticket=ticket, author=buyer, body="And one more thing")
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.AWAITING_STAFF
    assert ticket.messages.count() == 4


def test_only_a_staff_resolution_plan_stops_the_clock(buyer, staff):
    ticket = open_ticket(buyer)
    tickets.ticket_reply(ticket=ticket, author=staff, body="note", staff=True, internal=True)
    tickets.ticket_reply(ticket=ticket, author=staff, body="Please send a screenshot", staff=True, request_info=True)
    ticket.refresh_from_db()
    assert ticket.first_responded_at is None and ticket.status == TicketStatus.AWAITING_BUYER
    assert ticket.history.filter(to_status=TicketStatus.AWAITING_BUYER, note__icontains="more information").exists()
    tickets.ticket_reply(ticket=ticket, author=buyer, body="Here it is")
    tickets.ticket_reply(ticket=ticket, author=staff, body="We got it, checking", staff=True)
    ticket.refresh_from_db()
    assert ticket.first_responded_at is None  # an acknowledgement is not a plan
    with pytest.raises(tickets.TicketError):  # a buyer cannot post a "plan"
        tickets.ticket_reply(ticket=ticket, author=buyer, body="my plan", resolution_plan=True)
    tickets.ticket_reply(
        ticket=ticket, author=staff, body="We replace the code today", staff=True, resolution_plan=True
    )
    ticket.refresh_from_db()
    stopped = ticket.first_responded_at
    assert stopped is not None
    tickets.ticket_reply(ticket=ticket, author=staff, body="Second plan", staff=True, resolution_plan=True)
    ticket.refresh_from_db()
    assert ticket.first_responded_at == stopped  # the first plan counts


def test_resolving_counts_as_first_response_and_needs_a_note(buyer, staff, mailoutbox):
    ticket = open_ticket(buyer)
    with pytest.raises(tickets.TicketError):
        tickets.ticket_resolve(ticket=ticket, staff=staff, note="")
    mailoutbox.clear()
    tickets.ticket_resolve(ticket=ticket, staff=staff, note="Refunded the code")
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.RESOLVED and ticket.resolved_at and ticket.first_responded_at
    assert [m.to for m in mailoutbox] == [[buyer.email]]
    with pytest.raises(PermissionDenied):
        tickets.ticket_resolve(ticket=ticket, staff=buyer, note="me")


def test_internal_notes_never_reach_the_buyer(client, buyer, staff, mailoutbox):
    ticket = open_ticket(buyer)
    mailoutbox.clear()
    tickets.ticket_reply(
        ticket=ticket, author=staff, body="SECRET-NOTE supplier batch is bad", staff=True, internal=True
    )
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN  # a note changes nothing the buyer sees
    assert not any(buyer.email in m.to for m in mailoutbox)
    assert not tickets.ticket_messages_for(ticket, staff=False).filter(internal=True).exists()
    client.force_login(buyer)
    page = client.get(reverse("aftersales:ticket", args=[ticket.number])).content.decode()
    assert "SECRET-NOTE" not in page and "Something is wrong" in page
    with pytest.raises(tickets.TicketError):
        tickets.ticket_reply(ticket=ticket, author=buyer, body="x", internal=True)


def test_every_reply_emails_the_other_party(buyer, staff, mailoutbox):
    from django.contrib.auth.models import Group

    colleague = UserFactory(is_staff=True)
    Group.objects.create(name=settings.AFTERSALES_SUPERVISOR_GROUP).user_set.add(colleague)
    ticket = open_ticket(buyer)
    assert sorted(m.to[0] for m in mailoutbox) == sorted([buyer.email, colleague.email])  # receipt + the group
    mailoutbox.clear()
    tickets.ticket_reply(ticket=ticket, author=buyer, body="Anyone?")
    assert [m.to for m in mailoutbox] == [[colleague.email]]  # unassigned: the after-sales group
    mailoutbox.clear()
    tickets.ticket_reply(ticket=ticket, author=staff, body="Yes, here", staff=True)
    assert [m.to for m in mailoutbox] == [[buyer.email]]
    assert "Yes, here" not in mailoutbox[0].body  # a link, not the content
    assert reverse("aftersales:ticket", args=[ticket.number]) in mailoutbox[0].body
    mailoutbox.clear()
    tickets.ticket_reply(ticket=ticket, author=buyer, body="Thanks")
    assert [m.to for m in mailoutbox] == [[staff.email]]  # now the assignee
    assert reverse("admin:aftersales_ticket_change", args=[ticket.pk]) in mailoutbox[0].body


def test_another_user_cannot_reply(buyer, other_buyer):
    ticket = open_ticket(buyer)
    with pytest.raises(PermissionDenied):
        tickets.ticket_reply(ticket=ticket, author=other_buyer, body="hi")


# --- reopen, close, assign ---------------------------------------------------------------------


def test_reopen_within_the_window_and_not_after(buyer, staff, settings):
    settings.TICKET_REOPEN_DAYS = 7
    ticket = open_ticket(buyer)
    tickets.ticket_resolve(ticket=ticket, staff=staff, note="done")
    tickets.ticket_reopen(ticket=ticket, user=buyer, body="Not fixed")
    ticket.refresh_from_db()
    assert (ticket.status, ticket.reopened_count, ticket.resolved_at) == (TicketStatus.AWAITING_STAFF, 1, None)
    tickets.ticket_resolve(ticket=ticket, staff=staff, note="done again")
    Ticket.objects.filter(pk=ticket.pk).update(resolved_at=timezone.now() - timedelta(days=7, minutes=1))
    ticket.refresh_from_db()
    assert not tickets.can_reopen(ticket)
    with pytest.raises(tickets.TicketError):
        tickets.ticket_reopen(ticket=ticket, user=buyer)
    with pytest.raises(tickets.TicketError):  # a reply does not sneak it open either
        tickets.ticket_reply(ticket=ticket, author=buyer, body="still broken")
    ticket.refresh_from_db()
    assert (ticket.status, ticket.reopened_count) == (TicketStatus.RESOLVED, 1)


def test_a_buyer_reply_on_a_fresh_resolution_reopens(buyer, staff):
    ticket = open_ticket(buyer)
    tickets.ticket_resolve(ticket=ticket, staff=staff, note="done")
    tickets.ticket_reply(ticket=ticket, author=buyer, body="No, it still fails")
    ticket.refresh_from_db()
    assert (ticket.status, ticket.reopened_count) == (TicketStatus.AWAITING_STAFF, 1)


def test_close_staff_needs_a_reason_closed_is_final(buyer, staff, other_buyer):
    ticket = open_ticket(buyer)
    with pytest.raises(tickets.TicketError):
        tickets.ticket_close(ticket=ticket, actor=staff)
    with pytest.raises(PermissionDenied):
        tickets.ticket_close(ticket=ticket, actor=other_buyer)
    tickets.ticket_close(ticket=ticket, actor=buyer)
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.CLOSED and ticket.closed_at
    with pytest.raises(tickets.TicketError):
        tickets.ticket_reply(ticket=ticket, author=buyer, body="hello?")
    with pytest.raises(tickets.TicketError):
        tickets.ticket_resolve(ticket=ticket, staff=staff, note="late")


def test_assign_only_to_staff(buyer, staff, mailoutbox):
    ticket = open_ticket(buyer)
    colleague = UserFactory(is_staff=True)
    with pytest.raises(tickets.TicketError):
        tickets.ticket_assign(ticket=ticket, assignee=buyer, actor=staff)
    mailoutbox.clear()
    tickets.ticket_assign(ticket=ticket, assignee=colleague, actor=staff)
    ticket.refresh_from_db()
    assert ticket.assignee == colleague
    assert [m.to for m in mailoutbox] == [[colleague.email]]


# --- attachments -------------------------------------------------------------------------------


def test_a_valid_image_is_stored_privately_with_its_hash(buyer, _private_root):
    ticket = open_ticket(buyer, attachments=[image_file("PNG", "../../etc/passwd.png"), image_file("JPEG", "a.jpg")])
    items = list(TicketAttachment.objects.filter(message__ticket=ticket))
    assert [a.content_type for a in items] == ["image/png", "image/jpeg"]
    for item in items:
        path = tickets.attachment_path(item)
        assert path.is_file() and Path(_private_root).resolve() in path.parents
        assert item.path.startswith(f"tickets/{timezone.now():%Y}/{timezone.now():%m}/")
        import hashlib

        assert hashlib.sha256(path.read_bytes()).hexdigest() == item.sha256
        assert "/" not in item.original_name and ".." not in item.original_name.replace("..", "", 0)[:2]
    assert items[0].original_name == "passwd.png"
    web_roots = [Path(settings.STATIC_ROOT), *map(Path, settings.STATICFILES_DIRS)]
    if getattr(settings, "MEDIA_ROOT", ""):
        web_roots.append(Path(settings.MEDIA_ROOT))
    for root in web_roots:
        assert root.resolve() not in path.parents


def test_the_configured_private_root_is_outside_the_web_roots():
    from marketplace import settings as project_settings

    private = Path(project_settings.PRIVATE_MEDIA_ROOT).resolve()
    for root in [project_settings.STATIC_ROOT, *project_settings.STATICFILES_DIRS]:
        root = Path(root).resolve()
        assert root not in private.parents and root != private


def test_fake_too_big_and_too_many_images_are_refused(buyer, settings):
    fake = SimpleUploadedFile("evil.png", b"<script>alert(1)</script>" * 10, content_type="image/png")
    with pytest.raises(tickets.TicketError, match="not a PNG"):
        open_ticket(buyer, attachments=[fake])
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(tickets.TicketError, match="not a PNG"):
        open_ticket(buyer, attachments=[SimpleUploadedFile("a.png", gif.getvalue())])
    truncated = image_file("PNG").read()[:60]
    with pytest.raises(tickets.TicketError):
        open_ticket(buyer, attachments=[SimpleUploadedFile("t.png", truncated)])
    settings.TICKET_ATTACHMENT_MAX_BYTES = 200
    with pytest.raises(tickets.TicketError, match="too large"):
        open_ticket(buyer, attachments=[image_file("PNG", size=(300, 300))])
    settings.TICKET_ATTACHMENT_MAX_BYTES = 5 * 1024 * 1024
    with pytest.raises(tickets.TicketError, match="At most 4"):
        open_ticket(buyer, attachments=[image_file() for _ in range(5)])
    assert not Ticket.objects.exists() and not TicketAttachment.objects.exists()


def test_attachments_are_served_to_the_owner_and_staff_only(client, buyer, other_buyer, staff):
    ticket = open_ticket(buyer, attachments=[image_file("WEBP", 'x"; evil.webp')])
    item = TicketAttachment.objects.get(message__ticket=ticket)
    url = reverse("aftersales:attachment", args=[item.public_id])
    client.force_login(buyer)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == 'inline; filename="x_evil.webp"'
    assert b"".join(response.streaming_content)[:4] == b"RIFF"
    client.force_login(staff)
    assert client.get(url).status_code == 200
    client.force_login(other_buyer)
    assert client.get(url).status_code == 404
    assert AuditEvent.objects.filter(
        actor=other_buyer, action="ticket.attachment", outcome=AuditEvent.Outcome.DENIED
    ).exists()
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def test_attachments_of_internal_notes_are_staff_only(client, buyer, staff):
    ticket = open_ticket(buyer)
    tickets.ticket_reply(ticket=ticket, author=staff, body="n", staff=True, internal=True, attachments=[image_file()])
    item = TicketAttachment.objects.get()
    client.force_login(buyer)
    assert client.get(reverse("aftersales:attachment", args=[item.public_id])).status_code == 404


# --- buyer pages -------------------------------------------------------------------------------


def test_buyer_opens_a_ticket_on_an_order_code_and_replies(client, buyer):
    order = delivered_order(buyer, price="97.00", quantity=2)
    code = order.codes.first()
    client.force_login(buyer)
    with translation.override("en"):
        url = reverse("aftersales:ticket_new") + f"?order={order.number}&code={code.pk}"
        page = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
        assert page.status_code == 200 and order.number in page.content.decode()
        response = client.post(
            url,
            {
                "kind": Kind.INVALID,
                "subject": "Used already",
                "body": "Redeem page says used",
                "order": order.number,
                "code": code.pk,
                "attachments": [image_file()],
            },
        )
    ticket = Ticket.objects.get()
    assert response.status_code == 302 and response.url == reverse("aftersales:ticket", args=[ticket.number])
    assert (ticket.order, ticket.order_code, ticket.kind) == (order, code, Kind.INVALID)
    assert TicketAttachment.objects.filter(message__ticket=ticket).count() == 1
    page = client.get(response.url).content.decode()
    assert (
        "Redeem page says used" in page and timezone.localtime(ticket.first_response_due_at).strftime("%H:%M") in page
    )
    assert client.post(response.url, {"body": "Any news?"}).status_code == 302
    assert TicketMessage.objects.filter(ticket=ticket).count() == 2
    listing = client.get(reverse("aftersales:tickets")).content.decode()
    assert ticket.number in listing and "Used already" in listing


def test_the_form_shows_errors_and_a_fake_image(client, buyer):
    client.force_login(buyer)
    fake = SimpleUploadedFile("a.png", b"not an image at all", content_type="image/png")
    with translation.override("en"):
        response = client.post(
            reverse("aftersales:ticket_new"),
            {"kind": Kind.OTHER, "subject": "s", "body": "b", "attachments": [fake]},
            HTTP_ACCEPT_LANGUAGE="en",
        )
    assert response.status_code == 400 and not Ticket.objects.exists()
    assert "not a PNG, JPEG or WebP image" in response.content.decode()


def test_another_users_ticket_and_order_are_404_and_audited(client, buyer, other_buyer):
    ticket = open_ticket(buyer)
    order = delivered_order(buyer, price="97.00", quantity=2)
    client.force_login(other_buyer)
    assert client.get(reverse("aftersales:ticket", args=[ticket.number])).status_code == 404
    assert client.post(reverse("aftersales:ticket", args=[ticket.number]), {"body": "x"}).status_code == 404
    assert client.post(reverse("aftersales:ticket_reopen", args=[ticket.number])).status_code == 404
    assert client.post(reverse("aftersales:ticket_close", args=[ticket.number])).status_code == 404
    assert client.get(reverse("aftersales:ticket_new") + f"?order={order.number}").status_code == 404
    denied = AuditEvent.objects.filter(actor=other_buyer, outcome=AuditEvent.Outcome.DENIED)
    assert denied.filter(action="ticket.view", target=ticket.number).count() == 4
    assert denied.filter(action="ticket.open", target=order.number).count() == 1
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN and ticket.messages.count() == 1
    assert ticket.number not in client.get(reverse("aftersales:tickets")).content.decode()


def test_reopen_and_close_buttons(client, buyer, staff):
    ticket = open_ticket(buyer)
    tickets.ticket_resolve(ticket=ticket, staff=staff, note="fixed")
    client.force_login(buyer)
    page = client.get(reverse("aftersales:ticket", args=[ticket.number])).content.decode()
    assert 'data-testid="reopen"' in page
    client.post(reverse("aftersales:ticket_reopen", args=[ticket.number]))
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.AWAITING_STAFF
    client.post(reverse("aftersales:ticket_close", args=[ticket.number]))
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.CLOSED


def test_pages_need_login(client):
    response = client.get(reverse("aftersales:tickets"))
    assert response.status_code == 302 and "login" in response.url


# --- admin -------------------------------------------------------------------------------------


def test_admin_list_sorts_by_deadline_and_filters_by_sla(client, buyer, staff):
    now = timezone.now()
    overdue, at_risk, fresh, answered = (open_ticket(buyer, subject=s) for s in ("over", "risk", "fresh", "ans"))
    Ticket.objects.filter(pk=overdue.pk).update(
        first_response_due_at=now - timedelta(hours=1), warn_at=now - timedelta(hours=13)
    )
    Ticket.objects.filter(pk=at_risk.pk).update(
        first_response_due_at=now + timedelta(hours=2), warn_at=now - timedelta(hours=10)
    )
    Ticket.objects.filter(pk=answered.pk).update(
        first_responded_at=now, first_response_due_at=now - timedelta(hours=40)
    )
    client.force_login(staff)
    url = reverse("admin:aftersales_ticket_changelist")
    with translation.override("en"):
        html = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert (
        html.index(overdue.number) < html.index(at_risk.number) < html.index(fresh.number) < html.index(answered.number)
    )
    assert 'data-sla="overdue"' in html and 'data-sla="at_risk"' in html and 'data-sla="answered"' in html

    def numbers(flt):
        page = client.get(url + f"?sla={flt}").content.decode()
        return {t.number for t in (overdue, at_risk, fresh, answered) if t.number in page}

    assert numbers("overdue") == {overdue.number}
    assert numbers("at_risk") == {at_risk.number}
    assert numbers("in_time") == set()
    assert numbers("late") == {answered.number}
    assert client.get(url + f"?q={buyer.email}").status_code == 200


def test_admin_change_page_shows_the_case_and_reply_works(client, buyer, staff, mailoutbox):
    order = delivered_order(buyer, price="97.00", quantity=2)
    code = order.codes.first()
    ticket = tickets.ticket_open(
        user=buyer,
        kind=Kind.INVALID,
        subject="bad",
        body="BUYER-TEXT",
        order=order,
        order_code=code,
        attachments=[image_file()],
    )
    tickets.ticket_reply(ticket=ticket, author=staff, body="INTERNAL-TEXT", staff=True, internal=True)
    credit_event_record(user=buyer, kind=CreditEvent.Kind.NO_REASON_REFUND, reference=order.number)
    credit_event_record(user=buyer, kind=CreditEvent.Kind.NO_REASON_REFUND, reference=order.number)
    client.force_login(staff)
    page = client.get(reverse("admin:aftersales_ticket_change", args=[ticket.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    payment = order.payments.get()
    for expected in (
        order.number,
        payment.trade_no,
        "BUYER-TEXT",
        "INTERNAL-TEXT",
        reverse("aftersales:attachment", args=[TicketAttachment.objects.get().public_id]),
    ):
        assert expected in html
    credit = html.split('data-testid="buyer-credit">')[1].split("</dd>")[0]
    assert ": 2" in credit and ": 1" not in credit  # the buyer's credit record: 2 no-reason refunds
    assert 'name="_save"' not in html
    mailoutbox.clear()
    response = client.post(
        reverse("admin:aftersales_ticket_reply", args=[ticket.pk]),
        {"body": "We will replace it", "resolution_plan": "1", "attachments": [image_file("JPEG", "proof.jpg")]},
    )
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.AWAITING_BUYER and ticket.first_responded_at and ticket.assignee == staff
    message = ticket.messages.get(body="We will replace it")
    assert message.from_staff and message.is_resolution_plan and message.attachments.count() == 1
    assert [m.to for m in mailoutbox] == [[buyer.email]]
    client.post(reverse("admin:aftersales_ticket_resolve", args=[ticket.pk]), {"note": ""})
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.AWAITING_BUYER  # no note, no resolution
    client.post(reverse("admin:aftersales_ticket_resolve", args=[ticket.pk]), {"note": "Replaced"})
    client.post(reverse("admin:aftersales_ticket_close", args=[ticket.pk]), {"reason": "done"})
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.CLOSED
    assert client.get(reverse("admin:aftersales_ticket_change", args=[ticket.pk])).status_code == 200


def test_admin_assign_to_me_and_non_staff_cannot_act(client, buyer, staff):
    ticket = open_ticket(buyer)
    client.force_login(staff)
    client.post(reverse("admin:aftersales_ticket_assign", args=[ticket.pk]), {"assignee": "me"})
    ticket.refresh_from_db()
    assert ticket.assignee == staff
    helper = UserFactory(is_staff=True)  # staff without the change permission
    client.force_login(helper)
    response = client.post(reverse("admin:aftersales_ticket_reply", args=[ticket.pk]), {"body": "x"})
    assert response.status_code == 403
    assert ticket.messages.count() == 1


def test_admin_bulk_action_assigns_a_batch_to_me(client, buyer, staff, mailoutbox):
    batch = [open_ticket(buyer, subject=f"t{i}") for i in range(3)]
    other = open_ticket(buyer, subject="not selected")
    client.force_login(staff)
    mailoutbox.clear()
    response = client.post(
        reverse("admin:aftersales_ticket_changelist"),
        {"action": "assign_to_me", "_selected_action": [t.pk for t in batch]},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 302
    assert set(Ticket.objects.filter(assignee=staff).values_list("pk", flat=True)) == {t.pk for t in batch}
    other.refresh_from_db()
    assert other.assignee is None
    assert mailoutbox == []  # nobody is told what they took themselves
    helper = UserFactory(is_staff=True)  # staff without the change permission: no such action
    client.force_login(helper)
    response = client.post(
        reverse("admin:aftersales_ticket_changelist"), {"action": "assign_to_me", "_selected_action": [other.pk]}
    )
    other.refresh_from_db()
    assert other.assignee is None


def test_admin_my_open_tickets_link(client, buyer, staff):
    mine = open_ticket(buyer, subject="mine")
    theirs = open_ticket(buyer, subject="theirs")
    done = open_ticket(buyer, subject="done")
    colleague = UserFactory(is_staff=True)
    tickets.ticket_assign(ticket=mine, assignee=staff, actor=staff)
    tickets.ticket_assign(ticket=done, assignee=staff, actor=staff)
    tickets.ticket_assign(ticket=theirs, assignee=colleague, actor=staff)
    tickets.ticket_close(ticket=done, actor=buyer)
    client.force_login(staff)
    changelist = reverse("admin:aftersales_ticket_changelist")
    html = client.get(changelist).content.decode()
    link = re.search(r'href="(\?assignee[^"]+)" data-testid="my-tickets"', html).group(1).replace("&amp;", "&")
    page = client.get(changelist + link)
    assert page.status_code == 200
    body = page.content.decode()
    assert mine.number in body and theirs.number not in body and done.number not in body


def test_reply_templates_offered_by_kind_with_the_tickets_facts(client, buyer, staff):
    from aftersales.models import ReplyTemplate

    order = delivered_order(buyer, price="97.00", quantity=2)
    ticket = tickets.ticket_open(user=buyer, kind=Kind.INVALID, subject="bad", body="b", order=order)
    ReplyTemplate.objects.create(
        title="general", body="Order {order} ({product}), ticket {ticket}, {buyer}: by {due}. {unknown} {order"
    )
    ReplyTemplate.objects.create(title="invalid", body="Code check", kind=Kind.INVALID, sort_order=1)
    ReplyTemplate.objects.create(title="other kind", body="x", kind=Kind.OTHER)
    ReplyTemplate.objects.create(title="retired", body="x", is_active=False)
    offered = tickets.reply_templates_for(ticket)
    assert [t["title"] for t in offered] == ["general", "invalid"]
    due = timezone.localtime(ticket.first_response_due_at).strftime("%Y-%m-%d %H:%M")
    assert offered[0]["body"] == (
        f"Order {order.number} ({order.product_name}), ticket {ticket.number}, {buyer.email}: by {due}. "
        "{unknown} {order"
    )
    client.force_login(staff)
    page = client.get(reverse("admin:aftersales_ticket_change", args=[ticket.pk])).content.decode()
    assert 'id="reply-templates"' in page and order.number in page and "other kind" not in page
    assert client.get(reverse("admin:aftersales_replytemplate_changelist")).status_code == 200
