"""Balance rows are the database's (ledger migration 0004): direct SQL, as the application's
database user, cannot move a balance without a journal line, write a line that does not move
its balance, change an account's overdraft rule, or TRUNCATE the journal; ``ledger_check``
catches a balance row that was broken all the same (by a role that may switch triggers off)."""

import re
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from ledger import selectors
from ledger import services as ledger
from ledger.models import Account, Balance, Entry, Line
from tests.factories import UserFactory

D = Decimal
pg = pytest.mark.postgres


def funded_wallet(amount="20.00"):
    """A buyer's wallet holding ``amount`` (a recharge through the gateway's clearing account)."""
    buyer = UserFactory()
    accounts = ledger.accounts_get(ledger.wallet(buyer), ledger.clearing("sandbox"))
    wallet, cash = accounts[ledger.wallet(buyer).code], accounts[ledger.clearing("sandbox").code]
    with transaction.atomic():
        ledger.entry_post(kind="recharge", legs=[(cash, D(amount)), (wallet, -D(amount))])
    return wallet, cash


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def refused(statement, params=()):
    """The database refuses the statement (and the savepoint leaves nothing of it)."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        sql(statement, params)
    return str(caught.value)


def balance(account) -> Decimal:
    return Balance.objects.get(account=account).balance


def lines_sum(account) -> Decimal:
    """The account's natural balance summed from its lines, not read from its balance row."""
    net = Line.objects.filter(account=account).aggregate(s=Sum("amount", default=0))["s"]
    return net if account.debit_normal else -net


def raw_entry(lines):
    """A balanced entry written with plain SQL, not through the posting service."""
    entry_id = uuid.uuid4().hex
    for account, amount in lines:
        sql(
            "INSERT INTO ledger_line (entry_id, account_id, amount) VALUES (%s, %s, %s)", [entry_id, account.pk, amount]
        )
    sql(
        "INSERT INTO ledger_entry (id, kind, reference, memo, created_at) VALUES (%s, 'raw', '', '', %s)",
        [entry_id, connection.ops.adapt_datetimefield_value(timezone.now())],
    )


# --- 1. TRUNCATE --------------------------------------------------------------------------


@pg
@pytest.mark.django_db
def test_truncate_of_the_ledger_is_refused():
    wallet, _ = funded_wallet()
    counts = (Entry.objects.count(), Line.objects.count(), Balance.objects.count(), Account.objects.count())
    for statement in (
        "TRUNCATE ledger_line, ledger_entry",
        "TRUNCATE ledger_entry CASCADE",
        "TRUNCATE ledger_balance",
        "TRUNCATE ledger_account CASCADE",
        f"TRUNCATE {get_user_model()._meta.db_table} CASCADE",  # reaches the accounts through their owners
    ):
        assert "TRUNCATE" in refused(statement)
    assert (Entry.objects.count(), Line.objects.count(), Balance.objects.count(), Account.objects.count()) == counts
    assert balance(wallet) == D("20.00")


# --- 2. A balance row moved without a journal line ----------------------------------------


@pytest.mark.django_db
def test_a_balance_row_does_not_move_without_a_line():
    wallet, cash = funded_wallet()
    refused("UPDATE ledger_balance SET balance = balance + 1000 WHERE account_id = %s", [wallet.pk])
    refused("UPDATE ledger_balance SET balance = 0 WHERE account_id = %s", [wallet.pk])
    # The ORM is no way round it either.
    with pytest.raises(DatabaseError), transaction.atomic():
        Balance.objects.filter(account=wallet).update(balance=D("1000.00"))
    # Nor is a second row: for an account that may go below zero, or one not starting at 0.
    refused(
        "INSERT INTO ledger_balance (account_id, balance, allow_negative, debit_normal) VALUES (%s, 0, %s, %s)",
        [cash.pk, False, True],
    )
    if connection.vendor == "postgresql":  # SQLite (development) empties tables with DELETE
        refused("DELETE FROM ledger_balance WHERE account_id = %s", [wallet.pk])
        refused("DELETE FROM ledger_account WHERE id = %s", [wallet.pk])  # it has lines
    assert balance(wallet) == D("20.00") and not Balance.objects.filter(account=cash).exists()


@pytest.mark.django_db
def test_an_account_that_may_not_be_overdrawn_is_born_with_its_balance_row():
    sql(
        "INSERT INTO ledger_account (code, name, kind, allow_negative, created_at) VALUES ('raw:w', 'w', %s, %s, %s)",
        ["liability", False, connection.ops.adapt_datetimefield_value(timezone.now())],
    )
    account = Account.objects.get(code="raw:w")
    row = Balance.objects.get(account=account)
    assert (row.balance, row.allow_negative, row.debit_normal) == (0, False, False)
    # No second one, and none for a platform account (every sale would queue on it).
    refused(
        "INSERT INTO ledger_balance (account_id, balance, allow_negative, debit_normal) VALUES (%s, 0, %s, %s)",
        [account.pk, False, False],
    )
    platform = ledger.accounts_get(ledger.SALES)[ledger.SALES.code]
    assert not Balance.objects.filter(account=platform).exists()


# --- 3. The overdraft rule changed, then the account overdrawn ----------------------------


@pytest.mark.django_db
def test_an_accounts_overdraft_rule_and_side_are_fixed_when_it_is_created():
    wallet, cash = funded_wallet()
    refused("UPDATE ledger_account SET allow_negative = %s WHERE id = %s", [True, wallet.pk])
    refused("UPDATE ledger_balance SET allow_negative = %s WHERE account_id = %s", [True, wallet.pk])
    refused("UPDATE ledger_account SET kind = 'asset' WHERE id = %s", [wallet.pk])  # would flip the sign
    with pytest.raises(DatabaseError), transaction.atomic():
        Account.objects.filter(pk=wallet.pk).update(allow_negative=True)
    sql("UPDATE ledger_account SET name = 'renamed' WHERE id = %s", [wallet.pk])  # the rest may change
    # So overdrawing it stays refused, written straight in SQL as through the service.
    with pytest.raises(IntegrityError, match="ledger_balance_not_overdrawn"), transaction.atomic():
        raw_entry([(wallet, D("20.01")), (cash, D("-20.01"))])
    with pytest.raises(ledger.InsufficientFunds) as caught, transaction.atomic():
        ledger.entry_post(kind="spend", legs=[(wallet, D("20.01")), (cash, D("-20.01"))])
    assert caught.value.account == wallet
    wallet.refresh_from_db()
    assert wallet.allow_negative is False and wallet.kind == "liability" and balance(wallet) == D("20.00")


# --- 4. A balanced entry whose lines never reach the balance rows --------------------------


@pytest.mark.django_db
def test_every_line_moves_its_balance_row_however_it_is_written():
    wallet, cash = funded_wallet()
    with transaction.atomic():
        raw_entry([(wallet, D("7.50")), (cash, D("-7.50"))])  # spending 7.50, in plain SQL
    assert balance(wallet) == D("12.50") == lines_sum(wallet)
    with transaction.atomic():  # the ORM's bulk insert, which the service uses, likewise
        entry_id = uuid.uuid4()
        Line.objects.bulk_create(
            [
                Line(entry_id=entry_id, account=wallet, amount=D("12.50")),
                Line(entry_id=entry_id, account=cash, amount=D("-12.50")),
            ]
        )
        Entry.objects.create(id=entry_id, kind="raw")
    assert balance(wallet) == 0 == lines_sum(wallet)
    assert selectors.problems() == []


@pytest.mark.django_db
def test_a_refused_overdraft_names_the_account_and_leaves_nothing_written():
    wallet, cash = funded_wallet("5.00")
    other, _ = funded_wallet("100.00")
    lines = Line.objects.count()
    with transaction.atomic():  # the caller goes on after the refusal
        with pytest.raises(ledger.InsufficientFunds) as caught:
            ledger.entry_post(kind="spend", legs=[(other, D("1.00")), (wallet, D("6.00")), (cash, D("-7.00"))])
        assert caught.value.account == wallet
        ledger.entry_post(kind="spend", legs=[(wallet, D("5.00")), (cash, D("-5.00"))])
    assert Line.objects.count() == lines + 2
    assert balance(wallet) == 0 and balance(other) == D("100.00")


# --- ledger_check ----------------------------------------------------------------------------


@pg
@pytest.mark.django_db
def test_ledger_check_catches_a_balance_row_broken_behind_the_triggers_back(capsys):
    wallet, _ = funded_wallet()
    call_command("ledger_check")
    assert "balance rows compared with the sum of their lines: 1" in capsys.readouterr().out
    # Only a role that may switch triggers off (here the tests' superuser) can do this.
    sql("SET LOCAL session_replication_role = replica")
    sql("UPDATE ledger_balance SET balance = 1000 WHERE account_id = %s", [wallet.pk])
    sql("SET LOCAL session_replication_role = DEFAULT")
    with pytest.raises(CommandError, match="1 ledger problem"):
        call_command("ledger_check")
    assert f"{wallet.code}: balance row 1000.00 but its lines sum to 20.00" in capsys.readouterr().err
    sql("SET LOCAL session_replication_role = replica")  # put it back for the after-test check
    sql("UPDATE ledger_balance SET balance = 20 WHERE account_id = %s", [wallet.pk])
    sql("SET LOCAL session_replication_role = DEFAULT")
    assert selectors.problems() == []


# --- The application's database role (docker-compose.yml) -----------------------------------

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


@pg
@pytest.mark.django_db
def test_the_applications_role_cannot_switch_the_triggers_off():
    """The production application connects as a role that owns nothing and may only read and
    write rows (docker-compose.yml's init script). Built here the same way, inside the test's
    transaction (roles and grants are transactional in PostgreSQL: nothing is left behind)."""
    compose = COMPOSE.read_text()
    for hardening in (
        "NOSUPERUSER",
        "REVOKE ALL ON DATABASE kamarket FROM PUBLIC",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO kamarket_app",
    ):
        assert hardening in compose
    assert re.search(r"DATABASE_URL: postgres://kamarket_app:", compose)
    wallet, cash = funded_wallet()
    role = f"test_app_{uuid.uuid4().hex[:12]}"
    database = connection.settings_dict["NAME"]
    for statement in (
        f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
        f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC',
        f'GRANT CONNECT ON DATABASE "{database}" TO {role}',
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"SET LOCAL ROLE {role}",
    ):
        sql(statement)
    try:
        with transaction.atomic():  # it can post, through the service
            ledger.entry_post(kind="spend", legs=[(wallet, D("1.00")), (cash, D("-1.00"))])
        assert "permission denied" in refused("SET session_replication_role = replica")
        assert "owner" in refused("ALTER TABLE ledger_balance DISABLE TRIGGER ALL")
        assert "owner" in refused("DROP TRIGGER ledger_balance_moved_by_lines ON ledger_balance")
        # No trigger of its own either (it would run the update inside a trigger).
        assert "permission denied" in refused("CREATE TEMP TABLE t (x int)")
        assert "permission denied" in refused("CREATE TABLE public.t (x int)")
        refused("UPDATE ledger_balance SET balance = 1000 WHERE account_id = %s", [wallet.pk])
        refused("TRUNCATE ledger_line, ledger_entry, ledger_balance, ledger_account CASCADE")
    finally:
        sql("RESET ROLE")
    assert balance(wallet) == D("19.00")
