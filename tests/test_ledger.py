"""The journal: balanced entries only, append-only, enforced by the database itself; balances
that may not be overdrawn stay at zero or above under concurrency; purchases are booked."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from ledger import selectors
from ledger import services as ledger
from ledger.models import Balance, Entry, Line
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
    assert selectors.account_balance(cash) == D("10.00")  # an asset: debits - credits
    assert selectors.account_balance(sales) == D("10.00")  # revenue: credits - debits


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
    assert selectors.account_balance(cash) == 0 and selectors.account_balance(sales) == 0
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
    assert selectors.account_balance(wallet) == 0


@pytest.mark.django_db(transaction=True)
def test_a_purchase_is_booked_from_payment_to_revenue_and_supplier_cost(buyer):
    product = ProductFactory(price=D("97.00"))
    add_stock(product, 3)  # cost price 90.00 each (tests.factories)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=2, idempotency_key="k")
    sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    codes = ledger.accounts_get(ledger.clearing("sandbox"), ledger.HELD, ledger.SALES)
    assert selectors.account_balance(codes["asset:clearing:sandbox"]) == D("194.00")
    assert selectors.account_balance(codes[ledger.HELD.code]) == 0  # delivered: nothing held any more
    assert selectors.account_balance(codes[ledger.SALES.code]) == D("194.00")
    payable = ledger.accounts_get(ledger.supplier_payable(product.supplier_id, product.supplier.name))
    assert selectors.account_balance(next(iter(payable.values()))) == D("180.00")
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
    due = ledger.accounts_get(ledger.REFUNDS_DUE)[ledger.REFUNDS_DUE.code]
    assert selectors.account_balance(due) == 0  # owed, then paid back
    sales = ledger.accounts_get(ledger.SALES)[ledger.SALES.code]
    assert selectors.account_balance(sales) == D("10.00")  # only the delivered order
    clearing = ledger.accounts_get(ledger.clearing("sandbox"))[ledger.clearing("sandbox").code]
    assert selectors.account_balance(clearing) == D("10.00")  # 20 in, 10 back out


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
