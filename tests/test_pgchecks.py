"""marketplace.pgchecks.ReplaceCheck (orders 0018): on PostgreSQL the check is swapped through a
NOT VALID staging check, and the migration reverses and applies again with the check validated
under its own name each time."""

import pytest
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor

from marketplace.pgchecks import ReplaceCheck

NAME = "order_total_is_subtotal_less_discount"


def _checks() -> list[tuple[str, bool, str]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT conname, convalidated, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'orders_order'::regclass AND conname LIKE %s",
            [NAME + "%"],
        )
        return cur.fetchall()


def test_old_and_new_must_share_the_name():
    old = models.CheckConstraint(condition=models.Q(total__gte=0), name="a")
    with pytest.raises(ValueError):
        ReplaceCheck("order", old, models.CheckConstraint(condition=models.Q(total__gte=1), name="b"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_migration_reverses_and_applies_again():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()  # every app: also any migration that may follow 0018
    assert _checks() == [(NAME, True, "CHECK ((total = round((subtotal - discount), 2)))")]
    try:
        executor.migrate([("orders", "0017_order_like_twins_dropped")])
        assert _checks() == [(NAME, True, "CHECK ((total = (subtotal - discount)))")]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    assert _checks() == [(NAME, True, "CHECK ((total = round((subtotal - discount), 2)))")]
