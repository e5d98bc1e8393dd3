"""The cost of one task publish from a web process (issue 17: "Celery's publish cost").

Configures Django and Celery as gunicorn runs them (bench.settings: production's CELERY_*
settings, queues and routes, a real Redis broker), then queues the fulfilment task with
``marketplace.celery.publish`` (what a purchase does after its commit) N times per round,
inside a request's log context (the request id header is added). Prints the CPU per publish
(median and best of the rounds: the machine is shared), the Python function calls per publish
(deterministic) and what the last message carried; optionally a profile by CPU time.

    .venv/bin/python bench/publish.py --broker-url redis://127.0.0.1:<port>/1 [-n 1000] [--rounds 15] [--profile 30]

No database is used; the broker's Redis database (and the cache's, just below it) is flushed.
"""

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.purchase import configure_environment, flush_broker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--database-url", default="sqlite:///:memory:", help="not used; settings need one")
    parser.add_argument("-n", type=int, default=1000, help="publishes per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--profile", type=int, default=0, help="print this many lines of a CPU profile")
    args = parser.parse_args()
    configure_environment(args)
    flush_broker(args.broker_url)
    import django

    django.setup()
    import redis

    from marketplace import logcontext
    from marketplace.celery import publish
    from orders.tasks import fulfil_order

    broker = redis.Redis.from_url(args.broker_url)
    logcontext.log_context_start(request_id="bench-publish")

    def round_(n: int) -> None:
        for i in range(n):
            assert publish(fulfil_order, i)

    round_(50)  # connections made, pools filled
    last = json.loads(broker.lindex("fulfilment", 0))
    assert broker.llen("fulfilment") == 50, broker.keys("*")
    broker.flushdb()

    cpu = []
    for _ in range(args.rounds):
        start = time.process_time()
        round_(args.n)
        cpu.append((time.process_time() - start) / args.n * 1e6)
        broker.flushdb()

    profile = cProfile.Profile(time.process_time)
    profile.enable()
    round_(args.n)
    profile.disable()
    broker.flushdb()
    stats = pstats.Stats(profile)
    calls = stats.total_calls / args.n  # type: ignore[attr-defined]

    print(f"publish of fulfil_order, {args.n} x {args.rounds} rounds")
    print(f"  CPU per publish: median {statistics.median(cpu):.0f} us, best {min(cpu):.0f} us")
    print(f"  Python function calls per publish: {calls:.0f}")
    headers = last["headers"]
    print(
        f"  message: queue fulfilment, request_id {headers.get(logcontext.TASK_HEADER)!r},"
        f" ignore_result {headers.get('ignore_result')}, {len(json.dumps(last))} bytes"
    )
    keys = sorted(k.decode() for k in broker.keys("*"))
    print(f"  broker keys after the rounds (flushed): {keys}")
    if args.profile:
        stats.sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
