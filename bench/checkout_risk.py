#!/usr/bin/env python
"""What the risk hook costs a checkout: statements, Redis round-trips and time of ``order_place``
with risk control's screen on and off, in the same run.

    .venv/bin/python bench/checkout_risk.py [-n 300] [--rounds 3]

Issue 13: "A checkout's statement and Redis round-trip count, before and after the risk hook,
are printed by a benchmark." In one process, on PostgreSQL and the Redis cache (the production
topology: ``REDIS_CACHE_URL``), it places ``-n`` orders per round through
``orders.services.orders.order_place`` (member buyers, random products, the device and IP a page
passes), alternately with the risk screen on (the product as it is: ``order_risk_screen``, i.e.
the credit rating, the blacklist, the order-burst counters in Redis and the stock-hogging cap)
and off (``order_risk_screen`` replaced by a no-op: the baseline). Rules' thresholds are raised
so nothing is refused: the counting still happens, which is what is measured.

Per checkout it prints the SQL statements (``CaptureQueriesContext``), the Redis round-trips
and commands (redis-py's ``Redis.execute_command``: one round-trip per command;
``Pipeline.execute``: one round-trip for its whole stack), and the wall time, median over
rounds, with the ratio on/off. The database ``kamarket_bench_risk`` is recreated; the cache is
Redis DB 13 (purchase.py's), not flushed (the counters' keys expire with their windows).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.purchase import fresh_database, say, seed


class RedisCounter:
    """Counts round-trips and commands sent through redis-py, by wrapping its two doors."""

    def __init__(self):
        self.trips = 0
        self.commands = 0
        self.log: list[str] = []  # what each round-trip sent (the first command's name, and how many)

    def __enter__(self):
        from redis.client import Pipeline, Redis

        self._single, self._pipe = Redis.execute_command, Pipeline.execute
        counter, single, pipe = self, self._single, self._pipe

        def execute_command(client, *args, **kwargs):
            counter.trips += 1
            counter.commands += 1
            if len(counter.log) < 50:
                counter.log.append(str(args[0]) if args else "?")
            return single(client, *args, **kwargs)

        def execute(pipeline, *args, **kwargs):
            counter.trips += 1
            counter.commands += len(pipeline.command_stack)
            if len(counter.log) < 50:
                names = [str(c[0][0]) for c in pipeline.command_stack]
                counter.log.append(f"pipeline[{len(names)}]: {' '.join(names)}")
            return pipe(pipeline, *args, **kwargs)

        Redis.execute_command, Pipeline.execute = execute_command, execute
        return self

    def __exit__(self, *exc):
        from redis.client import Pipeline, Redis

        Redis.execute_command, Pipeline.execute = self._single, self._pipe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="checkouts per round and mode")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each: risk off, then on)")
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--codes-per-product", type=int, default=500)
    parser.add_argument("--buyers", type=int, default=100)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/kamarket_bench_risk")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    args.hot_codes, args.hot_sold = 100, 0  # seed's hot product: not used here
    needed = args.n * args.rounds * 2
    if needed > args.products * args.codes_per_product:
        parser.error(f"{needed} checkouts need more stock: raise --products or --codes-per-product")

    var_dir = fresh_database(args)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from marketplace.ratelimit import cache_redis
    from orders.services import orders as order_services

    items, _hot, _buyers = seed(args)
    if cache_redis() is None:
        say("the cache is not Redis: round-trips would not be counted")
        return 1
    users = list(get_user_model().objects.filter(username__startswith="buyer").order_by("pk"))
    big = 10**9
    relaxed = override_settings(
        RISK_RULES={name: {**rule, "limit": big} for name, rule in settings.RISK_RULES.items()},
        RISK_HOLD_PRODUCT_ORDERS=big,
        RISK_HOLD_PRODUCT_CODES=big,
        RISK_HOLD_ORDERS=big,
        RISK_HOLD_CODES=big,
    )
    real_screen = order_services.order_risk_screen

    def no_screen(**kwargs) -> None:
        return None

    def checkout(i: int) -> None:
        user = users[i % len(users)]
        order_services.order_place(
            buyer=user,
            product_id=random.choice(items).pk,
            quantity=1,
            idempotency_key=uuid.uuid4().hex,
            ip=f"10.{i % 200}.{i % 7}.{i % 250 + 1}",
            device=f"{uuid.uuid4().hex[:20]}.{i % 16:08x}",
        )

    results: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    counter = 0
    with relaxed:
        for mode in ("off", "on"):  # warm-up: connections, ledger accounts, the levels' cache
            order_services.order_risk_screen = real_screen if mode == "on" else no_screen
            for _ in range(5):
                checkout(counter)
                counter += 1
        for r in range(args.rounds):
            for mode in ("off", "on"):
                order_services.order_risk_screen = real_screen if mode == "on" else no_screen
                with CaptureQueriesContext(connection) as queries, RedisCounter() as redis:
                    t0 = time.perf_counter()
                    for _ in range(args.n):
                        checkout(counter)
                        counter += 1
                    wall = time.perf_counter() - t0
                row = results[mode]
                row.setdefault("statements", []).append(len(queries.captured_queries) / args.n)
                row.setdefault("trips", []).append(redis.trips / args.n)
                row.setdefault("commands", []).append(redis.commands / args.n)
                row.setdefault("ms", []).append(wall / args.n * 1000)
                say(
                    f"round {r + 1} risk {mode:>3}: {wall / args.n * 1000:.2f} ms, "
                    f"{len(queries.captured_queries) / args.n:.2f} statements, {redis.trips / args.n:.2f} Redis trips"
                )
        # One checkout with the screen on, traced: what the statements and round-trips are.
        order_services.order_risk_screen = real_screen
        with CaptureQueriesContext(connection) as queries, RedisCounter() as redis:
            checkout(counter)
    print("\none checkout, risk on: statements")
    for q in queries.captured_queries:
        print(f"  {q['time']:>6}s  {' '.join(q['sql'].split())[:110]}")
    print("one checkout, risk on: Redis round-trips")
    for line in redis.log:
        print(f"  {line}")

    def med(mode: str, key: str) -> float:
        return statistics.median(results[mode][key])

    print()
    print(f"per checkout (order_place, median of {args.rounds} rounds x {args.n})   risk off   risk on     added")
    for key, label in (
        ("statements", "SQL statements"),
        ("trips", "Redis round-trips"),
        ("commands", "Redis commands"),
        ("ms", "wall time, ms"),
    ):
        off, on = med("off", key), med("on", key)
        print(f"{label:<62}{off:>9.2f}{on:>10.2f}{on - off:>+10.2f}")
    print(f"\ntime ratio risk on / off: {med('on', 'ms') / med('off', 'ms'):.2f}")
    added = med("on", "trips") - med("off", "trips")
    verdict = "OK" if added <= 1.0 else "OVER"
    print(f"Redis round-trips added by the risk hook: {added:.2f} (issue 13: at most 1) {verdict}")
    import shutil

    shutil.rmtree(var_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
