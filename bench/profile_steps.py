#!/usr/bin/env python
"""cProfile of one purchase's steps, in one process (a companion to steps.py).

    .venv/bin/python bench/profile_steps.py [-n 200] [--step place|pay|fulfil] [--top 40]

Recreates the steps.py database, places ``-n`` orders, pays them and runs the fulfilment task
bodies, profiling the chosen step only, and prints the functions by cumulative and own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.purchase import flush_broker, fresh_database, seed


class Purchase:
    """The steps.py database recreated and seeded, a buyer's browser and the gateway's client:
    ``place(item)`` posts a checkout (returns the order's number and price), ``pay(order)`` posts
    its sandbox notification, ``fulfil(pk)`` runs the fulfilment task's body."""

    def __init__(self, args) -> None:
        fresh_database(args)
        from django.test import Client

        self.items, _hot, buyers = seed(args)
        self.browser = Client(HTTP_HOST="127.0.0.1")
        self.browser.cookies["sessionid"] = buyers[0].session
        self.gateway = Client(HTTP_HOST="127.0.0.1")

    def place(self, item):
        response = self.browser.post(
            f"/orders/checkout/{item.slug}/", {"quantity": 1, "idempotency_key": uuid.uuid4().hex}
        )
        assert response.status_code == 302, response.status_code
        return response["Location"].split("/")[2], item.price

    def pay(self, order):
        from payments.gateways.sandbox import SandboxGateway

        body = SandboxGateway.build_notification(order_number=order[0], amount=order[1])
        response = self.gateway.post(
            "/payments/notify/sandbox/", body, content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 200 and response.content == b"success", response.content

    @staticmethod
    def fulfil(pk):
        from orders.services import orders

        orders.order_fulfil(order_id=pk)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--step", choices=["baseline", "place", "pay", "fulfil"], default="place")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--callees", default="", help="also print what the functions matching this call")
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--codes-per-product", type=int, default=400)
    parser.add_argument("--hot-codes", type=int, default=1000)
    parser.add_argument("--hot-sold", type=int, default=0)
    parser.add_argument("--buyers", type=int, default=5)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/kamarket_bench_prof")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    purchase = Purchase(args)
    items, browser, place, pay = purchase.items, purchase.browser, purchase.place, purchase.pay
    from orders.models import Order
    from orders.services import orders

    profiler = cProfile.Profile()

    def run(step, fn, values):
        out = [fn(values[0])]  # warm
        if args.step == step:
            profiler.enable()
        out += [fn(v) for v in values[1:]]
        if args.step == step:
            profiler.disable()
        return out

    n = args.n
    run("baseline", lambda item: browser.get(f"/bench/product/{item.slug}/"), [random.choice(items) for _ in range(n)])
    placed = run("place", place, [random.choice(items) for _ in range(n)])
    run("pay", pay, placed)
    paid = list(Order.objects.filter(status=Order.Status.PAID).values_list("pk", flat=True))
    run("fulfil", lambda pk: orders.order_fulfil(order_id=pk), paid)
    flush_broker(args.broker_url)
    stats = pstats.Stats(profiler)
    stats.sort_stats(args.sort).print_stats(args.top)
    if args.callees:
        stats.print_callees(args.callees)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
