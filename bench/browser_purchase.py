#!/usr/bin/env python
"""A whole purchase as a browser makes it, over HTTP, against a baseline in the same run.

    .venv/bin/python bench/browser_purchase.py [--duration 20] [--concurrency 64] [--poll-interval 2]

What it does (see bench/README.md):
  1. recreates the PostgreSQL database ``kamarket_bench_browser``, flushes Redis DB 9 (the
     Celery broker) and 8 (the cache), a temporary VAR_DIR; migrates and seeds products with
     encrypted stock and logged-in buyers (bench/purchase.py's helpers);
  2. starts gunicorn (4 sync workers) and the Celery workers (bench/purchase.py's ``Servers``);
  3. measures the baseline (bench/views.py: one indexed query, plain text) with purchase.py's
     client and connections, then purchases: each one is every request a browser sends from the
     product page to the revealed code, each answer checked (status and content):
       GET /p/<slug>/ -> GET /orders/checkout/<slug>/?quantity=1 -> POST it (302 /pay/<number>/)
       -> GET /pay/<number>/ -> POST /pay/<number>/start/sandbox/ (302 to the cashier)
       [with --channel-on-checkout, as tests/test_browser.py's buyer: the checkout posted with the
       sandbox channel ticked (its radio: a browser always sends one) -> 307 to
       /pay/<number>/start/sandbox/, posted the same body -> 302 to the cashier; no choice page]
       -> GET /pay/sandbox/<number>/ -> POST it (pays in process, fulfilment queued; 302 to the
       order page) -> GET /orders/<number>/ -> while the order is paid, every --poll-interval
       seconds GET /orders/<number>/status/?seen=paid with HX-Request (a badge partial, or
       HX-Refresh once delivered: the browser reloads the order page) -> POST the reveal form
       with HX-Request (the code's partial);
  4. prints requests per purchase, purchases/s, the ratio to the baseline, server CPU per
     purchase by process group and the CPU ratio, latency per step, and checks that every
     order was delivered exactly once and each revealed code logged once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import statistics
import sys
import time
from copy import copy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.purchase import (
    CLK_TCK,
    HOST,
    SERVER,
    Bench,
    Buyer,
    Client,
    CpuMeter,
    Item,
    Samples,
    Servers,
    cpu_line,
    fmt_ms,
    free_port,
    fresh_database,
    noisy,
    say,
    seed,
    server_ms,
    stop_servers,
    wait_quiet,
)

TARGET, AIM = 0.03, 0.05
CHANNEL_SANDBOX = b'name="channel" value="sandbox"'
STEPS = (
    ("product", "GET product page /p/<slug>/"),
    ("checkout_page", "GET checkout page"),
    ("checkout", "POST checkout -> 302 choice / 307 start"),
    ("choose", "GET choose payment /pay/<n>/"),
    ("start", "POST start sandbox -> 302 cashier"),
    ("cashier", "GET sandbox cashier"),
    ("pay", "POST cashier (pays) -> 302 order"),
    ("order_page", "GET order page (after paying)"),
    ("poll", "GET status poll (HX-Request)"),
    ("reload", "GET order page (after HX-Refresh)"),
    ("reveal", "POST reveal (HX-Request)"),
    ("purchase", "whole purchase, polling sleeps included"),
)


class DatabaseCpuMeter(CpuMeter):
    """purchase.py's CpuMeter, with PostgreSQL narrowed to the backends of this benchmark's
    database: on a shared machine other jobs' test databases run on the same server, and the
    whole-server figure (the postmaster's exited children too) counts their work as ours.

    Connections live CONN_MAX_AGE (60 s), so backends end inside a window and their CPU would be
    lost: a thread reads the backends' ticks every 0.2 s and keeps the last value seen of each
    (a backend's last 0.2 s before it exits are still missed). Shared background processes
    (WAL writer, checkpointer) are left out."""

    def __init__(self, servers: Servers, database_url: str):
        import dj_database_url

        super().__init__(servers, database_url)
        self.marker = f" {dj_database_url.parse(database_url)['NAME']} "
        self.cmdlines: dict[int, bool] = {}  # pid -> is one of our backends (a pid's title stays)

    def _backends(self) -> dict[int, int]:
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                if pid not in self.cmdlines:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if comm.startswith("postgres") and not cmdline.startswith("postgres: "):
                        continue  # forked, its title not set yet: look again next time
                    self.cmdlines[pid] = comm.startswith("postgres") and self.marker in cmdline
                if self.cmdlines[pid]:
                    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    out[pid] = int(rest[11]) + int(rest[12])
            except OSError:
                continue
        return out

    def _sample(self) -> None:
        while not self.stopping.wait(0.2):
            self.seen.update(self._backends())

    def start(self) -> None:
        import threading

        super().start()
        self.cmdlines.clear()  # pids are reused
        self.pg_a = self._backends()
        self.seen = dict(self.pg_a)
        self.stopping = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def stop(self) -> dict[str, float]:
        self.stopping.set()
        self.sampler.join()
        self.seen.update(self._backends())
        out = super().stop()
        ticks = sum(own - self.pg_a.get(pid, 0) for pid, own in self.seen.items())
        out["other"] += out["postgres"] - ticks / CLK_TCK
        out["postgres"] = ticks / CLK_TCK
        return out


class FlowError(Exception):
    """A response that is not what the browser's next step needs: counted as an error."""


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, raw: bytes):
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0][9:12]) if lines[0][:5] == b"HTTP/" else 0
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
        if self.header("transfer-encoding") == "chunked":
            body = _dechunk(body)
        self.body = body

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    def cookies(self) -> list[str]:
        return [v for k, v in self.headers if k == "set-cookie"]


def _dechunk(data: bytes) -> bytes:
    out, i = [], 0
    while True:
        j = data.index(b"\r\n", i)
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[j + 2 : j + 2 + size])
        i = j + 2 + size + 2


class Browser:
    """One buyer's browser: a cookie jar (session, CSRF, device id, messages) and requests."""

    def __init__(self, client: Client, buyer: Buyer):
        self.client = client
        self.jar = {"sessionid": buyer.session, "csrftoken": buyer.csrf_cookie}

    def _take_cookies(self, response: Response) -> None:
        for raw in response.cookies():
            first, _, attrs = raw.partition(";")
            name, _, value = first.partition("=")
            low = attrs.lower()
            if "max-age=0" in low or "expires=thu, 01 jan 1970" in low:
                self.jar.pop(name.strip(), None)
            else:
                self.jar[name.strip()] = value.strip().strip('"')

    async def request(self, method: str, path: str, body: bytes = b"", htmx: bool = False) -> Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        head = f"{method} {path} HTTP/1.1\r\n{self.client.host_header}Cookie: {cookie}\r\n"
        head += "User-Agent: Mozilla/5.0 (bench) browser_purchase\r\n"
        if htmx:
            head += f"HX-Request: true\r\nHX-Current-URL: http://{HOST}:{self.client.port}{path}\r\n"
        if method == "POST":
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            head += f"Referer: http://{HOST}:{self.client.port}{path}\r\n"
        raw = await self.client.send((head + "Connection: close\r\n\r\n").encode() + body)
        response = Response(raw)
        self._take_cookies(response)
        return response


CSRF_RE = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
IDEM_RE = re.compile(rb'name="idempotency_key" value="([^"]+)"')
REVEAL_RE = re.compile(rb'<form method="post" action="(/orders/[^"/]+/codes/\d+/reveal/)"')


def expect(ok: bool, step: str, response: Response, what: str) -> None:
    if not ok:
        raise FlowError(f"{step}: {response.status} {what}")


def form_token(response: Response, step: str) -> str:
    found = CSRF_RE.search(response.body)
    expect(found is not None, step, response, "no CSRF token in the page")
    return found.group(1).decode()


class BrowserBench:
    def __init__(self, args, servers: Servers, items: list[Item], buyers: list[Buyer]):
        self.args, self.items, self.buyers = args, items, buyers
        self.client = Client(servers.port)
        self.cpu = DatabaseCpuMeter(servers, args.database_url)
        self.servers = servers
        self.browsers = [Browser(self.client, b) for b in buyers]
        # (end time, requests, polls, {step: [seconds]}) per completed purchase; (end time, error)
        self.completed: list[tuple[float, int, int, dict]] = []
        self.failed: list[tuple[float, str]] = []
        self.revealed: list[tuple[str, int]] = []  # (order number, order code id), all purchases

    async def purchase(self, _samples: Samples | None) -> None:
        """One purchase, recorded with its end time: the window counts those that end in it
        (run_load's own count would leave out purchases begun in the warm-up, seconds long)."""
        item = random.choice(self.items)
        browser = random.choice(self.browsers)
        lat: dict[str, list[float]] = {}
        count = {"requests": 0, "polls": 0}

        async def call(step: str, method: str, path: str, body: bytes = b"", htmx: bool = False) -> Response:
            t = time.perf_counter()
            response = await browser.request(method, path, body, htmx)
            lat.setdefault(step, []).append(time.perf_counter() - t)
            count["requests"] += 1
            if response.status >= 500 or response.status == 0:
                raise FlowError(f"{step}: {response.status or 'no answer'}")
            return response

        t0 = time.perf_counter()
        try:
            r = await call("product", "GET", f"/p/{item.slug}/")
            expect(r.status == 200 and b'data-testid="buy-now"' in r.body, "product", r, "no buy button")
            expect(f"/orders/checkout/{item.slug}/".encode() in r.body, "product", r, "no checkout form")

            r = await call("checkout_page", "GET", f"/orders/checkout/{item.slug}/?quantity=1")
            expect(r.status == 200 and b'id="checkout-form"' in r.body, "checkout_page", r, "no checkout form")
            idem = IDEM_RE.search(r.body)
            expect(idem is not None, "checkout_page", r, "no idempotency key")
            body = f"csrfmiddlewaretoken={form_token(r, 'checkout_page')}&idempotency_key={idem.group(1).decode()}"
            body += "&quantity=1"
            if not self.args.channel_on_checkout:
                # No channel sent: the order's page to choose one, then its sandbox form.
                r = await call("checkout", "POST", f"/orders/checkout/{item.slug}/", body.encode())
                location = r.header("location")
                expect(r.status == 302 and re.fullmatch(r"/pay/[^/]+/", location or "-"), "checkout", r, location)
                number = location.split("/")[2]
                r = await call("choose", "GET", f"/pay/{number}/")
                start = f"/pay/{number}/start/sandbox/"
                expect(r.status == 200 and start.encode() in r.body, "choose", r, "no sandbox form")
                r = await call("start", "POST", start, f"csrfmiddlewaretoken={form_token(r, 'choose')}".encode())
            else:
                # The checkout's own choice of how to pay, the sandbox ticked (a radio: a browser
                # always sends one); a 307 keeps method and body, so the browser posts the same
                # form to payments:start.
                expect(CHANNEL_SANDBOX in r.body, "checkout_page", r, "no sandbox channel to tick")
                body += "&channel=sandbox"
                r = await call("checkout", "POST", f"/orders/checkout/{item.slug}/", body.encode())
                start = r.header("location")
                started = r.status == 307 and re.fullmatch(r"/pay/[^/]+/start/sandbox/", start or "-")
                expect(bool(started), "checkout", r, start or "")
                number = start.split("/")[2]
                r = await call("start", "POST", start, body.encode())
            cashier = f"/pay/sandbox/{number}/"
            expect(r.status == 302 and r.header("location") == cashier, "start", r, r.header("location"))

            r = await call("cashier", "GET", cashier)
            expect(r.status == 200 and b'data-testid="sandbox-confirm"' in r.body, "cashier", r, "no pay button")
            r = await call("pay", "POST", cashier, f"csrfmiddlewaretoken={form_token(r, 'cashier')}".encode())
            order_url = f"/orders/{number}/"
            expect(r.status == 302 and r.header("location") == order_url, "pay", r, r.header("location"))

            r = await call("order_page", "GET", order_url)
            expect(r.status == 200, "order_page", r, "")
            poll_url = f"/orders/{number}/status/?seen=paid".encode()
            while b'data-status="delivered"' not in r.body:
                # Paid, not yet delivered: the page polls (htmx "every 2s": first after one interval).
                expect(b'data-status="paid"' in r.body and poll_url in r.body, "order_page", r, "not paid, no poll")
                await asyncio.sleep(self.args.poll_interval)
                p = await call("poll", "GET", poll_url.decode(), htmx=True)
                count["polls"] += 1
                expect(p.status == 200, "poll", p, "")
                if p.header("hx-refresh") == "true":
                    r = await call("reload", "GET", order_url)  # htmx reloads the page
                    expect(r.status == 200, "reload", r, "")
                else:
                    expect(b'data-status="paid"' in p.body, "poll", p, "neither a paid badge nor HX-Refresh")
            forms = REVEAL_RE.findall(r.body)
            expect(len(forms) == 1, "order_page", r, f"{len(forms)} reveal forms on a delivered order")
            action = forms[0].decode()
            r = await call(
                "reveal", "POST", action, f"csrfmiddlewaretoken={form_token(r, 'order_page')}".encode(), True
            )
            expect(r.status == 200 and b'data-testid="revealed-secret"' in r.body, "reveal", r, "no secret")
            self.revealed.append((number, int(action.rstrip("/").split("/")[-2])))
        except FlowError as exc:
            self.failed.append((time.time(), str(exc)[:120]))
            return
        except OSError as exc:
            self.failed.append((time.time(), f"connection: {type(exc).__name__}"))
            return
        lat["purchase"] = [time.perf_counter() - t0]
        self.completed.append((time.time(), count["requests"], count["polls"], lat))

    async def drive(self) -> tuple[float, float, dict]:
        """``--concurrency`` browsers buying in a loop. The window opens once the load is steady
        (at least --warmup seconds, and every browser has finished a purchase, or --max-warmup):
        a purchase lasts seconds, so a fixed short warm-up would time the first wave only."""
        stopping = False

        async def browse():
            while not stopping:
                await self.purchase(None)

        workers = self.servers.fulfilment_groups()  # each its own process group
        if self.args.pause_worker:
            # Orders then wait paid and the browsers poll: the polling path runs (and is checked)
            # in the warm-up at least, whatever the machine's speed.
            for group in workers:
                os.killpg(group, signal.SIGSTOP)
                asyncio.get_running_loop().call_later(self.args.pause_worker, os.killpg, group, signal.SIGCONT)
        tasks = [asyncio.create_task(browse()) for _ in range(self.args.concurrency)]
        t0 = time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            waited = time.monotonic() - t0
            steady = len(self.completed) + len(self.failed) >= self.args.concurrency
            warm = waited >= max(self.args.warmup, self.args.pause_worker)
            if (warm and steady) or waited >= self.args.max_warmup:
                break
        say(f"warm-up {waited:.1f}s ({len(self.completed)} purchases done); measuring {self.args.duration:g}s")
        w0 = time.time()
        self.cpu.start()
        await asyncio.sleep(self.args.duration)
        w1 = time.time()
        cpu = self.cpu.stop()
        stopping = True
        await asyncio.gather(*tasks)  # the purchases in flight finish (and are checked)
        return w0, w1, cpu

    def measure(self) -> dict:
        wait_quiet(self.args.quiet_wait)
        w0, w1, cpu = asyncio.run(self.drive())
        self.servers.check_alive()
        samples = Samples()
        inside = [c for c in self.completed if w0 <= c[0] < w1]
        for _end, _requests, _polls, lat in inside:
            for step, values in lat.items():
                for v in values:
                    samples.add(step, v)
        for _end, error in self.failed:  # any time: a wrong flow is never left out
            samples.error(error)
        n = samples.done = len(inside)
        rate = n / (w1 - w0)
        say(f"purchases {rate:,.2f}/s ({n} completed in the window), errors {samples.errors or 'none'}{noisy(cpu)}")
        return {
            "rate": rate,
            "samples": samples,
            "cpu": cpu,
            "units": n,
            "requests": [c[1] for c in inside],
            "polls": [c[2] for c in inside],
            "all_purchases": len(self.completed),
            "all_polls": sum(c[2] for c in self.completed),
            "all_reloads": sum(len(c[3].get("reload", [])) for c in self.completed),
        }


def verify(revealed: list[tuple[str, int]], drain_timeout: float) -> list[str]:
    """Every order delivered exactly once, with one code, and each revealed code logged once."""
    from django.db.models import Count, Q

    from orders.models import CodeReveal, Order, OrderCode, OrderStatusChange

    problems = []
    deadline = time.monotonic() + drain_timeout
    while Order.objects.filter(status=Order.Status.PAID).exists():
        if time.monotonic() > deadline:
            problems.append("orders still paid-but-undelivered after the drain timeout")
            break
        time.sleep(0.1)
    numbers = [n for n, _ in revealed]
    if len(set(numbers)) != len(numbers):
        problems.append("an order number was revealed by two purchases")
    orders = Order.objects.filter(number__in=numbers)
    not_delivered = orders.exclude(status=Order.Status.DELIVERED).count()
    if not_delivered:
        problems.append(f"{not_delivered} revealed orders not delivered")
    twice = (
        OrderStatusChange.objects.filter(to_status=Order.Status.DELIVERED)
        .values("order_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    if twice:
        problems.append(f"{twice} orders moved to delivered more than once")
    delivered_ids = set(orders.values_list("pk", flat=True))
    moves = set(
        OrderStatusChange.objects.filter(order_id__in=delivered_ids, to_status=Order.Status.DELIVERED).values_list(
            "order_id", flat=True
        )
    )
    if moves != delivered_ids:
        problems.append(f"{len(delivered_ids - moves)} delivered orders without a move to delivered")
    codes = OrderCode.objects.filter(order_id__in=delivered_ids).values("order_id").annotate(n=Count("id"))
    wrong = [c for c in codes if c["n"] != 1]
    if wrong or len(codes) != len(delivered_ids):
        problems.append(
            f"{len(wrong)} orders with a code count other than 1, {len(delivered_ids) - len(codes)} with none"
        )
    reveal_counts = dict(
        OrderCode.objects.filter(pk__in=[c for _, c in revealed]).annotate(n=Count("reveals")).values_list("pk", "n")
    )
    bad = [pk for _, pk in revealed if reveal_counts.get(pk) != 1]
    if bad:
        problems.append(f"{len(bad)} revealed codes not logged exactly once")
    extra = CodeReveal.objects.exclude(order_code_id__in=[c for _, c in revealed]).count()
    if extra:
        problems.append(f"{extra} reveal log rows for codes no purchase revealed")
    other = Order.objects.exclude(Q(number__in=numbers)).values_list("status").annotate(n=Count("id"))
    left = {status: n for status, n in other}
    if left:
        # Purchases cut short by an error leave their order (pending, or delivered unrevealed).
        problems.append(f"orders outside the completed purchases, by status: {left}")
    return problems


def report(args, base: dict, buy: dict, problems: list[str]) -> None:
    line = "=" * 104
    print()
    print(line)
    print(
        f"Browser purchase benchmark: gunicorn {args.workers} sync workers, Celery {args.celery_pool} "
        f"x{args.celery_concurrency}, PostgreSQL, Redis; {os.cpu_count()} CPUs shared by everything."
    )
    print(
        f"Baseline: {args.baseline_concurrency} connections; purchases: {args.concurrency} browsers in flight, "
        f"poll every {args.poll_interval:g}s; {args.duration:g}s windows after {args.warmup:g}s warm-up; "
        f"channel {'ticked on the checkout' if args.channel_on_checkout else 'chosen on the payment page'}."
    )
    print(line)
    n = buy["units"]
    if n:
        req = statistics.mean(buy["requests"])
        polls = statistics.mean(buy["polls"])
        print(
            f"requests per purchase: mean {req:.2f} (min {min(buy['requests'])}, max {max(buy['requests'])}); "
            f"status polls per purchase: mean {polls:.2f} (max {max(buy['polls'])}); "
            f"purchases polling at all: {sum(1 for p in buy['polls'] if p) / n:.0%}"
        )
    print(
        f"all purchases, warm-up included: {buy['all_purchases']}, with {buy['all_polls']} status polls and "
        f"{buy['all_reloads']} reloads after HX-Refresh, every answer checked"
    )
    ratio = buy["rate"] / base["rate"] if base["rate"] else float("nan")
    cpu_ratio = server_ms(base) / server_ms(buy) if n else float("nan")
    print(f"baseline:   {base['rate']:>9,.0f} req/s")
    print(f"purchases:  {buy['rate']:>9,.2f} /s")
    print(
        f"ratio:      {ratio:>9.4f}   target >= {TARGET} (aim {AIM}); "
        f"{'MEETS' if ratio >= TARGET else 'BELOW'} the target; "
        f"one purchase = {1 / ratio if ratio else float('inf'):.0f} baseline requests"
    )
    print(
        f"CPU ratio:  {cpu_ratio:>9.4f}   (server CPU of a baseline request / of a purchase; "
        f"{'MEETS' if cpu_ratio >= TARGET else 'BELOW'} the target)"
    )
    if n:
        cpu, cores = buy["cpu"], buy["cpu"]["elapsed"] * os.cpu_count()
        server, machine, other = sum(cpu[k] for k in SERVER) / cores, cpu["machine"] / cores, cpu["other"] / cores
        limit = (
            "the machine was saturated: throughput is CPU-bound"
            if machine > 0.9
            else "the machine had idle CPU: more browsers in flight (--concurrency) may give more purchases/s"
        )
        print(f"purchase window: server processes {server:.0%} of the machine, other jobs {other:.0%}; {limit}")
    print()
    print("CPU ms per unit (per baseline request / per completed purchase):")
    print(
        f"  {'':<10}{'gunicorn':>9}{'postgres':>9}{'celery':>9}{'redis':>9}{'client':>9}{'server':>9}"
        f"{'pg conn':>8}{'pg xact':>8}"
    )
    print(f"  baseline  {cpu_line(base)}")
    print(f"  purchase  {cpu_line(buy)}")
    print()
    print(f"Latency (ms){'p50':>37}{'p95':>8}{'count':>8}")
    print("  baseline request".ljust(41) + fmt_ms(base["samples"].lat.get("request", [])))
    for step, what in STEPS:
        values = buy["samples"].lat.get(step, [])
        print(f"  {what}".ljust(41) + fmt_ms(values) + f"{len(values):>8}")
    print()
    print(f"errors: {buy['samples'].errors or 'none'}")
    print(
        "checks: "
        + ("every order delivered exactly once, each revealed code logged once" if not problems else "FAILED")
    )
    for p in problems:
        print(f"  PROBLEM: {p}")
    print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30, help="measurement window per phase, seconds")
    parser.add_argument("--warmup", type=float, default=4, help="minimum warm-up before each window, seconds")
    parser.add_argument(
        "--max-warmup", type=float, default=60, help="purchases: longest wait for every browser to finish one"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="purchases (browsers) in flight")
    parser.add_argument("--baseline-concurrency", type=int, default=8, help="baseline connections (as purchase.py)")
    parser.add_argument(
        "--channel-on-checkout",
        action="store_true",
        help="tick the sandbox channel on the checkout (as the UI's buyer does): no choice-of-payment page",
    )
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between status polls (the page: 2)")
    parser.add_argument(
        "--pause-worker",
        type=float,
        default=0,
        help="stop the Celery worker for this many seconds at the start of the warm-up (exercises the polls)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument(
        "--celery-concurrency", type=int, default=2, help="the fulfilment queue's processes (solo: one worker each)"
    )
    parser.add_argument("--celery-pool", default="solo", choices=["prefork", "threads", "solo"])
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--codes-per-product", type=int, default=400)
    parser.add_argument("--hot-codes", type=int, default=100, help="(seed's hot product: unused here)")
    parser.add_argument("--hot-sold", type=int, default=50)
    parser.add_argument("--buyers", type=int, default=200)
    parser.add_argument("--quiet-wait", type=float, default=5, help="max seconds to wait for an idle machine")
    parser.add_argument("--drain-timeout", type=float, default=60)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/kamarket_bench_browser")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/9", help="the cache is the db below it")
    parser.add_argument("--keep", action="store_true", help="keep the temporary VAR_DIR (keys, server logs)")
    args = parser.parse_args()

    # Hundreds of reveals a minute from one account and one address: the reveal limits
    # (RATE_LIMITS["reveal"], settings.env_rate) would answer 429. Out of the way, still counted.
    os.environ["RATE_REVEAL_ACCOUNT"] = os.environ["RATE_REVEAL_NETWORK"] = "1000000000/600"
    var_dir = fresh_database(args)  # flushes the broker's Redis DB and the cache below it
    from django.db import connection

    items, _hot, buyers = seed(args)
    connection.close()

    servers = Servers(args, free_port())
    try:
        servers.start(var_dir)
        say(f"gunicorn ({args.workers} workers) on {HOST}:{servers.port}; Celery worker started")
        base_args = copy(args)
        base_args.concurrency = args.baseline_concurrency
        bench = Bench(base_args, servers, items, _hot, buyers)
        bench.cpu = DatabaseCpuMeter(servers, args.database_url)
        asyncio.run(bench.prepare_buyers())
        say(f"{len(buyers)} buyers logged in (session cookies), CSRF cookies fetched")
        base = bench.baseline("baseline")
        browser = BrowserBench(args, servers, items, buyers)
        buy = browser.measure()
        problems = verify(browser.revealed, args.drain_timeout)
    finally:
        stop_servers(args, servers, var_dir)
    report(args, base, buy, problems)
    say("done")
    return 1 if problems or buy["samples"].errors or not buy["units"] else 0


if __name__ == "__main__":
    sys.exit(main())
