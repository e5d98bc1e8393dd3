"""Risk control's records: the alerts its rules raise (the risk queue staff work through in
admin) and the blacklist (IPs and networks, emails and their domains, devices, payout
accounts), each entry with a reason and an expiry.

A rule's automatic action (hold for review, block for a period) is a blacklist entry pointing
at its alert: lifting the entry, or dismissing the alert, undoes it. Nothing is deleted.
"""

import ipaddress
import re

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from marketplace import crypto
from marketplace.transitions import StateMachine, StatusChange, table

PAYOUT_DIGEST = re.compile(r"hmac:[0-9a-f]{64}")


class Rule(models.TextChoices):
    SIGNUP_IP = "signup_ip", _("Sign-ups per IP")
    SIGNUP_NETWORK = "signup_network", _("Sign-ups per network (/24 or /64)")
    SIGNUP_DEVICE = "signup_device", _("Sign-ups per device")
    ORDER_BURST_BUYER = "order_burst_buyer", _("Order burst per buyer")
    ORDER_BURST_IP = "order_burst_ip", _("Order burst per IP")
    ORDER_BURST_DEVICE = "order_burst_device", _("Order burst per device")
    STOCK_HOGGING = "stock_hogging", _("Unpaid orders holding stock")
    # Velocity: payments that ended unpaid (the trade closed at its gateway) and refund requests.
    PAYMENT_FAILED_BUYER = "payment_failed_buyer", _("Failed payments per buyer")
    PAYMENT_FAILED_IP = "payment_failed_ip", _("Failed payments per IP")
    PAYMENT_FAILED_DEVICE = "payment_failed_device", _("Failed payments per device")
    REFUND_VELOCITY_BUYER = "refund_velocity_buyer", _("Refund requests per buyer")
    REFUND_VELOCITY_IP = "refund_velocity_ip", _("Refund requests per IP")
    REFUND_VELOCITY_DEVICE = "refund_velocity_device", _("Refund requests per device")
    # Clusters (the beat task): many accounts sharing one device, IP or payout account.
    SHARED_DEVICE = "shared_device", _("Accounts sharing a device")
    SHARED_IP = "shared_ip", _("Accounts sharing an IP")
    SHARED_PAYOUT = "shared_payout", _("Accounts sharing a payout account")
    # Raised by referrals (its own checks, not a counted rule): an invitee sharing the inviter's
    # device, IP or payout account, a disposable email, or the inviter's daily cap reached.
    REFERRAL_ABUSE = "referral_abuse", _("Referral abuse")


class Action(models.TextChoices):
    """What a rule does past its threshold (settings: RISK_RULE_<NAME>)."""

    LOG = "log", _("Log only")
    CAPTCHA = "captcha", _("Require a captcha")
    REFUSE = "refuse", _("Refuse while the window lasts")
    HOLD = "hold", _("Hold for review")
    BLOCK = "block", _("Block for a period")


class Alert(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        DISMISSED = "dismissed", _("Dismissed")
        ACTIONED = "actioned", _("Actioned")

    created_at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)
    rule = models.CharField(_("rule"), max_length=30, choices=Rule.choices, db_index=True)
    action = models.CharField(_("automatic action"), max_length=10, choices=Action.choices)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.OPEN)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    email = models.CharField(_("email"), max_length=254, blank=True)
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    device = models.CharField(_("device"), max_length=40, blank=True)
    evidence = models.JSONField(_("evidence"), default=dict, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = _("risk alert")
        verbose_name_plural = _("risk queue")
        indexes = [models.Index(fields=["status", "-created_at"], name="risk_alert_status_time")]

    def __str__(self):
        return f"#{self.pk} {self.get_rule_display()}"


class AlertStatusChange(StatusChange):
    subject = "alert"

    alert = models.ForeignKey(Alert, verbose_name=_("alert"), related_name="history", on_delete=models.CASCADE)
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=Alert.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=Alert.Status.choices)


AlertStatus = Alert.Status
# Staff decide an open alert once: dismissed (a false alarm: what the rule did automatically is
# lifted) or actioned (blocked for a period). A decision is final; a new alert is a new row.
ALERT_FLOW = StateMachine(
    transitions=table(
        {
            AlertStatus.OPEN: {AlertStatus.DISMISSED, AlertStatus.ACTIONED},
            AlertStatus.DISMISSED: set(),
            AlertStatus.ACTIONED: set(),
        }
    ),
    history_model=AlertStatusChange,
    history_fk="alert",
    model=Alert,
)


class BlockEntry(models.Model):
    class Kind(models.TextChoices):
        NETWORK = "network", _("IP or network (CIDR)")
        EMAIL = "email", _("Email address")
        DOMAIN = "domain", _("Email domain (and its subdomains)")
        DEVICE = "device", _("Device")
        PAYOUT = "payout", _("Payout account")

    class Scope(models.TextChoices):
        ALL = "all", _("Everything below")
        SIGNUP = "signup", _("Sign-up")
        CHECKOUT = "checkout", _("Checkout")
        WITHDRAWAL = "withdrawal", _("Withdrawal request")

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    value = models.CharField(
        _("value"),
        max_length=254,
        help_text=_(
            "An address or CIDR range (1.2.3.0/24, 2001:db8::/64), an email, a domain, a device id, an account."
        ),
    )
    # A payout account's entry keeps a keyed digest as its value; this is its masked form.
    shown = models.CharField(_("shown as"), max_length=60, blank=True, editable=False)
    scope = models.CharField(_("applies to"), max_length=10, choices=Scope.choices, default=Scope.ALL)
    reason = models.CharField(_("reason"), max_length=300)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True, help_text=_("Empty: until lifted."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    alert = models.ForeignKey(
        Alert, verbose_name=_("alert"), null=True, blank=True, related_name="entries", on_delete=models.PROTECT
    )

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = _("blacklist entry")
        verbose_name_plural = _("blacklist")
        indexes = [models.Index(fields=["kind", "value"], name="risk_block_kind_value")]

    def __str__(self):
        return f"{self.get_kind_display()} {self.shown or self.value}"

    @property
    def active(self) -> bool:
        return self.expires_at is None or self.expires_at > timezone.now()


def block_value_normalise(kind: str, value: str) -> str:
    """The form an entry is stored and looked up in; ValueError for a value that is not one."""
    value = "".join((value or "").split())
    if kind == BlockEntry.Kind.NETWORK:
        return str(ipaddress.ip_network(value, strict=False))
    if kind in (BlockEntry.Kind.EMAIL, BlockEntry.Kind.DOMAIN):
        value = value.lower().strip(".")
        if kind == BlockEntry.Kind.EMAIL and "@" not in value:
            raise ValueError("not an email address")
        if kind == BlockEntry.Kind.DOMAIN:
            value = value.rsplit("@", 1)[-1]
            if "." not in value:
                raise ValueError("not a domain")
    if not value:
        raise ValueError("empty")
    if kind == BlockEntry.Kind.PAYOUT:
        # Payout accounts are secrets like the withdrawals' own (encrypted there): an entry keeps
        # only a keyed digest, which a withdrawal's account is compared with, and a masked form
        # for staff (``block_value_shown``).
        return value if PAYOUT_DIGEST.fullmatch(value) else "hmac:" + crypto.keyed_digest(value.lower())
    return value


def block_value_shown(kind: str, value: str) -> str:
    """What staff see of an entry's value where it is not kept in clear (a payout account)."""
    value = "".join((value or "").split())
    if kind == BlockEntry.Kind.PAYOUT and value and not PAYOUT_DIGEST.fullmatch(value):
        return crypto.mask(value.lower())
    return ""


def active_entries(now=None) -> Q:
    now = now or timezone.now()
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


class Signup(models.Model):
    """Where an account was made (IP, device): what the shared-device rule reads besides orders.
    Kept like the orders' buyer IP and device, for the same purpose (risk control)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), related_name="+", on_delete=models.CASCADE
    )
    created_at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    device = models.CharField(_("device"), max_length=40, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = _("sign-up")
        verbose_name_plural = _("sign-ups")

    def __str__(self):
        return f"{self.user_id} {self.created_at:%Y-%m-%d}"
