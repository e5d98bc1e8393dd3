from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Notification(models.Model):
    """Every notification a gateway sent us, accepted or not, with the reason."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", _("Applied")
        REPLAY = "replay", _("Replay (already applied)")
        IGNORED = "ignored", _("Ignored (not a payment)")
        REJECTED = "rejected", _("Rejected")

    gateway = models.CharField(_("gateway"), max_length=20)
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)
    remote_addr = models.GenericIPAddressField(_("from IP"), null=True, blank=True)
    order_number = models.CharField(_("order number"), max_length=64, blank=True, db_index=True)
    trade_no = models.CharField(_("gateway trade number"), max_length=64, blank=True)
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    body = models.TextField(_("body"), blank=True)
    payment = models.ForeignKey(
        "Payment",
        verbose_name=_("payment"),
        null=True,
        blank=True,
        related_name="notifications",
        on_delete=models.PROTECT,
    )

    class Meta:
        ordering = ("-id",)
        verbose_name = _("gateway notification")
        verbose_name_plural = _("gateway notifications")

    def __str__(self):
        return f"{self.gateway} {self.outcome} {self.order_number}"


class Payment(models.Model):
    """Money received for an order, once per gateway trade number."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", _("Succeeded")
        # A second payment for an order already paid (two tabs, two channels): to refund.
        DUPLICATE = "duplicate", _("Duplicate, to be refunded")
        # Paid after the order lapsed and the stock was gone: to refund.
        UNFULFILLABLE = "unfulfillable", _("Paid after expiry without stock, to be refunded")

    order = models.ForeignKey(
        "orders.Order", verbose_name=_("order"), related_name="payments", on_delete=models.PROTECT
    )
    gateway = models.CharField(_("gateway"), max_length=20)
    trade_no = models.CharField(_("gateway trade number"), max_length=64)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    status = models.CharField(_("status"), max_length=14, choices=Status.choices)
    paid_at = models.DateTimeField(_("paid at (gateway)"), null=True, blank=True)
    created_at = models.DateTimeField(_("recorded"), auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [
            models.UniqueConstraint(fields=["gateway", "trade_no"], name="payment_once_per_gateway_trade"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
        ]

    def __str__(self):
        return f"{self.gateway}:{self.trade_no}"
