#!/usr/bin/env python
"""The stock claim alone, hot product against random products: PostgreSQL CPU per claim.

    .venv/bin/python bench/claims.py [--threads 4] [--claims 400] [--rounds 4]

A companion to purchase.py for the question "does buying the hot product cost more?". The same
database set-up as purchase.py (recreated: 50 products of 400 codes, the hot product with
40,000 codes of which 20,000 sold), then ``--threads`` connections each run ``--claims`` claims,
each in its own transaction (BEGIN, ``catalog.services.stock_reserve``'s statement, COMMIT),
all on the hot product or each on a random product; the two kinds alternate, ``--rounds``
times each, in the order random/hot then hot/random, so machine noise and the dead index
entries the claims leave (nothing vacuums in between) hit both alike. It prints the CPU of the
connections' PostgreSQL backends (read from /proc) per claim. No Django ORM, no HTTP: one
thread per connection, psycopg2 releasing the GIL while PostgreSQL works.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.purchase import CLK_TCK, fresh_database, say, seed
from bench.steps import backend_ticks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=4, help="concurrent connections claiming")
    parser.add_argument("--claims", type=int, default=400, help="claims per connection per phase")
    parser.add_argument("--rounds", type=int, default=4, help="phases of each kind")
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--codes-per-product", type=int, default=400)
    parser.add_argument("--hot-codes", type=int, default=40000)
    parser.add_argument("--hot-sold", type=int, default=20000)
    parser.add_argument("--buyers", type=int, default=1)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/kamarket_bench")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    if args.threads * args.claims * (args.rounds + 1) > args.hot_codes - args.hot_sold:
        parser.error("more claims than the hot product's available codes")
    if args.threads * args.claims * (args.rounds + 1) > args.products * args.codes_per_product // 2:
        parser.error("more claims than half the random products' codes (a product could run out)")

    fresh_database(args)
    import psycopg2
    from django.db import connection, transaction

    from catalog.services import stock_claim_sql

    items, hot, _buyers = seed(args)
    with transaction.atomic():  # the statement as order_place sends it (the placeholders filled per claim)
        sql, params = stock_claim_sql(product_id=hot.pk, quantity=1)
    dsn = connection.get_connection_params()
    connections = [psycopg2.connect(**dsn) for _ in range(args.threads)]
    backends = []
    for conn in connections:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backends.append(cur.fetchone()[0])
        conn.commit()

    def work(conn, kind: str, failures: list) -> None:
        with conn.cursor() as cur:
            for _ in range(args.claims):
                product = hot if kind == "hot" else random.choice(items)
                cur.execute(sql, [params[0], params[1], product.pk, params[3], 1])
                if cur.fetchone() is None:
                    failures.append(product.pk)
                conn.commit()

    def phase(kind: str) -> tuple[float, float]:
        failures: list = []
        threads = [threading.Thread(target=work, args=(conn, kind, failures)) for conn in connections]
        ticks0, t0 = [backend_ticks(pid) for pid in backends], time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - t0
        cpu = sum(backend_ticks(pid) - t for pid, t in zip(backends, ticks0, strict=True)) / CLK_TCK
        if failures:
            raise RuntimeError(f"{len(failures)} claims found no code")
        return cpu, wall

    say(f"{args.threads} connections x {args.claims} claims per phase, {args.rounds} phases of each kind")
    phase("random")  # warm-up (plans, caches)
    phase("hot")
    totals = {"random": [0.0, 0.0], "hot": [0.0, 0.0]}
    per_phase = args.threads * args.claims
    for r in range(args.rounds):
        for kind in ("random", "hot") if r % 2 == 0 else ("hot", "random"):
            cpu, wall = phase(kind)
            totals[kind][0] += cpu
            totals[kind][1] += wall
            rate = per_phase / wall
            say(f"round {r + 1} {kind:<6}: {cpu / per_phase * 1000:.3f} ms PG CPU per claim, {rate:.0f} claims/s")
    for conn in connections:
        conn.close()
    print()
    for kind, (cpu, wall) in totals.items():
        n = per_phase * args.rounds
        per_claim = cpu / n * 1000
        print(f"{kind:<7} {per_claim:.3f} ms PG CPU per claim (with its commit), {n / wall:.0f} claims/s, {n} claims")
    return 0


if __name__ == "__main__":
    sys.exit(main())
