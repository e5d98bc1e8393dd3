"""gunicorn's configuration for this product: its server hooks (``gunicorn -c
python:marketplace.gunicorn_conf``; docker-compose.yml, the Dockerfile and bench/purchase.py use it).

The command line still sets the bind address and the number of workers. What this adds:

- **A request killed for running past gunicorn's timeout is counted and named.** The arbiter
  sends SIGABRT to a sync worker silent for ``timeout`` seconds (30, gunicorn's default, kept:
  a page or a POST here takes milliseconds; a report export runs in Celery) and SIGKILL a second
  later if it has not gone. The client (the load balancer) sees its connection closed, the buyer
  a 502 from the proxy, and django-prometheus never sees a response, so the request was in no
  metric and in no log line but gunicorn's "WORKER TIMEOUT (pid:…)". Now the arbiter counts it in
  ``kamarket_web_requests_timed_out_total`` (alerted on in ops/prometheus/alerts.yml) and logs which
  request it was. It has to be the arbiter: a worker stuck in the database driver (a lock wait, a
  slow statement) is inside libpq, where Python's signal handler never runs before the SIGKILL
  (tests/test_gunicorn_conf.py). Where the handler does run (a worker stuck in Python or in a
  socket read), the worker also logs the stack it was stuck in.
- **The access log is JSON under LOG_FORMAT=json**, one object a line with the request id (the
  response's X-Request-ID, the same id the app's own lines carry), method, path, status, bytes,
  duration and client, in the shape of the app's log lines (time, level, logger, message): before,
  it was Apache's combined format, which neither the log pipeline nor a search by request id
  could join with the sale's other lines.
- **A dead worker's live gauges are dropped** (``prometheus_client.multiprocess.mark_process_dead``,
  what its documentation asks of gunicorn in multiprocess mode); its counters stay counted.

Which request a worker is in: each worker gets a slot of a memory map shared with the arbiter
(made before the workers are forked) and writes its request's method and path there before
serving it, a copy of a few dozen bytes.
"""

from __future__ import annotations

import logging
import mmap
import os
import sys
import traceback

from gunicorn import glogging
from prometheus_client import Counter

# gunicorn's default, said here so that the docstring and the runbook have a number to cite.
timeout = 30

# Created in the arbiter when gunicorn loads this module, before the workers are forked: under
# PROMETHEUS_MULTIPROC_DIR its (arbiter's) file holds the count, which the scrape merges with the
# workers'. Without gunicorn (runserver, tests) ops/views.py imports this module so that /metrics
# shows it at 0.
TIMED_OUT = Counter(
    "kamarket_web_requests_timed_out", "Requests killed with their gunicorn worker for running past its timeout"
)

log = logging.getLogger("marketplace.gunicorn")

_SLOT = 256  # bytes per worker: a 2-byte length, then "METHOD /path" (cut)
_SLOTS = 256  # workers alive at once, per arbiter
_requests = mmap.mmap(-1, _SLOT * _SLOTS)  # MAP_SHARED | MAP_ANONYMOUS: shared with forked workers
_free_slots = list(range(_SLOTS))  # the arbiter's


def pre_fork(server, worker) -> None:
    """Arbiter, before forking ``worker``: the slot its requests are written to."""
    worker.request_slot = _free_slots.pop() if _free_slots else None


def pre_request(worker, req) -> None:
    """Worker, before each request (replaces gunicorn's default, a debug log line)."""
    slot = getattr(worker, "request_slot", None)
    if slot is None:
        return
    line = f"{req.method} {req.path}".encode("utf-8", "replace")[: _SLOT - 2]
    start = slot * _SLOT
    _requests[start + 2 : start + 2 + len(line)] = line
    _requests[start : start + 2] = len(line).to_bytes(2, "big")


def _request_in(slot: int | None) -> str:
    if slot is None:
        return "unknown (no slot)"
    start = slot * _SLOT
    length = int.from_bytes(_requests[start : start + 2], "big")
    # A character cut at the slot's end is dropped.
    return _requests[start + 2 : start + 2 + length].decode("utf-8", "ignore") or "none yet"


def child_exit(server, worker) -> None:
    """Arbiter, when a worker has exited, whatever the reason."""
    slot = getattr(worker, "request_slot", None)
    if worker.aborted:  # gunicorn's mark: killed by murder_workers() for its timeout
        TIMED_OUT.inc()
        server.log.error(
            "request killed with worker %s after the %ss timeout: %s", worker.pid, server.timeout, _request_in(slot)
        )
    if slot is not None:
        _requests[slot * _SLOT : slot * _SLOT + 2] = b"\0\0"
        _free_slots.append(slot)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_abort(worker) -> None:
    """Worker, in its SIGABRT handler on top of the request it interrupts, when Python gets to
    run it; the worker exits right after (gunicorn's ``handle_abort``). The arbiter counts."""
    # The log filter adds the request's id (marketplace.logcontext: the interrupted request's
    # context is this thread's). The stack leaves out this hook and gunicorn's handler.
    log.error(
        "request stuck past gunicorn's %ss timeout: %s (pid %s); it was at:\n%s",
        worker.cfg.timeout,
        _request_in(getattr(worker, "request_slot", None)),
        os.getpid(),
        "".join(traceback.format_stack(sys._getframe(2))),
    )


class Logger(glogging.Logger):
    """gunicorn's logger; under LOG_FORMAT=json its access lines are JSON (module docstring),
    formatted by the app's own JSON formatter (marketplace.logcontext) so that they have the same
    shape and time stamp as every other line."""

    _json: logging.Formatter | None = None

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        if os.environ.get("LOG_FORMAT") != "json":
            super().access(resp, req, environ, request_time)
            return
        try:
            if Logger._json is None:
                from marketplace.logcontext import json_formatter

                Logger._json = json_formatter()
            atoms = self.atoms(resp, req, environ, request_time)
            record = logging.makeLogRecord(
                {
                    "name": "gunicorn.access",
                    "levelno": logging.INFO,
                    "levelname": "INFO",
                    "msg": f"{atoms['m']} {atoms['U']} {atoms['s']}",
                    "request_id": atoms.get("{x-request-id}o", ""),
                    "order": "",
                    "payment": "",
                    "method": atoms["m"],
                    "path": atoms["U"],
                    "query": atoms["q"],
                    "status": int(atoms["s"]),
                    "bytes": atoms["B"] or 0,
                    "duration_ms": round(atoms["D"] / 1000, 3),
                    "remote_addr": atoms["h"],
                    "forwarded_for": atoms.get("{x-forwarded-for}i", ""),
                    "user_agent": atoms["a"],
                }
            )
            self.access_log.info(Logger._json.format(record))
        except Exception:
            self.error(traceback.format_exc())


logger_class = Logger
