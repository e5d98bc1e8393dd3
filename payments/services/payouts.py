"""Payouts: the money of an approved withdrawal leaves the platform.

Staff approve (or reject) a withdrawal in admin; the state machine and the ledger of a
withdrawal live in ``agents.services.withdrawals``, this module does the paying:

- Alipay: a transfer through the adapter (alipay.fund.trans.uni.transfer) whose out_biz_no is the
  withdrawal's number, so Alipay pays at most once however often it is asked. A Celery task does
  it after the approval commits. Each run first asks the transfer query where that number stands
  and only sends a transfer Alipay has never seen: success -> paid (clearing("alipay") credited),
  a definite refusal -> failed (staff retry or reject), no answer -> stays approved, asked again
  by the next run (the beat, or staff).
- Bank: staff make the transfer by hand and record it with its bank reference -> paid
  (the ledger's BANK account credited).

The withdrawal's row is locked while its payout runs: two workers never pay the same one.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import Withdrawal
from agents.services import withdrawals
from agents.services.withdrawals import WithdrawalError
from ledger import services as ledger

from ..gateways import GatewayError, enabled_gateways
from ..gateways.alipay import AlipayGateway

log = logging.getLogger(__name__)
WithdrawalStatus = Withdrawal.Status
M = Withdrawal.Method
ALIPAY = "alipay"


class PayoutError(WithdrawalError):
    """A payout that cannot be done as asked; the message is for staff."""

    code = "payout_refused"


def _queue(withdrawal: Withdrawal):
    """The side effect of an approval: an Alipay payout is queued; a bank one waits for staff."""
    if withdrawal.method != M.ALIPAY:
        return ()
    from ..tasks import payout_execute

    pk = withdrawal.pk
    return (lambda: payout_execute.delay(pk),)


def payout_approve(*, withdrawal_id: int, staff, note: str = "") -> Withdrawal:
    """Staff approve a withdrawal: an Alipay one is paid out by a task after the commit."""
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    if (
        withdrawal.status == WithdrawalStatus.REQUESTED
        and withdrawal.method == M.ALIPAY
        and not AlipayGateway.is_enabled()
    ):
        raise PayoutError(_("Alipay is not configured: it cannot pay %(number)s out.") % {"number": withdrawal.number})
    return withdrawals.withdrawal_approve(
        withdrawal_id=withdrawal_id, actor=staff, note=note, on_commit=_queue(withdrawal)
    )


def payout_reject(*, withdrawal_id: int, staff, reason: str) -> Withdrawal:
    """Staff refuse a request or give up on a failed payout: the agent gets the amount back."""
    return withdrawals.withdrawal_reject(withdrawal_id=withdrawal_id, actor=staff, reason=reason)


def payout_retry(*, withdrawal_id: int, staff) -> Withdrawal:
    """A failed payout sent again (the same out_biz_no: it still cannot pay twice)."""
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    if withdrawal.method != M.ALIPAY:
        raise PayoutError(_("A bank payout is recorded by hand, not retried."))
    return withdrawals.withdrawal_retry(withdrawal_id=withdrawal_id, actor=staff, on_commit=_queue(withdrawal))


def payout_check(*, withdrawal_id: int) -> None:
    """Ask again about an approved Alipay payout (e.g. after a timeout): queued now."""
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    if withdrawal.status != WithdrawalStatus.APPROVED or withdrawal.method != M.ALIPAY:
        raise PayoutError(_("Only an approved Alipay payout can be checked."))
    for callback in _queue(withdrawal):
        transaction.on_commit(callback)


def payout_record_bank(*, withdrawal_id: int, staff, reference: str, note: str = "") -> Withdrawal:
    """Staff made the bank transfer by hand: record it with the bank's reference -> paid."""
    reference = " ".join((reference or "").split())
    if not reference:
        raise PayoutError(_("Enter the bank's reference of the transfer."))
    if len(reference) > 64:
        raise PayoutError(_("The reference is too long (64 characters at most)."))
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update(of=("self",)).get(pk=withdrawal_id)
        if withdrawal.method != M.BANK:
            raise PayoutError(_("%(number)s is paid by Alipay, not by bank transfer.") % {"number": withdrawal.number})
        if withdrawal.status == WithdrawalStatus.PAID:
            if withdrawal.payout_reference == reference:
                return withdrawal  # the same record twice (a double click)
            raise PayoutError(
                _("%(number)s was already recorded as paid (reference %(reference)s).")
                % {"number": withdrawal.number, "reference": withdrawal.payout_reference}
            )
        if withdrawal.status == WithdrawalStatus.REQUESTED:
            withdrawals.withdrawal_approve(
                withdrawal_id=withdrawal.pk, actor=staff, note=_("Approved for bank transfer")
            )
        text = _("Bank transfer recorded, reference %(reference)s") % {"reference": reference}
        withdrawals.withdrawal_pay(
            withdrawal_id=withdrawal.pk,
            paid_from=ledger.BANK,
            reference=reference,
            actor=staff,
            note=f"{text}. {note}".strip() if note.strip() else text,
        )
    withdrawal.refresh_from_db()
    return withdrawal


def payout_execute(*, withdrawal_id: int) -> str:
    """Pay an approved Alipay withdrawal out, or find out where its payout stands.

    Safe to run any number of times, also at once: the row is locked for the run (a second run
    skips it), Alipay is asked before it is told, and the transfer is idempotent on its number.
    """
    with transaction.atomic():
        withdrawal = (
            Withdrawal.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=withdrawal_id)
            .select_related("agent__user")
            .first()
        )
        if withdrawal is None:
            return "busy"  # another run has it (or it does not exist)
        if withdrawal.status != WithdrawalStatus.APPROVED or withdrawal.method != M.ALIPAY:
            return "not due"
        gateway = enabled_gateways().get(ALIPAY)
        if not isinstance(gateway, AlipayGateway):
            withdrawals.withdrawal_note_error(withdrawal_id=withdrawal.pk, error="Alipay is not configured")
            return "not configured"
        try:
            result = gateway.transfer_query(out_biz_no=withdrawal.number)
            if result.state == "not_found":
                result = gateway.transfer(
                    out_biz_no=withdrawal.number,
                    amount=withdrawal.net,
                    payee_account=withdrawals.payee_account(withdrawal),
                    payee_name=withdrawal.payee_name,
                    title=_("Commission withdrawal %(number)s") % {"number": withdrawal.number},
                )
        except GatewayError as exc:
            error = _("Outcome unknown, will ask Alipay again: %(error)s") % {"error": exc}
            withdrawals.withdrawal_note_error(withdrawal_id=withdrawal.pk, error=error)
            log.warning("payout %s: %s", withdrawal.number, exc)
            return "unknown"
        if result.state == "success":
            if result.amount is not None and result.amount != withdrawal.net:
                error = f"Alipay reports {result.amount} paid for {withdrawal.number}, expected {withdrawal.net}"
                withdrawals.withdrawal_note_error(withdrawal_id=withdrawal.pk, error=error)
                log.error("payout %s: %s", withdrawal.number, error)
                return "mismatch"
            withdrawals.withdrawal_pay(
                withdrawal_id=withdrawal.pk,
                paid_from=ledger.clearing(ALIPAY),
                reference=result.order_id or result.fund_order_id,
                note=_("Paid by Alipay transfer %(order)s") % {"order": result.order_id or result.fund_order_id},
            )
            return "paid"
        if result.state == "failed":
            withdrawals.withdrawal_fail(withdrawal_id=withdrawal.pk, error=result.error or "refused by Alipay")
            return "failed"
        withdrawals.withdrawal_note_error(
            withdrawal_id=withdrawal.pk, error=_("Alipay is still processing the transfer; asking again later.")
        )
        return "processing"


def payouts_due(*, limit: int = 100) -> list[int]:
    """Approved Alipay payouts whose outcome is not known a while after approval: ask again."""
    cutoff = timezone.now() - timedelta(minutes=2)
    return list(
        Withdrawal.objects.filter(status=WithdrawalStatus.APPROVED, method=M.ALIPAY, reviewed_at__lte=cutoff)
        .order_by("reviewed_at")
        .values_list("pk", flat=True)[:limit]
    )
