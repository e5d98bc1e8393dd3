"""Supplier accounts (issue 16): prepayments booked against the supplier's payable (idempotent,
permission-checked, audited), our book figure beside the supplier's balance in admin, and the
daily reconciliation of supplier orders against the fake supplier, each mismatch kind, a clean
day, a rerun, an unreachable supplier, the command and the admin's resolve action."""

from datetime import datetime, time, timedelta
from decimal import Decimal
from time import monotonic

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from compliance.models import AuditEvent
from ledger import services as ledger
from ledger.models import Entry
from ledger.selectors import balance_of
from marketplace.errors import Conflict, Forbidden, ServiceError
from orders.models import Order, UpstreamOrder
from orders.services import supply_reconciliation as recon
from supply import services
from supply.adapters.base import SupplyError
from supply.models import SupplyMismatch, SupplyReconciliation
from tests.builders import place
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.fake_supplier import FakeOrder, FakeSupplier, running
from tests.test_supply_adapters import connect

pytestmark = pytest.mark.usefixtures("english")

D = Decimal
Kind = SupplyMismatch.Kind
S = UpstreamOrder.State


# --- prepayments and the book figure -------------------------------------------------------------


def test_a_prepayment_debits_the_supplier_payable_and_credits_the_bank_once(staff):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
    payable = services.supplier_payable(connection.supplier)

    entry = services.supplier_prepayment_record(
        connection=connection, amount="500.00", reference="BANK-20261204-01", memo="top-up", actor=staff
    )
    again = services.supplier_prepayment_record(
        connection=connection, amount=D("500"), reference=" BANK-20261204-01 ", actor=staff
    )

    assert again.pk == entry.pk and Entry.objects.filter(kind=services.PREPAYMENT_KIND).count() == 1
    assert balance_of(payable) == D("-500.00")  # prepaid: the supplier holds 500 of ours
    assert balance_of(ledger.BANK) == D("-500.00")
    assert services.supplier_book_balances([connection.supplier]) == {connection.supplier_id: D("-500.00")}
    audit = AuditEvent.objects.get(action="supply.prepayment")
    assert audit.actor == staff and "BANK-20261204-01" in audit.detail and audit.outcome == AuditEvent.Outcome.ALLOWED
    with pytest.raises(Conflict):  # the same reference with another amount is a mistake, not a new payment
        services.supplier_prepayment_record(
            connection=connection, amount="50", reference="BANK-20261204-01", actor=staff
        )
    assert balance_of(payable) == D("-500.00")


@pytest.mark.parametrize("amount", ["0", "-5", "1.005", "abc", "NaN", "99999999999"])
def test_a_prepayment_needs_a_positive_amount_in_fen(staff, amount):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
    with pytest.raises(ServiceError) as caught:
        services.supplier_prepayment_record(connection=connection, amount=amount, reference="R1", actor=staff)
    assert caught.value.code == "supply_amount"
    assert not Entry.objects.exists()


def test_a_prepayment_needs_a_reference_and_the_permissions(db):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="change_supplierconnection"))
    with pytest.raises(Forbidden):
        services.supplier_prepayment_record(connection=connection, amount="10", reference="R1", actor=clerk)
    assert AuditEvent.objects.get(action="supply.prepayment").outcome == AuditEvent.Outcome.DENIED
    clerk.user_permissions.add(Permission.objects.get(codename="add_entry"))
    clerk = type(clerk).objects.get(pk=clerk.pk)  # permissions are cached on the instance
    with pytest.raises(ServiceError) as caught:
        services.supplier_prepayment_record(connection=connection, amount="10", reference="  ", actor=clerk)
    assert caught.value.code == "supply_reference"
    services.supplier_prepayment_record(connection=connection, amount="10", reference="R1", actor=clerk)
    assert balance_of(services.supplier_payable(connection.supplier)) == D("-10.00")


def test_admin_lists_balance_book_figure_difference_and_records_a_prepayment(admin_client):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        changelist = reverse("admin:supply_supplierconnection_changelist")
        response = admin_client.post(
            changelist, {"action": "test_connection", "_selected_action": [connection.pk]}, follow=True
        )
        assert "connected, balance 1000.00 CNY" in response.content.decode()
    form = admin_client.post(changelist, {"action": "record_prepayment", "_selected_action": [connection.pk]})
    assert form.status_code == 200 and "Bank transfer reference" in form.content.decode()
    response = admin_client.post(
        changelist,
        {
            "action": "record_prepayment",
            "_selected_action": [connection.pk],
            "apply": "1",
            "amount": "800.00",
            "reference": "TX-1",
            "memo": "",
        },
        follow=True,
    )
    assert "prepayment of 800.00 recorded" in response.content.decode()
    assert balance_of(services.supplier_payable(connection.supplier)) == D("-800.00")
    page = admin_client.get(changelist).content.decode()
    # The supplier reports 1000.00, our books say 800.00 prepaid: 200.00 to explain.
    assert "1000.00" in page and "prepaid 800.00" in page and "200.00" in page
    assert "Supplier orders today" in page and "Failed today" in page


def test_admin_prepayment_is_refused_without_the_ledger_permission(client, db):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(codename__in=["change_supplierconnection", "view_supplierconnection"])
    )
    client.force_login(clerk)
    changelist = reverse("admin:supply_supplierconnection_changelist")
    page = client.get(changelist).content.decode()
    assert "record_prepayment" not in page and "test_connection" in page
    client.post(
        changelist,
        {
            "action": "record_prepayment",
            "_selected_action": [connection.pk],
            "apply": "1",
            "amount": "1",
            "reference": "X",
        },
    )
    assert not Entry.objects.exists()


def test_beat_refreshes_every_enabled_connections_balance_and_records_an_error(db):
    with running(FakeSupplier()) as fake, running(FakeSupplier()) as down:
        good = connect(fake, name="good")
        bad = connect(down, name="bad")
        down.fail_next = 5
        from supply.tasks import connection_balances_refresh

        outcome = connection_balances_refresh()
    good.refresh_from_db()
    bad.refresh_from_db()
    assert outcome[good.pk] == "1000.00" and good.balance == D("1000.00") and good.balance_at is not None
    assert outcome[bad.pk].startswith("error") and "HTTP 500" in bad.last_error and bad.balance is None


def test_beat_schedule_has_the_balance_refresh_and_the_reconciliation():
    from marketplace.celery import app

    tasks = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert "supply.tasks.connection_balances_refresh" in tasks
    schedule = tasks["orders.tasks.supply_reconcile_yesterday"]
    assert schedule.hour == {3} and schedule.minute == {30}
    # Calls out to suppliers stay off the fulfilment queue; the day's run is a long job.
    route = app.amqp.router.route
    assert route({}, "supply.tasks.connection_balances_refresh")["queue"].name == "callbacks"
    assert route({}, "orders.tasks.supply_reconcile")["queue"].name == "reports"


# --- the daily reconciliation ---------------------------------------------------------------


def day_time(day, hour=12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=recon.BEIJING)


def upstream(connection, order: Order, *, state: str, cost: str | None = "95.50", at: datetime) -> UpstreamOrder:
    row = UpstreamOrder.objects.create(
        order=order,
        connection=connection,
        supplier_ref="P100",
        quantity=order.quantity,
        state=state,
        cost=D(cost) if cost is not None else None,
    )
    UpstreamOrder.objects.filter(pk=row.pk).update(created_at=at)
    return row


def seed(fake: FakeSupplier, order: Order, *, status: str = "success", cost: str = "95.50") -> None:
    fake.orders[order.number] = FakeOrder(
        order_no=order.number, product_id="P100", quantity=order.quantity, cost=D(cost), status=status
    )


def pending(buyer) -> Order:
    product = ProductFactory()
    add_stock(product, 1)
    return place(buyer, product)


def delivered(buyer) -> Order:
    """An order in the delivered state (its delivery is not what this reconciliation reads)."""
    order = pending(buyer)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.DELIVERED)
    order.status = Order.Status.DELIVERED
    return order


def test_a_clean_day_records_no_mismatch_and_its_totals(db):
    buyer = UserFactory()
    day = recon.yesterday()
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        for _ in range(2):
            order = delivered(buyer)
            upstream(connection, order, state=S.DONE, at=day_time(day))
            seed(fake, order)
        failed = pending(buyer)
        upstream(connection, failed, state=S.FAILED, cost=None, at=day_time(day, 1))
        seed(fake, failed, status="failed", cost="0")
        never_sent = pending(buyer)
        upstream(connection, never_sent, state=S.NEW, cost=None, at=day_time(day, 23))
        other_day = delivered(buyer)  # the day before: not this run's
        upstream(connection, other_day, state=S.DONE, at=day_time(day - timedelta(days=1)))

        run = recon.supply_reconcile(connection_id=connection.pk, day=day)

    assert run.orders_checked == 4 and run.mismatches == 0 and not run.items.exists() and run.error == ""
    assert run.our_cost == D("191.00") and run.supplier_cost == D("191.00")
    assert run.finished_at is not None


def test_each_kind_of_mismatch_is_recorded(db):
    buyer = UserFactory()
    day = recon.yesterday()
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        missing = pending(buyer)  # we think it placed; the supplier never heard of it
        upstream(connection, missing, state=S.PENDING, at=day_time(day))
        state = delivered(buyer)  # done here, still processing there
        upstream(connection, state, state=S.DONE, at=day_time(day))
        seed(fake, state, status="processing")
        cost = delivered(buyer)  # charged 96.00, booked 95.50
        upstream(connection, cost, state=S.DONE, at=day_time(day))
        seed(fake, cost, cost="96.00")
        undelivered = pending(buyer)  # done there, our buyer has nothing
        upstream(connection, undelivered, state=S.PENDING, at=day_time(day))
        seed(fake, undelivered)
        failed_here = pending(buyer)  # we failed it (and refunded), the supplier delivered and charged
        upstream(connection, failed_here, state=S.FAILED, cost=None, at=day_time(day))
        seed(fake, failed_here)

        run = recon.supply_reconcile(connection_id=connection.pk, day=day)

    found = {(m.our_number, m.kind) for m in run.items.all()}
    assert found == {
        (missing.number, Kind.MISSING_AT_SUPPLIER),
        (state.number, Kind.STATE),
        (cost.number, Kind.COST),
        (undelivered.number, Kind.UNDELIVERED),
        (failed_here.number, Kind.STATE),
        (failed_here.number, Kind.UNDELIVERED),
    }
    assert run.mismatches == 6 and run.orders_checked == 5
    cost_row = run.items.get(kind=Kind.COST)
    assert (cost_row.ours, cost_row.theirs) == ("95.50", "96.00")
    assert run.our_cost == D("382.00")  # four not failed here, 95.50 each
    assert run.supplier_cost == D("96.00") + D("95.50") * 3


def test_a_rerun_replaces_the_findings_and_keeps_resolutions(db, staff):
    buyer = UserFactory()
    day = recon.yesterday()
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        a, b = pending(buyer), pending(buyer)
        upstream(connection, a, state=S.PENDING, at=day_time(day))
        upstream(connection, b, state=S.PENDING, at=day_time(day))
        first = recon.supply_reconcile(connection_id=connection.pk, day=day)
        assert first.mismatches == 2
        with pytest.raises(ServiceError):
            services.mismatch_resolve(mismatch_ids=[first.items.get(our_number=a.number).pk], user=staff, note=" ")
        services.mismatch_resolve(
            mismatch_ids=[first.items.get(our_number=a.number).pk], user=staff, note="lost at the supplier; refunded"
        )
        seed(fake, b, status="processing")  # the supplier found b after all

        again = recon.supply_reconcile(connection_id=connection.pk, day=day)

    assert again.pk == first.pk and SupplyReconciliation.objects.count() == 1
    (kept,) = again.items.all()
    assert kept.our_number == a.number and kept.resolution_note == "lost at the supplier; refunded"
    assert kept.resolved_by == staff and again.mismatches == 1


def test_an_unreachable_supplier_leaves_the_earlier_findings_and_records_the_error(db, monkeypatch):
    monkeypatch.setattr(recon, "QUERY_BACKOFF", 0.01)
    buyer = UserFactory()
    day = recon.yesterday()
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        order = pending(buyer)
        upstream(connection, order, state=S.PENDING, at=day_time(day))
        run = recon.supply_reconcile(connection_id=connection.pk, day=day)
        fake.fail_next = recon.QUERY_TRIES  # every try of the one query answered HTTP 500
        with pytest.raises(SupplyError):
            recon.supply_reconcile(connection_id=connection.pk, day=day)
        fake.fail_next = 1  # one failure, then an answer: the second try reconciles
        recon.supply_reconcile(connection_id=connection.pk, day=day)
        fake.fail_next = recon.QUERY_TRIES
        with pytest.raises(SupplyError):
            recon.supply_reconcile(connection_id=connection.pk, day=day)
    run.refresh_from_db()
    assert "HTTP 500" in run.error and run.items.count() == 1
    connection.refresh_from_db()
    assert "HTTP 500" in connection.last_error


def test_today_is_refused_and_a_disabled_connection_too(db):
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
    with pytest.raises(ServiceError):
        recon.supply_reconcile(connection_id=connection.pk, day=timezone.now().astimezone(recon.BEIJING).date())
    services.connection_state_set(connection=connection, enabled=False)
    with pytest.raises(ServiceError):
        recon.supply_reconcile(connection_id=connection.pk, day=recon.yesterday())


def test_the_command_and_the_beat_task_reconcile_every_enabled_connection(db, capsys):
    buyer = UserFactory()
    day = recon.yesterday()
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        order = pending(buyer)
        upstream(connection, order, state=S.DONE, at=day_time(day))
        call_command("supply_reconcile", "--day", day.isoformat())
        out = capsys.readouterr().out
        assert "1 orders checked, 1 mismatch(es)" in out and order.number in out and "missing_there" in out
        with pytest.raises(CommandError):
            call_command("supply_reconcile", "--connection", "nobody")
        from orders.tasks import supply_reconcile_yesterday

        assert supply_reconcile_yesterday() == [connection.pk]
    assert SupplyReconciliation.objects.get().mismatches == 1


def test_admin_lists_runs_and_resolves_mismatches_with_a_note(admin_client):
    buyer = UserFactory()
    day = recon.yesterday()
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        order = pending(buyer)
        upstream(connection, order, state=S.PENDING, at=day_time(day))
        run = recon.supply_reconcile(connection_id=connection.pk, day=day)
        runs = admin_client.get(reverse("admin:supply_supplyreconciliation_changelist")).content.decode()
        assert connection.name in runs and "resolved=no" in runs
        listing = reverse("admin:supply_supplymismatch_changelist")
        assert order.number in admin_client.get(listing + "?resolved=no").content.decode()
        mismatch = run.items.get()
        form = admin_client.post(listing, {"action": "mark_resolved", "_selected_action": [mismatch.pk], "apply": "1"})
        assert form.status_code == 200  # no note: the form again
        mismatch.refresh_from_db()
        assert mismatch.resolved_at is None
        response = admin_client.post(
            listing,
            {"action": "mark_resolved", "_selected_action": [mismatch.pk], "apply": "1", "note": "asked the supplier"},
            follow=True,
        )
        assert "1 mismatch(es) marked resolved" in response.content.decode()
        page = admin_client.get(reverse("admin:supply_supplierconnection_changelist")).content.decode()
    mismatch.refresh_from_db()
    assert mismatch.resolution_note == "asked the supplier" and mismatch.resolved_at is not None
    assert 'resolved=no">' not in page  # no unresolved mismatch left for the connection


def test_admin_reconciles_a_day_again(admin_client):
    buyer = UserFactory()
    day = recon.yesterday()
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        order = pending(buyer)
        upstream(connection, order, state=S.PENDING, at=day_time(day))
        run = recon.supply_reconcile(connection_id=connection.pk, day=day)
        assert run.mismatches == 1
        seed(fake, order, status="processing")  # found at the supplier after all
        response = admin_client.post(
            reverse("admin:supply_supplyreconciliation_changelist"),
            {"action": "run_again", "_selected_action": [run.pk]},
            follow=True,
        )
    assert "1 orders checked, 0 mismatch(es)" in response.content.decode()
    run.refresh_from_db()
    assert run.mismatches == 0 and not run.items.exists()


def test_a_day_too_long_for_one_task_goes_on_in_new_ones_and_finds_the_same(db, monkeypatch):
    """The task stops before a query that might outlast its soft time limit (here: after every
    order) and goes on in a new task with what it found; the last part writes the same findings
    and totals as one run of the whole day."""
    from orders.tasks import supply_reconcile as reconcile_task

    buyer = UserFactory()
    day = recon.yesterday()
    with running(FakeSupplier()) as fake:
        connection = connect(fake)
        missing = pending(buyer)
        upstream(connection, missing, state=S.PENDING, at=day_time(day))
        cost = delivered(buyer)
        upstream(connection, cost, state=S.DONE, at=day_time(day, 1))
        seed(fake, cost, cost="96.00")
        clean = delivered(buyer)
        upstream(connection, clean, state=S.DONE, at=day_time(day, 2))
        seed(fake, clean)
        whole = recon.supply_reconcile(connection_id=connection.pk, day=day)
        expected = (
            sorted((m.our_number, m.kind, m.ours, m.theirs) for m in whole.items.all()),
            whole.orders_checked,
            whole.mismatches,
            whole.our_cost,
            whole.supplier_cost,
        )
        SupplyReconciliation.objects.all().delete()

        # Direct: part by part, one order each.
        monkeypatch.setattr(recon, "_longest_query", lambda connection: 10**6)
        parts, carried, run = 0, None, None
        while run is None:
            run, carried = recon.supply_reconcile_part(
                connection_id=connection.pk, day=day, until=monotonic() + 60, carried=carried
            )
            parts += 1
            if run is None:
                assert carried["checked"] == parts and not SupplyReconciliation.objects.get().finished_at
        assert parts == 3

        def findings(run):
            run.refresh_from_db()
            return (
                sorted((m.our_number, m.kind, m.ours, m.theirs) for m in run.items.all()),
                run.orders_checked,
                run.mismatches,
                run.our_cost,
                run.supplier_cost,
            )

        assert findings(run) == expected and expected[1] == 3 and expected[2] == 2
        SupplyReconciliation.objects.all().delete()

        # Through the task: each part queues the next (eager here: run in place).
        assert reconcile_task.apply(args=[connection.pk, day.isoformat()]).result == -1
        assert findings(SupplyReconciliation.objects.get()) == expected
