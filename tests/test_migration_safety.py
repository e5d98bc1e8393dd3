"""Migrations a release adds must let the release before it keep working (README, "Upgrading
without downtime").

The migration runs while the previous release's web and worker processes still serve: it must only
expand the schema. django-migration-linter reads the SQL of each migration (``sqlmigrate``, for
PostgreSQL) and flags what the running release cannot survive (a column or table it reads dropped
or renamed, a NOT NULL column without a database default its INSERTs would fail on, a type
change) and what holds a lock on a busy table for long (an index built without CONCURRENTLY, a
unique or CHECK constraint validated under the table's exclusive lock).

Only migrations added since the last release are checked: ``ops/released_migrations.txt`` lists the
released ones (several of those did such things, in releases that were deployed with a stop). At a
release, after it is deployed, list them again:

    git ls-files -- '*/migrations/0*.py' ':!:tests/*' > ops/released_migrations.txt

A new migration the check refuses is rewritten expand-only (README), or, when it is safe for a
reason the SQL does not show (the table is empty in production, the column was never read by the
running release), named in ``ALLOWED`` with the codes it may have and why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re

import pytest
from django.conf import settings
from django.db.migrations import Migration
from django.test import override_settings
from django_migration_linter import MigrationLinter
from django_migration_linter.sql_analyser.base import BaseAnalyser, Check, CheckMode, CheckType
from django_migration_linter.sql_analyser.postgresql import PostgresqlAnalyser

from tests.test_deploy_check import BASE_DIR

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
# sqlmigrate of a migration with atomic = False (AddIndexConcurrently) refuses to run inside the
# transaction a django_db test is wrapped in: the tests that may meet one run outside it.
OUTSIDE_A_TRANSACTION = pytest.mark.django_db(transaction=True)

RELEASED = BASE_DIR / "ops" / "released_migrations.txt"

# Migrations since the release that may have some of the codes below, each with why it is safe.
# "orders.0021_example": {"ADD_UNIQUE": "the table is new in this release: no row breaks it"}.
ALLOWED: dict[str, dict[str, str]] = {}

# What each of the linter's checks means for a rolling upgrade, and what to do instead.
MESSAGES = {
    "NOT_NULL": (
        "a NOT NULL column without a database default: the running release's INSERTs do not name it "
        "and fail (give it db_default=, or null=True and fill it in batches)"
    ),
    "DROP_COLUMN": "drops a column the running release may still read (stop reading it first; drop it a release later)",
    "DROP_TABLE": "drops a table the running release may still read (stop using it first; drop it a release later)",
    "RENAME_COLUMN": (
        "renames a column the running release reads by its old name (add the new column, write both, "
        "backfill, switch the reads, drop the old one a release later)"
    ),
    "RENAME_TABLE": "renames a table the running release reads by its old name (a new table and a copy instead)",
    "ALTER_COLUMN": (
        "changes a column's type: PostgreSQL rewrites or scans the table under its ACCESS EXCLUSIVE lock, "
        "and the running release may write what the new type refuses (if neither holds, e.g. a longer "
        "varchar, name it in ALLOWED with why)"
    ),
    "ADD_UNIQUE": (
        "adds a unique constraint to an existing table: its index is built while writes wait, and the "
        "running release may write rows it refuses (build the unique index CONCURRENTLY first)"
    ),
    "CREATE_INDEX": (
        "builds an index on an existing table without CONCURRENTLY: every write to the table waits for "
        "the whole build (AddIndexConcurrently, in a migration with atomic = False; a ForeignKey added "
        "with db_index=False and its index built that way)"
    ),
    "CREATE_INDEX_EXCLUSIVE": (
        "builds an index in the transaction of an ALTER TABLE: the ALTER's exclusive lock, which stops "
        "reads too, is held for the whole build (the column in one migration, the index CONCURRENTLY in another)"
    ),
    "DROP_INDEX": (
        "drops an index without CONCURRENTLY: an ACCESS EXCLUSIVE lock on the table, queued behind every "
        "running query (RemoveIndexConcurrently, atomic = False)"
    ),
    "REINDEX": "REINDEX stops writes to the table for the whole rebuild (REINDEX CONCURRENTLY, by hand)",
    "ADD_CHECK": (
        "adds a CHECK constraint to an existing table: every row is checked under the table's ACCESS "
        "EXCLUSIVE lock (add it NOT VALID, then VALIDATE CONSTRAINT in a transaction of its own, as "
        "marketplace.pgchecks.ReplaceCheck does)"
    ),
}
# The linter's warnings that are errors here: on the orders, codes or ledger tables they stop the sale.
LOCKING = {"CREATE_INDEX", "CREATE_INDEX_EXCLUSIVE", "DROP_INDEX", "REINDEX"}


def adds_check_validated_under_lock(sql_statements: list[str], **kwargs) -> bool:
    """ALTER TABLE t ADD CONSTRAINT c CHECK (...) without NOT VALID, on a table this migration did
    not create (a new table is empty: nothing to scan, nobody waiting)."""
    created = {m.group(1) for sql in sql_statements if (m := re.match(r"CREATE TABLE (\S+)", sql))}
    for sql in sql_statements:
        match = re.match(r"ALTER TABLE (\S+) ADD CONSTRAINT \S+ CHECK", sql)
        if match and "NOT VALID" not in sql and match.group(1) not in created:
            return True
    return False


class Analyser(PostgresqlAnalyser):
    """PostgreSQL's checks with this project's messages, the locking ones as errors, and one more."""

    migration_checks: list[Check] = [
        *(
            dataclasses.replace(
                check,
                message=MESSAGES.get(check.code, check.message),
                type=CheckType.ERROR if check.code in LOCKING else check.type,
            )
            for check in (*BaseAnalyser.base_migration_checks, *PostgresqlAnalyser.migration_checks)
        ),
        Check(
            code="ADD_CHECK",
            fn=adds_check_validated_under_lock,
            message=MESSAGES["ADD_CHECK"],
            mode=CheckMode.TRANSACTION,
            type=CheckType.ERROR,
        ),
    ]


def lint(migrations: list[Migration], linter: MigrationLinter) -> tuple[list[str], str]:
    """The migrations the linter refuses ("app.name") and its report."""
    linter.sql_analyser_class = Analyser
    refused, out = [], io.StringIO()
    with contextlib.redirect_stdout(out):
        for migration in migrations:
            key = f"{migration.app_label}.{migration.name}"
            linter.exclude_migration_tests = list(ALLOWED.get(key, {}))
            before = linter.nb_erroneous
            linter.lint_migration(migration)
            if linter.nb_erroneous > before:
                refused.append(key)
    return refused, out.getvalue()


def new_linter() -> MigrationLinter:
    # No cache (it would be kept under the user's home); warnings (RunPython conventions) are printed.
    return MigrationLinter(no_cache=True, quiet=["ok"])


def project_migrations(linter: MigrationLinter) -> dict[str, Migration]:
    """This repository's migrations on disk (not Django's or allauth's), by their file's path."""
    found = {}
    for migration in linter.migration_loader.disk_migrations.values():
        path = migration.__module__.replace(".", "/") + ".py"
        if (BASE_DIR / path).is_file():
            found[path] = migration
    return found


def released() -> list[str]:
    return [line.strip() for line in RELEASED.read_text().splitlines() if line.strip()]


@OUTSIDE_A_TRANSACTION
def test_migrations_since_the_last_release_keep_the_running_release_working():
    linter = new_linter()
    on_disk = project_migrations(linter)
    new = [migration for path, migration in sorted(on_disk.items()) if path not in set(released())]
    refused, report = lint(new, linter)
    assert not refused, (
        f"Not backward compatible with the release that runs while they are applied:\n{report}\n"
        'Rewrite them expand-only (README, "Upgrading without downtime"), or name them in ALLOWED with why.'
    )


def test_the_released_list_names_migrations_that_exist():
    """A path mistyped or left behind by a squash would make the check skip nothing it should, but
    would hide that the list no longer matches the tree."""
    linter = new_linter()
    paths = released()
    assert paths == sorted(set(paths)), "ops/released_migrations.txt: sorted, each migration once"
    assert set(paths) <= set(project_migrations(linter)), set(paths) - set(project_migrations(linter))
    assert all(key.count(".") == 1 for key in ALLOWED), "ALLOWED keys read app_label.migration_name"


@pytest.fixture
def fixture_app():
    """tests/migration_fixtures installed, so its migrations load as the project's would."""
    with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "tests.migration_fixtures"]):
        yield


def fixture_migrations(linter: MigrationLinter) -> dict[str, Migration]:
    return {
        name: migration
        for (app, name), migration in linter.migration_loader.disk_migrations.items()
        if app == "migration_fixtures"
    }


# What tests/migration_fixtures/migrations/0002_unsafe.py does wrong, one code per operation (the
# index is also built after an ALTER TABLE in the same transaction).
UNSAFE_CODES = ("NOT_NULL", "DROP_COLUMN", "RENAME_COLUMN", "CREATE_INDEX", "CREATE_INDEX_EXCLUSIVE", "ADD_CHECK")


def test_a_migration_the_running_release_cannot_survive_is_refused_with_what_to_do(fixture_app):
    linter = new_linter()
    migrations = fixture_migrations(linter)
    refused, report = lint([migrations["0002_unsafe"]], linter)
    assert refused == ["migration_fixtures.0002_unsafe"]
    assert "(migration_fixtures, 0002_unsafe)... ERR" in report
    for code in UNSAFE_CODES:
        assert MESSAGES[code] in report, code
    assert "(table: migration_fixtures_sale, column: buyer_email)" in report


@OUTSIDE_A_TRANSACTION
def test_the_same_change_done_expand_only_passes(fixture_app):
    """The control: a nullable column, a column with a database default and an index built
    CONCURRENTLY are what the check asks for, and pass; so does a table created from nothing."""
    linter = new_linter()
    migrations = fixture_migrations(linter)
    refused, report = lint([migrations["0001_initial"], migrations["0003_expand_only"]], linter)
    assert refused == [], report


def test_a_refusal_named_in_allowed_passes_and_only_for_its_codes(fixture_app, monkeypatch):
    linter = new_linter()
    unsafe = fixture_migrations(linter)["0002_unsafe"]
    reasons = {code: "test" for code in UNSAFE_CODES}
    monkeypatch.setitem(ALLOWED, "migration_fixtures.0002_unsafe", reasons)
    assert lint([unsafe], linter)[0] == []
    del reasons["ADD_CHECK"]
    monkeypatch.setitem(ALLOWED, "migration_fixtures.0002_unsafe", reasons)
    refused, report = lint([unsafe], linter)
    assert refused == ["migration_fixtures.0002_unsafe"] and MESSAGES["ADD_CHECK"] in report
