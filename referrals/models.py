"""Referral growth (裂变), one level only: every member's invitation code, and one referral per
invited member (the invitee) with its inviter.

One level, by design and by law: a reward is earned for an invitee's own first purchase, never
for whom the invitee recruits in turn. Rewards that depend on a recruit's recruits are the
"pyramid selling" (传销) the 禁止传销条例 第七条 names (第一项: pay by the number of people
one develops directly or indirectly; 第三项: an upline paid on its downline's sales), and the
prosecution threshold for organising it (最高人民检察院 公安部《关于公安机关管辖的刑事案件立案
追诉标准的规定（二）》, 组织、领导传销活动案: thirty people or more, in three levels or more)
counts exactly those levels. So ``Referral`` holds one inviter and one invitee, and nothing
reads a referral's own referrals.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from marketplace.transitions import StateMachine, StatusChange, table


class InviteCode(models.Model):
    """A member's invitation code: random (unguessable), made once and kept (stable links)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("member"), related_name="invite_code", on_delete=models.CASCADE
    )
    code = models.CharField(_("code"), max_length=24, unique=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("invitation code")
        verbose_name_plural = _("invitation codes")

    def __str__(self):
        return self.code


class Referral(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Signed up")
        QUALIFIED = "qualified", _("First order delivered")
        REWARDED = "rewarded", _("Rewarded")
        CANCELLED = "cancelled", _("Cancelled")
        REFUSED = "refused", _("Refused (abuse)")

    inviter = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("inviter"), related_name="referrals_made", on_delete=models.PROTECT
    )
    # One inviter per invitee: the first link that brought them to sign up.
    invitee = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("invitee"), related_name="referred_by", on_delete=models.PROTECT
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(_("signed up"), auto_now_add=True, db_index=True)
    # Where the invitee signed up from (the anti-abuse checks compare them with the inviter's).
    signup_ip = models.GenericIPAddressField(_("sign-up IP"), null=True, blank=True)
    signup_device = models.CharField(_("sign-up device"), max_length=40, blank=True)
    # The invitee's first delivered order, and when its refund window closes.
    order = models.ForeignKey(
        "orders.Order", verbose_name=_("first order"), null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    qualified_at = models.DateTimeField(_("qualified"), null=True, blank=True)
    window_closes_at = models.DateTimeField(_("refund window closes"), null=True, blank=True, db_index=True)
    reward = models.DecimalField(_("reward"), max_digits=10, decimal_places=2, default=0)
    rewarded_at = models.DateTimeField(_("rewarded"), null=True, blank=True, db_index=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    # Why a referral was cancelled or refused: a code the pages explain, and the detail for staff.
    reason = models.CharField(_("reason"), max_length=30, blank=True)
    detail = models.CharField(_("detail"), max_length=300, blank=True)
    alert = models.ForeignKey(
        "risk.Alert", verbose_name=_("risk alert"), null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        constraints = [
            models.CheckConstraint(condition=~Q(inviter=F("invitee")), name="referral_not_self"),
            models.CheckConstraint(condition=Q(reward__gte=0), name="referral_reward_not_negative"),
        ]
        indexes = [models.Index(fields=["status", "window_closes_at"], name="referral_status_window")]

    def __str__(self):
        return f"{self.inviter_id} → {self.invitee_id}"


class ReferralStatusChange(StatusChange):
    subject = "referral"

    referral = models.ForeignKey(Referral, verbose_name=_("referral"), related_name="history", on_delete=models.CASCADE)
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=Referral.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=Referral.Status.choices)


ReferralStatus = Referral.Status
# pending (the invitee signed up) -> qualified (their first order delivered) -> rewarded (the
# refund window closed with no refund: the inviter's wallet credited), or cancelled (a refund
# inside the window, staff) or refused (abuse: shared IP, device or payout account, a disposable
# email, the daily cap). Staff may cancel a paid reward (its credit reversed). Final otherwise.
REFERRAL_FLOW = StateMachine(
    transitions=table(
        {
            ReferralStatus.PENDING: {ReferralStatus.QUALIFIED, ReferralStatus.CANCELLED, ReferralStatus.REFUSED},
            ReferralStatus.QUALIFIED: {ReferralStatus.REWARDED, ReferralStatus.CANCELLED, ReferralStatus.REFUSED},
            ReferralStatus.REWARDED: {ReferralStatus.CANCELLED},
            ReferralStatus.CANCELLED: set(),
            ReferralStatus.REFUSED: set(),
        }
    ),
    history_model=ReferralStatusChange,
    history_fk="referral",
    entered_at={
        ReferralStatus.QUALIFIED: "qualified_at",
        ReferralStatus.REWARDED: "rewarded_at",
        ReferralStatus.CANCELLED: "closed_at",
        ReferralStatus.REFUSED: "closed_at",
    },
    model=Referral,
)
