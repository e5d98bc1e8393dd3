"""The audit log: security-relevant events (refused access, key changes, staff decisions).

Append-only by convention; written only through ``compliance.services.audit_record``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


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
