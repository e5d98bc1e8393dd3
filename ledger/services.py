"""Posting to the journal. The only code that writes ledger rows.

Callers name accounts with an ``AccountSpec`` (the helpers below) and post one movement with
``transfer(debit=..., credit=..., amount=..., kind=..., reference=..., idempotency_key=...)``;
the few entries with more than two lines (a delivery with its suppliers' costs, the
commissions of a price chain, a payout with its fee) use ``entry_post``. Both open the
accounts on first use. Balances are read with ``ledger.selectors.balance_of``, which never
writes.

Accounts that may not be overdrawn (customer wallets, agents' commissions) have a ``Balance``
row, which the database creates with the account and moves with every line it writes
(migration 0004): the row's CHECK refuses an overdraft in the statement that writes the
lines. Platform accounts (gateway clearing, revenue ...) have none: every sale would otherwise
queue on the same few rows. Their balances are summed from lines when asked.
"""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from django.db import IntegrityError, router, transaction
from django.utils.translation import gettext as _

from marketplace import rows as row_sql
from marketplace.errors import Conflict
from marketplace.money import quantize
from marketplace.prepared import Prepared

from .models import Account, Balance, Entry, Line

Kind = Account.Kind


class UnbalancedEntry(ValueError):
    """A programming error (lines that do not sum to zero), not a refusal: stays a ValueError."""


class InsufficientFunds(Conflict):
    code = "insufficient_funds"

    def __init__(self, account: Account):
        super().__init__(_("Not enough balance in %(account)s.") % {"account": account.name})
        self.account = account


@dataclass(frozen=True)
class AccountSpec:
    code: str
    name: str
    kind: str
    allow_negative: bool = True
    owner_id: int | None = None

    @property
    def debit_normal(self) -> bool:
        return self.kind in (Kind.ASSET, Kind.EXPENSE)


# Platform accounts. Customers' money (held, refunds due, wallets) is kept apart from revenue.
HELD = AccountSpec("liability:orders_held", "Customer payments for orders not yet delivered", Kind.LIABILITY)
REFUNDS_DUE = AccountSpec("liability:refunds_due", "Payments to return to customers", Kind.LIABILITY)
SALES = AccountSpec("revenue:sales", "Sales of card codes", Kind.REVENUE)
COST_OF_SALES = AccountSpec("expense:cost_of_sales", "Cost of card codes sold", Kind.EXPENSE)


# Agents' earnings: an expense of the platform, owed to the agents (see agents.services.commissions).
COMMISSIONS = AccountSpec("expense:commissions", "Commissions earned by agents", Kind.EXPENSE)
# Approved-or-requested withdrawals not yet paid out, and the fees charged on them.
WITHDRAWALS_PAYABLE = AccountSpec(
    "liability:withdrawals_payable", "Withdrawals requested, not yet paid out", Kind.LIABILITY
)
WITHDRAWAL_FEES = AccountSpec("revenue:withdrawal_fees", "Fees on agents' withdrawals", Kind.REVENUE)
# Coupon discounts (marketing): contra-revenue, booked against the sale at delivery. The
# platform's own coupons stay here as its cost; an agent's coupons are booked to the second
# account and cleared by the agent's commission entry (its earnings fund them).
COUPON_DISCOUNTS = AccountSpec("revenue:coupon_discounts", "Coupon discounts funded by the platform", Kind.REVENUE)
AGENT_COUPON_DISCOUNTS = AccountSpec(
    "revenue:agent_coupon_discounts", "Coupon discounts funded by agents' earnings", Kind.REVENUE
)
# Referral rewards credited to inviters' wallets: a marketing expense (referrals.services).
REFERRAL_REWARDS = AccountSpec("expense:referral_rewards", "Referral rewards (marketing)", Kind.EXPENSE)
# Money paid out by bank transfer that staff made by hand (recorded with its reference).
BANK = AccountSpec("asset:bank", "Bank account (manual transfers)", Kind.ASSET)


def commission_pending(user) -> AccountSpec:
    """An agent's commissions inside the refund window: not yet withdrawable."""
    return AccountSpec(
        f"liability:commission_pending:{user.pk}",
        f"Pending commission of {user}",
        Kind.LIABILITY,
        allow_negative=False,
        owner_id=user.pk,
    )


def commission_available(user) -> AccountSpec:
    """An agent's commissions past the refund window: what it may withdraw."""
    return AccountSpec(
        f"liability:commission:{user.pk}",
        f"Available commission of {user}",
        Kind.LIABILITY,
        allow_negative=False,
        owner_id=user.pk,
    )


def agent_receivable(user) -> AccountSpec:
    """What an agent owes back: a commission reversed after it had been withdrawn."""
    return AccountSpec(f"asset:agent_receivable:{user.pk}", f"Owed by agent {user}", Kind.ASSET, owner_id=user.pk)


def clearing(gateway: str) -> AccountSpec:
    """Money a gateway has collected for us and not yet settled to the bank."""
    return AccountSpec(f"asset:clearing:{gateway}", f"Gateway clearing: {gateway}", Kind.ASSET)


def supplier_payable(supplier_id: int, name: str) -> AccountSpec:
    return AccountSpec(f"liability:supplier:{supplier_id}", f"Payable to supplier {name}", Kind.LIABILITY)


def wallet(user) -> AccountSpec:
    return AccountSpec(
        f"liability:wallet:{user.pk}", f"Wallet of {user}", Kind.LIABILITY, allow_negative=False, owner_id=user.pk
    )


# Accounts without an owner (the platform's, the gateways' clearing, the suppliers' payables)
# never change once opened: their rows are kept per process, so a sale does not look them up
# again. Only rows known to be committed are kept (on commit of the transaction that read or
# opened them): an account opened by a transaction that rolls back is never remembered.
# Owned accounts (wallets, commissions) are read each time (their names follow the owner).
_opened: dict[str, Account] = {}


def accounts_forget() -> None:
    """Forget the accounts kept in this process (tests, whose database rolls back)."""
    _opened.clear()


def _remember(accounts: list[Account]) -> None:
    keep = {a.code: a for a in accounts if a.owner_id is None}
    if not keep:
        return
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        transaction.on_commit(lambda: _opened.update(keep))
    else:
        _opened.update(keep)


# One account by its code (an owned one, e.g. the wallet paying): compiled once per process.
_ACCOUNT = Prepared(lambda code: Account.objects.filter(code=code), code="k-sample-account-code")


def accounts_get(*specs: AccountSpec) -> dict[str, Account]:
    """The accounts for these specs, created on first use (the database opens their balance rows)."""
    codes = {spec.code: spec for spec in specs}
    found = {code: _opened[code] for code in codes if code in _opened}
    if len(found) == len(codes):
        return found
    missing = [code for code in codes if code not in found]
    read = _ACCOUNT.objects(code=missing[0]) if len(missing) == 1 else list(Account.objects.filter(code__in=missing))
    found.update({a.code: a for a in read})
    for code, spec in codes.items():
        if code not in found:
            account, _created = Account.objects.get_or_create(
                code=code,
                defaults={
                    "name": spec.name,
                    "kind": spec.kind,
                    "allow_negative": spec.allow_negative,
                    "owner_id": spec.owner_id,
                },
            )
            found[code] = account
            read.append(account)
    _remember(read)
    return found


def transfer(
    *,
    debit: AccountSpec,
    credit: AccountSpec,
    amount: Decimal,
    kind: str,
    reference: str = "",
    memo: str = "",
    idempotency_key: str | None = None,
) -> Entry:
    """Post one movement: ``amount`` (above zero) debited to ``debit`` and credited to
    ``credit``, as one balanced two-line entry. A debit takes from a liability or revenue
    account (a wallet paying, a commission withdrawn) and adds to an asset or expense one.

    Like ``entry_post``: in the caller's transaction, idempotent on ``idempotency_key``, and
    ``InsufficientFunds`` when it would overdraw an account that may not go below zero.
    """
    sealed = transfer_sealed_by_caller(
        debit=debit,
        credit=credit,
        amount=amount,
        kind=kind,
        reference=reference,
        memo=memo,
        idempotency_key=idempotency_key,
    )
    sealed.write()
    return cast(Entry, sealed.obj)


def transfer_sealed_by_caller(
    *,
    debit: AccountSpec,
    credit: AccountSpec,
    amount: Decimal,
    kind: str,
    reference: str = "",
    memo: str = "",
    idempotency_key: str | None = None,
) -> row_sql.Row:
    """``transfer`` whose entry the caller writes (``entry_post_sealed_by_caller``): a payment's,
    with the order's move to paid."""
    if quantize(amount) <= 0:
        raise UnbalancedEntry(f"{kind} {reference}: a transfer moves an amount above zero, not {amount}")
    return entry_post_sealed_by_caller(
        kind=kind,
        legs=[(debit, amount), (credit, -amount)],
        reference=reference,
        memo=memo,
        idempotency_key=idempotency_key,
    )


def entry_post(
    *,
    kind: str,
    legs: Sequence[tuple[AccountSpec | Account, Decimal]],
    reference: str = "",
    memo: str = "",
    idempotency_key: str | None = None,
    reverses: Entry | None = None,
) -> Entry:
    """Post one entry: ``legs`` are (account, amount) with debits positive, credits negative;
    an account is an ``AccountSpec`` (opened on first use) or an ``Account``. For entries of
    more than two lines; a movement between two accounts is a ``transfer``.

    Runs in the caller's transaction, so the entry stands or falls with the business change it
    records. The database refuses an entry that does not sum to zero and a second entry with
    the same idempotency key (the business event was already recorded).
    """
    sealed = entry_post_sealed_by_caller(
        kind=kind, legs=legs, reference=reference, memo=memo, idempotency_key=idempotency_key, reverses=reverses
    )
    sealed.write()
    return cast(Entry, sealed.obj)


def entry_post_sealed_by_caller(
    *,
    kind: str,
    legs: Sequence[tuple[AccountSpec | Account, Decimal]],
    reference: str = "",
    memo: str = "",
    idempotency_key: str | None = None,
    reverses: Entry | None = None,
) -> row_sql.Row:
    """``entry_post`` whose entry, the row that seals its lines, the caller writes in its own
    statement: the lines are written now, the entry is returned unwritten, for
    ``StateMachine.apply(along=...)`` (a payment, a delivery: the entry rides the order's move,
    one statement fewer) or ``.write()``. The database checks what it checks for ``entry_post``:
    the entry's trigger refuses lines that do not sum to zero and its unique key a second entry
    for the same event, when the entry is written. Lines whose entry is never written cannot
    commit: their foreign key to the entry is checked at COMMIT, so the caller's transaction
    fails whole."""
    entry = Entry(
        id=uuid.uuid4(),
        kind=kind,
        reference=reference[:80],
        memo=memo[:200],
        idempotency_key=idempotency_key,
        reverses=reverses,
    )
    _entry_lines(entry, legs)
    return row_sql.Row(entry)


def _entry_lines(entry: Entry, legs: Sequence[tuple[AccountSpec | Account, Decimal]]) -> None:
    """``entry``'s lines written (the entry itself not: writing it seals them)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger entries are posted inside the transaction of what they record")
    specs = [account for account, _amount in legs if isinstance(account, AccountSpec)]
    opened = accounts_get(*specs) if specs else {}
    resolved = [(opened[a.code] if isinstance(a, AccountSpec) else a, amount) for a, amount in legs]
    merged: dict[int, Decimal] = defaultdict(Decimal)
    accounts: dict[int, Account] = {}
    for account, amount in resolved:
        merged[account.pk] += quantize(amount)
        accounts[account.pk] = account
    lines = {pk: amount for pk, amount in merged.items() if amount}
    if len(lines) < 2 or sum(lines.values()) != 0:
        raise UnbalancedEntry(f"{entry.kind} {entry.reference}: legs {dict(merged)} do not make a balanced entry")
    # Lines first, then the entry: writing the entry seals them (see the migrations' triggers).
    # Writing a line moves its account's balance row, where a CHECK refuses an overdraft.
    rows = [(entry.pk, pk, amount) for pk, amount in sorted(lines.items())]
    using = router.db_for_write(Entry)
    # Constant-shape INSERTs on PostgreSQL (``bulk_create`` and ``create`` compile their query on
    # every entry); the same rows, the lines then the entry, so the triggers see what they saw.
    plain = row_sql.one_statement_ok(using, Line)
    floored = {pk: amount for pk, amount in lines.items() if not accounts[pk].allow_negative}
    if not floored:
        _insert_lines(rows, using, plain)
    else:
        try:
            # A refused overdraft leaves nothing written, even if the caller goes on.
            with transaction.atomic(using=using):
                _insert_lines(rows, using, plain)
        except IntegrityError as exc:
            if OVERDRAWN not in str(exc):
                raise
            raise InsufficientFunds(_overdrawn(floored, accounts)) from None


_LINE_COLUMNS = ("entry_id", "account_id", "amount")


def _insert_lines(lines: list[tuple], using: str, plain: bool) -> None:
    """The entry's lines, (entry id, account id, amount) each: one INSERT of constant text on
    PostgreSQL (no ``Line`` instance is built: nothing reads them back), ``bulk_create`` elsewhere."""
    if plain:
        row_sql.insert_values(Line, _LINE_COLUMNS, lines, using=using)
    else:
        Line.objects.using(using).bulk_create([Line(**dict(zip(_LINE_COLUMNS, row, strict=True))) for row in lines])


OVERDRAWN = "ledger_balance_not_overdrawn"  # the CHECK on balance rows


def _overdrawn(lines: dict[int, Decimal], accounts: dict[int, Account]) -> Account:
    """Which account the refused lines would have overdrawn (read after the refusal, so only a
    refused posting pays for it)."""
    natural = {pk: amount if accounts[pk].debit_normal else -amount for pk, amount in lines.items()}
    have = dict(Balance.objects.filter(account_id__in=list(natural)).values_list("account_id", "balance"))
    short = [pk for pk, delta in natural.items() if have.get(pk, Decimal(0)) + delta < 0]
    return accounts[min(short or natural, key=lambda pk: natural[pk])]


def entry_reverse(*, entry: Entry, memo: str = "") -> Entry:
    """Undo an entry with its mirror image; an entry is reversed at most once."""
    legs = [(line.account, -line.amount) for line in entry.lines.select_related("account")]
    return entry_post(
        kind=f"reversal:{entry.kind}"[:30], legs=legs, reference=entry.reference, memo=memo, reverses=entry
    )
