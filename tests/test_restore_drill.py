"""The restore drill (docs/runbook.md, "Backups"): a backup is only as good as its restore.

A database with real purchases is dumped with ``pg_dump -Fc`` and restored with ``pg_restore``
into a fresh database, and the copy is checked the way the runbook says to check a restored
backup: no migration left to apply, ``ledger_check`` and ``keys_check`` pass with the keys kept
apart from the dump (and ``keys_check`` fails with another key: the dump alone reads nothing),
the ledger's triggers still refuse to change a journal line for the application's role, whose
grants came back with the dump, and the application connecting as that role sells again: new
rows take new ids (the sequences were restored with their positions). The copy and the role are
dropped at the end, pass or fail.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.errors
import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection

from orders.models import Order
from tests.builders import delivered_order
from tests.factories import UserFactory
from tests.test_deploy_check import _SCRUB, BASE_DIR

# Run in the restored copy by the application, connected as the app role: one more sale.
SELL = """
import json, uuid
from catalog.models import CardCode
from orders.models import Order
from orders.services.orders import order_place
from payments.services.payments import sandbox_pay

code = CardCode.objects.filter(status=CardCode.Status.AVAILABLE).order_by("pk").first()
buyer = Order.objects.order_by("pk").first().buyer
order = order_place(buyer=buyer, product_id=code.product_id, quantity=1, idempotency_key=uuid.uuid4().hex)
sandbox_pay(order_number=order.number)
order.refresh_from_db()
print(json.dumps({"pk": order.pk, "status": order.status}))
"""


@contextmanager
def server(dbname: str | None = None) -> Iterator:
    """A cursor on the test server as its superuser, outside Django (CREATE DATABASE), autocommit."""
    s = connection.settings_dict
    conn = psycopg2.connect(
        host=s["HOST"] or "127.0.0.1",
        port=s["PORT"] or 5432,
        user=s["USER"],
        password=s["PASSWORD"] or None,
        dbname=dbname or s["NAME"],
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def one(cursor, statement: str):
    cursor.execute(statement)
    return cursor.fetchone()[0]


def url(dbname: str, user: str | None = None) -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] and not user else ""
    return f"postgres://{user or s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{dbname}"


def libpq_env() -> dict[str, str]:
    s = connection.settings_dict
    env = {**os.environ, "PGHOST": s["HOST"] or "127.0.0.1", "PGPORT": str(s["PORT"] or 5432), "PGUSER": s["USER"]}
    if s["PASSWORD"]:
        env["PGPASSWORD"] = s["PASSWORD"]
    return env


def manage(database_url: str, tmp_path, *args, card_code_keys: str | None = None, code: str | None = None):
    """manage.py (or a script in Django) against the copy, as a deployment would run it: the keys
    passed in the environment, nothing read from this checkout's var/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(
        DJANGO_SETTINGS_MODULE="marketplace.settings",
        DATABASE_URL=database_url,
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        CARD_CODE_KEYS=card_code_keys or ",".join(settings.CARD_CODE_KEYS),
        STOCK_HASH_KEY=settings.STOCK_HASH_KEY,
        VAR_DIR=str(tmp_path / "var"),
    )
    command = (
        [sys.executable, "-c", f"import django; django.setup()\n{code}"]
        if code
        else [sys.executable, "manage.py", *args]
    )
    return subprocess.run(command, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_dump_restores_into_a_working_shop(tmp_path):
    buyer = UserFactory()
    sold = [delivered_order(buyer, quantity=2), delivered_order(buyer, price="12.50", quantity=1, spare=3)]
    last_pk = Order.objects.order_by("-pk").values_list("pk", flat=True).first()
    source = connection.settings_dict["NAME"]
    copy = f"{source}_restore_drill"
    role = f"{source}_drill_app"  # a kamarket_app: rows only (docker-compose.yml, postgres-init)
    dump = tmp_path / "backup.dump"

    with server() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        # Granted on the source the way the README grants an existing database, so the dump carries it.
        for statement in (
            f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
            f'GRANT CONNECT ON DATABASE "{source}" TO "{role}"',
            f'GRANT USAGE ON SCHEMA public TO "{role}"',
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"',
            f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
        ):
            admin.execute(statement)
    try:
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), source], env=libpq_env(), check=True, timeout=300)
        with server() as admin:
            admin.execute(f'CREATE DATABASE "{copy}"')
            admin.execute(f'GRANT CONNECT ON DATABASE "{copy}" TO "{role}"')
        restored = subprocess.run(
            ["pg_restore", "--exit-on-error", "-d", copy, str(dump)], env=libpq_env(), capture_output=True, text=True
        )
        assert restored.returncode == 0, restored.stderr

        # Nothing left to migrate: the copy is at the code's schema.
        result = manage(url(copy), tmp_path, "migrate", "--check")
        assert result.returncode == 0, result.stdout + result.stderr
        # The ledger balances, every balance row equals its lines.
        result = manage(url(copy), tmp_path, "ledger_check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Ledger OK" in result.stdout
        # Every secret (the sold codes, the spare stock) reads with the keys kept apart ...
        result = manage(url(copy), tmp_path, "keys_check")
        assert result.returncode == 0, result.stdout + result.stderr
        # ... and with any other key nothing does: the check can fail.
        result = manage(url(copy), tmp_path, "keys_check", card_code_keys=Fernet.generate_key().decode())
        assert result.returncode == 1 and "cannot be read" in result.stderr, result.stdout + result.stderr

        # The append-only journal, for the application's role (its grants restored with the dump).
        with server(copy) as admin:
            admin.execute(f'SET ROLE "{role}"')
            lines = one(admin, "SELECT count(*) FROM ledger_line")
            assert lines > 0
            for statement in ("UPDATE ledger_line SET amount = amount + 1", "DELETE FROM ledger_line"):
                with pytest.raises(psycopg2.errors.RestrictViolation, match="append-only"):
                    admin.execute(statement)
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                admin.execute("SET session_replication_role = replica")
            assert one(admin, "SELECT count(*) FROM ledger_line") == lines

        # The shop sells on the copy, connected as the app role: a new order, paid, new ids.
        result = manage(url(copy, user=role), tmp_path, code=SELL)
        assert result.returncode == 0, result.stdout + result.stderr
        new = json.loads(result.stdout.strip().splitlines()[-1])
        assert new["pk"] > last_pk and new["status"] in {Order.Status.PAID, Order.Status.DELIVERED}
        result = manage(url(copy), tmp_path, "ledger_check")
        assert result.returncode == 0, result.stdout + result.stderr
        # The source was only read.
        assert list(Order.objects.order_by("pk").values_list("pk", flat=True)) == sorted(o.pk for o in sold)
    finally:
        with server() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
        with server() as admin:  # the role's grants in the source, then the role
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_runbook_describes_the_drill():
    runbook = (BASE_DIR / "docs" / "runbook.md").read_text()
    assert "tests/test_restore_drill.py" in runbook
    for step in ("pg_restore", "migrate --check", "ledger_check", "keys_check"):
        assert step in runbook, step
