#!/usr/bin/env python
"""Where the time of one purchase goes: CPU and queries of each step, in one process.

    .venv/bin/python bench/steps.py [-n 300]

A companion to bench/purchase.py for finding what to optimise. No gunicorn, no Celery
worker, no concurrency: each step runs ``-n`` times through Django's test client (or the
task's function), and for each it prints wall time, Python CPU, the CPU of the PostgreSQL
backend serving this process (read from /proc), and the statements sent. Steps:
baseline GET, place (POST checkout) on a random and on the hot product, sign (client side),
pay (POST notification; the fulfilment task is queued to Redis as in production), the
fulfilment task's body and the delivery emails' run (send_delivery_emails), per email in
batches of 50. It uses the same database set-up
as purchase.py (recreated), and the numbers leave out what only the real servers add
(gunicorn's HTTP handling, Celery's messaging: see purchase.py's CPU table for those).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.purchase import CLK_TCK, flush_broker, fresh_database, say, seed

EMAIL_BATCH = 50  # the delivery emails' batch measured (DELIVERY_EMAIL_BATCH_SIZE's default)


def backend_ticks(pid: int) -> int:
    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="iterations per step")
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--codes-per-product", type=int, default=400)
    parser.add_argument("--hot-codes", type=int, default=40000)
    parser.add_argument("--hot-sold", type=int, default=20000)
    parser.add_argument("--buyers", type=int, default=20)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/kamarket_bench")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    var_dir = fresh_database(args)
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    from orders.models import Order
    from orders.services import orders
    from payments.gateways.sandbox import SandboxGateway

    items, hot, buyers = seed(args)
    n = args.n

    browser = Client(HTTP_HOST="127.0.0.1")
    browser.cookies["sessionid"] = buyers[0].session
    gateway = Client(HTTP_HOST="127.0.0.1")
    rows = []

    def step(label: str, fn, inputs: list, per: int = 1) -> list:
        """Run fn over inputs; record per-call wall, Python CPU, Postgres CPU and statements (the
        times divided by ``per`` when each call does ``per`` units; statements are per call)."""
        fn(inputs[0])  # warm-up: opens the connection, creates ledger accounts used for the first time
        with CaptureQueriesContext(connection) as ctx:
            fn(inputs[1])  # the statements of a call in the steady state
        statements = len(ctx.captured_queries)
        inputs = inputs[1:]
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        out = []
        pg0, cpu0, t0 = backend_ticks(backend), time.process_time(), time.perf_counter()
        for value in inputs[1:]:
            out.append(fn(value))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        pg = (backend_ticks(backend) - pg0) / CLK_TCK
        k = (len(inputs) - 1) * per
        rows.append((label, wall / k * 1000, cpu / k * 1000, pg / k * 1000, statements))
        return out

    def place(item):
        response = browser.post(f"/orders/checkout/{item.slug}/", {"quantity": 1, "idempotency_key": uuid.uuid4().hex})
        assert response.status_code == 302, response.status_code
        return response["Location"].split("/")[2], item.price

    def pay(body):
        response = gateway.post("/payments/notify/sandbox/", body, content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200 and response.content == b"success", response.content

    def baseline(item):
        assert browser.get(f"/bench/product/{item.slug}/").status_code == 200

    say(f"measuring {n} iterations per step")
    step("baseline: GET one product by slug", baseline, [random.choice(items) for _ in range(n + 2)])
    placed = step("place: POST checkout, random product", place, [random.choice(items) for _ in range(n + 2)])
    placed += step("place: POST checkout, hot product", place, [hot] * (n + 2))
    bodies = step(
        "sign the notification (client side)",
        lambda o: SandboxGateway.build_notification(order_number=o[0], amount=o[1]),
        placed[: n + 2],
    )
    step("pay: POST notification (+ queue task)", pay, bodies)
    # After the payment the order waits for the fulfilment task (or, if the product delivers in
    # the payment's transaction, is delivered already: the task step is then skipped).
    paid = list(Order.objects.filter(status=Order.Status.PAID).values_list("pk", flat=True))
    if len(paid) > 1:
        step("fulfil_order task body", lambda pk: orders.order_fulfil(order_id=pk), paid[: n + 2])
    # The delivery emails: one run of send_delivery_emails sends every email due, in batches of
    # DELIVERY_EMAIL_BATCH_SIZE over one mail connection (the fulfilments above queued one run).
    # Each call here sends one batch of EMAIL_BATCH; the row is per email.
    due = Order.objects.filter(status=Order.Status.DELIVERED, buyer_notified_at__isnull=True).count()
    if due >= 3 * EMAIL_BATCH:
        with override_settings(DELIVERY_EMAIL_BATCH_SIZE=EMAIL_BATCH):
            step(
                f"send_delivery_emails, per email (of {EMAIL_BATCH})",
                lambda _: orders.delivery_emails_send(batches=1),
                [None] * (due // EMAIL_BATCH),
                per=EMAIL_BATCH,
            )
    flush_broker(args.broker_url)  # the queued tasks are not for anyone

    print()
    print(f"{'step (ms per call, ' + str(n) + ' calls)':<44}{'wall':>8}{'python':>8}{'postgres':>9}{'stmts':>7}")
    for label, wall, cpu, pg, statements in rows:
        print(f"{label:<44}{wall:>8.2f}{cpu:>8.2f}{pg:>9.2f}{statements:>7}")
    base = rows[0][2] + rows[0][3]
    purchase = sum(r[2] + r[3] for r in rows if not r[0].startswith(("sign", "place: POST checkout, hot")))
    print(
        f"\nrandom-product purchase, in-process CPU (place + pay + both task bodies): {purchase:.2f} ms "
        f"= {purchase / base:.1f} baseline requests ({base:.2f} ms); gunicorn and Celery overheads come on top."
    )
    import shutil

    shutil.rmtree(var_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
