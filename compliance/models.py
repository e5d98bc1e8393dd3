"""The audit log: security-relevant events (refused access, key changes, staff decisions).

Append-only by convention; written only through ``compliance.services.audit_record``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from marketplace.crypto import declare_encrypted, encrypted_property
from marketplace.text import mask_ends


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        DENIED = "denied", _("Denied")
        ALLOWED = "allowed", _("Allowed")

    at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("who"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    action = models.CharField(_("action"), max_length=60, db_index=True)
    target = models.CharField(_("target"), max_length=120, blank=True)
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    path = models.CharField(_("path"), max_length=300, blank=True)
    detail = models.CharField(_("detail"), max_length=500, blank=True)

    class Meta:
        ordering = ("-at", "-id")
        verbose_name = _("audit event")
        verbose_name_plural = _("audit log")

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.outcome}"


class CreditEvent(models.Model):
    """What a user did that bears on their credit: the risk rating reads these later.

    Written by the services where they happen (after-sales: no-reason refunds, disputes won or
    lost, reissues, arbitration outcomes), through ``compliance.services.credit_event_record``.
    The reference ties the events of one case together: a staff rejection (``dispute_lost``)
    that a third party later overturns (``arbitration_won``, same ticket number) no longer
    counts against the user (``compliance.selectors.credit_summary``).
    """

    class Kind(models.TextChoices):
        NO_REASON_REFUND = "no_reason_refund", _("No-reason refund")
        DISPUTE_WON = "dispute_won", _("Dispute decided for the user")
        DISPUTE_LOST = "dispute_lost", _("Dispute decided against the user")
        REISSUE = "reissue", _("Code reissued")
        ARBITRATION_WON = "arbitration_won", _("Arbitration decided for the user")
        ARBITRATION_LOST = "arbitration_lost", _("Arbitration decided against the user")
        ORDER_EXPIRED = "order_expired", _("Unpaid order held stock until it expired")
        PAYMENT_FAILED = "payment_failed", _("Payment failed or reversed")
        ANOMALY = "anomaly", _("Anomaly detected")
        STAFF_ADJUSTMENT = "staff_adjustment", _("Adjusted by staff")

    # Whose event: a member (``user``), or a guest known only by the normalised email address
    # of their orders (``email``, user empty). Exactly one of the two.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        related_name="credit_events",
        on_delete=models.PROTECT,
    )
    email = models.CharField(_("guest email"), max_length=254, blank=True)
    kind = models.CharField(_("event"), max_length=20, choices=Kind.choices)
    at = models.DateTimeField(_("time"), auto_now_add=True)
    reference = models.CharField(_("reference"), max_length=40, blank=True)  # order or ticket number
    detail = models.CharField(_("detail"), max_length=300, blank=True)
    # A staff adjustment's own weight in points (negative lifts the score); other kinds weigh
    # what settings.CREDIT_RULES says (empty here).
    weight = models.DecimalField(_("weight"), max_digits=6, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ("-at", "-id")
        verbose_name = _("credit event")
        verbose_name_plural = _("credit events")
        indexes = [
            models.Index(fields=["user", "kind", "at"], name="creditevent_user_kind_at_idx"),
            models.Index(
                fields=["email", "kind", "at"], condition=Q(user__isnull=True), name="creditevent_email_kind_at_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(email="")) | (Q(user__isnull=True) & ~Q(email="")),
                name="creditevent_user_or_guest_email",
            ),
        ]

    def __str__(self):
        return f"{self.user_id or self.email} {self.kind} {self.at:%Y-%m-%d}"


class CreditLevel(models.Model):
    """A band of the credit score and what it limits (edited by staff in admin).

    A user's level is the one with the highest ``min_score`` at or below their score (or the
    level staff forced with a ``CreditOverride``). Read through ``compliance.rating`` (cached;
    the admin forgets the cache on save). Empty limits mean no limit."""

    name = models.CharField(
        _("name"), max_length=40, unique=True, help_text=_("Shown to the user, e.g. Good, Watch, Restricted, Blocked.")
    )
    min_score = models.DecimalField(
        _("from score"),
        max_digits=8,
        decimal_places=2,
        unique=True,
        help_text=_("The level applies from this score up."),
    )
    may_purchase = models.BooleanField(_("may purchase"), default=True)
    max_codes_per_order = models.PositiveIntegerField(_("max codes per order"), null=True, blank=True)
    max_codes_per_day = models.PositiveIntegerField(_("max codes per day"), null=True, blank=True)
    may_buy_high_risk = models.BooleanField(_("may buy high-risk goods"), default=True)
    balance_only = models.BooleanField(
        _("balance only"), default=False, help_text=_("Pays with the account balance only (no gateway).")
    )
    refunds_reviewed = models.BooleanField(
        _("no-reason refunds to staff review"),
        default=False,
        help_text=_("No-reason refunds are not approved at once."),
    )
    may_withdraw = models.BooleanField(_("may withdraw commission"), default=True)

    class Meta:
        ordering = ("min_score",)
        verbose_name = _("credit level")
        verbose_name_plural = _("credit levels")

    def __str__(self):
        return self.name


class CreditOverride(models.Model):
    """A level staff forced on a member (or a guest email) until ``expires_at``, with a reason.
    Written by ``compliance.rating.credit_override_set`` (audited); ended early by revoking."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        related_name="credit_overrides",
        on_delete=models.PROTECT,
    )
    email = models.CharField(_("guest email"), max_length=254, blank=True)
    level = models.ForeignKey(CreditLevel, verbose_name=_("level"), related_name="+", on_delete=models.PROTECT)
    reason = models.CharField(_("reason"), max_length=300)
    expires_at = models.DateTimeField(_("until"))
    created_at = models.DateTimeField(_("time"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("by"), null=True, related_name="+", on_delete=models.PROTECT
    )
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = _("credit level override")
        verbose_name_plural = _("credit level overrides")
        indexes = [
            models.Index(fields=["user", "expires_at"], name="creditoverride_user_exp_idx"),
            models.Index(
                fields=["email", "expires_at"], condition=Q(user__isnull=True), name="creditoverride_email_exp_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(email="")) | (Q(user__isnull=True) & ~Q(email="")),
                name="creditoverride_user_or_guest_email",
            ),
        ]

    def __str__(self):
        return f"{self.user_id or self.email} -> {self.level_id} until {self.expires_at:%Y-%m-%d}"


class Qualification(models.Model):
    """A licence or filing the platform holds and must show: the business licence, the ICP filing,
    the value-added telecom business licence, the public-security filing.

    Shown on every page's footer and on the public qualifications page (电子商务法 第十五条;
    see ``compliance.selectors.qualifications_shown``). Written only through
    ``compliance.services.qualification_save``, which checks each kind's rules and keeps every
    change as a ``QualificationChange``. Never deleted: a retired one is hidden (``is_shown``).
    The licence image is kept here (re-encoded JPEG, no metadata), never under MEDIA: it is served
    by ``compliance.views.qualification_image`` only while the record exists and is shown.
    """

    class Kind(models.TextChoices):
        BUSINESS_LICENCE = "business_licence", _("Business licence")
        ICP_FILING = "icp_filing", _("ICP filing number")
        TELECOM_LICENCE = "telecom_licence", _("Value-added telecom business licence")
        PUBLIC_SECURITY_FILING = "public_security_filing", _("Public security filing number")

    kind = models.CharField(_("kind"), max_length=30, choices=Kind.choices)
    number = models.CharField(
        pgettext_lazy("qualification", "number"),
        max_length=60,
        help_text=_(
            "Business licence: the unified social credit code (18 characters). ICP filing: e.g. 京ICP备2024012345号-1. "
            "Telecom licence: e.g. 京B2-20240123. Public security filing: e.g. 京公网安备11010502000001号."
        ),
    )
    company_name = models.CharField(_("company name"), max_length=100, blank=True)
    scope = models.TextField(pgettext_lazy("qualification", "scope"), max_length=2000, blank=True)
    valid_from = models.DateField(_("valid from"), null=True, blank=True)
    valid_until = models.DateField(
        _("valid until"), null=True, blank=True, help_text=_("The last day it is valid. Empty: without end (长期).")
    )
    image = models.BinaryField(_("image"), null=True, blank=True, editable=False)
    image_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_shown = models.BooleanField(_("shown on the site"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("kind", "pk")
        verbose_name = _("qualification")
        verbose_name_plural = _("qualifications")
        constraints = [
            models.UniqueConstraint(fields=["kind", "number"], name="qualification_kind_number_uniq"),
            models.CheckConstraint(
                condition=models.Q(valid_until__isnull=True)
                | models.Q(valid_from__isnull=True)
                | models.Q(valid_until__gte=models.F("valid_from")),
                name="qualification_valid_until_after_from",
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.number}"


class QualificationChange(models.Model):
    """One save of a qualification: who, when, and each changed field's old and new value
    (the image by its size and SHA-256, not its bytes). Written by ``qualification_save`` only."""

    class Action(models.TextChoices):
        CREATED = "created", _("Created")
        CHANGED = "changed", _("Changed")

    qualification = models.ForeignKey(
        Qualification, verbose_name=_("qualification"), related_name="changes", on_delete=models.PROTECT
    )
    at = models.DateTimeField(_("time"), auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("who"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    changes = models.JSONField(_("changes"), default=dict)  # {field: [old, new]}

    class Meta:
        ordering = ("-at", "-id")
        verbose_name = _("qualification change")
        verbose_name_plural = _("qualification history")

    def __str__(self):
        return f"{self.qualification_id} {self.action} {self.at:%Y-%m-%d %H:%M}"


class QualificationWarning(models.Model):
    """An expiry warning emailed to staff: one per qualification, validity end and stage, so the
    beat task (``compliance.tasks.qualifications_warn_expiring``) sends each once. A renewed
    qualification (a new end date) is warned about afresh."""

    class Stage(models.TextChoices):
        DAYS_30 = "30d", _("30 days before")
        DAYS_7 = "7d", _("7 days before")
        EXPIRED = "expired", _("Expired")

    qualification = models.ForeignKey(Qualification, related_name="warnings", on_delete=models.PROTECT)
    valid_until = models.DateField()
    stage = models.CharField(max_length=10, choices=Stage.choices)
    sent_at = models.DateTimeField(auto_now_add=True)
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-sent_at", "-id")
        verbose_name = _("qualification expiry warning")
        verbose_name_plural = _("qualification expiry warnings")
        constraints = [
            models.UniqueConstraint(
                fields=["qualification", "valid_until", "stage"], name="qualificationwarning_once_uniq"
            ),
        ]

    def __str__(self):
        return f"{self.qualification_id} {self.stage} {self.valid_until}"


class RealNameVerification(models.Model):
    """One answer of the real-name provider (name + identity number, 二要素): a match, a
    mismatch or no record. Written only by ``compliance.realname.realname_verify``.

    Whose: a member (``user``), a guest (``email``), or an agent API order's end user (neither;
    the order links it). The name and the number are encrypted with the card codes' key ring
    (``marketplace.crypto``); the number's keyed digest finds equal numbers without decrypting.
    Shown masked (first and last character); the full values only to staff holding
    ``reveal_id_number``, each time audited (``compliance.realname.realname_reveal``)."""

    class Result(models.TextChoices):
        MATCH = "match", _("Match")
        MISMATCH = "mismatch", _("Name and number do not match")
        NO_RECORD = "no_record", _("No record")

    class Source(models.TextChoices):
        MEMBER = "member", _("Member")
        GUEST = "guest", _("Guest checkout")
        API = "api", _("Agent API end user")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        related_name="realname_verifications",
        on_delete=models.PROTECT,
    )
    email = models.CharField(_("guest email"), max_length=254, blank=True)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices, default=Source.MEMBER)
    name_encrypted = models.TextField(editable=False)
    id_number_encrypted = models.TextField(editable=False)
    id_digest = models.CharField(max_length=64, db_index=True, editable=False)
    birth_date = models.DateField(_("birth date"))
    result = models.CharField(_("result"), max_length=10, choices=Result.choices)
    provider = models.CharField(_("provider"), max_length=20)
    checked_at = models.DateTimeField(_("checked"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-checked_at", "-id")
        verbose_name = _("real-name verification")
        verbose_name_plural = _("real-name verifications")
        permissions = [("reveal_id_number", _("Can reveal full names and identity numbers"))]
        constraints = [
            # A member verifies once, and an identity number verifies one account.
            models.UniqueConstraint(fields=["user"], condition=Q(result="match"), name="realname_one_match_per_user"),
            models.UniqueConstraint(
                fields=["id_digest"],
                condition=Q(result="match", user__isnull=False),
                name="realname_number_one_account",
            ),
            models.CheckConstraint(condition=Q(user__isnull=True) | Q(email=""), name="realname_user_or_guest_email"),
        ]

    def __str__(self):
        return f"{self.name_masked} {self.id_number_masked} {self.result}"

    name = encrypted_property("name_encrypted", "The name, in clear.")
    id_number = encrypted_property("id_number_encrypted", "The identity number, in clear.")

    @property
    def name_masked(self) -> str:
        return mask_ends(self.name)

    @property
    def id_number_masked(self) -> str:
        return mask_ends(self.id_number)

    @property
    def is_verified(self) -> bool:
        return self.result == self.Result.MATCH


class MinorLimit(models.Model):
    """What a minor may spend on game top-ups, by age (edited by staff in admin; seeded with the
    national values by migration 0008).

    国家新闻出版署《关于防止未成年人沉迷网络游戏的通知》(国新出发〔2019〕34号) 第三条: 未满8周岁
    的用户不得提供游戏付费服务; 8周岁以上未满16周岁的用户, 单次充值金额不得超过50元人民币, 每月
    充值金额累计不得超过200元人民币; 16周岁以上未满18周岁的用户, 单次充值金额不得超过100元人民币,
    每月充值金额累计不得超过400元人民币. "不得超过" is "at most": exactly the limit is allowed.
    Ages are full years (``compliance.identity.age_on``), ``age_from`` included, ``age_to`` not."""

    age_from = models.PositiveSmallIntegerField(_("from age"))
    age_to = models.PositiveSmallIntegerField(_("under age"))
    allowed = models.BooleanField(_("may buy game top-ups"), default=True)
    per_payment = models.DecimalField(
        _("at most per payment"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Empty: no limit."),
    )
    per_month = models.DecimalField(
        _("at most per calendar month"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Empty: no limit."),
    )

    class Meta:
        ordering = ("age_from",)
        verbose_name = _("minors' spending limit")
        verbose_name_plural = _("minors' spending limits")
        constraints = [
            models.CheckConstraint(condition=Q(age_to__gt=models.F("age_from")), name="minorlimit_age_range"),
            models.CheckConstraint(
                condition=Q(per_payment__isnull=True) | Q(per_payment__gte=0), name="minorlimit_per_payment_ge_0"
            ),
            models.CheckConstraint(
                condition=Q(per_month__isnull=True) | Q(per_month__gte=0), name="minorlimit_per_month_ge_0"
            ),
        ]

    def __str__(self):
        return f"{self.age_from}–{self.age_to}"


# The columns that hold marketplace.crypto's tokens (manage.py rotate_card_keys, keys_check).
declare_encrypted("compliance.RealNameVerification", "name_encrypted", "id_number_encrypted")
