"""Django's ``migrate``, saying what to do when a migration gave up waiting for a lock.

With ``DB_LOCK_TIMEOUT`` set (docker-compose.yml's migrate service: 5s), a migration whose ALTER
TABLE waits behind a long transaction (a report's read, an open shell) is cancelled by PostgreSQL
after that long instead of waiting on, while every other statement on the table queues behind
it. PostgreSQL says only "canceling statement due to lock timeout"; this says what happened to
the upgrade and what to do (README, "Upgrading without downtime").
"""

import re

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import OperationalError

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout (or NOWAIT) refusal
WHAT_TO_DO = (
    "Migrations applied before it stay applied, an atomic one is rolled back whole; the release running now "
    "keeps serving. Find the long transaction (SELECT pid, now() - xact_start, state, query FROM "
    "pg_stat_activity WHERE xact_start IS NOT NULL ORDER BY xact_start), let it end or end it, "
    "then run the migration again."
)


class Command(DjangoMigrate):
    def handle(self, *args, **options):
        try:
            return super().handle(*args, **options)
        except OperationalError as exc:
            if getattr(exc.__cause__, "pgcode", None) != LOCK_NOT_AVAILABLE:
                raise
            startup = settings.DATABASES[options["database"]].get("OPTIONS", {}).get("options", "")
            timeout = re.search(r"lock_timeout=(\S+)", startup)
            raise CommandError(
                f"A migration waited {timeout.group(1) if timeout else 'its lock timeout'} for a lock that "
                f"another transaction holds, and was stopped ({str(exc).strip().splitlines()[0]}). {WHAT_TO_DO}"
            ) from exc
