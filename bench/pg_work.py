#!/usr/bin/env python
"""What the PostgreSQL backend does for each step of a purchase, beyond the statements' plans.

    .venv/bin/python bench/pg_work.py [-n 200] [--perf DIR]

Same set-up as steps.py (database recreated and seeded). For the checkout POST, the payment
notification and the fulfilment task body it prints:
- every statement and transaction boundary of one call, with what auto_explain reports for it
  (execution time, trigger times, WAL records / full-page images / bytes, rows), including the
  deferred foreign-key checks that run at COMMIT (each is an SPI query ``SELECT 1 FROM ONLY
  <parent> x WHERE id = $1 FOR KEY SHARE OF x``);
- the backend CPU per call over ``-n`` calls (from /proc); with ``--strace``, the backend's
  system calls per call; with ``--perf DIR``, a ``perf record -e cpu-clock --call-graph dwarf``
  of the backend during those calls, and its samples sorted into the backend's phases (parse,
  plan, execution, index upkeep, triggers, deferred FK checks, WAL flush, protocol).
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.profile_steps import Purchase
from bench.purchase import CLK_TCK, flush_broker
from bench.steps import backend_ticks

PERF_RECORD = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "--call-graph", "dwarf,16384"]

# A sample belongs to the first phase (in this order) one of whose functions is on its stack.
PHASES = [
    ("commit: deferred FK checks", {"AfterTriggerFireDeferred"}),
    ("commit: WAL flush", {"XLogFlush"}),
    ("commit: the rest, and BEGIN", {"CommitTransactionCommand", "StartTransactionCommand"}),
    ("parse (raw)", {"pg_parse_query"}),
    ("analyze + rewrite", {"pg_analyze_and_rewrite_fixedparams", "pg_analyze_and_rewrite_varparams"}),
    ("plan", {"pg_plan_queries"}),
    ("execution: ledger triggers (plpgsql)", {"plpgsql_call_handler"}),
    # A prepared statement's Bind (psycopg 3's protocol-level prepare): the kept plan's check,
    # its locks, and a custom plan's planning outside pg_plan_queries' frame, if any.
    ("bind: kept plan's check and locks", {"GetCachedPlan"}),
    ("execution: index upkeep", {"ExecInsertIndexTuples"}),
    (
        "execution: the rest",
        {
            "standard_ExecutorStart",
            "standard_ExecutorRun",
            "standard_ExecutorFinish",
            "standard_ExecutorEnd",
            "PortalDrop",
            "PortalRun",
        },
    ),
    (
        "protocol (socket read, wait, write)",
        {
            "pq_getbyte",
            "ReadCommand",
            "WaitEventSetWait",
            "socket_flush",
            "secure_write",
            "pq_flush",
            "EndCommand",
            "ReadyForQuery",
        },
    ),
]


def phases(data: str, ms: float) -> None:
    """Print the share of perf's samples (and of ``ms``) in each phase of the backend's work."""
    text = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True, text=True).stdout
    counts: collections.Counter = collections.Counter()
    for block in text.split("\n\n"):
        frames = {line.split(None, 1)[1].split("+")[0] for line in block.strip().splitlines() if " " in line.strip()}
        if block.strip():
            counts[next((name for name, keys in PHASES if frames & keys), "other")] += 1
    total = sum(counts.values()) or 1
    for name, _ in [*PHASES, ("other", set())]:
        print(f"    {name:<40} {100 * counts[name] / total:5.1f} %  {ms * counts[name] / total:5.2f} ms")


AUTO_EXPLAIN = [
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_triggers = on",
    "SET auto_explain.log_wal = on",
    "SET auto_explain.log_buffers = on",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_level = notice",
    "SET client_min_messages = notice",
]


def notice_list(raw) -> list:
    """The connection's notices as text, whichever driver Django uses: psycopg2 keeps them in a
    list on the connection; psycopg 3 hands each to a handler, which keeps them on it here."""
    if hasattr(raw, "notices"):
        return raw.notices
    if not hasattr(raw, "bench_notices"):
        kept: list[str] = []
        raw.add_notice_handler(lambda diag: kept.append(f"{diag.severity}:  {diag.message_primary}"))
        raw.bench_notices = kept
    return raw.bench_notices


def perf_start(directory: str, pid: int, label: str):
    """``perf record`` of the backend ``pid`` into ``directory/label.data`` (None without a directory)."""
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    cmd = [*PERF_RECORD, "-p", str(pid), "-o", f"{directory}/{label}.data"]
    perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return perf


def perf_stop(perf) -> None:
    """Stop a ``perf_start`` recording (SIGINT: perf writes its data and exits)."""
    if perf is not None:
        perf.send_signal(2)
        perf.wait()


def traced(label, fn, value, plans: bool = False):
    """One call of ``fn(value)`` with auto_explain's notices (nested statements, triggers, WAL)
    printed under each statement and COMMIT it sent."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor() as cur:
        for sql in AUTO_EXPLAIN:
            cur.execute(sql)
    notices = notice_list(raw)
    notices.clear()
    events = []

    def wrapper(execute, sql, params, many, context):
        events.append(("sql", sql, len(notices)))
        return execute(sql, params, many, context)

    original = connection._commit  # psycopg2's commit cannot be patched: Django's _commit is

    def commit():
        events.append(("commit", "COMMIT", len(notices)))
        return original()

    connection._commit = commit
    with connection.execute_wrapper(wrapper):
        out = fn(value)
    connection._commit = original
    notices = list(notices)
    with raw.cursor() as cur:
        cur.execute("LOAD 'auto_explain'")
        cur.execute("SET auto_explain.log_min_duration = -1")
    print(f"\n==== {label}: {len(events)} events, {len(notices)} auto_explain plans")
    boundaries = [e[2] for e in events] + [len(notices)]
    for i, (kind, sql, start) in enumerate(events):
        print(f"-- [{kind}] {sql[:160]}")
        for note in notices[start : boundaries[i + 1]]:
            summarize(note, plans)
    return out


def summarize(note: str, plans: bool = False) -> None:
    text = note.strip()
    m = re.search(r"Query Text: (.*?)\n", text)
    query = (m.group(1) if m else "?")[:110]
    m = re.search(r"duration: ([\d.]+) ms", text)
    dur = m.group(1) if m else "?"
    wal = re.findall(r"WAL: (.*)", text)
    trig = re.findall(r"Trigger (.*?): time=([\d.]+) calls=(\d+)", text)
    print(f"     {dur:>7} ms  {query}")
    if plans:
        print(text)
    if wal:
        print(f"              WAL {wal[0].strip()}")
    for name, t, c in trig:
        print(f"              trigger {name}: {t} ms x{c}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--codes-per-product", type=int, default=400)
    parser.add_argument("--hot-codes", type=int, default=1000)
    parser.add_argument("--hot-sold", type=int, default=0)
    parser.add_argument("--buyers", type=int, default=20)
    parser.add_argument(
        "--history", type=int, default=5, help="purchases made (and the database ANALYZEd) before measuring"
    )
    parser.add_argument("--plans", action="store_true", help="print auto_explain's plans in full")
    parser.add_argument("--strace", action="store_true", help="count the backend's system calls per call (strace -c)")
    parser.add_argument("--perf", default="", help="directory for perf record's data, one file per step")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/kamarket_bench_pgwork")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    purchase = Purchase(args)
    items, place, pay, fulfil = purchase.items, purchase.place, purchase.pay, purchase.fulfil
    from django.db import connection

    from orders.models import Order

    def timed(label, fn, values):
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
        perf = perf_start(args.perf, pid, label)
        tracer = None
        if args.strace:
            tracer = subprocess.Popen(
                ["strace", "-c", "-f", "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            time.sleep(0.5)
        out = []
        t0, pg0 = time.perf_counter(), backend_ticks(pid)
        for v in values:
            out.append(fn(v))
        pg = (backend_ticks(pid) - pg0) / CLK_TCK
        wall = time.perf_counter() - t0
        perf_stop(perf)
        if tracer:
            tracer.send_signal(2)
            _, err = tracer.communicate()
            for line in err.splitlines():
                parts = line.split()
                if len(parts) >= 5 and parts[3].isdigit():
                    print(f"    {parts[-1]:<16} {int(parts[3]) / len(values):6.2f} per call")
        per = len(values)
        print(f"\n{label}: {per} calls, backend CPU {pg / per * 1000:.2f} ms per call, wall {wall / per * 1000:.2f} ms")
        if perf:
            phases(f"{args.perf}/{label}.data", pg / per * 1000)
        return out

    n = args.n
    # Warm-up: the accounts opened on first use, the connection, the caches.
    # With --history, the tables hold that many purchases and have statistics, as in production;
    # otherwise they are young and the plans cached on them (the foreign-key checks' among them)
    # may be sequential scans.
    warm = [place(random.choice(items)) for _ in range(args.history)]
    for o in warm:
        pay(o)
    for pk in Order.objects.filter(status=Order.Status.PAID).values_list("pk", flat=True):
        fulfil(pk)
    if args.history > 5:
        with connection.cursor() as cur:
            cur.execute("ANALYZE")

    one = traced("place", place, random.choice(items), args.plans)
    traced("pay", pay, one, args.plans)
    pk = Order.objects.get(number=one[0]).pk
    if Order.objects.get(pk=pk).status == Order.Status.PAID:
        traced("fulfil", fulfil, pk, args.plans)

    placed = timed("place", place, [random.choice(items) for _ in range(n)])
    timed("pay", pay, placed)
    paid = list(Order.objects.filter(status=Order.Status.PAID).values_list("pk", flat=True))
    timed("fulfil", fulfil, paid)
    counts = collections.Counter(Order.objects.values_list("status", flat=True))
    print(f"\norders by status: {dict(counts)}")
    flush_broker(args.broker_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
