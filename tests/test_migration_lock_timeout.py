"""A migration queued behind a long transaction gives up after DB_LOCK_TIMEOUT (README, "Upgrading
without downtime").

An ALTER TABLE needs the table's ACCESS EXCLUSIVE lock. Behind a transaction that has read the
table (a long report, an open shell) it waits, and every statement on the table that comes after
it, the shop's reads included, waits behind it: the shop stops for as long as that transaction
lasts. docker-compose.yml's migrate service sets DB_LOCK_TIMEOUT=5s: the migration is stopped
instead, the shop goes on, and ``migrate`` says what happened and what to do.

Real PostgreSQL: ``manage.py migrate`` runs in a subprocess against the test database (with
tests/migration_fixtures installed) while this test's connection holds the lock a reader takes.
"""

import os
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from django.db import connection, transaction

from tests.test_deploy_check import BASE_DIR

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def migrate_command(*args: str, **env: str) -> dict:
    """``manage.py migrate migration_fixtures ...`` against the test database, as subprocess kwargs."""
    db = connection.settings_dict
    url = f"postgres://{quote(db['USER'])}:{quote(db['PASSWORD'] or '')}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DJANGO_"))}
    environment.update(DJANGO_SETTINGS_MODULE="tests.migration_fixtures.settings", DATABASE_URL=url, **env)
    return {
        "args": [sys.executable, "manage.py", "migrate", "migration_fixtures", *args, "--noinput"],
        "cwd": BASE_DIR,
        "env": environment,
        "text": True,
    }


def migrate(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(**migrate_command(*args, **env), capture_output=True, timeout=120)


@pytest.fixture
def fixture_table():
    """migration_fixtures_sale exists (its 0001 applied), and is gone again afterwards."""
    result = migrate("0001_initial")
    assert result.returncode == 0, result.stderr
    yield "migration_fixtures_sale"
    result = migrate("zero")
    assert result.returncode == 0, result.stderr


def held_by_a_reader(table: str):
    """This connection in a transaction that has read the table: it holds ACCESS SHARE until the end."""
    block = transaction.atomic()
    block.__enter__()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
    return block


def test_a_migration_behind_a_long_transaction_stops_after_the_lock_timeout(fixture_table):
    block = held_by_a_reader(fixture_table)
    try:
        started = time.monotonic()
        result = migrate("0002_unsafe", DB_LOCK_TIMEOUT="1s")
        elapsed = time.monotonic() - started
    finally:
        block.__exit__(None, None, None)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Applying migration_fixtures.0002_unsafe..." in result.stdout
    assert "CommandError: A migration waited 1s for a lock that another transaction holds" in result.stderr
    assert "canceling statement due to lock timeout" in result.stderr
    assert "pg_stat_activity" in result.stderr and "run the migration again" in result.stderr
    assert elapsed < 30, elapsed  # the subprocess's start (Django, checks) and 1 s, not "forever"
    # The atomic migration was rolled back whole: not recorded, no column added.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM django_migrations WHERE app = 'migration_fixtures' AND name = '0002_unsafe'"
        )
        columns = [c.name for c in connection.introspection.get_table_description(cursor, fixture_table)]
    assert "channel" not in columns and "buyer_email" in columns


def waiting_for_the_table(table: str) -> int | None:
    """The backend that waits for the table's ACCESS EXCLUSIVE lock (an ALTER TABLE), if one does."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = %s AND l.mode = 'AccessExclusiveLock' AND NOT l.granted",
            [table],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def test_without_the_lock_timeout_the_waiting_migration_stops_every_reader_of_the_table(fixture_table):
    """The control, and why the timeout matters: with no DB_LOCK_TIMEOUT the migration waits as long
    as the long transaction lasts, and a plain SELECT of the table (a buyer's page) that comes
    after it waits behind it, though the long transaction alone would not stop it."""
    import psycopg2
    from psycopg2.errors import LockNotAvailable

    block = held_by_a_reader(fixture_table)
    process = subprocess.Popen(**migrate_command("0002_unsafe"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiting = None
    try:
        deadline = time.monotonic() + 60
        while waiting is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            waiting = waiting_for_the_table(fixture_table)
        assert waiting, "the migration never queued for the table's lock"
        reader = psycopg2.connect(**connection.get_connection_params())
        try:
            with reader.cursor() as cursor:
                cursor.execute("SET lock_timeout = '2s'")
                with pytest.raises(LockNotAvailable):
                    cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(fixture_table)}")
        finally:
            reader.close()
        assert process.poll() is None  # still waiting
    finally:
        if waiting:  # its server side first: it would go on waiting without its client
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [waiting])
        process.kill()
        process.communicate()
        block.__exit__(None, None, None)
