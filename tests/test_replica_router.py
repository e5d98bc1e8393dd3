"""Read replicas for the heavy readers (issue 17, marketplace/dbrouter.py): with a ``replica``
alias configured, the regulator report's sections and the trust figures read there, while the
report's lock, its state change and the figures' snapshot are written to the primary; without
one nothing changes. The replica here is a second connection to the test database (what
``TEST: {"MIRROR": "default"}`` does in settings), so the data is committed first
(``transaction=True``): a separate connection sees only committed rows, as a real replica does."""

import copy

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from marketplace.dbrouter import REPLICA, ReplicaRouter, replica_reads
from orders.models import Order
from reports import services as reports
from reports.models import Report
from tests.test_reports import MONTHLY, qualifications, sales, this_month  # noqa: F401 (fixture)
from trust.models import TrustFigure
from trust.services import trust_figures_compute

WRITES = ("INSERT", "UPDATE", "DELETE")


def attach_replica() -> None:
    """Add the ``replica`` alias: another connection to the test database, opened now (Django's
    test case refuses to open a connection to an alias it was not told of at its set-up, which
    this one did not exist at, but lets an open one be used)."""
    connections.databases[REPLICA] = copy.deepcopy(connections.databases["default"])
    connections[REPLICA].connect()


@pytest.fixture
def replica():
    """A ``replica`` alias for the duration of a test."""
    attach_replica()
    try:
        yield connections[REPLICA]
    finally:
        connections[REPLICA].close()
        del connections[REPLICA]
        del connections.databases[REPLICA]


def statements(capture: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in capture.captured_queries]


@pytest.mark.django_db(transaction=True)
def test_reads_inside_the_block_go_to_the_replica_and_writes_stay_on_the_primary(replica, buyer):
    from tests.builders import delivered_order

    order = delivered_order(buyer, price="30.00", quantity=1)
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        assert Order.objects.get(pk=order.pk).number == order.number  # outside: the primary
        with replica_reads() as alias:
            assert alias == REPLICA
            seen = Order.objects.get(pk=order.pk)
            assert seen._state.db == REPLICA
            Order.objects.filter(pk=order.pk).update(expires_at=order.expires_at)
    assert len(statements(on_replica)) == 1 and statements(on_replica)[0].startswith("SELECT")
    primary = statements(on_primary)
    assert primary[0].startswith("SELECT") and primary[-1].startswith("UPDATE")


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_the_monthly_report_reads_its_sections_on_the_replica_with_the_same_totals(replica, sales):  # noqa: F811
    start, end = this_month()
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        report = reports.report_generate(kind=MONTHLY, start=start, end=end)
    assert report.status == Report.Status.READY
    read_there = statements(on_replica)
    assert len(read_there) >= 10, read_there  # every section's reads
    assert not [s for s in read_there if s.lstrip().upper().startswith(WRITES) or "FOR UPDATE" in s.upper()]
    written = statements(on_primary)
    assert any("FOR UPDATE" in s for s in written)  # the report row's lock
    assert any("UPDATE" in s and '"reports_report"' in s for s in written), written  # ready, with its files
    assert not [s for s in written if "orders_order" in s and "reports_report" not in s]  # no section read here

    # The same report read from the primary alone has the same totals.
    with_replica = report.summary
    Report.objects.all().delete()
    connections[REPLICA].close()
    del connections.databases[REPLICA]
    try:
        again = reports.report_generate(kind=MONTHLY, start=start, end=end)
    finally:
        attach_replica()
    assert again.summary == with_replica and with_replica["orders"]["orders"] == "5"


@pytest.mark.django_db(transaction=True)
def test_the_trust_figures_are_read_on_the_replica_and_stored_on_the_primary(replica, buyer):
    from tests.builders import delivered_order

    delivered_order(buyer, price="30.00", quantity=2)
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        stored = trust_figures_compute()
    assert stored == TrustFigure.objects.count() > 0
    assert statements(on_replica) and not [s for s in statements(on_replica) if s.lstrip().startswith(WRITES)]
    assert any(s.startswith("INSERT") and "trust_trustfigure" in s for s in statements(on_primary))
    # Every read of the records went to the replica (the delete of the old snapshot reads it first).
    assert not [s for s in statements(on_primary) if s.startswith("SELECT") and "trust_trustfigure" not in s]


def test_without_a_replica_the_block_changes_nothing():
    router = ReplicaRouter()
    assert REPLICA not in connections.databases
    with replica_reads() as alias:
        assert alias == "default" and router.db_for_read(Order) is None
    assert router.db_for_write(Order) is None
    assert router.allow_migrate(REPLICA, "orders") is False and router.allow_migrate("default", "orders") is None


def test_settings_add_the_replica_as_a_test_mirror_when_configured(monkeypatch):
    """The alias exists only with REPLICA_DATABASE_URL, mirrors the primary in tests and is never
    migrated (a replica follows the primary's WAL)."""
    import subprocess
    import sys

    code = (
        "import django, os; django.setup(); from django.conf import settings as s; "
        "r = s.DATABASES['replica']; print(r['HOST'], r['NAME'], r['TEST']['MIRROR'], s.DATABASE_ROUTERS)"
    )
    env = {
        **__import__("os").environ,
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/km_primary",
        "REPLICA_DATABASE_URL": "postgres://reader@10.0.0.7:5432/km_primary",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["10.0.0.7", "km_primary", "default", "['marketplace.dbrouter.ReplicaRouter']"]
