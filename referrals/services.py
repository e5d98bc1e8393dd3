"""Referral growth (裂变), one level only: invitation codes, the invitation recorded at sign-up,
the reward paid when the invitee's first order is past its refund window, and the screens that
refuse a farmed one.

The flow (``Referral``'s state machine, models.REFERRAL_FLOW):

1. ``invite_code_get``: a member's code, made once (a POST or the sign-up: pages never write).
2. ``referral_record``: at sign-up, from the signed cookie /r/<code>/ set (referrals.adapter).
   One inviter per invitee, never oneself; screened at once (shared IP or device, disposable email).
3. ``referral_qualify``: the invitee's first delivered order (placed after the sign-up) found by
   the beat task; the refund window (REFUND_WINDOW_DAYS, as for agents' commissions) starts.
4. ``referral_settle``: a refund inside the window cancels; past the window the screens run again
   (now with payout accounts and the inviter's daily cap) and the reward is credited to the
   inviter's wallet, booked as a marketing expense (``ledger.REFERRAL_REWARDS``) under an
   idempotency key. Safe to run twice: the row is locked and must still be qualified.

One level: the reward is the inviter's for the invitee's own purchase. Nothing here reads the
invitee's own referrals, and nothing ever will (禁止传销条例 第七条; the prosecution standard
counts three levels: see models.py and README).
"""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import datetime, time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import Withdrawal
from agents.services.commissions import refund_window
from agents.services.withdrawals import payee_account
from compliance.services import audit_record
from ledger import services as ledger
from ledger.models import Entry
from marketplace.errors import ServiceError
from marketplace.ratelimit import client_network
from orders.models import Order
from risk import services as risk
from risk.models import Action, BlockEntry, Signup, block_value_normalise

from .models import REFERRAL_FLOW, InviteCode, Referral, ReferralStatus

log = logging.getLogger(__name__)

# The risk queue's rule for a refused referral (risk.models.Alert.rule; its evidence says why).
ALERT_RULE = "referral_abuse"
REFUNDED = (Order.Status.REFUND_PENDING, Order.Status.REFUNDED)


class ReferralError(ServiceError):
    code = "referral"


# --- codes -------------------------------------------------------------------------------------


def _new_code() -> str:
    """80 random bits, lower-case base32 (16 characters): unguessable, easy to read aloud."""
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


def invite_code_get(*, user) -> InviteCode:
    """The member's invitation code, made on first use and kept (a link once shared stays valid)."""
    found = InviteCode.objects.filter(user=user).first()
    if found is not None:
        return found
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return InviteCode.objects.create(user=user, code=_new_code())
        except IntegrityError:  # the member's own row made meanwhile, or (never seen) a clash
            found = InviteCode.objects.filter(user=user).first()
            if found is not None:
                return found
    raise RuntimeError("could not make an invitation code")


# --- the screens -------------------------------------------------------------------------------


def _footprints(user) -> tuple[set[str], set[str]]:
    """Where ``user`` has been seen: networks (IPv4 address, IPv6 /64) and device ids, from the
    sign-up (risk's record, and the referral's own) and the member's orders."""
    ips: set[str] = set()
    devices: set[str] = set()
    rows = list(Signup.objects.filter(user=user).values_list("ip", "device"))
    rows += list(Referral.objects.filter(invitee=user).values_list("signup_ip", "signup_device"))
    rows += list(Order.objects.filter(buyer=user).values_list("buyer_ip", "buyer_device").distinct())
    for ip, device in rows:
        if ip:
            ips.add(client_network(str(ip)))
        if device:
            devices.add(device)
    ips.discard("unknown")
    return ips, devices


def _payout_digests(user) -> set[str]:
    """Keyed digests (the blacklist's form) of the payout accounts ``user`` withdrew to as an agent."""
    digests = set()
    for withdrawal in Withdrawal.objects.filter(agent__user=user).order_by("pk"):
        try:
            account = "".join(payee_account(withdrawal).split()).lower()
        except ValueError:
            continue
        if account:
            digests.add(block_value_normalise(BlockEntry.Kind.PAYOUT, account))
    return digests


def _local_day_start() -> datetime:
    today = timezone.localdate()
    return timezone.make_aware(datetime.combine(today, time.min))


def _abuse(referral: Referral, *, settling: bool) -> tuple[str, dict] | None:
    """Why this referral earns nothing, with the evidence for the risk queue; None if clean.

    Shared networks are compared as exact IPv4 addresses and IPv6 /64s (one subscriber's
    prefix), not IPv4 /24s: carrier NAT puts many unrelated phones in one /24, and a friend
    invited on the same mobile network is the normal case, not abuse."""
    inviter, invitee = referral.inviter, referral.invitee
    ips_a, devices_a = _footprints(inviter)
    ips_b, devices_b = _footprints(invitee)
    if shared := sorted(devices_a & devices_b):
        return "shared_device", {"devices": shared[:5]}
    if shared := sorted(ips_a & ips_b):
        return "shared_ip", {"networks": shared[:5]}
    if risk.email_disposable(invitee.email):
        return "disposable_email", {"domain": invitee.email.rsplit("@", 1)[-1].lower()}
    if not settling:
        return None
    if shared := sorted(_payout_digests(inviter) & _payout_digests(invitee)):
        return "shared_payout", {"payout_digests": [d[5:21] for d in shared[:5]]}
    today = Referral.objects.filter(
        inviter=inviter, status=ReferralStatus.REWARDED, rewarded_at__gte=_local_day_start()
    ).count()
    if today >= settings.REFERRAL_DAILY_CAP:
        return "daily_cap", {"rewarded_today": today, "cap": settings.REFERRAL_DAILY_CAP}
    return None


def _refuse(referral: Referral, reason: str, evidence: dict) -> None:
    """No reward, and an alert in the risk queue (in the caller's transaction, on the locked row)."""
    alert = risk.alert_raise(
        rule=ALERT_RULE,
        action=Action.REFUSE,
        user=referral.inviter,
        email=referral.invitee.email,
        ip=referral.signup_ip,
        device=referral.signup_device,
        evidence={
            "reason": reason,
            "referral": referral.pk,
            "inviter": referral.inviter_id,
            "invitee": referral.invitee_id,
            **evidence,
        },
    )
    REFERRAL_FLOW.apply(
        referral,
        ReferralStatus.REFUSED,
        note=f"{reason} (alert #{alert.pk})",
        update={"reason": reason, "detail": str(evidence)[:300], "alert": alert},
    )


# --- sign-up -----------------------------------------------------------------------------------


def referral_record(*, invitee, code: str, ip: str | None, device: str) -> Referral | None:
    """The invitation that brought ``invitee`` (just signed up) to the platform, or None: an
    unknown code, oneself, or an invitee who already has an inviter. Screened at once."""
    invite = InviteCode.objects.filter(code=(code or "").strip().lower()).select_related("user").first()
    if invite is None or invite.user_id == invitee.pk or not invite.user.is_active:
        return None
    with transaction.atomic():
        try:
            with transaction.atomic():
                referral = Referral.objects.create(
                    inviter=invite.user, invitee=invitee, signup_ip=ip or None, signup_device=device or ""
                )
        except IntegrityError:  # one inviter per invitee: the first one stands
            return None
        if abuse := _abuse(referral, settling=False):
            _refuse(referral, *abuse)
    return referral


# --- qualifying and settling (the beat task) ---------------------------------------------------


def _first_order(referral: Referral) -> Order | None:
    """The invitee's first delivered order placed after the sign-up (a guest order claimed later
    does not count: it was not brought by the invitation)."""
    return (
        Order.objects.filter(buyer_id=referral.invitee_id, delivered_at__isnull=False)
        .filter(created_at__gte=referral.created_at)
        .order_by("delivered_at", "pk")
        .first()
    )


def referral_qualify(*, referral_id: int) -> bool:
    """pending -> qualified when the invitee's first order has been delivered. Safe to run twice."""
    with transaction.atomic():
        row = (
            Referral.objects.select_for_update(of=("self",))
            .filter(pk=referral_id, status=ReferralStatus.PENDING)
            .first()
        )
        if row is None:
            return False
        order = _first_order(row)
        if order is None or order.delivered_at is None:
            return False
        return REFERRAL_FLOW.apply(
            row,
            ReferralStatus.QUALIFIED,
            note=f"first order {order.number} delivered",
            update={"order": order, "window_closes_at": order.delivered_at + refund_window()},
        )


def _refunded(order: Order) -> bool:
    return order.refunded_quantity > 0 or order.status in REFUNDED


def referral_settle(*, referral_id: int) -> str | None:
    """A qualified referral: cancelled if its first order was refunded (inside the window);
    past the window, refused (abuse) or rewarded. What happened, or None (nothing to do yet, or
    done already: a second run changes nothing)."""
    with transaction.atomic():
        row = (
            Referral.objects.select_for_update(of=("self",))
            .select_related("inviter", "invitee", "order")
            .filter(pk=referral_id, status=ReferralStatus.QUALIFIED)
            .first()
        )
        if row is None or row.order is None:
            return None
        if _refunded(row.order):
            REFERRAL_FLOW.apply(
                row,
                ReferralStatus.CANCELLED,
                note=f"first order {row.order.number} refunded inside the refund window",
                update={"reason": "refunded", "detail": row.order.number},
            )
            return ReferralStatus.CANCELLED
        if row.window_closes_at is None or row.window_closes_at > timezone.now():
            return None
        # The inviter's code row serialises its rewards: the daily cap is counted under this lock.
        InviteCode.objects.select_for_update().filter(user_id=row.inviter_id).first()
        if abuse := _abuse(row, settling=True):
            _refuse(row, *abuse)
            return ReferralStatus.REFUSED
        amount = settings.REFERRAL_REWARD_AMOUNT
        ledger.transfer(
            debit=ledger.REFERRAL_REWARDS,
            credit=ledger.wallet(row.inviter),
            amount=amount,
            kind="referral_reward",
            reference=f"referral:{row.pk}",
            memo=f"first order {row.order.number}",
            idempotency_key=_reward_key(row),
        )
        REFERRAL_FLOW.apply(row, ReferralStatus.REWARDED, note="refund window closed", update={"reward": amount})
        return ReferralStatus.REWARDED


def _reward_key(referral: Referral) -> str:
    return f"referral_reward:{referral.pk}"


def referrals_process_due(*, limit: int = 500) -> dict[str, int]:
    """The beat task's sweep: pending referrals whose invitee has a delivered order qualify;
    qualified ones whose order was refunded are cancelled, those past the window settled."""
    done = {"qualified": 0, ReferralStatus.REWARDED: 0, ReferralStatus.CANCELLED: 0, ReferralStatus.REFUSED: 0}
    pending = (
        Referral.objects.filter(status=ReferralStatus.PENDING, invitee__orders__delivered_at__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)
        .distinct()
    )
    for pk in list(pending[:limit]):
        done["qualified"] += referral_qualify(referral_id=pk)
    now = timezone.now()
    due = Q(window_closes_at__lte=now) | Q(order__refunded_quantity__gt=0) | Q(order__status__in=REFUNDED)
    qualified = Referral.objects.filter(due, status=ReferralStatus.QUALIFIED).order_by("window_closes_at", "pk")
    for pk in list(qualified.values_list("pk", flat=True)[:limit]):
        outcome = referral_settle(referral_id=pk)
        if outcome:
            done[outcome] += 1
    return done


# --- staff -------------------------------------------------------------------------------------


def referral_cancel(*, referral_id: int, by, reason: str, request=None) -> bool:
    """Staff cancel a referral with a reason (audited). A reward already paid is taken back
    from the inviter's wallet with a reversing entry (refused if the balance was spent)."""
    reason = (reason or "").strip()
    if not reason:
        raise ReferralError(_("Give a reason for cancelling the reward."), code="reason_required")
    with transaction.atomic():
        row = Referral.objects.select_for_update(of=("self",)).get(pk=referral_id)
        if row.status in (ReferralStatus.CANCELLED, ReferralStatus.REFUSED):
            return False
        if row.status == ReferralStatus.REWARDED:
            entry = Entry.objects.get(idempotency_key=_reward_key(row))
            ledger.entry_reverse(entry=entry, memo=f"referral reward cancelled: {reason}"[:200])
        REFERRAL_FLOW.apply(
            row, ReferralStatus.CANCELLED, actor=by, note=reason, update={"reason": "staff", "detail": reason[:300]}
        )
        audit_record(
            action="referral_cancelled",
            outcome="allowed",
            actor=by,
            request=request,
            target=f"referral #{row.pk}",
            detail=reason[:500],
        )
    return True
