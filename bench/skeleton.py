#!/usr/bin/env python
"""The floor of a purchase's shape: the same requests, transactions and task, doing almost nothing.

    .venv/bin/python bench/skeleton.py [--duration 10] [--rounds 2] [--scenarios two-post,one-post,no-celery]

Issue 17 asks a purchase for a ratio purchases/s ÷ baseline req/s of 0.10 (critical path) and
0.2 (balance-paid). This measures, with purchase.py's machinery (same servers, client, baseline,
CPU accounting, database recreation, bench.settings), what "purchases" of the same shape reach
when each step does almost nothing (bench/views.py, bench/tasks.py; see bench/README.md):
  two-post   POST 1 as a logged-in buyer (session, CSRF checked): one INSERT in a transaction,
             302; POST 2, the sandbox gateway's notification verified by its own RSA2 code: one
             UPDATE in a transaction, the delivery task published on commit
             (marketplace.celery.publish); the task: one UPDATE in a transaction;
  one-post   the balance shape: one HMAC-signed POST, one INSERT (the row already paid) and the
             publish on commit, 201; the same task;
  no-celery  two-post with the task's transaction run inside POST 2 (what the task itself costs).
A purchase counts when its row's delivered_at falls inside the window, as purchase.py counts
delivered orders. The baseline is purchase.py's, measured before each scenario in each round.
CPU is purchase.py's CpuMeter with PostgreSQL narrowed to this database's backends
(browser_purchase.py's DatabaseCpuMeter): on a shared machine other jobs' databases are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.browser_purchase import DatabaseCpuMeter
from bench.purchase import (
    ApiShop,
    Bench,
    Servers,
    add_load_arguments,
    free_port,
    fresh_database,
    report_details,
    report_ratios,
    say,
    seed,
    server_ms,
    stop_servers,
)

# Issue 17's targets for the real purchases of the same shape (no-celery is two-post's).
TARGETS = {"two-post": 0.10, "one-post": 0.20, "no-celery": 0.10}
STEPS = (
    ("place", "POST 1: INSERT -> 302"),
    ("sign", "sign notification (client side)"),
    ("pay", "POST 2: verify, UPDATE -> 200"),
    ("api", "one POST: INSERT -> 201"),
    ("deliver", "deliver: paid_at -> delivered_at"),
)
TABLE = "bench_skeleton"
# The order, its payment, status history, notification log, ledger entry and codes, as one row.
DDL = f"""
CREATE TABLE {TABLE} (
    id bigserial PRIMARY KEY,
    buyer_id integer,
    idempotency_key varchar(64) NOT NULL UNIQUE,
    status varchar(16) NOT NULL,
    created_at timestamptz NOT NULL,
    paid_at timestamptz,
    delivered_at timestamptz
)"""


def skeleton_unit(bench: Bench, label: str):
    """purchase.py's client units, pointed at the skeleton's views."""
    if label == "one-post":
        return bench.balance_unit(bench.items, path="/bench/skeleton/balance/")
    notify = "/bench/skeleton/notify/" if label == "two-post" else "/bench/skeleton/notify-inline/"
    return bench.purchase_unit(
        bench.items, checkout="/bench/skeleton/place/{slug}/", notify=notify, pay=b"/bench/skeleton/pay/"
    )


def report(args, rounds: list[dict]) -> None:
    line = "=" * 104
    print()
    print(line)
    print(
        f"Skeleton purchase benchmark (issue 17) — gunicorn {args.workers} sync workers, "
        f"Celery {args.celery_pool} x{args.celery_concurrency}, PostgreSQL, Redis broker, {os.cpu_count()} CPUs;"
    )
    print(
        f"asyncio client, {args.concurrency} connections, {args.duration:g}s windows after {args.warmup:g}s warm-up, "
        f"{len(rounds)} round(s). Each step does almost nothing:"
    )
    print("two-post  = POST 1 (session, CSRF; INSERT, 302) + POST 2 (RSA2 notification verified; UPDATE, publish")
    print("            on commit) + Celery task (UPDATE);")
    print("one-post  = one HMAC-signed POST (INSERT, publish on commit; 201) + Celery task (UPDATE);")
    print("no-celery = two-post with the task's UPDATE run inside POST 2 (no publish, no task).")
    print("purchases/s = rows delivered inside the window / window length; target = the real purchase's (issue 17);")
    print("postgres CPU = this database's backends only (other jobs' databases on the same server left out).")
    print(line)
    report_ratios(rounds, TARGETS)
    report_details(rounds[-1], STEPS)
    print()
    print("What is left for the work (server CPU, medians over the rounds):")
    for label in rounds[0]:
        base = statistics.median(server_ms(rnd[label][0]) for rnd in rounds)
        skel = statistics.median(server_ms(rnd[label][1]) for rnd in rounds)
        allowed = base / TARGETS[label]
        print(
            f"  {label:<10} baseline {base:5.2f} ms -> at {TARGETS[label]:.2f} a purchase may cost {allowed:5.1f} ms; "
            f"the shape alone costs {skel:5.1f} ms; left for the work {allowed - skel:5.1f} ms"
        )
    print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_load_arguments(parser)
    parser.add_argument("--products", type=int, default=50, help="products for the baseline (and the place URL)")
    parser.add_argument("--scenarios", default="two-post,one-post,no-celery", help=", ".join(TARGETS))
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/kamarket_bench_skeleton")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/7", help="flushed; DB-1 is the cache")
    args = parser.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not scenarios or set(scenarios) - set(TARGETS):
        parser.error(f"--scenarios takes {', '.join(TARGETS)}")

    os.environ["BENCH_SKELETON_API_SECRET"] = secrets.token_hex(32)  # the servers inherit it
    var_dir = fresh_database(args)
    from django.db import connection

    from bench.views import SKELETON_API_KEY

    with connection.cursor() as cur:
        cur.execute(DDL)
    # purchase.py's products (the baseline reads them) and logged-in buyers; a few codes each
    # so that the checkout page, which hands the buyers their CSRF token, offers its form.
    items, hot, buyers = seed(
        SimpleNamespace(products=args.products, codes_per_product=5, hot_codes=5, hot_sold=0, buyers=args.buyers)
    )
    connection.close()

    servers = Servers(args, free_port())
    rounds: list[dict] = []
    try:
        servers.start(var_dir)
        say(f"gunicorn ({args.workers} workers) on port {servers.port}; Celery worker started")
        bench = Bench(args, servers, items, hot, buyers)
        # PostgreSQL = this database's backends: other jobs' databases share the server here.
        bench.cpu = DatabaseCpuMeter(servers, args.database_url)
        bench.shops = [ApiShop(SKELETON_API_KEY, os.environ["BENCH_SKELETON_API_SECRET"])]
        asyncio.run(bench.prepare_buyers())
        say(f"{len(buyers)} buyers logged in (session cookies), CSRF tokens fetched")
        for _ in range(args.rounds):
            rnd = {}
            for label in scenarios:
                base = bench.baseline(label)
                rnd[label] = (base, bench.purchases(label, items, unit=skeleton_unit(bench, label), table=TABLE))
            rounds.append(rnd)
    finally:
        stop_servers(args, servers, var_dir)
    report(args, rounds)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
