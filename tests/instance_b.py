"""Instance B of the two-instance test (tests/test_two_instances.py): this same project as a
second process (gunicorn and a Celery worker with beat), on a database of its own, which
instance A (the test process) buys from as one of B's agents through the agent API.

``InstanceB`` creates and migrates B's database, seeds it (``seed`` below, run in B by
``manage.py shell -c``), starts B's web and worker processes and, at the end, kills both
process groups and drops the database. ``seed`` and ``report`` run inside B and print JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg2
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)
B_PRICE = "27.50"  # what B's gold agents (A) pay for B's product


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _admin_connect():
    db = connection.settings_dict
    conn = psycopg2.connect(
        dbname="postgres", user=db["USER"], password=db["PASSWORD"] or None, host=db["HOST"], port=db["PORT"]
    )
    conn.autocommit = True
    return conn


class InstanceB:
    def __init__(self):
        db = connection.settings_dict
        self.db_name = f"{db['NAME']}_b"[:63]  # beside A's test database: test_km_x_b
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        self.database_url = f"postgres://{auth}@{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{self.db_name}"
        self.var_dir = Path(tempfile.mkdtemp(prefix="kamarket-b-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "DATABASE_URL": self.database_url,
            "VAR_DIR": str(self.var_dir),  # its own keys, broker folder, private media
            "CELERY_BROKER_URL": "filesystem://localhost/",
            "DJANGO_SECRET_KEY": "instance-b-" + Fernet.generate_key().decode(),
            "CARD_CODE_KEYS": Fernet.generate_key().decode(),
            "STOCK_HASH_KEY": os.urandom(32).hex(),
            "SITE_URL": self.url,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "AGENT_API_RATE_PER_MINUTE": "1000",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("REDIS_CACHE_URL", "DJANGO_PRODUCTION"):
            self.env.pop(name, None)
        self.processes: list[subprocess.Popen] = []
        self.log = self.var_dir / "b.log"

    # --- life cycle ----------------------------------------------------------------------

    def create(self) -> None:
        with contextlib.closing(_admin_connect()) as conn, conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{self.db_name}"')
        self.manage("migrate", "--noinput", timeout=600)

    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"B: manage.py {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def run(self, code: str) -> dict:
        """Run ``code`` in B (``manage.py shell -c``); its last stdout line is JSON."""
        out = self.manage("shell", "-c", code).stdout.strip().splitlines()
        return json.loads(out[-1])

    def _spawn(self, command: list[str]) -> subprocess.Popen:
        handle = self.log.open("ab")
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches gunicorn's and celery's children
        )
        self.processes.append(process)
        return process

    def start(self) -> None:
        web = self._spawn(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "marketplace.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--timeout",
                "60",
            ]
        )
        worker = self._spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "marketplace",
                "worker",
                "-B",
                "-s",
                str(self.var_dir / "beat-schedule"),
                "-l",
                "info",
                "--concurrency",
                "1",
                "--pool",
                "solo",
                "-n",
                f"instance-b-{self.port}@%h",
                "--without-gossip",
                "--without-mingle",
            ]
        )
        deadline = time.monotonic() + 60
        while True:
            for process in (web, worker):
                assert process.poll() is None, f"B exited early:\n{self.output()}"
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if " ready." in self.output():
                    return
            assert time.monotonic() < deadline, f"B did not start:\n{self.output()}"
            time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-20000:] if self.log.exists() else ""

    def stop(self) -> None:
        """Kill B's process groups, drop its database and its folder: always, whatever happened."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        with contextlib.suppress(psycopg2.Error), contextlib.closing(_admin_connect()) as conn, conn.cursor() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.var_dir, ignore_errors=True)

    def alive(self) -> bool:
        return any(process.poll() is None for process in self.processes)


# --- run inside B (manage.py shell -c "from tests.instance_b import seed; seed()") -----------------


def seed() -> None:
    """B's side: a product with two imported codes, an agent (A) at the gold level with an API
    key and a prepaid balance of 100.00. Prints the facts A needs, as JSON."""
    from decimal import Decimal

    from agents.services import api_keys
    from tests.api_helpers import level, make_agent, set_level_price, top_up
    from tests.factories import ProductFactory, add_stock

    gold = level("金牌", 4)
    product = ProductFactory(price=Decimal("30.00"), name="B 的点卡 30 元", slug="b-card-30")
    codes = add_stock(product, 2)
    set_level_price(gold, product, B_PRICE)
    agent = make_agent(level_obj=gold)
    top_up(agent.user, Decimal("100.00"))
    key, secret = api_keys.apikey_create(agent=agent, name="instance A")
    print(json.dumps({"product_id": product.pk, "codes": codes, "key_id": key.key_id, "secret": secret}))


def report(product_id: int) -> None:
    """B's stock of the product, the codes it sold (in plaintext) and its API orders, as JSON."""
    from catalog.models import CardCode
    from marketplace import crypto
    from orders.models import Order

    codes = CardCode.objects.filter(product_id=product_id)
    sold = [crypto.decrypt(c.secret_enc) for c in codes.filter(status=CardCode.Status.SOLD)]
    orders = [
        {"number": o.number, "agent_order_no": o.agent_order_no, "status": o.status, "total": str(o.total)}
        for o in Order.objects.filter(product_id=product_id).order_by("pk")
    ]
    available = codes.filter(status=CardCode.Status.AVAILABLE).count()
    print(json.dumps({"available": available, "sold": sorted(sold), "orders": orders}))
