"""The 48-hour SLA clocks (aftersales/services/sla.py): warning, breach, escalation, once each; the report."""

from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core import mail
from django.db import connection
from django.urls import reverse
from django.utils import timezone, translation

import aftersales.admin.sla  # noqa: F401  (registers the SLA admin)
from aftersales import tasks
from aftersales.models import Kind, SlaEvent, SlaPolicy, Ticket, TicketMessage
from aftersales.services import sla
from tests.builders import run_concurrently, transaction_held, values_and_errors
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("english")


T0 = timezone.make_aware(datetime(2025, 3, 5, 10, 0))  # a Wednesday, Beijing time
H = timedelta(hours=1)
SUPERVISORS = settings.AFTERSALES_SUPERVISOR_GROUP


def deadlines(opened):
    """The default policy (migration aftersales/0002): warn at 36 h, first response by 48 h, resolve in 7 days."""
    return {"warn_at": opened + 36 * H, "first_response_due_at": opened + 48 * H, "resolution_due_at": opened + 168 * H}


def make_ticket(user, *, opened=T0, kind=Kind.NOT_RECEIVED, **fields):
    ticket = Ticket.objects.create(user=user, kind=kind, subject="Code not received", **deadlines(opened), **fields)
    Ticket.objects.filter(pk=ticket.pk).update(created_at=opened)  # auto_now_add
    ticket.refresh_from_db()
    return ticket


def events(ticket):
    return sorted(SlaEvent.objects.filter(ticket=ticket).values_list("kind", flat=True))


@pytest.fixture
def supervisors(db):
    group = Group.objects.create(name=SUPERVISORS)
    people = [UserFactory(is_staff=True), UserFactory(is_staff=True)]
    for user in people:
        user.groups.add(group)
    return people


@pytest.fixture
def agent_staff(db):
    return UserFactory(is_staff=True, first_name="Li", last_name="Wei")


class TestSweep:
    def test_before_the_warning_nothing_happens(self, buyer, agent_staff, supervisors):
        ticket = make_ticket(buyer, assignee=agent_staff)
        assert sla.sla_sweep(now=T0 + 36 * H - timedelta(seconds=1)) == {
            "warned": 0,
            "breached": 0,
            "escalated": 0,
            "skipped": 0,
        }
        ticket.refresh_from_db()
        assert ticket.warned_at is None and events(ticket) == [] and mail.outbox == []

    def test_warning_once_to_the_assignee(self, buyer, agent_staff, supervisors, django_capture_on_commit_callbacks):
        ticket = make_ticket(buyer, assignee=agent_staff)
        at = T0 + 36 * H
        with django_capture_on_commit_callbacks(execute=True):
            counts = sla.sla_sweep(now=at)
        assert counts["warned"] == 1 and counts["breached"] == 0
        ticket.refresh_from_db()
        assert ticket.warned_at == at and ticket.breached_at is None and ticket.priority == Ticket.Priority.NORMAL
        assert events(ticket) == ["warned"]
        assert len(mail.outbox) == 1 and mail.outbox[0].to == [agent_staff.email]
        assert ticket.number in mail.outbox[0].subject

        with django_capture_on_commit_callbacks(execute=True):
            assert sla.sla_sweep(now=at + 2 * H)["warned"] == 0  # run again, later: still one
        assert events(ticket) == ["warned"] and len(mail.outbox) == 1

    def test_unassigned_warning_goes_to_the_supervisors(self, buyer, supervisors, django_capture_on_commit_callbacks):
        make_ticket(buyer)
        with django_capture_on_commit_callbacks(execute=True):
            sla.sla_sweep(now=T0 + 40 * H)
        assert len(mail.outbox) == 1
        assert sorted(mail.outbox[0].to) == sorted(u.email for u in supervisors)

    def test_nobody_in_the_group_means_the_superusers(self, buyer, staff, django_capture_on_commit_callbacks):
        UserFactory(is_staff=True)  # staff, not superuser: not emailed
        make_ticket(buyer)
        with django_capture_on_commit_callbacks(execute=True):
            sla.sla_sweep(now=T0 + 40 * H)
        assert [m.to for m in mail.outbox] == [[staff.email]]

    def test_breach_escalates_once(self, buyer, agent_staff, supervisors, django_capture_on_commit_callbacks):
        ticket = make_ticket(buyer, assignee=agent_staff)
        with django_capture_on_commit_callbacks(execute=True):
            sla.sla_sweep(now=T0 + 36 * H)
            counts = sla.sla_sweep(now=T0 + 48 * H)
        assert counts == {"warned": 0, "breached": 1, "escalated": 1, "skipped": 0}
        ticket.refresh_from_db()
        assert ticket.breached_at == T0 + 48 * H and ticket.priority == Ticket.Priority.URGENT
        assert events(ticket) == ["breached", "escalated", "warned"]
        assert len(mail.outbox) == 2  # the warning to the assignee, the escalation to the supervisors
        escalation = mail.outbox[1]
        assert sorted(escalation.to) == sorted(u.email for u in supervisors)
        assert escalation.cc == [agent_staff.email]
        assert ticket.number in escalation.subject and "SLA" in escalation.subject

        with django_capture_on_commit_callbacks(execute=True):
            assert sla.sla_sweep(now=T0 + 49 * H) == {"warned": 0, "breached": 0, "escalated": 0, "skipped": 0}
            assert sla.sla_sweep(now=T0 + 100 * H)["escalated"] == 0
        assert events(ticket) == ["breached", "escalated", "warned"] and len(mail.outbox) == 2

    def test_first_sweep_after_the_deadline_skips_the_late_warning(
        self, buyer, agent_staff, supervisors, django_capture_on_commit_callbacks
    ):
        ticket = make_ticket(buyer, assignee=agent_staff, priority=Ticket.Priority.HIGH)
        with django_capture_on_commit_callbacks(execute=True):
            counts = sla.sla_sweep(now=T0 + 50 * H)
        assert counts == {"warned": 0, "breached": 1, "escalated": 1, "skipped": 0}
        ticket.refresh_from_db()
        assert ticket.warned_at == T0 + 50 * H and ticket.priority == Ticket.Priority.URGENT
        assert events(ticket) == ["breached", "escalated"] and len(mail.outbox) == 1

    def test_answered_resolved_or_closed_tickets_never_fire(
        self, buyer, supervisors, django_capture_on_commit_callbacks
    ):
        answered = make_ticket(buyer, first_responded_at=T0 + 3 * H, status=Ticket.Status.AWAITING_BUYER)
        resolved = make_ticket(buyer, status=Ticket.Status.RESOLVED)
        closed = make_ticket(buyer, status=Ticket.Status.CLOSED)
        with django_capture_on_commit_callbacks(execute=True):
            for hours in (36, 48, 500):
                assert sla.sla_sweep(now=T0 + hours * H) == {"warned": 0, "breached": 0, "escalated": 0, "skipped": 0}
        assert SlaEvent.objects.count() == 0 and mail.outbox == []
        for t in (answered, resolved, closed):
            t.refresh_from_db()
            assert t.warned_at is None and t.breached_at is None and t.priority == Ticket.Priority.NORMAL

    def test_an_event_that_already_exists_sends_nothing_again(
        self, buyer, agent_staff, supervisors, django_capture_on_commit_callbacks
    ):
        """The unique (ticket, kind) constraint is the last line: clock fields reset by hand → no second email."""
        ticket = make_ticket(buyer, assignee=agent_staff)
        with django_capture_on_commit_callbacks(execute=True):
            sla.sla_sweep(now=T0 + 48 * H)
        Ticket.objects.filter(pk=ticket.pk).update(warned_at=None, breached_at=None)
        with django_capture_on_commit_callbacks(execute=True):
            counts = sla.sla_sweep(now=T0 + 49 * H)
        assert counts["breached"] == 0 and counts["escalated"] == 0
        ticket.refresh_from_db()
        assert ticket.breached_at == T0 + 49 * H  # out of the due index again
        assert events(ticket) == ["breached", "escalated"] and len(mail.outbox) == 1

    def test_limit_bounds_one_sweep_and_the_next_takes_the_rest(self, buyer, supervisors):
        tickets = [make_ticket(buyer, opened=T0 + i * timedelta(minutes=1)) for i in range(5)]
        assert sla.sla_sweep(now=T0 + 40 * H, limit=3)["warned"] == 3
        # The earliest deadlines go first.
        assert set(Ticket.objects.filter(warned_at__isnull=False).values_list("pk", flat=True)) == {
            t.pk for t in tickets[:3]
        }
        assert sla.sla_sweep(now=T0 + 40 * H, limit=3)["warned"] == 2

    def test_the_beat_task_uses_the_clock(self, buyer, agent_staff, supervisors):
        """The task takes no arguments: the clock is Django's (patched here)."""
        from marketplace.celery import app

        assert app.conf.beat_schedule["aftersales-sla-sweep"] == {
            "task": "aftersales.tasks.sla_sweep",
            "schedule": 60.0,
        }
        ticket = make_ticket(buyer, assignee=agent_staff)
        with mock.patch("aftersales.services.sla.timezone.now", return_value=T0 + 35 * H):
            assert tasks.sla_sweep.delay().get()["warned"] == 0
        with mock.patch("aftersales.services.sla.timezone.now", return_value=T0 + 37 * H):
            assert tasks.sla_sweep.delay().get()["warned"] == 1
            assert tasks.sla_sweep.delay().get()["warned"] == 0
        assert events(ticket) == ["warned"]


class TestEmailDelivery:
    """Each warning and escalation email goes out once, and is not lost when queueing it fails."""

    def test_an_email_never_queued_is_sent_by_a_later_sweep(self, buyer, agent_staff, supervisors):
        ticket = make_ticket(buyer, assignee=agent_staff)
        sla.sla_sweep(now=T0 + 40 * H)  # committed, but the queueing (on commit) never happened
        event = SlaEvent.objects.get(ticket=ticket, kind=SlaEvent.Kind.WARNED)
        assert event.notified_at is None and mail.outbox == []
        assert sla.sla_notify_unsent(now=event.at + timedelta(minutes=9)) == 0  # may still be on its way
        assert sla.sla_notify_unsent(now=event.at + timedelta(minutes=11)) == 1
        event.refresh_from_db()
        assert event.notified_at is not None
        assert [m.to for m in mail.outbox] == [[agent_staff.email]]
        assert sla.sla_notify_unsent(now=event.at + timedelta(hours=5)) == 0
        assert len(mail.outbox) == 1

    def test_a_second_copy_of_the_task_sends_nothing(self, buyer, agent_staff, supervisors):
        ticket = make_ticket(buyer, assignee=agent_staff)
        sla.sla_sweep(now=T0 + 50 * H)
        breach = SlaEvent.objects.get(ticket=ticket, kind=SlaEvent.Kind.BREACHED)
        escalation = SlaEvent.objects.get(ticket=ticket, kind=SlaEvent.Kind.ESCALATED)
        assert sla.sla_event_notify(event_id=breach.pk) == 0  # a breach emails nobody (its escalation does)
        assert sla.sla_event_notify(event_id=escalation.pk) == 1
        assert sla.sla_event_notify(event_id=escalation.pk) == 0
        assert len(mail.outbox) == 1
        assert sla.sla_notify_unsent(now=timezone.now() + 2 * H) == 0

    def test_the_beat_task_reports_requeued_emails(self, buyer, agent_staff, supervisors):
        ticket = make_ticket(buyer, assignee=agent_staff)
        sla.sla_sweep(now=T0 + 40 * H)
        SlaEvent.objects.filter(ticket=ticket).update(at=timezone.now() - H)
        counts = tasks.sla_sweep()
        assert counts["emails_requeued"] == 1 and len(mail.outbox) == 1

    def test_event_details_are_readable(self, buyer, agent_staff):
        ticket = make_ticket(buyer, assignee=agent_staff)
        sla.sla_sweep(now=T0 + 40 * H)
        sla.sla_sweep(now=T0 + 49 * H + 5 * timedelta(minutes=1))
        details = dict(SlaEvent.objects.filter(ticket=ticket).values_list("kind", "detail"))
        assert details["warned"] == "first response due 2025-03-07 10:00 (in 8h00m)"
        assert details["breached"] == "due 2025-03-07 10:00, seen 1h05m late"
        assert details["escalated"].startswith("priority normal -> urgent; group ")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_notification_being_sent_is_not_sent_again_meanwhile(buyer, agent_staff):
    """Two copies of the task at once (a re-queue while the first is still sending): one email."""
    ticket = make_ticket(buyer, assignee=agent_staff)
    sla.sla_sweep(now=T0 + 40 * H)  # committed: its email went out on commit (tasks run inline here)
    event = SlaEvent.objects.get(ticket=ticket)
    SlaEvent.objects.filter(pk=event.pk).update(notified_at=None)  # as if that first copy were still sending
    mail.outbox.clear()
    # The first copy holds the event's row, as sla_event_notify does while sending.
    with transaction_held(lambda: SlaEvent.objects.select_for_update().get(pk=event.pk)):
        second = sla.sla_event_notify(event_id=event.pk)  # the second copy: skips the locked row
    assert second == 0 and mail.outbox == []
    assert sla.sla_event_notify(event_id=event.pk) == 1 and len(mail.outbox) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_fire_each_clock_once(supervisors):

    buyer = UserFactory()
    assignee = UserFactory(is_staff=True)
    warn = [make_ticket(buyer, assignee=assignee, opened=T0 + i * timedelta(minutes=1)) for i in range(30)]
    breach = [make_ticket(buyer, opened=T0 - 20 * H + i * timedelta(minutes=1)) for i in range(30)]
    now = T0 + 37 * H  # the first 30 are due a warning, the other 30 a breach
    results, errors = values_and_errors(run_concurrently(4, lambda i: sla.sla_sweep(now=now)))
    assert errors == []
    assert sum(r["warned"] for r in results) == 30
    assert sum(r["breached"] for r in results) == 30
    assert sum(r["escalated"] for r in results) == 30
    assert SlaEvent.objects.filter(ticket__in=warn, kind="warned").count() == 30
    assert SlaEvent.objects.filter(ticket__in=breach).count() == 60  # breached + escalated, no late warnings
    assert len(mail.outbox) == 60  # 30 warnings, 30 escalations
    assert sla.sla_sweep(now=now) == {"warned": 0, "breached": 0, "escalated": 0, "skipped": 0}


@pytest.mark.postgres
def test_due_queries_use_the_partial_indexes(buyer):
    due = deadlines(T0 + 1000 * H)
    Ticket.objects.bulk_create(Ticket(user=buyer, kind=Kind.OTHER, subject="s", **due) for i in range(5000))
    due_one = make_ticket(buyer)
    with connection.cursor() as cur:
        cur.execute("ANALYZE aftersales_ticket")
    warn_plan = sla.sla_warn_due(now=T0 + 40 * H).explain()
    breach_plan = sla.sla_breach_due(now=T0 + 50 * H).explain()
    assert "ticket_warn_due_idx" in warn_plan, warn_plan
    assert "ticket_breach_due_idx" in breach_plan, breach_plan
    for plan in (warn_plan, breach_plan):
        assert "Seq Scan" not in plan, plan
    assert list(sla.sla_breach_due(now=T0 + 50 * H)) == [due_one.pk]
    assert list(sla.sla_warn_due(now=T0 + 40 * H)) == [due_one.pk]


@pytest.mark.postgres
def test_a_ticket_closed_unanswered_leaves_the_sweep_indexes(buyer):
    """Closing (or resolving) stops the clock: the indexes hold only running clocks, so a ticket
    the buyer closed before staff answered is not read by the sweep any more."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
            "('ticket_warn_due_idx', 'ticket_breach_due_idx') ORDER BY indexname"
        )
        definitions = dict(cur.fetchall())
    assert len(definitions) == 2
    for definition in definitions.values():
        assert "first_responded_at IS NULL" in definition
        assert "'open'" in definition and "'awaiting_staff'" in definition and "'awaiting_buyer'" in definition
        assert "'closed'" not in definition and "'resolved'" not in definition
    closed, running = make_ticket(buyer), make_ticket(buyer)
    Ticket.objects.filter(pk=closed.pk).update(status=Ticket.Status.CLOSED)
    assert list(sla.sla_breach_due(now=T0 + 50 * H)) == [running.pk]
    assert list(sla.sla_warn_due(now=T0 + 40 * H)) == [running.pk]


class TestReport:
    NOW = T0 + 7 * 24 * H  # Wednesday of the next week

    @pytest.fixture
    def rows(self, buyer, agent_staff):
        """Week of T0 (due Mon 3 Mar .. Sun 9 Mar): answered after 2, 10, 30, 47 h (in time) and 50 h (late),
        one unanswered and overdue, one resolved unanswered (pending, not counted)."""
        other = UserFactory(is_staff=True, username="zhang")
        opened = T0 - 24 * H  # due T0 + 24 h, same week
        for hours, who in ((2, agent_staff), (10, agent_staff), (30, other), (47, other), (50, other)):
            make_ticket(buyer, opened=opened, assignee=agent_staff, first_responded_at=opened + hours * H)
        # The plan's author counts, not the assignee: the three tickets above answered at 30, 47, 50 h by "other".
        for ticket in Ticket.objects.filter(first_responded_at__gte=opened + 30 * H):
            TicketMessage.objects.create(
                ticket=ticket, author=other, from_staff=True, is_resolution_plan=True, body="plan"
            )
        make_ticket(buyer, opened=opened, assignee=agent_staff)  # overdue now
        make_ticket(buyer, opened=opened, status=Ticket.Status.RESOLVED)  # unassigned, pending
        # Next week (the current one): one answered in time after 4 h, one not yet due.
        make_ticket(buyer, opened=self.NOW - 30 * H, first_responded_at=self.NOW - 26 * H)
        make_ticket(buyer, opened=self.NOW - 1 * H, assignee=other)
        # Outside a 4-week period: ignored.
        make_ticket(buyer, opened=T0 - 60 * 24 * H, first_responded_at=T0 - 59 * 24 * H)
        return agent_staff, other

    def test_numbers_per_week_and_staff(self, rows):

        report = sla.sla_report(weeks=4, now=self.NOW)
        assert len(report.weeks) == 4
        assert [w.label.split(" ")[0] for w in report.weeks] == ["2025-W11", "2025-W10", "2025-W09", "2025-W08"]
        current, last = report.weeks[0], report.weeks[1]
        assert (last.due, last.in_time, last.late, last.overdue_now, last.pending) == (7, 4, 1, 1, 1)
        assert last.share_in_time == pytest.approx(4 / 6)
        assert last.median_hours == pytest.approx(30)
        assert last.p95_hours == pytest.approx(47 + 0.8 * 3)  # rank 0.95 * 4 = 3.8 between 47 and 50
        assert (current.due, current.in_time, current.pending, current.share_in_time) == (2, 1, 1, 1.0)
        assert current.median_hours == pytest.approx(4) and current.p95_hours == pytest.approx(4)
        assert report.weeks[2].due == 0 and report.weeks[2].share_in_time is None
        assert report.total.due == 9 and report.overdue_now == 1

        staff = {r.label: r for r in report.staff}
        li = staff["Li Wei"]
        assert (li.due, li.in_time, li.late, li.overdue_now) == (3, 2, 0, 1)
        assert li.median_hours == pytest.approx(6)
        zhang = staff["zhang"]
        assert (zhang.due, zhang.in_time, zhang.late, zhang.pending) == (4, 2, 1, 1)  # 30 h, 47 h, 50 h, the new one
        assert zhang.share_in_time == pytest.approx(2 / 3) and zhang.median_hours == pytest.approx(47)
        assert staff["Unassigned"].due == 2
        assert report.staff[-1].label == "Unassigned"

    def test_resolution_time_is_tracked(self, buyer):
        opened = T0 - 24 * H
        for hours in (20, 200):  # resolved well inside 168 h, and late
            make_ticket(
                buyer,
                opened=opened,
                first_responded_at=opened + H,
                resolved_at=opened + hours * H,
                status=Ticket.Status.RESOLVED,
            )
        week = sla.sla_report(weeks=4, now=self.NOW).weeks[1]
        assert week.resolution_median_hours == pytest.approx(110)
        assert week.resolved_late == 1

    def test_twelve_weeks_reach_further(self, rows):
        report = sla.sla_report(weeks=12, now=self.NOW)
        assert len(report.weeks) == 12 and report.total.due == 10

    def test_percentile_is_percentile_cont(self):
        assert sla.percentile([], 0.5) is None
        assert sla.percentile([5.0], 0.95) == 5.0
        assert sla.percentile([1, 2, 3, 4], 0.5) == 2.5
        assert sla.percentile([10, 1, 7], 0.95) == pytest.approx(7 + 0.9 * 3)


class TestAdmin:
    def test_report_page_for_staff(self, client, staff, buyer):
        make_ticket(buyer, opened=timezone.now() - 60 * H)  # overdue now
        make_ticket(
            buyer, opened=timezone.now() - 20 * H, first_responded_at=timezone.now() - 19 * H
        )  # answered in 1 h, due tomorrow
        client.force_login(staff)
        with translation.override("en"):
            changelist = client.get(reverse("admin:aftersales_slaevent_changelist"))
            assert changelist.status_code == 200
            assert reverse("admin:aftersales_sla_report") in changelist.content.decode()
            policies = client.get(reverse("admin:aftersales_slapolicy_changelist"))
            assert reverse("admin:aftersales_sla_report") in policies.content.decode()
            page = client.get(reverse("admin:aftersales_sla_report"), {"weeks": "12"})
        assert page.status_code == 200
        assert page.context["weeks"] == 12 and len(page.context["report"].weeks) == 12
        assert page.context["report"].overdue_now == 1
        html = page.content.decode()
        assert 'data-testid="sla-overdue-now"' in html and "SLA report" in html
        try:
            url = reverse("admin:aftersales_ticket_changelist") + "?sla=overdue"
        except Exception:  # the Ticket admin (h5) is not registered yet
            url = None
        if url:
            assert url in html
        # A bad period falls back to 4 weeks.
        assert client.get(reverse("admin:aftersales_sla_report"), {"weeks": "x"}).context["weeks"] == 4

    def test_report_is_staff_only(self, client, buyer):
        client.force_login(buyer)
        response = client.get(reverse("admin:aftersales_sla_report"))
        assert response.status_code == 302 and "/login/" in response["Location"]

    def test_events_are_read_only_policies_editable(self, client, staff, buyer):
        ticket = make_ticket(buyer)
        event = SlaEvent.objects.create(ticket=ticket, kind=SlaEvent.Kind.WARNED)
        client.force_login(staff)
        assert client.get(reverse("admin:aftersales_slaevent_add")).status_code == 403
        change = client.get(reverse("admin:aftersales_slaevent_change", args=[event.pk]))
        assert change.status_code == 200 and b'name="_save"' not in change.content
        policy = SlaPolicy.objects.get(kind=Kind.INVALID)
        url = reverse("admin:aftersales_slapolicy_change", args=[policy.pk])
        data = {"kind": Kind.INVALID, "first_response_hours": 24, "warn_after_hours": 30, "resolution_hours": 72}
        response = client.post(url, data)
        assert response.status_code == 200  # the warning must come before the deadline
        policy.refresh_from_db()
        assert policy.first_response_hours == 48
        response = client.post(url, {**data, "warn_after_hours": 18})
        assert response.status_code == 302
        policy.refresh_from_db()
        assert (policy.first_response_hours, policy.warn_after_hours) == (24, 18)
