"""One balance-paid API order in one process: its SQL statements and its CPU (issue 17).

Seeds a benchmark database as bench/purchase.py does (it is recreated), then sends signed
POST /api/v1/orders/ requests through Django's test client (no HTTP server), each placed and
paid from an agent's wallet; the delivery task is queued to the broker, not run. Prints the
statements of one warm request, the CPU per request, and optionally a profile (by CPU time).

    .venv/bin/python bench/api_order.py --database-url postgres://postgres@127.0.0.1:5432/<db>_bench \\
        --broker-url redis://127.0.0.1:<port>/14 [--requests 300] [--profile 40]
"""

import argparse
import cProfile
import json
import os
import pstats
import random
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import pg_work
from bench.purchase import (
    CLK_TCK,
    api_headers,
    flush_broker,
    fresh_database,
    seed,
    seed_shops,
)
from bench.steps import backend_ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", type=int, default=0, help="print this many lines of a CPU profile")
    parser.add_argument("--explain", action="store_true", help="trace one request and one delivery with auto_explain")
    parser.add_argument("--perf", default="", help="perf record the backend: its phases (pg_work.py)")
    parser.add_argument(
        "--deliver",
        action="store_true",
        help="then run the fulfilment task's body over the orders placed: its statements and CPU",
    )
    cli = parser.parse_args()
    args = argparse.Namespace(
        products=20,
        codes_per_product=400,
        hot_codes=1000,
        hot_sold=0,
        buyers=2,
        database_url=cli.database_url,
        broker_url=cli.broker_url,
    )
    fresh_database(args)
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    items, _hot, _buyers = seed(args)
    shop = seed_shops(1, Decimal(100_000))[0]
    client = Client(HTTP_HOST="127.0.0.1")

    def one(_value=None) -> None:
        item = random.choice(items)
        body = json.dumps({"product_id": item.pk, "quantity": 1, "agent_order_no": uuid.uuid4().hex}).encode()
        headers = api_headers(shop, "POST", "/api/v1/orders/", body)
        response = client.generic(
            "POST", "/api/v1/orders/", data=body, content_type="application/json", headers=headers
        )
        assert response.status_code == 201, response.content

    for _ in range(5):
        one()
    with CaptureQueriesContext(connection) as ctx:
        one()
    for query in ctx.captured_queries:
        print(" ".join(query["sql"].split())[:150])
    print(len(ctx.captured_queries), "statements")
    if cli.explain:
        pg_work.traced("POST /api/v1/orders/", one, None)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    perf = pg_work.perf_start(cli.perf, backend, "post")
    start, pg0 = time.process_time(), backend_ticks(backend)
    for _ in range(cli.requests):
        one()
    pg = (backend_ticks(backend) - pg0) / CLK_TCK / cli.requests * 1000
    print(
        f"CPU per request: {(time.process_time() - start) / cli.requests * 1000:.2f} ms, "
        f"PostgreSQL {pg:.2f} ms ({cli.requests} requests)"
    )
    pg_work.perf_stop(perf)
    if perf is not None:
        pg_work.phases(f"{cli.perf}/post.data", pg)
    if cli.profile:
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for _ in range(cli.requests):
            one()
        profile.disable()
        profile.dump_stats(os.environ.get("API_ORDER_PROFILE_OUT", "/tmp/api_prof2.out"))
        pstats.Stats(profile).sort_stats("cumulative").print_stats(cli.profile)
    if cli.deliver:
        deliver(cli, connection, CaptureQueriesContext)
    flush_broker(args.broker_url)


def deliver(cli, connection, capture) -> None:
    """The fulfilment task's body (``fulfil_order``) over the API orders paid above, as the worker
    runs it (its on-commit work included): statements of one, Python and PostgreSQL CPU per order."""
    from orders.models import Order
    from orders.services import orders
    from orders.tasks import fulfil_order

    paid = list(Order.objects.filter(status=Order.Status.PAID).order_by("pk").values_list("pk", flat=True))
    assert len(paid) > 3, "no paid orders to deliver"
    for pk in paid[:2]:
        fulfil_order.run(pk)
    with capture(connection) as ctx:
        assert orders.order_fulfil(order_id=paid[2])
    for query in ctx.captured_queries:
        print(" ".join(query["sql"].split())[:150])
    print(len(ctx.captured_queries), "statements (fulfil_order task body)")
    if cli.explain:
        pg_work.traced("fulfil_order", lambda pk: orders.order_fulfil(order_id=pk), paid[3])
    # With --profile, half the orders are timed, the other half profiled.
    rest = paid[3 : len(paid) // 2 + 2] if cli.profile else paid[3:]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    perf = pg_work.perf_start(cli.perf, backend, "fulfil")
    pg0, cpu0 = backend_ticks(backend), time.process_time()
    for pk in rest:
        fulfil_order.run(pk)
    cpu, pg = time.process_time() - cpu0, (backend_ticks(backend) - pg0) / CLK_TCK
    pg_work.perf_stop(perf)
    if perf is not None:
        pg_work.phases(f"{cli.perf}/fulfil.data", pg / len(rest) * 1000)
    if cli.profile:
        profile = cProfile.Profile(time.process_time)
        more = list(Order.objects.filter(status=Order.Status.PAID).order_by("pk").values_list("pk", flat=True))
        profile.enable()
        for pk in more:
            fulfil_order.run(pk)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(cli.profile)
    print(
        f"fulfil_order per order: Python {cpu / len(rest) * 1000:.2f} ms, PostgreSQL {pg / len(rest) * 1000:.2f} ms"
        f" ({len(rest)} orders)"
    )


if __name__ == "__main__":
    main()
