"""Reads of the journal: balances (``balance_of``, the one way to read one), the trial balance,
and the invariants every test checks. Nothing here writes."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache

from django.db import connections, router
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Round

from marketplace.money import quantize

from .models import Account, Balance, Entry, Line
from .services import AccountSpec


def balance_of(account: AccountSpec | Account) -> Decimal:
    """The natural balance of one account (debit-normal: debits − credits, else the opposite).

    Reads only: an account not opened yet has a balance of 0 and is not created."""
    return balances_of(account)[account.code]


def balances_of(*accounts: AccountSpec | Account) -> dict[str, Decimal]:
    """The natural balances of these accounts by code, reading only: in one statement on
    PostgreSQL (composed once), at most two queries on other databases.

    An account that may not be overdrawn reads its balance row (the database keeps it, see
    migration 0004); a platform account has none and sums its lines. An account not opened
    yet is 0."""
    wanted = {a.code: a for a in accounts}
    found = {code: quantize(0) for code in wanted}
    kept = [code for code, a in wanted.items() if not a.allow_negative]
    summed = [code for code, a in wanted.items() if a.allow_negative]
    using = router.db_for_read(Balance)  # the replica inside replica_reads(), as the ORM would
    if connections[using].vendor == "postgresql":  # one statement of constant text (a page's wallet)
        params = [codes for codes in (kept, summed) if codes]
        if not params:
            return found
        with connections[using].cursor() as cursor:
            cursor.execute(_balances_sql(using, bool(kept), bool(summed)), params)
            for code, kept_balance, net in cursor.fetchall():
                if kept_balance is not None:
                    found[code] = quantize(kept_balance)
                elif net is not None:
                    found[code] = quantize(net) if wanted[code].debit_normal else -quantize(net)
        return found
    if kept:
        rows = Balance.objects.filter(account__code__in=kept).values_list("account__code", "balance")
        found.update((code, quantize(balance)) for code, balance in rows)
    if summed:
        sums = Line.objects.filter(account__code__in=summed).values("account__code").annotate(s=Sum("amount"))
        for row in sums:
            net = quantize(row["s"] or 0)  # quantize: SQLite sums decimals inexactly
            found[row["account__code"]] = net if wanted[row["account__code"]].debit_normal else -net
    return found


@cache
def _balances_sql(using: str, kept: bool, summed: bool) -> str:
    """``balances_of`` on PostgreSQL, composed once from the models' names: the balance rows of
    the accounts that keep one (``kept``: their codes in an array parameter) and the sums of the
    lines of the others (``summed``: the next array); only the parts asked for (a wallet alone is
    the balance row's join, as the ORM's)."""
    q = connections[using].ops.quote_name
    account, balance, line = (q(m._meta.db_table) for m in (Account, Balance, Line))
    a, b, li = ({f.name: q(f.column) for f in m._meta.concrete_fields} for m in (Account, Balance, Line))
    a_id, a_code, b_account, b_balance = a["id"], a["code"], b["account"], b["balance"]
    l_account, l_amount = li["account"], li["amount"]
    where = f"WHERE a.{a_code} = ANY(%s)"
    # Names from the models, values bound:
    parts = []
    if kept:
        parts.append(
            f"SELECT a.{a_code}, b.{b_balance}, NULL FROM {balance} b JOIN {account} a ON a.{a_id} = b.{b_account} "  # noqa: S608
            f"{where}"
        )
    if summed:
        parts.append(
            f"SELECT a.{a_code}, NULL, SUM(l.{l_amount}) FROM {line} l JOIN {account} a ON a.{a_id} = l.{l_account} "  # noqa: S608
            f"{where} GROUP BY a.{a_code}"
        )
    return " UNION ALL ".join(parts)


@dataclass(frozen=True)
class TrialRow:
    account: Account
    debits: Decimal
    credits: Decimal

    @property
    def balance(self) -> Decimal:
        net = self.debits - self.credits
        return net if self.account.debit_normal else -net


def trial_balance() -> list[TrialRow]:
    sums = Line.objects.values("account").annotate(
        debits=Sum("amount", filter=Q(amount__gt=0), default=Decimal(0)),
        credits=Sum("amount", filter=Q(amount__lt=0), default=Decimal(0)),
    )
    by_account = {row["account"]: row for row in sums}
    # quantize: SQLite (the development default) sums decimals inexactly; PostgreSQL is exact.
    return [
        TrialRow(
            a,
            quantize(by_account.get(a.pk, {}).get("debits", 0)),
            quantize(-by_account.get(a.pk, {}).get("credits", 0)),
        )
        for a in Account.objects.order_by("kind", "code")
    ]


def problems() -> list[str]:
    """Every way the journal could be wrong; empty when it is right."""
    found = []
    sums = Line.objects.values("entry").annotate(s=Round(Sum("amount"), 2), n=Count("id"))
    for row in sums.filter(~Q(s=0) | Q(n__lt=2)):
        found.append(f"entry {row['entry']} does not balance: sum {row['s']}, {row['n']} line(s)")
    orphans = Line.objects.exclude(entry_id__in=Entry.objects.values("id")).count()
    if orphans:
        found.append(f"{orphans} line(s) belong to no entry")
    found += balance_problems()
    return found


def balance_row_count() -> int:
    return Balance.objects.count()


def balance_problems() -> list[str]:
    """Every balance row against the sum of its account's lines (the triggers keep them equal;
    this proves it), overdrawn rows, and accounts with a row they should not have or without
    one they should."""
    found = []
    summed = Line.objects.filter(account=OuterRef("account")).values("account").annotate(s=Sum("amount")).values("s")
    for row in Balance.objects.select_related("account").annotate(summed=Subquery(summed)).order_by("account"):
        account = row.account
        net = quantize(row.summed or 0)  # quantize: SQLite sums decimals inexactly
        natural = net if account.debit_normal else -net
        if row.balance != natural:
            found.append(f"{account.code}: balance row {row.balance} but its lines sum to {natural}")
        if row.balance < 0:
            found.append(f"{account.code} is overdrawn: {row.balance}")
        if account.allow_negative:
            found.append(f"{account.code} may go below zero but has a balance row")
        if row.allow_negative != account.allow_negative or row.debit_normal != account.debit_normal:
            found.append(f"{account.code}: its balance row's copy of the overdraft rule or side differs")
    missing = list(Account.objects.filter(allow_negative=False, balance__isnull=True).values_list("code", flat=True))
    if missing:
        found.append(
            f"{len(missing)} account(s) that may not be overdrawn have no balance row: {', '.join(missing[:10])}"
        )
    return found


@dataclass(frozen=True)
class FundsIsolation:
    """Customers' money against what holds it. Covered when the money at the gateways is at
    least what is owed to customers; revenue is what is left, never the customers' part."""

    customer_money: dict[str, Decimal]  # wallets, payments held for orders, refunds due
    holdings: dict[str, Decimal]  # gateway clearing accounts
    revenue: Decimal

    @property
    def owed(self) -> Decimal:
        return sum(self.customer_money.values(), Decimal(0))

    @property
    def held(self) -> Decimal:
        return sum(self.holdings.values(), Decimal(0))

    @property
    def covered(self) -> bool:
        return self.held >= self.owed


def funds_isolation() -> FundsIsolation:
    balances = {row.account.code: row.balance for row in trial_balance()}
    wallets = sum((v for k, v in balances.items() if k.startswith("liability:wallet:")), Decimal(0))
    customer = {
        "wallets": wallets,
        "orders_held": balances.get("liability:orders_held", Decimal(0)),
        "refunds_due": balances.get("liability:refunds_due", Decimal(0)),
    }
    holdings = {k.removeprefix("asset:clearing:"): v for k, v in balances.items() if k.startswith("asset:clearing:")}
    revenue = sum((v for k, v in balances.items() if k.startswith("revenue:")), Decimal(0))
    return FundsIsolation(customer, holdings, revenue)


@dataclass(frozen=True)
class Movements:
    entries: int
    amount: Decimal


def movements_total(
    *, kinds: Iterable[str], start: datetime, end: datetime, account: AccountSpec | Account | None = None
) -> Movements:
    """What the journal entries of ``kinds`` posted in [start, end) moved: how many, and how much.

    Without ``account``: the entries' size (the sum of their debit lines; an entry's lines sum to
    zero, so that is the money moved). With ``account``: only the lines on that account, as the
    change of its natural balance (a liability credited by a payment counts positive), over the
    entries that touch it. Reversing entries have their own kind (``reversal:<kind>``): asked for
    by that name, not folded in. Regulator reports reconcile their figures with this."""
    entries = Entry.objects.filter(kind__in=list(kinds), created_at__gte=start, created_at__lt=end)
    lines = Line.objects.filter(entry__in=entries)
    if account is None:
        row = lines.filter(amount__gt=0).aggregate(s=Sum("amount", default=Decimal(0)), n=Count("entry", distinct=True))
        return Movements(entries=row["n"], amount=quantize(row["s"]))
    row = lines.filter(account__code=account.code).aggregate(
        s=Sum("amount", default=Decimal(0)), n=Count("entry", distinct=True)
    )
    net = quantize(row["s"])
    return Movements(entries=row["n"], amount=net if account.debit_normal else -net)
