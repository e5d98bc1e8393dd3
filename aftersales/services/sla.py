"""The first-response SLA clocks: the sweep (services) and the SLA report (selectors).

The sweep reads due tickets only through the partial indexes ``ticket_warn_due_idx`` and
``ticket_breach_due_idx`` (ORDER BY the indexed column, LIMIT), so its cost grows with the
tickets that are due, not with all tickets. Each due ticket is handled in its own
transaction: its row is locked with ``SKIP LOCKED`` (two sweeps never wait on each other),
the condition is checked again under the lock, the clock field is stamped, and an
``SlaEvent`` is written. The unique (ticket, kind) constraint on ``SlaEvent`` is the last
line of defence: an email is queued (on commit) only when the event row was created.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from marketplace.celery import BROKER_ERRORS, publish
from orders.models import ManualTopup

from ..models import CLOCK_RUNNING, SlaEvent, Ticket, TicketMessage
from .tickets import minute

log = logging.getLogger(__name__)

TicketStatus = Ticket.Status
# CLOCK_RUNNING: a resolved or closed ticket's clock no longer runs, answered or not (the index
# predicates' list, so the due queries below match it exactly).


# ---------------------------------------------------------------------------------------------
# The sweep


def sla_warn_due(*, now: datetime, limit: int = 500):
    """Tickets whose warning is due: served by ticket_warn_due_idx (its predicate, its column)."""
    return (
        Ticket.objects.filter(
            first_responded_at__isnull=True, warned_at__isnull=True, warn_at__lte=now, status__in=CLOCK_RUNNING
        )
        .order_by("warn_at")
        .values_list("pk", flat=True)[:limit]
    )


def sla_breach_due(*, now: datetime, limit: int = 500):
    """Tickets whose first response is overdue: served by ticket_breach_due_idx."""
    return (
        Ticket.objects.filter(
            first_responded_at__isnull=True,
            breached_at__isnull=True,
            first_response_due_at__lte=now,
            status__in=CLOCK_RUNNING,
        )
        .order_by("first_response_due_at")
        .values_list("pk", flat=True)[:limit]
    )


def sla_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Fire the due clocks: warnings, breaches (with escalation). Safe to run twice or concurrently.

    Breaches go first: a ticket already past its deadline gets the breach and the escalation,
    and its warning is marked as superseded (no late warning). Returns counts of events fired
    and of due tickets skipped (locked by another sweep, or no longer due under the lock).
    """
    now = now or timezone.now()
    counts = {"warned": 0, "breached": 0, "escalated": 0, "skipped": 0}
    for pk in list(sla_breach_due(now=now, limit=limit)):
        fired = _breach_one(pk=pk, now=now)
        if fired:
            for kind in fired:
                counts[kind] += 1
        else:
            counts["skipped"] += 1
    for pk in list(sla_warn_due(now=now, limit=limit)):
        if _warn_one(pk=pk, now=now):
            counts["warned"] += 1
        else:
            counts["skipped"] += 1
    if counts["warned"] or counts["breached"]:
        log.info("SLA sweep at %s: %s", now.isoformat(), counts)
    return counts


def _lock_due(pk: int, **due) -> Ticket | None:
    """The ticket, locked, if it is still due; None if another sweep holds it or it is no longer due."""
    return (
        Ticket.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk=pk, first_responded_at__isnull=True, status__in=CLOCK_RUNNING, **due)
        .first()
    )


def _span(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _event_create(ticket: Ticket, kind: str, detail: str) -> SlaEvent | None:
    """The event row, or None if this clock already fired for the ticket (the unique constraint)."""
    try:
        with transaction.atomic():
            return SlaEvent.objects.create(ticket=ticket, kind=kind, detail=detail[:300])
    except IntegrityError:
        return None


def _notify_on_commit(event: SlaEvent) -> None:
    from ..tasks import sla_notify

    event_id = event.pk
    # With the broker away: logged, and sla_notify_unsent queues it again later.
    transaction.on_commit(lambda: publish(sla_notify, event_id))


def _warn_one(*, pk: int, now: datetime) -> bool:
    with transaction.atomic():
        ticket = _lock_due(pk, warned_at__isnull=True, warn_at__lte=now)
        if ticket is None:
            return False
        ticket.warned_at = now
        ticket.save(update_fields=["warned_at"])
        left = ticket.first_response_due_at - now
        event = _event_create(
            ticket,
            SlaEvent.Kind.WARNED,
            f"first response due {minute(ticket.first_response_due_at)} (in {_span(left)})",
        )
        if event is None:
            return False
        _notify_on_commit(event)
        return True


def _breach_one(*, pk: int, now: datetime) -> list[str]:
    with transaction.atomic():
        ticket = _lock_due(pk, breached_at__isnull=True, first_response_due_at__lte=now)
        if ticket is None:
            return []
        fields = ["breached_at"]
        ticket.breached_at = now
        if ticket.warned_at is None:  # past the deadline already: the breach supersedes the warning
            ticket.warned_at = now
            fields.append("warned_at")
        old_priority = Ticket.Priority(ticket.priority).name.lower()  # stored English, as every detail
        if ticket.priority != Ticket.Priority.URGENT:
            ticket.priority = Ticket.Priority.URGENT
            fields.append("priority")
        ticket.save(update_fields=fields)
        fired = []
        late = now - ticket.first_response_due_at
        if _event_create(
            ticket, SlaEvent.Kind.BREACHED, f"due {minute(ticket.first_response_due_at)}, seen {_span(late)} late"
        ):
            fired.append("breached")
        escalated = _event_create(
            ticket,
            SlaEvent.Kind.ESCALATED,
            f"priority {old_priority} -> urgent; group {settings.AFTERSALES_SUPERVISOR_GROUP}",
        )
        if escalated:
            fired.append("escalated")
            _notify_on_commit(escalated)
        return fired


# ---------------------------------------------------------------------------------------------
# Notifications


def sla_supervisors() -> list:
    """Active members of the supervisor group (settings.AFTERSALES_SUPERVISOR_GROUP) with an email;
    nobody there → active staff superusers."""
    User = get_user_model()
    users = list(
        User.objects.filter(is_active=True, groups__name=settings.AFTERSALES_SUPERVISOR_GROUP)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )
    if not users:
        users = list(
            User.objects.filter(is_active=True, is_staff=True, is_superuser=True).exclude(email="").order_by("pk")
        )
    return users


def _ticket_admin_url(ticket: Ticket) -> str:
    try:
        return settings.SITE_URL + reverse("admin:aftersales_ticket_change", args=[ticket.pk])
    except NoReverseMatch:  # the Ticket admin is not registered (yet)
        return ""


NOTIFY_RETRY_AFTER = timedelta(minutes=10)
NOTIFIED_KINDS = (SlaEvent.Kind.WARNED, SlaEvent.Kind.ESCALATED)


def sla_event_notify(*, event_id: int) -> int:
    """Email the people an SLA event concerns, once; returns the number of messages sent (0 or 1).

    warned: the assignee (or the supervisors if nobody is assigned); escalated: the supervisors,
    with the assignee in copy. Other events send nothing. The event row is locked while sending
    and marked sent after: a second copy of the task (a re-queue, a redelivery) sends nothing,
    and a worker killed before the mark leaves it for ``sla_notify_unsent`` (at least once)."""
    with transaction.atomic():
        event = (
            SlaEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("ticket__assignee")
            .filter(pk=event_id, notified_at__isnull=True, kind__in=NOTIFIED_KINDS)
            .first()
        )
        if event is None:  # sent already, being sent, or nothing to send
            return 0
        sent = _send(event)
        SlaEvent.objects.filter(pk=event.pk).update(notified_at=timezone.now())
    return sent


def sla_notify_unsent(*, now: datetime | None = None, limit: int = 200) -> int:
    """Queue again the emails of events older than NOTIFY_RETRY_AFTER still not sent (the queueing
    failed after the sweep committed, or the worker died). Served by slaevent_unsent_idx."""
    from ..tasks import sla_notify

    now = now or timezone.now()
    pks = list(
        SlaEvent.objects.filter(notified_at__isnull=True, kind__in=NOTIFIED_KINDS, at__lte=now - NOTIFY_RETRY_AFTER)
        .order_by("at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in pks:
        sla_notify.delay(pk)
    if pks:
        log.warning("SLA: %d event email(s) not sent after %s, queued again", len(pks), NOTIFY_RETRY_AFTER)
    return len(pks)


def _send(event: SlaEvent) -> int:
    ticket = event.ticket
    assignee = ticket.assignee if ticket.assignee and ticket.assignee.is_active and ticket.assignee.email else None
    supervisors = [u.email for u in sla_supervisors()]
    with translation.override(settings.LANGUAGE_CODE):
        due = minute(ticket.first_response_due_at)
        url = _ticket_admin_url(ticket)
        if event.kind == SlaEvent.Kind.WARNED:
            to, cc = ([assignee.email] if assignee else supervisors), []
            subject = _("[SLA] Ticket %(number)s: first response due %(due)s") % {"number": ticket.number, "due": due}
            intro = _("This ticket has not had a first response with a resolution plan yet. The deadline is %(due)s.")
        else:
            to, cc = supervisors, ([assignee.email] if assignee and assignee.email not in supervisors else [])
            subject = _("[SLA breached] Ticket %(number)s escalated to urgent") % {"number": ticket.number}
            intro = _(
                "The first-response deadline (%(due)s) passed without a resolution plan. "
                "The ticket is now urgent and escalated to the after-sales supervisors."
            )
        lines = [
            intro % {"due": due},
            "",
            _("Ticket: %(number)s — %(subject)s") % {"number": ticket.number, "subject": ticket.subject},
            _("Kind: %(kind)s") % {"kind": ticket.get_kind_display()},
            _("Assigned to: %(assignee)s") % {"assignee": ticket.assignee or _("nobody")},
        ]
        if url:
            lines.append(url)
        body = "\n".join(lines) + "\n"
    if not to:
        log.warning("SLA %s for ticket %s: nobody to email (no supervisors, no superusers)", event.kind, ticket.number)
        return 0
    EmailMessage(subject, body, None, to, cc=cc).send()
    return 1


# ---------------------------------------------------------------------------------------------
# Manual top-ups (orders.ManualTopup, 人工代充): the queue's own SLA on the same clocks
#
# A top-up is due by ``due_at`` (queued + settings.MANUAL_TOPUP_SLA_MINUTES). The supervisors are
# warned once when a third of the time is left (``warned_at``) and told once when it is overdue
# (``breached_at``; a top-up found overdue gets the breach alone). Each due row is stamped in its
# own transaction, locked with SKIP LOCKED and checked again under the lock, and its email queued
# in that transaction only by the sweep that stamped it. Served by manual_topup_queued_idx (state queued,
# ordered by due_at).

TOPUP_WARNED, TOPUP_BREACHED = "warned", "breached"


def _topup_warn_lead() -> timedelta:
    return timedelta(minutes=settings.MANUAL_TOPUP_SLA_MINUTES) / 3


def _topups_due(*, now: datetime, limit: int, **clock):
    return (
        ManualTopup.objects.filter(state=ManualTopup.State.QUEUED, **clock)
        .order_by("due_at")
        .values_list("pk", flat=True)[:limit]
    )


def topup_sla_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Fire the manual top-ups' due clocks (breaches first), once each; safe to run concurrently."""
    now = now or timezone.now()
    counts = {"topups_warned": 0, "topups_breached": 0}
    for pk in list(_topups_due(now=now, limit=limit, breached_at__isnull=True, due_at__lte=now)):
        counts["topups_breached"] += _topup_fire(pk=pk, now=now, kind=TOPUP_BREACHED)
    lead = _topup_warn_lead()
    for pk in list(_topups_due(now=now, limit=limit, warned_at__isnull=True, due_at__lte=now + lead)):
        counts["topups_warned"] += _topup_fire(pk=pk, now=now, kind=TOPUP_WARNED)
    if any(counts.values()):
        log.info("manual top-up SLA sweep at %s: %s", now.isoformat(), counts)
    return counts


def _topup_fire(*, pk: int, now: datetime, kind: str) -> int:
    from ..tasks import topup_sla_notify

    if kind == TOPUP_BREACHED:
        clock = {"breached_at__isnull": True, "due_at__lte": now}
    else:
        clock = {"warned_at__isnull": True, "due_at__lte": now + _topup_warn_lead()}
    try:
        with transaction.atomic():
            topup = (
                ManualTopup.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, state=ManualTopup.State.QUEUED, **clock)
                .first()
            )
            if topup is None:  # another sweep holds it, or staff decided it meanwhile
                return 0
            fields = ["breached_at"] if kind == TOPUP_BREACHED else ["warned_at"]
            if kind == TOPUP_BREACHED and topup.warned_at is None:
                fields.append("warned_at")  # past the deadline already: the breach supersedes the warning
            for name in fields:
                setattr(topup, name, now)
            topup.save(update_fields=fields)
            # Queued inside the transaction (the stamp and the email stand or fall together): with the
            # broker away the stamp rolls back and the next sweep tries again, rather than a stamp
            # committed whose email was never queued. The email reads nothing the stamp wrote, so a
            # worker that runs it before the commit sends the same message.
            topup_sla_notify.delay(pk, kind)
    except BROKER_ERRORS as exc:  # nothing stamped: the next sweep tries again
        log.warning("manual top-up %s: SLA %s email not queued (%s); the next sweep tries again", pk, kind, exc)
        return 0
    return 1


def _topup_admin_url(topup: ManualTopup) -> str:
    try:
        return settings.SITE_URL + reverse("admin:orders_manualtopup_change", args=[topup.pk])
    except NoReverseMatch:
        return ""


def topup_sla_notify(*, topup_id: int, kind: str) -> int:
    """Email the supervisors (``sla_supervisors``) about a manual top-up's warning or breach;
    nothing once staff have decided it. Returns the messages sent (0 or 1)."""
    topup = ManualTopup.objects.select_related("order").filter(pk=topup_id).first()
    if topup is None or topup.state != ManualTopup.State.QUEUED:
        return 0
    to = [u.email for u in sla_supervisors()]
    if not to:
        log.warning("manual top-up SLA %s for order %s: nobody to email", kind, topup.order.number)
        return 0
    order = topup.order
    with translation.override(settings.LANGUAGE_CODE):
        due = minute(topup.due_at)
        if kind == TOPUP_BREACHED:
            subject = _("[SLA breached] Manual top-up of order %(number)s is overdue") % {"number": order.number}
            intro = _("This manual top-up was due by %(due)s and is still waiting for staff.") % {"due": due}
        else:
            subject = _("[SLA] Manual top-up of order %(number)s due %(due)s") % {"number": order.number, "due": due}
            intro = _("This manual top-up is due by %(due)s and is still waiting for staff.") % {"due": due}
        lines = [
            intro,
            "",
            _("Order: %(number)s — %(product)s × %(quantity)s (¥%(total)s)")
            % {"number": order.number, "product": order.product_name, "quantity": order.quantity, "total": order.total},
        ]
        url = _topup_admin_url(topup)
        if url:
            lines.append(url)
        body = "\n".join(lines) + "\n"
    EmailMessage(subject, body, None, to).send()
    return 1


# ---------------------------------------------------------------------------------------------
# The SLA report (selectors)


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont(p)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * p
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class SlaRow:
    label: str
    key: object = None
    due: int = 0  # tickets whose first response falls due in the period
    in_time: int = 0  # answered by the deadline
    late: int = 0  # answered after the deadline
    overdue_now: int = 0  # unanswered, past the deadline, still open
    pending: int = 0  # unanswered, deadline not reached (or closed unanswered)
    hours: list[float] = field(default_factory=list, repr=False)
    resolved_late: int = 0  # resolved after the resolution deadline
    resolution_hours: list[float] = field(default_factory=list, repr=False)  # opened -> resolved

    @property
    def decided(self) -> int:
        return self.in_time + self.late + self.overdue_now

    @property
    def share_in_time(self) -> float | None:
        """In time / (answered + overdue): pending tickets are not counted either way."""
        return self.in_time / self.decided if self.decided else None

    @property
    def share_percent(self) -> str:
        share = self.share_in_time
        return "–" if share is None else f"{share * 100:.1f}%"

    @property
    def median_hours(self) -> float | None:
        return percentile(self.hours, 0.5)

    @property
    def p95_hours(self) -> float | None:
        return percentile(self.hours, 0.95)

    @property
    def resolution_median_hours(self) -> float | None:
        return percentile(self.resolution_hours, 0.5)

    def add(self, row: dict, now: datetime) -> None:
        self.due += 1
        answered = row["first_responded_at"]
        if answered is not None:
            self.hours.append((answered - row["created_at"]).total_seconds() / 3600)
            if answered <= row["first_response_due_at"]:
                self.in_time += 1
            else:
                self.late += 1
        elif row["first_response_due_at"] <= now and row["status"] in CLOCK_RUNNING:
            self.overdue_now += 1
        else:
            self.pending += 1
        resolved = row.get("resolved_at")
        if resolved is not None:
            self.resolution_hours.append((resolved - row["created_at"]).total_seconds() / 3600)
            if resolved > row["resolution_due_at"]:
                self.resolved_late += 1


@dataclass
class SlaReport:
    start: datetime
    end: datetime
    weeks: list[SlaRow]
    staff: list[SlaRow]
    total: SlaRow
    overdue_now: int  # all open tickets past their first-response deadline, whenever due
    topups: TopupSla | None = None  # the manual top-up queue in the same period


@dataclass
class TopupSla:
    """Manual top-ups (人工代充) due in the period: done or failed by their deadline, after it,
    and waiting past it now (whenever due)."""

    due: int = 0
    in_time: int = 0
    late: int = 0
    waiting: int = 0  # not decided, deadline not reached
    overdue_now: int = 0

    @property
    def share_percent(self) -> str:
        decided = self.in_time + self.late
        return "–" if not decided else f"{self.in_time / decided * 100:.1f}%"


def topup_sla(*, start: datetime, end: datetime, now: datetime) -> TopupSla:
    out = TopupSla()
    rows = ManualTopup.objects.filter(due_at__gte=start, due_at__lt=end).values_list("state", "due_at", "finished_at")
    for state, due_at, finished_at in rows:
        out.due += 1
        if state == ManualTopup.State.QUEUED:
            out.waiting += due_at > now
        elif finished_at is not None and finished_at <= due_at:
            out.in_time += 1
        else:
            out.late += 1
    out.overdue_now = ManualTopup.objects.filter(state=ManualTopup.State.QUEUED, due_at__lte=now).count()
    return out


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 (local time) of the ISO week of ``moment``."""
    local = timezone.localtime(moment)
    monday = local.date() - timedelta(days=local.isoweekday() - 1)
    return timezone.make_aware(datetime.combine(monday, datetime.min.time()))


def sla_overdue_now(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    return Ticket.objects.filter(
        first_responded_at__isnull=True, first_response_due_at__lte=now, status__in=CLOCK_RUNNING
    ).count()


def sla_at_risk_now(*, now: datetime | None = None) -> int:
    """Tickets past their warning time and still not answered (first response), clock running:
    those about to breach and those already breached (ops.metrics, for alerts)."""
    now = now or timezone.now()
    return Ticket.objects.filter(first_responded_at__isnull=True, warn_at__lte=now, status__in=CLOCK_RUNNING).count()


def sla_report(*, weeks: int = 4, now: datetime | None = None) -> SlaReport:
    """Tickets due in the last ``weeks`` ISO weeks (this one included), per week and per staff member.

    A ticket's staff member is the author of its first staff resolution-plan message, else its
    assignee. First-response time is opened → first response, in hours; the median and 95th
    percentile are computed in Python over the period's rows (the same on SQLite and PostgreSQL).
    """
    now = now or timezone.now()
    start = week_start(now) - timedelta(weeks=weeks - 1)
    end = week_start(now) + timedelta(weeks=1)
    plan_author = (
        TicketMessage.objects.filter(ticket=OuterRef("pk"), from_staff=True, is_resolution_plan=True, internal=False)
        .order_by("created_at", "id")
        .values("author_id")[:1]
    )
    rows = (
        Ticket.objects.filter(first_response_due_at__gte=start, first_response_due_at__lt=end)
        .annotate(plan_author=Subquery(plan_author))
        .order_by()
        .values(
            "pk",
            "created_at",
            "first_response_due_at",
            "first_responded_at",
            "status",
            "assignee_id",
            "plan_author",
            "resolved_at",
            "resolution_due_at",
        )
    )
    week_rows: dict[datetime, SlaRow] = {}
    for i in range(weeks):
        ws = start + timedelta(weeks=i)
        # Recompute local midnight each week (DST-safe for zones that have it).
        ws = week_start(ws + timedelta(hours=12))
        iso = timezone.localtime(ws).isocalendar()
        label = f"{iso.year}-W{iso.week:02d} ({timezone.localtime(ws):%m-%d})"
        week_rows[ws] = SlaRow(label=label, key=ws)
    staff_rows: dict[int | None, SlaRow] = {}
    total = SlaRow(label=_("All"))
    for row in rows:
        ws = week_start(row["first_response_due_at"])
        week_rows.setdefault(ws, SlaRow(label=str(ws.date()), key=ws)).add(row, now)
        who = row["plan_author"] or row["assignee_id"]
        staff_rows.setdefault(who, SlaRow(label="", key=who)).add(row, now)
        total.add(row, now)
    User = get_user_model()
    users = User.objects.in_bulk([k for k in staff_rows if k is not None])
    for key, srow in staff_rows.items():
        user = users.get(key)
        srow.label = (user.get_full_name() or user.get_username()) if user else _("Unassigned")
    staff = sorted(staff_rows.values(), key=lambda r: (r.key is None, r.label))
    return SlaReport(
        start=start,
        end=end,
        weeks=[week_rows[k] for k in sorted(week_rows, reverse=True)],
        staff=staff,
        total=total,
        overdue_now=sla_overdue_now(now=now),
        topups=topup_sla(start=start, end=end, now=now),
    )
