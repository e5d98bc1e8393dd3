"""The journal: balanced entries only, append-only, enforced by the database itself; balances
that may not be overdrawn stay at zero or above under concurrency; purchases are booked."""

import uuid
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from ledger import selectors
from ledger import services as ledger
from ledger.models import Account, Balance, Entry, Line
from orders.models import Order
from orders.services.orders import order_place
from payments.services.payments import sandbox_pay
from tests.builders import run_concurrently
from tests.factories import ProductFactory, UserFactory, add_stock

D = Decimal


def two_accounts():
    accounts = ledger.accounts_get(ledger.SALES, ledger.clearing("sandbox"))
    return accounts[ledger.clearing("sandbox").code], accounts[ledger.SALES.code]


@pytest.mark.django_db
def test_a_balanced_entry_is_posted_and_summed():
    cash, sales = two_accounts()
    with transaction.atomic():
        entry = ledger.entry_post(kind="test", legs=[(cash, D("10.00")), (sales, D("-10.00"))], reference="r1")
    assert sorted(entry.lines.values_list("amount", flat=True)) == [D("-10.00"), D("10.00")]
    assert selectors.balance_of(cash) == D("10.00")  # an asset: debits - credits
    assert selectors.balance_of(sales) == D("10.00")  # revenue: credits - debits


@pytest.mark.django_db
def test_the_service_refuses_an_unbalanced_entry():
    cash, sales = two_accounts()
    with pytest.raises(ledger.UnbalancedEntry), transaction.atomic():
        ledger.entry_post(kind="test", legs=[(cash, D("10.00")), (sales, D("-9.99"))])
    with pytest.raises(ledger.UnbalancedEntry), transaction.atomic():
        ledger.entry_post(kind="test", legs=[(cash, D("10.00"))])
    assert not Entry.objects.exists()


def _raw_entry(lines):
    """Bypass the service: write lines and an entry straight through the ORM."""
    import uuid

    entry_id = uuid.uuid4()
    Line.objects.bulk_create([Line(entry_id=entry_id, account=a, amount=x) for a, x in lines])
    return Entry.objects.create(id=entry_id, kind="raw")


@pytest.mark.django_db
def test_the_database_refuses_an_unbalanced_or_one_line_entry():
    cash, sales = two_accounts()
    for lines in ([(cash, D("10.00")), (sales, D("-9.99"))], [(cash, D("10.00"))]):
        with pytest.raises(IntegrityError), transaction.atomic():
            _raw_entry(lines)
    assert not Entry.objects.exists() and not Line.objects.exists()


@pytest.mark.django_db
def test_the_database_refuses_lines_added_after_the_entry_and_any_edit():
    cash, sales = two_accounts()
    with transaction.atomic():
        entry = _raw_entry([(cash, D("5.00")), (sales, D("-5.00"))])
    with pytest.raises(IntegrityError), transaction.atomic():
        Line.objects.create(entry=entry, account=cash, amount=D("1.00"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Line.objects.filter(entry=entry).update(amount=D("7.00"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.filter(pk=entry.pk).update(memo="edited")
    if connection.vendor == "postgresql":  # SQLite (development) refuses updates only
        with pytest.raises(IntegrityError), transaction.atomic():
            Line.objects.filter(entry=entry).delete()
    assert sorted(Line.objects.values_list("amount", flat=True)) == [D("-5.00"), D("5.00")]


@pytest.mark.django_db
def test_one_statement_adding_a_line_to_a_written_entry_is_refused_whole():
    """The refusal looks at every line of a statement (on PostgreSQL once per statement, over its
    new rows: ledger migration 0005): a line of a written entry among lines of an entry not yet
    written, or several lines of written entries at once, fail the whole statement."""
    cash, sales = two_accounts()
    with transaction.atomic():
        written = _raw_entry([(cash, D("5.00")), (sales, D("-5.00"))])
    new = uuid.uuid4()
    batches = [
        [Line(entry_id=new, account=cash, amount=D("2.00")), Line(entry=written, account=sales, amount=D("-2.00"))],
        [Line(entry=written, account=cash, amount=D("1.00")), Line(entry=written, account=sales, amount=D("-1.00"))],
        [Line(entry_id=new, account=cash, amount=D("3.00")), Line(entry=written, account=cash, amount=D("1.00"))],
    ]
    for lines in batches:
        with pytest.raises(IntegrityError), transaction.atomic():
            Line.objects.bulk_create(lines)
    assert Line.objects.count() == 2 and not Line.objects.filter(entry_id=new).exists()
    # Lines of an entry not written yet still go in, in one statement, and their entry seals them.
    with transaction.atomic():
        Line.objects.bulk_create(
            [Line(entry_id=new, account=cash, amount=D("3.00")), Line(entry_id=new, account=sales, amount=D("-3.00"))]
        )
        Entry.objects.create(id=new, kind="raw")
    assert selectors.balance_of(cash) == D("8.00")


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_refusal_of_added_lines_runs_once_per_statement_and_plans_each_time():
    """What ledger migration 0005 changed: one trigger call per INSERT, not per line, and its
    query still planned for each execution (migration 0003's reason: a plan cached while the
    ledger was small would scan it whole as it grows)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.tgtype, p.proconfig FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE t.tgrelid = 'ledger_line'::regclass AND t.tgname = 'ledger_line_unsealed'"
        )
        tgtype, config = cursor.fetchone()
    row_level, before, insert = 1, 2, 4  # pg_trigger.tgtype bits (TRIGGER_TYPE_ROW, _BEFORE, _INSERT)
    assert tgtype & insert and not tgtype & row_level and not tgtype & before
    assert "plan_cache_mode=force_custom_plan" in config


@pytest.mark.django_db
def test_the_same_business_event_cannot_be_booked_twice():
    cash, sales = two_accounts()
    with transaction.atomic():
        ledger.entry_post(kind="t", legs=[(cash, D("1.00")), (sales, D("-1.00"))], idempotency_key="event-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        ledger.entry_post(kind="t", legs=[(cash, D("1.00")), (sales, D("-1.00"))], idempotency_key="event-1")
    assert Entry.objects.count() == 1


@pytest.mark.django_db
def test_a_reversal_mirrors_the_entry_once():
    cash, sales = two_accounts()
    with transaction.atomic():
        entry = ledger.entry_post(kind="sale", legs=[(cash, D("3.00")), (sales, D("-3.00"))])
        ledger.entry_reverse(entry=entry, memo="mistake")
    assert selectors.balance_of(cash) == 0 and selectors.balance_of(sales) == 0
    with pytest.raises(IntegrityError), transaction.atomic():
        ledger.entry_reverse(entry=entry)


@pytest.mark.django_db
def test_a_wallet_cannot_be_overdrawn():
    buyer = UserFactory()
    accounts = ledger.accounts_get(ledger.wallet(buyer), ledger.clearing("sandbox"), ledger.HELD)
    wallet = accounts[ledger.wallet(buyer).code]
    cash, held = accounts[ledger.clearing("sandbox").code], accounts[ledger.HELD.code]
    with transaction.atomic():  # a recharge of 20
        ledger.entry_post(kind="recharge", legs=[(cash, D("20.00")), (wallet, D("-20.00"))])
    with pytest.raises(ledger.InsufficientFunds), transaction.atomic():
        ledger.entry_post(kind="spend", legs=[(wallet, D("20.01")), (held, D("-20.01"))])
    assert Balance.objects.get(account=wallet).balance == D("20.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_spending_never_overdraws_a_wallet():
    buyer = UserFactory()
    accounts = ledger.accounts_get(ledger.wallet(buyer), ledger.clearing("sandbox"), ledger.HELD)
    wallet = accounts[ledger.wallet(buyer).code]
    cash, held = accounts[ledger.clearing("sandbox").code], accounts[ledger.HELD.code]
    with transaction.atomic():
        ledger.entry_post(kind="recharge", legs=[(cash, D("100.00")), (wallet, D("-100.00"))])

    def spend(_i):
        try:
            with transaction.atomic():
                ledger.entry_post(kind="spend", legs=[(wallet, D("10.00")), (held, D("-10.00"))])
            return "ok"
        except ledger.InsufficientFunds:
            return "refused"

    outcomes = run_concurrently(30, spend)
    assert outcomes.count("ok") == 10 and outcomes.count("refused") == 20
    assert Balance.objects.get(account=wallet).balance == 0
    assert selectors.balance_of(wallet) == 0


@pytest.mark.django_db(transaction=True)
def test_a_purchase_is_booked_from_payment_to_revenue_and_supplier_cost(buyer):
    product = ProductFactory(price=D("97.00"))
    add_stock(product, 3)  # cost price 90.00 each (tests.factories)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=2, idempotency_key="k")
    sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert selectors.balance_of(ledger.clearing("sandbox")) == D("194.00")
    assert selectors.balance_of(ledger.HELD) == 0  # delivered: nothing held any more
    assert selectors.balance_of(ledger.SALES) == D("194.00")
    payable = ledger.supplier_payable(product.supplier_id, product.supplier.name)
    assert selectors.balance_of(payable) == D("180.00")
    assert set(Entry.objects.filter(reference=order.number).values_list("kind", flat=True)) == {"payment", "delivery"}
    rows = selectors.trial_balance()
    assert sum(r.debits for r in rows) == sum(r.credits for r in rows)


@pytest.mark.django_db(transaction=True)
def test_a_payment_that_cannot_be_used_is_owed_back_not_revenue(buyer, other_buyer):
    from django.utils import timezone

    from orders.services.orders import orders_expire_due

    product = ProductFactory(price=D("10.00"))
    add_stock(product, 1)
    late = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="late")
    Order.objects.filter(pk=late.pk).update(expires_at=timezone.now())
    orders_expire_due()
    other = order_place(buyer=other_buyer, product_id=product.pk, quantity=1, idempotency_key="o")
    sandbox_pay(order_number=other.number)
    sandbox_pay(order_number=late.number)  # paid after expiry, stock gone
    late.refresh_from_db()
    assert late.status == Order.Status.REFUNDED  # owed back, then refunded automatically
    kinds = list(Entry.objects.order_by("created_at").values_list("kind", flat=True))
    assert kinds[-2:] == ["payment", "refund_paid"]  # booked as due back, never as revenue
    assert selectors.balance_of(ledger.REFUNDS_DUE) == 0  # owed, then paid back
    assert selectors.balance_of(ledger.SALES) == D("10.00")  # only the delivered order
    assert selectors.balance_of(ledger.clearing("sandbox")) == D("10.00")  # 20 in, 10 back out


@pytest.mark.django_db(transaction=True)
def test_trial_balance_page_for_staff(client, staff, buyer):
    product = ProductFactory(price=D("5.00"))
    add_stock(product, 1, user=staff)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="t")
    sandbox_pay(order_number=order.number)
    client.force_login(staff)
    page = client.get("/admin/ledger/entry/trial-balance/").content.decode()
    assert 'data-testid="ledger-ok"' in page and "revenue:sales" in page
    assert client.get("/admin/ledger/entry/").status_code == 200


def test_ledger_check_command(db, capsys):
    from django.core.management import call_command

    call_command("ledger_check")
    assert "Ledger OK" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_funds_isolation_customer_money_is_covered_and_not_revenue(client, staff, buyer):
    from payments.services import payments

    recharge = payments.recharge_create(user=buyer, amount="50")
    payments.sandbox_pay(order_number=recharge.number)
    product = ProductFactory(price=D("20.00"))
    add_stock(product, 2)
    delivered = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="d")
    payments.balance_pay(order_number=delivered.number, buyer=buyer)
    pending = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="p")
    assert pending.status == Order.Status.PENDING
    funds = selectors.funds_isolation()
    assert funds.customer_money == {"wallets": D("30.00"), "orders_held": D("0"), "refunds_due": D("0")}
    assert funds.held == D("50.00") and funds.revenue == D("20.00")
    assert funds.covered and funds.owed + funds.revenue == funds.held
    client.force_login(staff)
    assert 'data-testid="funds-covered"' in client.get("/admin/ledger/entry/trial-balance/").content.decode()


# --- the interface callers use: transfer and balance_of ----------------------------------------


@pytest.mark.django_db
def test_a_transfer_is_one_balanced_two_line_entry_opening_its_accounts():
    buyer = UserFactory()
    with transaction.atomic():
        entry = ledger.transfer(
            debit=ledger.clearing("sandbox"),
            credit=ledger.wallet(buyer),
            amount=D("25.00"),
            kind="recharge",
            reference="R1",
            memo="sandbox t1",
            idempotency_key="payment:sandbox:t1",
        )
    lines = dict(entry.lines.values_list("account__code", "amount"))
    assert lines == {"asset:clearing:sandbox": D("25.00"), ledger.wallet(buyer).code: D("-25.00")}
    assert (entry.kind, entry.reference, entry.memo, entry.idempotency_key) == (
        "recharge",
        "R1",
        "sandbox t1",
        "payment:sandbox:t1",
    )
    assert selectors.balance_of(ledger.wallet(buyer)) == D("25.00")
    assert selectors.balance_of(ledger.clearing("sandbox")) == D("25.00")
    with pytest.raises(IntegrityError), transaction.atomic():  # the same business event twice
        ledger.transfer(
            debit=ledger.clearing("sandbox"),
            credit=ledger.wallet(buyer),
            amount=D("25.00"),
            kind="recharge",
            idempotency_key="payment:sandbox:t1",
        )


@pytest.mark.django_db
def test_a_transfer_refuses_an_overdraft_and_amounts_not_above_zero():
    buyer = UserFactory()
    with pytest.raises(ledger.InsufficientFunds), transaction.atomic():
        ledger.transfer(debit=ledger.wallet(buyer), credit=ledger.HELD, amount=D("0.01"), kind="balance_payment")
    for amount in (D("0"), D("-5.00"), D("0.001")):
        with pytest.raises(ledger.UnbalancedEntry), transaction.atomic():
            ledger.transfer(debit=ledger.clearing("sandbox"), credit=ledger.HELD, amount=amount, kind="payment")
    assert not Entry.objects.exists()


@pytest.mark.django_db
def test_balance_of_reads_only_and_an_account_not_opened_is_zero(django_assert_max_num_queries):
    buyer = UserFactory()
    specs = [ledger.wallet(buyer), ledger.commission_pending(buyer), ledger.SALES, ledger.clearing("x")]
    accounts = Account.objects.count()
    with CaptureQueriesContext(connection) as queries:
        assert selectors.balance_of(ledger.wallet(buyer)) == D("0.00")
        assert selectors.balance_of(ledger.SALES) == D("0.00")
        assert selectors.balances_of(*specs) == {spec.code: D("0.00") for spec in specs}
    assert all(q["sql"].lstrip().upper().startswith("SELECT") for q in queries.captured_queries)
    assert Account.objects.count() == accounts  # nothing was opened by reading
    with transaction.atomic():
        ledger.transfer(debit=ledger.clearing("x"), credit=ledger.wallet(buyer), amount=D("7.00"), kind="recharge")
        ledger.transfer(debit=ledger.wallet(buyer), credit=ledger.HELD, amount=D("2.50"), kind="balance_payment")
        ledger.transfer(debit=ledger.HELD, credit=ledger.SALES, amount=D("2.50"), kind="delivery")
    with django_assert_max_num_queries(2):  # one for balance rows, one for platform accounts' lines
        found = selectors.balances_of(*specs)
    assert found == {
        ledger.wallet(buyer).code: D("4.50"),  # a liability: credits - debits, from its balance row
        ledger.commission_pending(buyer).code: D("0.00"),
        ledger.SALES.code: D("2.50"),  # revenue, summed from lines
        ledger.clearing("x").code: D("7.00"),  # an asset: debits - credits
    }
    wallet = Account.objects.get(code=ledger.wallet(buyer).code)
    assert selectors.balance_of(wallet) == D("4.50")  # an Account reads as its spec does


@pytest.mark.django_db
def test_lines_are_written_without_instances_as_save_writes_them_and_on_sqlite_too(monkeypatch):
    """entry_post's lines: one INSERT of constant text on PostgreSQL (marketplace.rows.insert_values),
    bulk_create elsewhere; the same rows either way."""
    from marketplace import rows

    cash, sales = two_accounts()
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        entry = ledger.entry_post(kind="test", legs=[(cash, D("3.456")), (sales, D("-3.456"))], reference="r9")
    assert len(queries) == 2  # the lines, then the entry that seals them
    assert sorted(entry.lines.values_list("account_id", "amount")) == sorted(
        [(cash.pk, D("3.46")), (sales.pk, D("-3.46"))]
    )
    with pytest.raises(ValueError, match="needs exactly"):  # every column but the generated id
        rows.insert_values(Line, ("entry_id", "amount"), [(entry.pk, D("1"))], using="default")
    with pytest.raises(ValueError, match="pre_save"):  # created_at is auto_now_add: not the caller's
        rows.insert_values(
            Account, ("code", "name", "kind", "owner_id", "allow_negative", "created_at"), [], using="default"
        )
    monkeypatch.setattr(rows, "one_statement_ok", lambda *args: False)  # the other databases' path
    with transaction.atomic():
        other = ledger.entry_post(kind="test", legs=[(cash, D("1.00")), (sales, D("-1.00"))], reference="r10")
    assert sorted(other.lines.values_list("account_id", "amount")) == sorted(
        [(cash.pk, D("1.00")), (sales.pk, D("-1.00"))]
    )


@pytest.mark.django_db
def test_an_entry_sealed_by_its_caller_is_written_with_the_callers_statement():
    """``entry_post_sealed_by_caller``: the lines now, the entry when the caller writes it (here
    on its own; a delivery writes it with the order's move). Until then the lines are unsealed;
    written, it is the entry ``entry_post`` would have written, and a second one for the same
    event is refused by its key."""
    cash, sales = two_accounts()
    with transaction.atomic():
        pending = ledger.entry_post_sealed_by_caller(
            kind="test", legs=[(cash, D("4.00")), (sales, D("-4.00"))], reference="sealed", idempotency_key="sealed:1"
        )
        entry = pending.obj
        assert Line.objects.filter(entry_id=entry.pk).count() == 2
        assert not Entry.objects.filter(pk=entry.pk).exists()
        pending.write()
    stored = Entry.objects.get(idempotency_key="sealed:1")
    assert (stored.pk, stored.kind, stored.reference) == (entry.pk, "test", "sealed")
    assert sorted(stored.lines.values_list("amount", flat=True)) == [D("-4.00"), D("4.00")]
    with pytest.raises(IntegrityError), transaction.atomic():
        ledger.entry_post_sealed_by_caller(
            kind="test", legs=[(cash, D("4.00")), (sales, D("-4.00"))], idempotency_key="sealed:1"
        ).write()


@pytest.mark.postgres
@pytest.mark.django_db
def test_lines_whose_entry_is_never_written_cannot_commit():
    """A caller that writes the lines but not their entry (its move refused, the exception
    caught) cannot commit them: the lines' foreign key to the entry is checked at COMMIT
    (forced here with ``SET CONSTRAINTS ALL IMMEDIATE``, the test's transaction never commits)."""
    cash, sales = two_accounts()
    with pytest.raises(IntegrityError), transaction.atomic():
        ledger.entry_post_sealed_by_caller(kind="test", legs=[(cash, D("1.00")), (sales, D("-1.00"))])
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db(transaction=True)
def test_a_second_delivery_of_an_order_is_refused_by_the_entrys_key(buyer):
    """``order_deliver`` on an order already delivered (a caller that did not check): the move
    is a no-op, and the entry, written on its own, is refused by its key as before; nothing of
    the second booking stays."""
    from orders.services import orders as order_services

    product = ProductFactory(price=D("30.00"))
    add_stock(product, 1)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="k2")
    sandbox_pay(order_number=order.number)
    lines = Line.objects.count()
    with pytest.raises(IntegrityError), transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        assert locked.status == Order.Status.DELIVERED
        order_services.order_deliver(order=locked, code_ids=[], note="again", costs=[])
    assert Line.objects.count() == lines
    assert Entry.objects.filter(reference=order.number, kind="delivery").count() == 1
