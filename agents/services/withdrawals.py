"""Withdrawals: an agent takes available commission out.

The money moves in the ledger at every step:

- requested: ``commission_available(agent)`` debited, ``WITHDRAWALS_PAYABLE`` credited with the
  amount (the hold). The account's ``Balance`` row and its CHECK are what refuse an overdraft,
  also under concurrency: a request the balance cannot cover raises ``WithdrawalError`` and
  leaves nothing behind;
- rejected (by staff, with a reason the agent sees): the hold is released back;
- paid: ``WITHDRAWALS_PAYABLE`` debited with the amount, the account the money left from
  (a gateway's clearing account, or the bank for a manual transfer) credited with the net, and
  ``WITHDRAWAL_FEES`` with the fee.

Status changes go through ``WITHDRAWAL_FLOW`` (marketplace.transitions) and leave a
``WithdrawalStatusChange`` row with the actor and a note. Paying out is the payments app's
work (payments.services.payouts): it calls the transitions here and passes the side effects to queue.
"""

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from compliance import rating
from ledger import services as ledger
from ledger.selectors import balance_of, balances_of
from marketplace import crypto
from marketplace.errors import ServiceError
from marketplace.money import quantize
from marketplace.transitions import IllegalTransition
from risk import services as risk

from ..models import WITHDRAWAL_FLOW, Agent, Withdrawal, WithdrawalStatusChange

log = logging.getLogger(__name__)
WithdrawalStatus = Withdrawal.Status
WithdrawalMethod = Withdrawal.Method

OPEN_STATUSES = (WithdrawalStatus.REQUESTED, WithdrawalStatus.APPROVED, WithdrawalStatus.FAILED)


class WithdrawalError(ServiceError):
    """A withdrawal that cannot be made or changed; the message is for the agent or staff."""

    code = "withdrawal_refused"


# --- the fee rule ------------------------------------------------------------------------------


def min_amount() -> Decimal:
    return quantize(settings.WITHDRAWAL_MIN_AMOUNT)


def fee_percent() -> Decimal:
    return Decimal(str(settings.WITHDRAWAL_FEE_PERCENT))


def fee_min() -> Decimal:
    return quantize(settings.WITHDRAWAL_FEE_MIN)


def withdrawal_fee(amount: Decimal) -> tuple[Decimal, Decimal]:
    """(fee, net) for ``amount``: the larger of the minimum fee and the percentage, to the fen."""
    amount = quantize(amount)
    fee = max(fee_min(), quantize(amount * fee_percent() / 100))
    return fee, amount - fee


def parse_amount(value) -> Decimal:
    """The amount an agent typed, as Decimal yuan; a clear WithdrawalError otherwise."""
    if isinstance(value, float):
        raise WithdrawalError(_("Give the amount as a decimal, not a float."))
    text = str(value if value is not None else "").strip().replace(",", "").removeprefix("¥").strip()
    try:
        amount = Decimal(text)
    except (InvalidOperation, ValueError):
        raise WithdrawalError(_("Enter the amount in yuan, for example 100 or 100.50.")) from None
    if not amount.is_finite():
        raise WithdrawalError(_("Enter the amount in yuan, for example 100 or 100.50."))
    if amount != amount.quantize(Decimal("0.01")):
        raise WithdrawalError(_("An amount has at most two decimal places (fen)."))
    return quantize(amount)


def amount_check(amount: Decimal) -> tuple[Decimal, Decimal]:
    """(fee, net) for an amount an agent may ask for; WithdrawalError says what is wrong."""
    minimum = min_amount()
    if amount < minimum:
        raise WithdrawalError(_("The minimum withdrawal is ¥%(min)s.") % {"min": minimum})
    if amount >= Decimal("1000000000"):
        raise WithdrawalError(_("That amount is too large."))
    fee, net = withdrawal_fee(amount)
    if net <= 0:
        raise WithdrawalError(
            _("The fee (¥%(fee)s) would take all of ¥%(amount)s: withdraw more.") % {"fee": fee, "amount": amount}
        )
    return fee, net


# --- reads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    pending: Decimal  # inside the refund window: not withdrawable yet
    available: Decimal  # may be withdrawn now
    in_progress: Decimal  # requested, approved or failed: held, not paid yet
    withdrawn: Decimal  # paid out (gross, fees included)
    fees: Decimal  # fees on what was paid out


def withdrawal_summary(*, agent: Agent) -> Summary:
    user = agent.user
    rows = agent.withdrawals.values("status").annotate(total=Sum("amount"), fees=Sum("fee"))
    by_status = {row["status"]: row for row in rows}
    paid = by_status.get(WithdrawalStatus.PAID, {})
    pending, available = ledger.commission_pending(user), ledger.commission_available(user)
    balances = balances_of(pending, available)
    return Summary(
        pending=balances[pending.code],
        available=balances[available.code],
        in_progress=quantize(sum((by_status.get(s, {}).get("total") or 0) for s in OPEN_STATUSES)),
        withdrawn=quantize(paid.get("total") or 0),
        fees=quantize(paid.get("fees") or 0),
    )


def withdrawals_of(*, agent: Agent):
    return agent.withdrawals.order_by("-id")


def withdrawal_of(*, agent: Agent, number: str) -> Withdrawal | None:
    """The agent's own withdrawal, or None (another agent's is as good as missing)."""
    return Withdrawal.objects.filter(agent=agent, number=number).prefetch_related("history").first()


def payee_account(withdrawal: Withdrawal) -> str:
    """The decrypted account: only for paying out (and staff allowed to see it)."""
    return crypto.decrypt(withdrawal.payee_account)


def payee_account_masked(withdrawal: Withdrawal) -> str:
    try:
        return crypto.mask(payee_account(withdrawal))
    except ValueError:
        return "••••"


# --- requesting ----------------------------------------------------------------------------


def _new_number() -> str:
    # W + Beijing-or-local timestamp + 6 random digits: 21 characters, also a valid Alipay out_biz_no.
    stamp = timezone.localtime().strftime("%Y%m%d%H%M%S")
    return f"W{stamp}{secrets.randbelow(10**6):06d}"


def _payee(*, method: str, payee_name: str, payee_account: str, bank_name: str) -> tuple[str, str, str]:
    if method not in WithdrawalMethod.values:
        raise WithdrawalError(_("Choose how to be paid: Alipay or bank transfer."))
    name = " ".join((payee_name or "").split())
    account = "".join((payee_account or "").split())
    bank = " ".join((bank_name or "").split())
    if not name:
        raise WithdrawalError(_("Enter the payee's real name (as registered with the account)."))
    if len(name) > 60:
        raise WithdrawalError(_("The payee's name is too long (60 characters at most)."))
    if not account:
        raise WithdrawalError(_("Enter the account to pay to."))
    if method == WithdrawalMethod.ALIPAY:
        is_phone = account.isascii() and account.isdigit() and len(account) == 11 and account.startswith("1")
        is_email = "@" in account and "." in account.rsplit("@", 1)[-1] and len(account) <= 100
        if not (is_phone or is_email):
            raise WithdrawalError(_("An Alipay account is the phone number or email you log in to Alipay with."))
        bank = ""
    else:
        if not (account.isascii() and account.isdigit() and 12 <= len(account) <= 30):
            raise WithdrawalError(_("A bank card number has 12 to 30 digits."))
        if not bank:
            raise WithdrawalError(_("Enter the bank (and branch) of the account."))
        if len(bank) > 60:
            raise WithdrawalError(_("The bank's name is too long (60 characters at most)."))
    return name, account, bank


def withdrawal_request(
    *,
    agent: Agent,
    amount,
    method: str,
    payee_name: str,
    payee_account: str,
    bank_name: str = "",
    idempotency_key: str,
    ip: str | None = None,
) -> Withdrawal:
    """Ask to withdraw ``amount`` of the agent's available commission; it is held at once.

    The same ``idempotency_key`` twice (a double click) gives the same withdrawal. A request the
    available balance cannot cover (also when many race) raises WithdrawalError, writing nothing.
    """
    key = (idempotency_key or "").strip()[:64]
    if not key:
        raise WithdrawalError(_("The form expired: reload the page and try again."))
    existing = Withdrawal.objects.filter(agent=agent, idempotency_key=key).first()
    if existing is not None:
        return existing
    rating.withdraw_check(user=agent.user)  # a credit level may hold withdrawals (CreditRestricted)
    amount = parse_amount(amount)
    fee, net = amount_check(amount)
    name, account, bank = _payee(method=method, payee_name=payee_name, payee_account=payee_account, bank_name=bank_name)
    try:  # the blacklist: the payout account, the agent's email, the IP
        risk.withdrawal_screen(user=agent.user, ip=ip, payout_account=account)
    except risk.RiskRefused as exc:
        raise WithdrawalError(str(exc), code=exc.code, status=exc.status) from None
    spec = ledger.commission_available(agent.user)
    try:
        with transaction.atomic():
            withdrawal = Withdrawal.objects.create(
                number=_new_number(),
                agent=agent,
                amount=amount,
                fee=fee,
                net=net,
                method=method,
                payee_name=name,
                payee_account=crypto.encrypt(account),
                bank_name=bank,
                idempotency_key=key,
            )
            ledger.transfer(
                debit=spec,
                credit=ledger.WITHDRAWALS_PAYABLE,
                amount=amount,
                kind="withdrawal_hold",
                reference=withdrawal.number,
                memo=f"withdrawal requested by agent {agent.pk}",
                idempotency_key=f"withdrawal_hold:{withdrawal.number}",
            )
            WithdrawalStatusChange.objects.create(
                withdrawal=withdrawal,
                to_status=WithdrawalStatus.REQUESTED,
                actor=agent.user,
                note=_("Requested by the agent"),
            )
    except ledger.InsufficientFunds:
        available = balance_of(spec)
        raise WithdrawalError(
            _("Not enough available commission: you asked for ¥%(amount)s, ¥%(available)s is available.")
            % {"amount": amount, "available": available}
        ) from None
    except IntegrityError:
        # The same key committed meanwhile by a concurrent click (or, astronomically rarely, a
        # number collision): the first one stands.
        existing = Withdrawal.objects.filter(agent=agent, idempotency_key=key).first()
        if existing is not None:
            return existing
        raise
    log.info("withdrawal %s requested: %s (fee %s) by agent %s", withdrawal.number, amount, fee, agent.pk)
    return withdrawal


# --- staff decisions and the payout's outcome ------------------------------------------------


def _locked(withdrawal_id: int) -> Withdrawal:
    return Withdrawal.objects.select_for_update(of=("self",)).select_related("agent__user").get(pk=withdrawal_id)


def _move(withdrawal: Withdrawal, dst: str, **kwargs) -> bool:
    try:
        return WITHDRAWAL_FLOW.apply(withdrawal, dst, **kwargs)
    except IllegalTransition:
        raise WithdrawalError(
            _("Withdrawal %(number)s is %(status)s: it cannot become %(target)s.")
            % {
                "number": withdrawal.number,
                "status": withdrawal.get_status_display(),
                "target": WithdrawalStatus(dst).label,
            }
        ) from None


def withdrawal_approve(
    *, withdrawal_id: int, actor, note: str = "", on_commit: Iterable[Callable[[], None]] = ()
) -> Withdrawal:
    """Staff approve a request; ``on_commit`` are the payout's side effects (queued by payments)."""
    with transaction.atomic():
        withdrawal = _locked(withdrawal_id)
        if withdrawal.status != WithdrawalStatus.APPROVED:
            _move(
                withdrawal,
                WithdrawalStatus.APPROVED,
                actor=actor,
                note=note or _("Approved"),
                update={"reviewed_by": actor, "reviewed_at": timezone.now(), "payout_error": ""},
                on_commit=on_commit,
            )
    return withdrawal


def withdrawal_reject(*, withdrawal_id: int, actor, reason: str) -> Withdrawal:
    """Staff refuse (or give up on a failed payout): the held amount goes back to the agent."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise WithdrawalError(_("Give the reason for the rejection: the agent will see it."))
    with transaction.atomic():
        withdrawal = _locked(withdrawal_id)
        if withdrawal.status == WithdrawalStatus.REJECTED:
            return withdrawal
        if withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.method != WithdrawalMethod.BANK:
            raise WithdrawalError(
                _("Withdrawal %(number)s is being paid out: wait until it is paid or has failed.")
                % {"number": withdrawal.number}
            )
        spec = ledger.commission_available(withdrawal.agent.user)
        _move(
            withdrawal,
            WithdrawalStatus.REJECTED,
            actor=actor,
            note=reason,
            update={"reject_reason": reason[:300], "reviewed_by": actor, "reviewed_at": timezone.now()},
        )
        ledger.transfer(
            debit=ledger.WITHDRAWALS_PAYABLE,
            credit=spec,
            amount=withdrawal.amount,
            kind="withdrawal_release",
            reference=withdrawal.number,
            memo=reason[:200],
            idempotency_key=f"withdrawal_release:{withdrawal.number}",
        )
    log.info("withdrawal %s rejected by %s", withdrawal.number, getattr(actor, "pk", None))
    return withdrawal


def withdrawal_pay(
    *, withdrawal_id: int, paid_from: ledger.AccountSpec, reference: str, actor=None, note: str = ""
) -> bool:
    """The money reached the payee: book it out of ``paid_from``. False when already paid."""
    with transaction.atomic():
        withdrawal = _locked(withdrawal_id)
        if withdrawal.status == WithdrawalStatus.PAID:
            return False
        _move(
            withdrawal,
            WithdrawalStatus.PAID,
            actor=actor,
            note=note,
            update={"payout_reference": reference[:64], "payout_error": ""},
        )
        ledger.entry_post(
            kind="withdrawal_paid",
            legs=[
                (ledger.WITHDRAWALS_PAYABLE, withdrawal.amount),
                (paid_from, -withdrawal.net),
                (ledger.WITHDRAWAL_FEES, -withdrawal.fee),
            ],
            reference=withdrawal.number,
            memo=f"{withdrawal.method} {reference}"[:200],
            idempotency_key=f"withdrawal_paid:{withdrawal.number}",
        )
    log.info("withdrawal %s paid: %s to %s (%s)", withdrawal.number, withdrawal.net, withdrawal.method, reference)
    return True


def withdrawal_fail(*, withdrawal_id: int, error: str, actor=None) -> bool:
    """The payout definitely did not happen: staff retry or reject. False when not approved."""
    with transaction.atomic():
        withdrawal = _locked(withdrawal_id)
        if withdrawal.status != WithdrawalStatus.APPROVED:
            return False
        _move(withdrawal, WithdrawalStatus.FAILED, actor=actor, note=error, update={"payout_error": error[:300]})
    log.warning("withdrawal %s payout failed: %s", withdrawal.number, error)
    return True


def withdrawal_note_error(*, withdrawal_id: int, error: str) -> None:
    """An approved payout whose outcome is not known yet: say so where staff look."""
    Withdrawal.objects.filter(pk=withdrawal_id, status=WithdrawalStatus.APPROVED).update(payout_error=error[:300])


def withdrawal_retry(*, withdrawal_id: int, actor, on_commit: Iterable[Callable[[], None]] = ()) -> Withdrawal:
    """Staff send a failed payout again (after fixing what made it fail)."""
    with transaction.atomic():
        withdrawal = _locked(withdrawal_id)
        if withdrawal.status != WithdrawalStatus.FAILED:
            raise WithdrawalError(
                _("Only a failed payout can be retried; %(number)s is %(status)s.")
                % {"number": withdrawal.number, "status": withdrawal.get_status_display()}
            )
        _move(
            withdrawal,
            WithdrawalStatus.APPROVED,
            actor=actor,
            note=_("Payout retried after: %(error)s") % {"error": withdrawal.payout_error},
            update={"payout_error": ""},
            on_commit=on_commit,
        )
    return withdrawal
