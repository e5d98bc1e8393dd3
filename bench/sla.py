#!/usr/bin/env python
"""SLA sweep: 1,000,000 open tickets of which 100 are due, against 1,000 of which 100 are due.

    .venv/bin/python bench/sla.py [--big 1000000] [--small 1000] [--due 100] [--repeat 5]

Recreates the PostgreSQL database ``kamarket_bench_sla``, migrates, creates a few users (a
buyer, 3 staff as assignees, 2 supervisors in settings.AFTERSALES_SUPERVISOR_GROUP), then
inserts ``--big`` open, unanswered tickets with ``INSERT ... SELECT generate_series`` — all
but ``--due`` of them opened in the last 30 hours (not yet due a warning), the ``--due`` ones
opened 49 hours ago (past their 48-hour deadline) — and ``ANALYZE``s. It times
``aftersales.services.sla.sla_sweep`` (each run breaches and escalates the due tickets; then the due
tickets are reset and their events deleted), ``--repeat`` times, takes the median; then
empties the table and does the same with ``--small`` tickets, in the same run. It prints both
times, the ratio (target: near 1) and the EXPLAIN (ANALYZE, BUFFERS) of the two due queries
at both sizes. Emails go to Django's locmem backend; Celery runs eagerly in-process, so the
times include rendering the escalation emails (the same work at both sizes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/kamarket_bench_sla"


def recreate_database(url: str) -> None:
    import dj_database_url
    import psycopg2
    from psycopg2 import sql

    cfg = dj_database_url.parse(url)
    conn = psycopg2.connect(
        dbname="postgres", user=cfg["USER"], host=cfg["HOST"], port=cfg["PORT"] or 5432, password=cfg["PASSWORD"]
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(cfg["NAME"])))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(cfg["NAME"])))
    conn.close()


def seed_users():
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    User = get_user_model()
    buyer = User.objects.create_user(username="buyer", email="buyer@example.com", password=None)
    staff = [
        User.objects.create_user(username=f"staff{i}", email=f"staff{i}@example.com", password=None, is_staff=True)
        for i in range(3)
    ]
    group = Group.objects.create(name=settings.AFTERSALES_SUPERVISOR_GROUP)
    for i in range(2):
        sup = User.objects.create_user(username=f"sup{i}", email=f"sup{i}@example.com", password=None, is_staff=True)
        sup.groups.add(group)
    return buyer, staff


def fill(*, total: int, due: int, buyer, staff, now) -> None:
    """``total`` open unanswered tickets: ``due`` opened 49 h ago, the rest within the last 30 h."""
    from django.db import connection

    staff_ids = [s.pk for s in staff]
    sql = """
        INSERT INTO aftersales_ticket (
            number, user_id, kind, subject, status, priority, is_dispute, assignee_id,
            created_at, last_activity_at, first_response_due_at, warn_at, resolution_due_at, reopened_count)
        SELECT 'B' || lpad(i::text, 12, '0'), %(buyer)s, 'not_received', 'Code not received', 'open', 0, false,
               (%(staff)s::bigint[])[1 + i %% %(nstaff)s],
               t.opened, t.opened, t.opened + interval '48 hours', t.opened + interval '36 hours',
               t.opened + interval '168 hours', 0
        FROM generate_series(1, %(total)s) AS i,
        LATERAL (SELECT CASE WHEN i <= %(due)s THEN %(now)s - interval '49 hours'
                             ELSE %(now)s - (i %% 108000) * interval '1 second' END AS opened) AS t
    """
    with connection.cursor() as cur:
        cur.execute("TRUNCATE aftersales_slaevent, aftersales_ticket RESTART IDENTITY CASCADE")
        cur.execute(
            sql,
            {"buyer": buyer.pk, "staff": staff_ids, "nstaff": len(staff_ids), "total": total, "due": due, "now": now},
        )
        cur.execute("ANALYZE aftersales_ticket")


def reset_due(due_ids: list[int]) -> None:
    from aftersales.models import SlaEvent, Ticket

    SlaEvent.objects.filter(ticket_id__in=due_ids).delete()
    Ticket.objects.filter(pk__in=due_ids).update(warned_at=None, breached_at=None, priority=Ticket.Priority.NORMAL)


def explain(now) -> str:
    from django.db import connection

    from aftersales.services import sla

    out = []
    for name, qs in (("warn", sla.sla_warn_due(now=now)), ("breach", sla.sla_breach_due(now=now))):
        sql, params = qs.query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            plan = "\n".join("    " + r[0] for r in cur.fetchall())
        out.append(f"  {name} due:\n{plan}")
    return "\n".join(out)


def measure(*, total: int, due: int, repeat: int, buyer, staff, now):
    from django.core import mail

    from aftersales.models import SlaEvent, Ticket
    from aftersales.services import sla

    t0 = time.monotonic()
    fill(total=total, due=due, buyer=buyer, staff=staff, now=now)
    setup = time.monotonic() - t0
    due_ids = list(Ticket.objects.filter(first_response_due_at__lte=now).values_list("pk", flat=True))
    assert len(due_ids) == due, (len(due_ids), due)
    plans = explain(now)  # before the first sweep: the due tickets are in both indexes
    timings = []
    for _ in range(repeat):
        mail.outbox = []
        t = time.perf_counter()
        counts = sla.sla_sweep(now=now, limit=500)
        timings.append((time.perf_counter() - t) * 1000)
        if counts["breached"] != due or counts["escalated"] != due or counts["warned"] != 0:
            raise SystemExit(f"FAIL: unexpected sweep counts {counts}")
        if SlaEvent.objects.count() != 2 * due or len(mail.outbox) != due:
            raise SystemExit("FAIL: events or emails not exactly once per due ticket")
        # A second sweep right after finds nothing.
        if sla.sla_sweep(now=now) != {"warned": 0, "breached": 0, "escalated": 0, "skipped": 0}:
            raise SystemExit("FAIL: a second sweep fired again")
        reset_due(due_ids)
    # An empty sweep (nothing due) at this size.
    reset_due(due_ids)
    Ticket.objects.filter(pk__in=due_ids).update(first_responded_at=now)
    t = time.perf_counter()
    sla.sla_sweep(now=now)
    idle_ms = (time.perf_counter() - t) * 1000
    return setup, statistics.median(timings), min(timings), idle_ms, plans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.database_url
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    os.environ.setdefault("DJANGO_DEBUG", "0")  # no query log
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    sys.path.insert(0, str(ROOT))
    t0 = time.monotonic()
    recreate_database(args.database_url)
    import django

    django.setup()
    import logging

    from django.core import mail
    from django.core.management import call_command
    from django.test.utils import setup_test_environment
    from django.utils import timezone

    from marketplace.celery import app

    for name in ("aftersales", "celery"):
        logging.getLogger(name).setLevel(logging.WARNING)
    setup_test_environment()  # locmem outbox
    mail.outbox = []
    app.conf.task_always_eager = True  # the escalation emails render in-process (to locmem)
    call_command("migrate", verbosity=0)
    buyer, staff = seed_users()
    now = timezone.now()
    print(f"set-up: migrated, 6 users ({time.monotonic() - t0:.1f} s)")

    results = {}
    for total in (args.big, args.small):
        setup, median_ms, best_ms, idle_ms, plans = measure(
            total=total, due=args.due, repeat=args.repeat, buyer=buyer, staff=staff, now=now
        )
        results[total] = median_ms
        print(
            f"{total:>9,} open tickets, {args.due} due: insert+ANALYZE {setup:.1f} s; sweep {median_ms:.1f} ms median "
            f"({best_ms:.1f} best) of {args.repeat} = {median_ms / args.due:.2f} ms per due ticket "
            f"(breach + escalation + email); nothing due: {idle_ms:.2f} ms"
        )
        print(plans)
    ratio = results[args.big] / results[args.small]
    print(f"ratio {args.big:,} / {args.small:,} tickets: {ratio:.2f}x (target: near 1)")
    print(f"total {time.monotonic() - t0:.1f} s")
    return 0 if ratio < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
