"""Indexes no query uses, dropped (ledger 0006, payments 0007, orders 0017 and 0019; issue 17, h-idx):
the varchar_pattern_ops twins of ledger_entry (kind, reference, idempotency_key), of
payments_notification.order_number and of orders_order (status, guest_email, number), and ledger_line's
own account_id index. Each one is gone, the reverse builds it again as Django did, and every
equality lookup the code makes on those columns is still served by an index (with sequential
scans disabled, the plan names the index that remains)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ledger.models import Entry, Line
from orders.models import CodeReveal, Order
from payments.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

TABLES = ("ledger_entry", "ledger_line", "payments_notification", "orders_order", "orders_codereveal")
DROPPED = {
    "ledger_entry_kind_36a98d3d_like",
    "ledger_entry_reference_c09d11b2_like",
    "ledger_entry_idempotency_key_d7fe082d_like",
    "ledger_line_account_id_a3112da4",
    "payments_notification_order_number_3598ff27_like",
    "orders_order_status_445594e5_like",
    "orders_order_guest_email_b233ca4c_like",
    "orders_order_number_abc9e0f2_like",
}


def _indexes() -> dict[str, str]:
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)", [list(TABLES)])
        return dict(cur.fetchall())


def test_the_unused_indexes_are_gone_and_the_rest_stay():
    indexes = _indexes()
    assert not DROPPED & set(indexes), sorted(DROPPED & set(indexes))
    # None of these tables' pattern-ops twins is left.
    assert sorted(n for n, d in indexes.items() if "varchar_pattern_ops" in d) == []
    kept = {
        "ledger_entry_kind_36a98d3d": "(kind)",
        "ledger_entry_reference_c09d11b2": "(reference)",
        "ledger_entry_idempotency_key_key": "(idempotency_key)",
        "ledger_line_account_idx": "(account_id, entry_id)",
        "ledger_line_entry_id_a699af21": "(entry_id)",
        "payments_notification_order_number_3598ff27": "(order_number)",
        "orders_order_status_445594e5": "(status)",
        "orders_order_guest_email_b233ca4c": "(guest_email)",
        "orders_order_number_key": "(number)",
        # A user delete (the admin) runs the PROTECT check on it, the account erasure reads by it.
        "orders_codereveal_user_id_50e9d127": "(user_id)",
    }
    for name, columns in kept.items():
        assert indexes[name].endswith(f"USING btree {columns}"), (name, indexes.get(name))
    assert "UNIQUE" in indexes["ledger_entry_idempotency_key_key"]
    # The foreign key of the line's account is still there, only its own index went.
    with connection.cursor() as cur:
        cur.execute(
            "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid"
            " AND a.attnum = c.conkey[1] WHERE c.conrelid = 'ledger_line'::regclass AND c.contype = 'f'"
        )
        assert {row[0] for row in cur.fetchall()} == {"account_id", "entry_id"}


def test_the_lookups_are_planned_on_the_remaining_indexes():
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")  # the test's transaction: the tables are nearly empty
    lookups = [
        (Entry.objects.filter(idempotency_key="order:1:pay"), "ledger_entry_idempotency_key_key"),
        (Entry.objects.filter(reference="KM1"), "ledger_entry_reference_c09d11b2"),
        (Entry.objects.filter(kind="purchase"), "ledger_entry_kind_36a98d3d"),
        (Line.objects.filter(account_id=1), "ledger_line_account_idx"),
        (Notification.objects.filter(order_number="KM1"), "payments_notification_order_number_3598ff27"),
        (Order.objects.filter(status=Order.Status.REFUNDED), "orders_order_status_445594e5"),
        (Order.objects.filter(guest_email="g@example.test"), "orders_order_guest_email_b233ca4c"),
        (Order.objects.filter(number="2612071200ABCDEFGHJKMNPQRSTU"), "orders_order_number_key"),
        (Order.objects.filter(number__in=["2612071200ABCDEFGHJKMNPQRSTU", "X"]), "orders_order_number_key"),
        (CodeReveal.objects.filter(user_id=1).exclude(ip__isnull=True), "orders_codereveal_user_id_50e9d127"),
    ]
    for queryset, index in lookups:
        plan = queryset.explain()
        assert index in plan, (str(queryset.query), plan)


@pytest.mark.django_db(transaction=True)
def test_the_migrations_reverse_to_django_own_indexes():
    executor = MigrationExecutor(connection)
    before = [("ledger", "0005_lines_unsealed_per_statement"), ("payments", "0006_status_history")]
    before.append(("orders", "0016_order_redundant_indexes_dropped"))
    latest = [key for key in executor.loader.graph.leaf_nodes() if key[0] in {"ledger", "payments", "orders"}]
    try:
        executor.migrate(before)
        indexes = _indexes()
        assert set(indexes) >= DROPPED, sorted(DROPPED - set(indexes))
        assert indexes["orders_order_status_445594e5_like"].endswith("USING btree (status varchar_pattern_ops)")
        assert indexes["orders_order_number_abc9e0f2_like"].endswith("USING btree (number varchar_pattern_ops)")
        assert indexes["ledger_line_account_id_a3112da4"].endswith("USING btree (account_id)")
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    assert not DROPPED & set(_indexes())
