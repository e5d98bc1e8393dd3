#!/usr/bin/env python
"""Price resolution for a whole catalogue: a 5-level chain against a 1-level agent.

    .venv/bin/python bench/pricing.py [--products 1000] [--repeat 20]

Recreates the PostgreSQL database ``kamarket_bench_pricing``, migrates, creates the products
(in 5 top-level categories with 4 sub-categories each), 4 levels with platform prices and a
chain of 5 agents whose uplines each set markups for everything, per category and for some
products, then times ``agents.selectors.agent_costs`` over the whole catalogue for the agent
at depth 1 and the one at depth 5, and prints the SQL statements and milliseconds per
resolution for both and their ratio (see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/kamarket_bench_pricing"


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


def seed(n_products: int):
    from django.contrib.auth import get_user_model

    from agents.models import AgentLevel, PriceKind
    from agents.services import agents as services
    from catalog.models import Category, Product, Supplier

    supplier = Supplier.objects.create(name="Bench supplier")
    subs = []
    for i in range(5):
        top = Category.objects.create(name=f"Top {i}", slug=f"top-{i}")
        subs += [Category.objects.create(name=f"Sub {i}.{j}", slug=f"sub-{i}-{j}", parent=top) for j in range(4)]
    Product.objects.bulk_create(
        Product(
            category=subs[i % len(subs)],
            supplier=supplier,
            name=f"Product {i}",
            slug=f"product-{i}",
            kind=Product.Kind.GAME_CARD,
            face_value=Decimal("100.00"),
            price=Decimal(9000 + i) / 100,
        )
        for i in range(n_products)
    )
    products = list(Product.objects.order_by("pk"))
    levels = [
        AgentLevel.objects.create(name=n, rank=r, sort=r) for r, n in enumerate(["普通", "铜牌", "银牌", "金牌"], 1)
    ]
    for level in levels:
        for top in Category.objects.filter(parent=None):
            services.level_price_set(level=level, category=top, kind=PriceKind.PERCENT, value=str(95 - level.rank))
        for p in products[::10]:
            services.level_price_set(level=level, product=p, kind=PriceKind.FIXED, value=str(p.price - 1))
    User = get_user_model()
    chain, upline = [], None
    for depth in range(1, 6):
        user = User.objects.create_user(username=f"agent{depth}", email=f"agent{depth}@example.com", password=None)
        upline = services.agent_create(user=user, level=levels[depth % 4], upline=upline)
        chain.append(upline)
    for agent in chain[:-1]:
        services.markup_set(agent=agent, kind=PriceKind.PERCENT, value="3.5")
        for level in levels:
            services.markup_set(agent=agent, kind=PriceKind.PERCENT, value="2.25", downline_level=level)
        for sub in subs[::2]:
            services.markup_set(agent=agent, kind=PriceKind.FIXED, value="0.80", category=sub)
        for p in products[::7]:
            services.markup_set(agent=agent, kind=PriceKind.FIXED, value="0.33", product=p)
    return chain


def measure(agent, repeat: int, *, page: int | None = None, resolve=None):
    """Queries and milliseconds of one resolution over the catalogue (or its first ``page``)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agents.selectors import agent_costs
    from catalog.models import Product

    resolve = resolve or (lambda products: agent_costs(agent=agent, products=products))
    products = list(Product.objects.select_related("category").order_by("pk")[:page])
    with CaptureQueriesContext(connection) as ctx:
        costs = resolve(products)
    timings = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        resolve(products)
        timings.append((time.perf_counter() - t0) * 1000)
    return costs, len(ctx), statistics.median(timings), min(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_DEBUG", "0")  # no query log while seeding
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    sys.path.insert(0, str(ROOT))
    t0 = time.monotonic()
    recreate_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    chain = seed(args.products)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    print(f"set-up: {args.products} products, chain of {len(chain)} agents ({time.monotonic() - t0:.1f} s)")

    results = {}
    for agent in (chain[0], chain[-1]):
        costs, queries, median_ms, best_ms = measure(agent, args.repeat)
        results[agent.depth] = (costs, queries, median_ms)
        print(
            f"depth {agent.depth}: {len(costs)} prices, {queries} queries, "
            f"{median_ms:.1f} ms median ({best_ms:.1f} best) per full-catalogue resolution"
        )
    top, bottom = results[1], results[5]
    print(f"ratio depth 5 / depth 1: queries {bottom[1]}/{top[1]}, time {bottom[2] / top[2]:.2f}x")

    # One page of 50 products, as the agent's price page and the API's product list resolve it.
    page = {}
    for agent in (chain[0], chain[-1]):
        _costs, queries, median_ms, best_ms = measure(agent, args.repeat * 5, page=50)
        page[agent.depth] = (queries, median_ms)
        print(f"page of 50, depth {agent.depth}: {queries} queries, {median_ms:.2f} ms median ({best_ms:.2f} best)")
    print(f"ratio per page depth 5 / depth 1: queries {page[5][0]}/{page[1][0]}, time {page[5][1] / page[1][1]:.2f}x")

    # A storefront of the depth-5 agent: its cost plus its retail prices (one query more).
    from agents.models import PriceKind, Storefront
    from agents.selectors import storefront_prices

    shop = Storefront.objects.create(agent=chain[-1], slug="bench", name="Bench", default_markup_kind=PriceKind.PERCENT)
    prices, queries, median_ms, _best = measure(
        chain[-1], args.repeat, resolve=lambda products: storefront_prices(storefront=shop, products=products)
    )
    print(f"storefront of depth 5, whole catalogue: {queries} queries, {median_ms:.1f} ms median")
    if any(retail < cost for cost, retail in prices.values()):
        print("FAIL: a retail price below the agent's cost")
        return 1
    below = [pk for pk in top[0] if bottom[0][pk] < top[0][pk]]
    if below:
        print(f"FAIL: {len(below)} products cheaper at depth 5 than at depth 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
