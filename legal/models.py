"""The platform's agreements (用户协议, 退款政策, 隐私政策, 代理协议), their versions and who accepted which.

A version is a draft until it is published (``legal.services.agreement_version_publish``); from
then on it never changes (a change is a new version) and is never deleted. The one in force for
a kind is the latest published whose ``effective_at`` has come (``legal.selectors``).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AgreementDocument(models.TextChoices):
    """The documents the platform publishes; the values are their URL slugs (/legal/<kind>/)."""

    USER = "user-agreement", _("User agreement")
    REFUND = "refund-policy", _("Refund policy")
    PRIVACY = "privacy-policy", _("Privacy policy")
    AGENT = "agent-agreement", _("Agent agreement")


class AgreementVersion(models.Model):
    Kind = AgreementDocument

    kind = models.CharField(_("document"), max_length=20, choices=AgreementDocument.choices, db_index=True)
    version = models.CharField(
        _("version"), max_length=20, help_text=_("A short label, for example 2026.1 or v2; unique per document.")
    )
    title = models.CharField(_("title"), max_length=120)
    body = models.TextField(
        _("text"), help_text=_("Plain text: paragraphs separated by a blank line. HTML is shown as typed, not run.")
    )
    effective_at = models.DateTimeField(_("takes effect"))
    published_at = models.DateTimeField(_("published"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ("kind", "-effective_at", "-id")
        verbose_name = _("agreement version")
        verbose_name_plural = _("agreement versions")
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="agreement_version_unique_per_kind"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.version}"

    def get_absolute_url(self):
        return reverse("legal:version", args=[self.kind, self.version])

    @property
    def is_published(self) -> bool:
        return self.published_at is not None

    @property
    def is_upcoming(self) -> bool:
        return self.published_at is not None and self.effective_at > timezone.now()


class AgreementAcceptance(models.Model):
    """One person's acceptance of one version: a member (``user``), or a guest at checkout
    (``email`` and the ``order`` it was given for). Kept as evidence, never changed."""

    version = models.ForeignKey(
        AgreementVersion, verbose_name=_("version"), related_name="acceptances", on_delete=models.PROTECT
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        related_name="agreement_acceptances",
        on_delete=models.PROTECT,
    )
    email = models.EmailField(_("guest email"), max_length=254, blank=True)
    order = models.ForeignKey(
        "orders.Order",
        verbose_name=_("order"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    accepted_at = models.DateTimeField(_("accepted"), default=timezone.now)
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)

    class Meta:
        ordering = ("-accepted_at", "-id")
        verbose_name = _("agreement acceptance")
        verbose_name_plural = _("agreement acceptances")
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(email="")) | (Q(user__isnull=True) & ~Q(email="")),
                name="acceptance_user_or_guest",
            ),
            models.UniqueConstraint(
                fields=["version", "user"], condition=Q(user__isnull=False), name="acceptance_once_per_user"
            ),
            models.UniqueConstraint(
                fields=["version", "order"], condition=Q(order__isnull=False), name="acceptance_once_per_order"
            ),
        ]

    def __str__(self):
        return f"{self.version} · {self.user or self.email}"
