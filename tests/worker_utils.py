"""Helpers for tests that run a real Celery worker process against Redis and PostgreSQL.

The worker is a separate ``celery -A marketplace worker`` process (prefork, one child; or solo) in its
own process group, pointed at the pytest-django test database and the test Redis, so a test
can SIGKILL the whole worker (main process and pool child) the way an OOM killer or a lost
host would.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import kombu.pools
import psycopg2
import redis
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)
# Worker database connections carry this name, so the test can find them in pg_stat_activity.
APPLICATION_NAME = "celery-test-worker"
# The pool of production's fulfilment worker (docker-compose.yml, dev.py, bench/purchase.py's
# default; tests/test_worker_layout.py checks they agree).
FULFILMENT_POOL = "solo"


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return that, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def worker_database_url() -> str:
    """A DATABASE_URL for the database this pytest session really uses (``test_...``)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "localhost"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{quote(db['NAME'], safe='')}?application_name={APPLICATION_NAME}"


@contextlib.contextmanager
def broker(app, url: str, *, visibility_timeout: int) -> Iterator[None]:
    """Make this (test) process publish to ``url`` instead of the broker configured at import."""
    # The transport goes with the URL: settings name the embedded broker's own class
    # (CELERY_BROKER_TRANSPORT, marketplace/fsbroker.py), which would override another URL's scheme.
    saved = (app.conf.broker_url, app.conf.broker_transport_options, app.conf.broker_transport)

    def reset_pools():
        # Close and forget every pooled broker connection: kombu keys its global pools by
        # connection URL, and a closed pool left there would be handed out again.
        kombu.pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url = url
    app.conf.broker_transport_options = {"visibility_timeout": visibility_timeout}
    app.conf.broker_transport = None
    reset_pools()
    try:
        yield
    finally:
        reset_pools()
        app.conf.broker_url, app.conf.broker_transport_options, app.conf.broker_transport = saved


@contextlib.contextmanager
def broker_redis_emptied(url: str, *, visibility_timeout: int) -> Iterator[redis.Redis]:
    """For a ``broker_redis`` fixture: the test Redis at ``url``, emptied before and after, with this
    process publishing tasks to it. Worker tests on this host take turns (``exclusive``): the broker
    database is shared and flushed."""
    from marketplace import celery_app

    with exclusive(url):
        client = redis.Redis.from_url(url)
        client.flushdb()
        with broker(celery_app, url, visibility_timeout=visibility_timeout):
            yield client
        client.flushdb()
        client.close()


class Worker:
    """One ``celery worker`` process; stdout and stderr go to a file shown when a test fails."""

    def __init__(
        self,
        *,
        broker_url: str,
        visibility_timeout: int,
        label: str,
        beat: bool = False,
        env: dict | None = None,
        pool: str = "prefork",
    ):
        self.name = f"test-{label}-{uuid.uuid4().hex[:8]}"
        self.pool = pool  # prefork (one child), or solo: production's fulfilment worker
        self.beat = beat  # run celery beat inside the worker (-B): the periodic sweepers
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "DATABASE_URL": worker_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "CELERY_VISIBILITY_TIMEOUT": str(visibility_timeout),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.log = tempfile.NamedTemporaryFile(prefix=f"{self.name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> Worker:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "marketplace",
            "worker",
            "-l",
            "info",
            "--concurrency",
            "1",
            "--pool",
            self.pool,
            "-n",
            f"{self.name}@%h",
            # No chatter with (or waiting for) other workers that may share the Redis server.
            "--without-gossip",
            "--without-mingle",
        ]
        if self.beat:
            cmd += ["-B", "-s", self.log.name + ".beat-schedule"]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches the pool child too
        )
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}")
            return " ready." in self.output()

        wait_for(ready, timeout=timeout, what=f"worker {self.name} to be ready")

    def children(self) -> list[int]:
        """The pool processes (children of the worker's main process)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                # The command name (field 2) may hold spaces; fields after ")" are plain.
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid:
                    pids.append(int(stat.parent.name))
        return pids

    def kill(self) -> None:
        """SIGKILL the whole process group: no ack, no reject, no clean shutdown."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Always kill the process group (also any orphaned pool child) and drop the log."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.log.close()
        for path in Path(self.log.name).parent.glob(Path(self.log.name).name + "*"):
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """One test at a time per ``name`` on this host (another checkout's run waits its turn)."""
    import fcntl  # POSIX only, like the worker tests themselves

    path = Path(tempfile.gettempdir()) / f"kamarket-{hashlib.sha256(name.encode()).hexdigest()[:16]}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RowLock:
    """A row lock held by a separate database session, as another transaction would hold it."""

    def __init__(self, table: str, pk: int):
        db = connection.settings_dict
        self.conn = psycopg2.connect(
            dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"] or None, host=db["HOST"], port=db["PORT"]
        )
        with self.conn.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.pid = cursor.fetchone()[0]
            cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [pk])
            assert cursor.rowcount == 1

    def waiters(self) -> list[tuple[int, str]]:
        """(pid, query) of worker sessions waiting for a lock, directly on this one or in line behind it.

        A second waiter for a row queues on the first waiter's tuple lock, not on the holder.
        """
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, query, pg_blocking_pids(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock' ORDER BY backend_start",
                [APPLICATION_NAME],
            )
            rows = cursor.fetchall()
        in_line, found = {self.pid}, []
        for pid, query, blockers in rows:
            if in_line & set(blockers):
                in_line.add(pid)
                found.append((pid, query))
        return found

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


def backend_exists(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] > 0


def terminate_worker_backends() -> None:
    """A backend of a killed worker may outlive it; it must not block the test database's flush."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [APPLICATION_NAME],
        )


@contextlib.contextmanager
def workers_started(request) -> Iterator[Callable[..., Worker]]:
    """For a fixture: ``with workers_started(request) as start: yield ...``. ``start(**options)``
    starts a ``Worker(**options)``; at the end every one started is killed, its log printed if the
    test failed, and the database connections the killed workers left are ended."""
    started: list[Worker] = []
    failed_before = request.session.testsfailed

    def start(**options) -> Worker:
        worker = Worker(**options).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
    if request.session.testsfailed > failed_before:
        for worker in started:
            print(f"\n===== log of worker {worker.name} =====\n{worker.output()}", file=sys.stderr)
    for worker in started:
        worker.close()
    terminate_worker_backends()
