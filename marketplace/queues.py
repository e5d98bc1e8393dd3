"""How many messages wait in each Celery queue, read from the broker (issue 17).

Read by /metrics (ops.metrics: a gauge per queue) and by admission control (marketplace.admission:
checkouts are shed while deliveries are too far behind). One pipelined round trip to Redis; a
folder listing for the embedded filesystem broker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)

# kombu's Redis transport keeps a message with priority p (p > 0) in "<queue>\x06\x16<p>".
REDIS_PRIORITY_SEPARATOR = "\x06\x16"
REDIS_PRIORITY_STEPS = (3, 6, 9)

_clients: dict[str, object] = {}


def _redis_client(url: str):
    """One client (and its connection pool) per broker URL and process, kept between reads."""
    client = _clients.get(url)
    if client is None:
        import redis

        client = _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    return client


def queue_lengths(queues: Iterable[str] | None = None) -> dict[str, int] | None:
    """Messages waiting per Celery queue (all of settings.QUEUE_NAMES, or ``queues``); None when
    the broker cannot be asked (it is logged)."""
    url = settings.CELERY_BROKER_URL
    queues = tuple(queues if queues is not None else settings.QUEUE_NAMES)
    try:
        if url.startswith(("redis://", "rediss://")):
            with _redis_client(url).pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
                for queue in queues:
                    pipe.llen(queue)
                    for step in REDIS_PRIORITY_STEPS:
                        pipe.llen(f"{queue}{REDIS_PRIORITY_SEPARATOR}{step}")
                counts = pipe.execute()
            per = 1 + len(REDIS_PRIORITY_STEPS)
            return {queue: sum(counts[i * per : (i + 1) * per]) for i, queue in enumerate(queues)}
        if url.startswith("filesystem://"):
            # The embedded broker: one file per message, "<...>.<queue>.msg".
            folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
            lengths = dict.fromkeys(queues, 0)
            with os.scandir(folder) as entries:
                for entry in entries:
                    parts = entry.name.rsplit(".", 2)
                    if len(parts) == 3 and parts[2] == "msg" and parts[1] in lengths:
                        lengths[parts[1]] += 1
            return lengths
    except Exception as exc:  # a figure missing is better than a page failing
        log.warning("could not read the queue lengths from the broker: %s", exc)
    return None
