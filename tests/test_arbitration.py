"""Arbitration: the buyer escalates a rejected dispute (staff any dispute), one case per ticket;
staff record the submission and the decision, carried out through the dispute refund service
exactly once; the dossier ZIP for the third party holds no secret and no internal note."""

import csv
import io
import zipfile
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone, translation

from aftersales.admin import arbitration as admin_arbitration  # noqa: F401 (registers the arbitration admin)
from aftersales.models import ArbitrationCase, RefundRequest, Ticket, TicketMessage
from aftersales.services import arbitration, disputes, tickets
from catalog.models import CardCode
from compliance.models import AuditEvent, CreditEvent
from compliance.selectors import credit_summary
from marketplace.crypto import decrypt
from orders.models import CodeReveal, OrderCode
from payments.models import Refund
from tests.builders import ask, codes_of, delivered_order, run_concurrently, values_and_errors
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("english")


CaseStatus = ArbitrationCase.Status
CaseOutcome = ArbitrationCase.Outcome


def dispute(buyer, *, quantity=3, reveal_n=1):
    """A delivered order whose buyer revealed ``reveal_n`` codes and asked for them back: a dispute."""
    order = delivered_order(buyer, quantity=quantity)
    codes = codes_of(order)
    for c in codes[:reveal_n]:
        CodeReveal.objects.create(order_code=c, user=buyer, ip="203.0.113.7", user_agent="Mozilla/5.0 TestPhone")
    req = ask(buyer, order, codes[:reveal_n], reason="it did not work")
    assert req.status == RefundRequest.Status.UNDER_REVIEW
    return req.ticket, order


def rejected(buyer, staff):
    ticket, order = dispute(buyer)
    disputes.dispute_reject(ticket=ticket, staff=staff, reason="The code was redeemed on your account.")
    ticket.refresh_from_db()
    return ticket, order


def submitted(case, staff):
    return arbitration.arbitration_submit(
        case=case, staff=staff, third_party="Shanghai Consumer Council", case_number="SCC-2026-0042"
    )


# --- opening -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_buyer_escalates_a_rejected_dispute_once(buyer, staff, mailoutbox):
    from django.conf import settings
    from django.contrib.auth.models import Group

    staff.groups.add(Group.objects.get_or_create(name=settings.AFTERSALES_SUPERVISOR_GROUP)[0])
    ticket, _order = rejected(buyer, staff)
    assert ticket.priority == Ticket.Priority.NORMAL
    mailoutbox.clear()

    case = arbitration.arbitration_open(ticket=ticket, user=buyer, statement="I never used that code.")

    assert (case.status, case.outcome, case.requested_by, case.buyer_statement) == (
        CaseStatus.PREPARING,
        CaseOutcome.PENDING,
        buyer,
        "I never used that code.",
    )
    ticket.refresh_from_db()
    assert ticket.priority == Ticket.Priority.URGENT
    assert TicketMessage.objects.filter(ticket=ticket, author=buyer, body__contains="I never used that code.").exists()
    assert AuditEvent.objects.filter(action="arbitration.open", outcome="allowed", target=ticket.number).count() == 1
    assert [m.to for m in mailoutbox] == [[staff.email]]
    # Again (a double click): the same case, nothing more.
    again = arbitration.arbitration_open(ticket=ticket, user=buyer, statement="again")
    assert again.pk == case.pk and ArbitrationCase.objects.count() == 1
    assert AuditEvent.objects.filter(action="arbitration.open").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_open_dispute_cannot_be_escalated_by_the_buyer_but_by_staff(buyer, staff):
    ticket, _order = dispute(buyer)
    with translation.override("en"), pytest.raises(arbitration.ArbitrationError, match="once our team has decided"):
        arbitration.arbitration_open(ticket=ticket, user=buyer, statement="now")
    assert not ArbitrationCase.objects.exists()

    case = arbitration.arbitration_open(ticket=ticket, user=staff)
    assert case.requested_by == staff and case.status == CaseStatus.PREPARING
    assert TicketMessage.objects.filter(ticket=ticket, author=staff, from_staff=True).exists()


@pytest.mark.django_db(transaction=True)
def test_the_buyer_has_30_days_after_the_rejection(buyer, staff):
    ticket, _order = rejected(buyer, staff)
    later = timezone.now() + timedelta(days=settings.ARBITRATION_WINDOW_DAYS, hours=1)
    assert not arbitration.arbitration_eligibility(ticket=ticket, user=buyer, now=later).allowed
    assert arbitration.arbitration_eligibility(ticket=ticket, user=buyer, now=later - timedelta(hours=2)).allowed
    RefundRequest.objects.filter(ticket=ticket).update(decided_at=timezone.now() - timedelta(days=31))
    from aftersales.models import Ticket as T

    T.objects.filter(pk=ticket.pk).update(resolved_at=timezone.now() - timedelta(days=31))
    ticket.refresh_from_db()
    with translation.override("en"), pytest.raises(arbitration.ArbitrationError, match="within 30 days"):
        arbitration.arbitration_open(ticket=ticket, user=buyer, statement="late")


@pytest.mark.django_db(transaction=True)
def test_a_statement_is_required_from_the_buyer(buyer, staff):
    ticket, _order = rejected(buyer, staff)
    with pytest.raises(arbitration.ArbitrationError):
        arbitration.arbitration_open(ticket=ticket, user=buyer, statement="   ")
    assert not ArbitrationCase.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_another_user_cannot_escalate_or_see_the_case(client, buyer, other_buyer, staff):
    ticket, _order = rejected(buyer, staff)
    from django.http import Http404

    with pytest.raises(Http404):
        arbitration.arbitration_open(ticket=ticket, user=other_buyer, statement="mine now")
    assert AuditEvent.objects.filter(action="arbitration.open", outcome="denied", actor=other_buyer).count() == 1
    arbitration.arbitration_open(ticket=ticket, user=buyer, statement="I disagree.")

    client.force_login(other_buyer)
    url = reverse("aftersales:arbitration", args=[ticket.number])
    assert client.get(url).status_code == 404
    assert client.post(url, {"statement": "x"}).status_code == 404
    assert AuditEvent.objects.filter(action="ticket.view", outcome="denied", actor=other_buyer).count() == 2
    assert ArbitrationCase.objects.get().requested_by == buyer


# --- the buyer's pages ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_ticket_page_offers_escalation_then_shows_the_case(client, buyer, staff):
    ticket, _order = dispute(buyer)
    client.force_login(buyer)
    page = reverse("aftersales:ticket", args=[ticket.number])
    with translation.override("en"):
        assert 'data-testid="arbitration-box"' not in client.get(page).content.decode()  # still under review
        disputes.dispute_reject(ticket=ticket, staff=staff, reason="Redeemed already.")
        html = client.get(page).content.decode()
        assert 'data-testid="arbitration-box"' in html and "Escalate to arbitration" in html
        assert reverse("aftersales:arbitration", args=[ticket.number]) == reverse(
            "aftersales:arbitration_new", args=[ticket.number]
        )

        response = client.post(reverse("aftersales:arbitration", args=[ticket.number]), {"statement": "Not mine."})
        assert response.status_code == 302 and response["Location"] == page
        case = ArbitrationCase.objects.get(ticket=ticket)
        html = client.get(page).content.decode()
        assert 'data-testid="arbitration-box"' not in html
        assert 'data-testid="arbitration-status" data-status="preparing"' in html

        submitted(case, staff)
        html = client.get(reverse("aftersales:arbitration", args=[ticket.number])).content.decode()
        assert "Submitted to Shanghai Consumer Council on" in html and "SCC-2026-0042" in html

        arbitration.arbitration_decide(case=case, staff=staff, outcome=CaseOutcome.PLATFORM, note="The code was used.")
        html = client.get(page).content.decode()
        assert 'data-outcome="platform"' in html and "The code was used." in html


@pytest.mark.django_db(transaction=True)
def test_the_escalate_form_shows_why_it_is_refused(client, buyer):
    ticket, _order = dispute(buyer)
    client.force_login(buyer)
    with translation.override("en"):
        response = client.post(reverse("aftersales:arbitration", args=[ticket.number]), {"statement": "x"})
    assert response.status_code == 400
    assert "once our team has decided" in response.content.decode()
    assert not ArbitrationCase.objects.exists()


# --- submission and decision ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_submit_records_the_third_party_and_refuses_bad_input(buyer, staff):
    ticket, _order = rejected(buyer, staff)
    case = arbitration.arbitration_open(ticket=ticket, user=buyer, statement="No.")
    with pytest.raises(arbitration.ArbitrationError):
        arbitration.arbitration_submit(case=case, staff=staff, third_party="", case_number="1")
    with pytest.raises(arbitration.ArbitrationError):
        arbitration.arbitration_submit(
            case=case, staff=staff, third_party="X", case_number="1", submitted_at=timezone.now() + timedelta(days=2)
        )
    with pytest.raises(arbitration.ArbitrationError):  # not submitted yet
        arbitration.arbitration_decide(case=case, staff=staff, outcome=CaseOutcome.BUYER, note="n")
    with pytest.raises(arbitration.PermissionDenied):
        arbitration.arbitration_submit(case=case, staff=buyer, third_party="X", case_number="1")

    when = timezone.now() - timedelta(hours=3)
    case = arbitration.arbitration_submit(
        case=case, staff=staff, third_party="Shanghai Consumer Council", case_number="SCC-1", submitted_at=when
    )
    case.refresh_from_db()
    assert (case.status, case.third_party, case.case_number, case.submitted_at) == (
        CaseStatus.SUBMITTED,
        "Shanghai Consumer Council",
        "SCC-1",
        when,
    )
    assert AuditEvent.objects.filter(action="arbitration.submit", target=ticket.number).count() == 1
    # The same click again changes nothing; a different submission is refused.
    arbitration.arbitration_submit(case=case, staff=staff, third_party="Shanghai Consumer Council", case_number="SCC-1")
    with pytest.raises(arbitration.ArbitrationError):
        arbitration.arbitration_submit(case=case, staff=staff, third_party="Other", case_number="2")
    assert AuditEvent.objects.filter(action="arbitration.submit").count() == 1


@pytest.mark.django_db(transaction=True)
def test_buyer_outcome_refunds_the_order_once_even_decided_twice(buyer, staff, mailoutbox):
    ticket, order = rejected(buyer, staff)
    case = submitted(arbitration.arbitration_open(ticket=ticket, user=buyer, statement="No."), staff)
    lost_before = CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.DISPUTE_LOST).count()
    mailoutbox.clear()

    case = arbitration.arbitration_decide(
        case=case, staff=staff, outcome=CaseOutcome.BUYER, note="Refund the buyer in full."
    )
    again = arbitration.arbitration_decide(case=case, staff=staff, outcome=CaseOutcome.PLATFORM, note="changed my mind")

    case.refresh_from_db()
    assert (case.status, case.outcome, case.refund_quantity, again.outcome) == (
        CaseStatus.DECIDED,
        CaseOutcome.BUYER,
        3,
        CaseOutcome.BUYER,
    )
    refunds = list(Refund.objects.filter(order=order))
    assert len(refunds) == 1 and case.refund == refunds[0]
    assert refunds[0].quantity == 3 and refunds[0].amount == order.total
    assert refunds[0].status == Refund.Status.SUCCEEDED
    assert refunds[0].idempotency_key.endswith(f"arbitration:{case.pk}")
    order.refresh_from_db()
    assert order.refunded_quantity == 3
    assert CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.ARBITRATION_WON).count() == 1
    assert not CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.DISPUTE_WON).exists()
    assert CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.DISPUTE_LOST).count() == lost_before == 1
    # The staff rejection the third party overturned no longer counts against the buyer.
    summary = dict(credit_summary(user=buyer))
    assert summary[CreditEvent.Kind.ARBITRATION_WON.label] == 1
    assert CreditEvent.Kind.DISPUTE_LOST.label not in summary
    assert AuditEvent.objects.filter(action="arbitration.decide", target=ticket.number).count() == 1
    assert TicketMessage.objects.filter(
        ticket=ticket, from_staff=True, body__contains="Refund the buyer in full."
    ).exists()
    assert buyer.email in {addr for m in mailoutbox for addr in m.to}


@pytest.mark.django_db(transaction=True)
def test_partial_outcome_refunds_that_many_codes(buyer, staff):
    ticket, order = rejected(buyer, staff)
    case = submitted(arbitration.arbitration_open(ticket=ticket, user=staff), staff)
    with pytest.raises(arbitration.ArbitrationError):
        arbitration.arbitration_decide(
            case=case, staff=staff, outcome=CaseOutcome.PARTIAL, note="half", refund_quantity=4
        )
    with pytest.raises(arbitration.ArbitrationError):
        arbitration.arbitration_decide(case=case, staff=staff, outcome=CaseOutcome.PARTIAL, note="", refund_quantity=1)
    case = arbitration.arbitration_decide(
        case=case, staff=staff, outcome=CaseOutcome.PARTIAL, note="Two of three.", refund_quantity=2
    )
    case.refresh_from_db()
    assert (case.outcome, case.refund_quantity) == (CaseOutcome.PARTIAL, 2)
    refund = Refund.objects.get(order=order)
    assert refund.quantity == 2 and case.refund == refund
    # The code the buyer disputed (the revealed one) is among the refunded ones.
    revealed = OrderCode.objects.get(order=order, reveals__isnull=False)
    revealed.refresh_from_db()
    assert revealed.released_at is not None
    assert OrderCode.objects.filter(order=order, released_at__isnull=True).count() == 1
    assert CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.ARBITRATION_WON).count() == 1


@pytest.mark.django_db(transaction=True)
def test_platform_outcome_refunds_nothing_and_records_a_lost_arbitration(buyer, staff):
    ticket, order = rejected(buyer, staff)
    case = submitted(arbitration.arbitration_open(ticket=ticket, user=buyer, statement="No."), staff)
    case = arbitration.arbitration_decide(
        case=case, staff=staff, outcome=CaseOutcome.PLATFORM, note="The code was used."
    )
    case.refresh_from_db()
    assert (case.status, case.outcome, case.refund_id, case.refund_quantity) == (
        CaseStatus.DECIDED,
        CaseOutcome.PLATFORM,
        None,
        0,
    )
    assert not Refund.objects.filter(order=order).exists()
    # One loss before staff (the rejection), one at arbitration: two kinds, neither counted twice.
    kinds = sorted(CreditEvent.objects.filter(user=buyer, reference=ticket.number).values_list("kind", flat=True))
    assert kinds == [CreditEvent.Kind.ARBITRATION_LOST, CreditEvent.Kind.DISPUTE_LOST]
    summary = dict(credit_summary(user=buyer))
    assert summary[CreditEvent.Kind.DISPUTE_LOST.label] == 1
    assert summary[CreditEvent.Kind.ARBITRATION_LOST.label] == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_staff_deciding_at_once_make_one_refund(buyer, staff):
    assert connection.vendor == "postgresql"
    ticket, order = rejected(buyer, staff)
    case = submitted(arbitration.arbitration_open(ticket=ticket, user=buyer, statement="No."), staff)
    colleague = UserFactory(is_staff=True, is_superuser=True)
    people = [staff, colleague]
    _, errors = values_and_errors(
        run_concurrently(
            2,
            lambda i: arbitration.arbitration_decide(
                case=case, staff=people[i], outcome=CaseOutcome.BUYER, note=f"by {people[i].pk}"
            ),
        )
    )
    assert errors == []
    assert Refund.objects.filter(order=order).count() == 1
    assert AuditEvent.objects.filter(action="arbitration.decide").count() == 1
    assert CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.ARBITRATION_WON).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_ticket_in_arbitration_is_not_reopened_by_the_buyer(buyer, staff, client):
    ticket, _order = rejected(buyer, staff)
    assert tickets.can_reopen(ticket)  # resolved by the rejection, inside the window
    arbitration.arbitration_open(ticket=ticket, user=buyer, statement="I did not redeem it.")
    ticket.refresh_from_db()
    assert not tickets.can_reopen(ticket)
    with pytest.raises(tickets.TicketError, match="with the arbitrator"):
        tickets.ticket_reply(ticket=ticket, author=buyer, body="Any news?")
    with pytest.raises(tickets.TicketError, match="with the arbitrator"):
        tickets.ticket_reopen(ticket=ticket, user=buyer)
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.RESOLVED
    client.force_login(buyer)
    page = client.get(reverse("aftersales:ticket", args=[ticket.number]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "The dispute is with the arbitrator" in page
    assert 'data-testid="reopen"' not in page and 'data-testid="send-reply"' not in page
    # The rejection's link to the arbitration page is a link in the thread.
    assert f'href="{settings.SITE_URL}{reverse("aftersales:arbitration_new", args=[ticket.number])}"' in page


# --- the dossier ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_dossier_has_everything_but_secrets_and_internal_notes(buyer, staff, tmp_path, settings):
    import base64

    from aftersales.services import tickets

    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    from django.core.files.uploadedfile import SimpleUploadedFile

    ticket, order = rejected(buyer, staff)
    tickets.ticket_reply(
        ticket=ticket, author=buyer, body="Here is the screenshot.", attachments=[SimpleUploadedFile("shot.png", png)]
    )
    tickets.ticket_reply(ticket=ticket, author=staff, body="SECRET-NOTE: buyer looks fishy", staff=True, internal=True)
    case = submitted(arbitration.arbitration_open(ticket=ticket, user=buyer, statement="Unfair."), staff)

    data = arbitration.arbitration_dossier(case=case, staff=staff)

    zf = zipfile.ZipFile(io.BytesIO(data))
    names = zf.namelist()
    for name in ("summary.html", "orders.csv", "payments.csv", "reveals.csv", "messages.csv"):
        assert name in names
    images = [n for n in names if n.startswith("attachments/")]
    assert len(images) == 1 and images[0].endswith("shot.png") and zf.read(images[0]) == png
    summary = zf.read("summary.html").decode()
    payment = order.payments.get()
    assert order.number in summary and payment.trade_no in summary
    assert "Unfair." in summary and "Here is the screenshot." in summary
    assert "203.0.113.7" in summary and "TestPhone" in summary
    reveals = list(csv.reader(io.StringIO(zf.read("reveals.csv").decode("utf-8-sig"))))
    assert reveals[0] == ["code", "at", "ip", "user_agent", "user"] and reveals[1][2] == "203.0.113.7"
    assert payment.trade_no in zf.read("payments.csv").decode("utf-8-sig")
    everything = b"".join(zf.read(n) for n in names)
    assert b"SECRET-NOTE" not in everything  # internal notes excluded
    for code in CardCode.objects.filter(pk__in=OrderCode.objects.filter(order=order).values("code_id")):
        secret = decrypt(code.secret_enc)
        assert secret.encode() not in everything
        assert code.secret_enc.encode() not in everything
    case.refresh_from_db()
    assert case.dossier_exported_at is not None
    assert AuditEvent.objects.filter(action="arbitration.dossier", actor=staff).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_dossier_numbers_the_reveals_and_names_the_decisions(buyer, staff, settings):
    ticket, order = rejected(buyer, staff)  # the first of the order's three codes was revealed
    CodeReveal.objects.create(order_code=codes_of(order)[2], user=buyer, ip="198.51.100.9", user_agent="Other")
    case = submitted(arbitration.arbitration_open(ticket=ticket, user=buyer, statement="Unfair."), staff)

    ctx = arbitration.dossier_context(case)
    assert [(r.code_index, r.ip, r.user) for r in ctx["reveals"]] == [
        (1, "203.0.113.7", buyer),
        (3, "198.51.100.9", buyer),
    ]
    timeline = ctx["timeline"]
    assert [row.at for row in timeline] == sorted(row.at for row in timeline)
    assert {"dispute.reject", "arbitration.open", "arbitration.submit"} <= {row.action for row in timeline}

    zf = zipfile.ZipFile(io.BytesIO(arbitration.arbitration_dossier(case=case, staff=staff)))
    reveals = list(csv.reader(io.StringIO(zf.read("reveals.csv").decode("utf-8-sig"))))
    assert [(row[0], row[2], row[4]) for row in reveals[1:]] == [
        ("1", "203.0.113.7", buyer.email),
        ("3", "198.51.100.9", buyer.email),
    ]
    # The summary is in the site's language, whatever the language of the staff who exports it:
    # the decisions' names are translated when it is rendered, not when its rows are built.
    settings.LANGUAGE_CODE = "zh-hans"
    zf = zipfile.ZipFile(io.BytesIO(arbitration.arbitration_dossier(case=case, staff=staff)))
    summary = zf.read("summary.html").decode()
    assert "客服驳回申请" in summary and "Claim rejected by staff" not in summary


# --- admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_admin_list_change_page_and_actions(client, buyer, staff):
    ticket, _order = rejected(buyer, staff)
    case = arbitration.arbitration_open(ticket=ticket, user=buyer, statement="No.")
    client.force_login(staff)
    with translation.override("en"):
        listing = client.get(reverse("admin:aftersales_arbitrationcase_changelist") + "?status__exact=preparing")
        assert listing.status_code == 200 and ticket.number in listing.content.decode()
        change = reverse("admin:aftersales_arbitrationcase_change", args=[case.pk])
        page = client.get(change)
        assert page.status_code == 200 and 'data-testid="submit-case"' in page.content.decode()

        response = client.post(
            reverse("admin:aftersales_arbitrationcase_submit", args=[case.pk]),
            {"third_party": "Beijing Consumer Association", "case_number": "BCA-7", "submitted_on": ""},
        )
        assert response.status_code == 302
        case.refresh_from_db()
        assert (case.status, case.case_number) == (CaseStatus.SUBMITTED, "BCA-7")
        assert 'data-testid="decide-case"' in client.get(change).content.decode()

        # Bad input: a clear message, nothing changes.
        client.post(
            reverse("admin:aftersales_arbitrationcase_decide", args=[case.pk]),
            {"outcome": "partial", "note": "x", "refund_quantity": "9"},
        )
        case.refresh_from_db()
        assert case.status == CaseStatus.SUBMITTED
        messages = [str(m) for m in client.get(change).context["messages"]]
        assert any("between 1 and 3" in m for m in messages)

        response = client.post(
            reverse("admin:aftersales_arbitrationcase_decide", args=[case.pk]),
            {"outcome": "partial", "note": "One code.", "refund_quantity": "1"},
        )
        assert response.status_code == 302
        case.refresh_from_db()
        assert (case.status, case.outcome, case.refund.quantity) == (CaseStatus.DECIDED, CaseOutcome.PARTIAL, 1)

        response = client.post(reverse("admin:aftersales_arbitrationcase_dossier", args=[case.pk]))
        assert response.status_code == 200 and response["Content-Type"] == "application/zip"
        assert "summary.html" in zipfile.ZipFile(io.BytesIO(response.content)).namelist()
        assert client.get(reverse("admin:aftersales_arbitrationcase_dossier", args=[case.pk])).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_admin_actions_need_the_change_permission(client, buyer, staff):
    from django.contrib.auth.models import Permission

    ticket, _order = rejected(buyer, staff)
    case = arbitration.arbitration_open(ticket=ticket, user=buyer, statement="No.")
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_arbitrationcase"))
    client.force_login(viewer)
    assert client.get(reverse("admin:aftersales_arbitrationcase_change", args=[case.pk])).status_code == 200
    assert (
        'data-testid="submit-case"'
        not in client.get(reverse("admin:aftersales_arbitrationcase_change", args=[case.pk])).content.decode()
    )
    for name in ("submit", "decide", "dossier"):
        response = client.post(
            reverse(f"admin:aftersales_arbitrationcase_{name}", args=[case.pk]),
            {"third_party": "X", "case_number": "1", "outcome": "buyer", "note": "n"},
        )
        assert response.status_code == 403
    case.refresh_from_db()
    assert case.status == CaseStatus.PREPARING and case.dossier_exported_at is None
    # A buyer is sent to the admin login.
    client.force_login(buyer)
    assert client.get(reverse("admin:aftersales_arbitrationcase_changelist")).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_a_ticket_resolved_without_a_refund_may_be_escalated_one_refunded_may_not(buyer, staff):
    from aftersales.models import Kind
    from aftersales.services import tickets

    order = delivered_order(buyer, quantity=2)
    plain = tickets.ticket_open(user=buyer, kind=Kind.INVALID, subject="Invalid", body="Does not work", order=order)
    assert not arbitration.arbitration_eligibility(ticket=plain, user=buyer).allowed  # still open
    tickets.ticket_resolve(ticket=plain, staff=staff, note="Works for us.")
    plain.refresh_from_db()
    assert arbitration.arbitration_eligibility(ticket=plain, user=buyer).allowed

    refunded, _order = dispute(buyer)
    disputes.dispute_refund(ticket=refunded, staff=staff, reason="Fair enough.", key="k1")
    refunded.refresh_from_db()
    assert refunded.status == Ticket.Status.RESOLVED
    assert not arbitration.arbitration_eligibility(ticket=refunded, user=buyer).allowed
    with pytest.raises(arbitration.ArbitrationError):
        arbitration.arbitration_open(ticket=refunded, user=buyer, statement="more")
