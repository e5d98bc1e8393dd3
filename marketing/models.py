"""Coupons: a campaign's rules (``Coupon``), its codes (``CouponCode``: one public code, or many
single-use generated ones) and every use of it on an order (``CouponUse``).

A use is taken in ``order_place``'s transaction by conditional UPDATEs (``used < total_limit``
on the coupon, ``used < max_uses`` on the code) with the coupon row locked, so neither the total
nor a buyer's own limit can be overrun by concurrent orders. A use comes back (``released_at``)
when its order lapses unpaid or is cancelled, or when it is refunded in full while the coupon is
still valid (``marketing.services.coupons``).
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Coupon(models.Model):
    class Kind(models.TextChoices):
        FIXED = "fixed", _("Fixed amount off")
        PERCENT = "percent", _("Percentage off")

    class Scope(models.TextChoices):
        ALL = "all", _("Everything")
        PRODUCTS = "products", _("Chosen products")
        CATEGORIES = "categories", _("Chosen categories")
        STOREFRONT = "storefront", _("One storefront")

    name = models.CharField(_("name"), max_length=80)
    # The issuer: the platform (no agent) or an agent, whose coupon is valid only at its own
    # storefront and is paid for out of its own margin.
    agent = models.ForeignKey(
        "agents.Agent",
        verbose_name=_("issuing agent"),
        null=True,
        blank=True,
        related_name="coupons",
        on_delete=models.PROTECT,
    )
    kind = models.CharField(_("discount"), max_length=8, choices=Kind.choices, default=Kind.FIXED)
    # FIXED: yuan off the order. PERCENT: percent off the subtotal, at most ``cap`` yuan.
    amount = models.DecimalField(_("amount off"), max_digits=12, decimal_places=2, default=0)
    percent = models.DecimalField(_("percent off"), max_digits=5, decimal_places=2, default=0)
    cap = models.DecimalField(_("at most"), max_digits=12, decimal_places=2, null=True, blank=True)
    min_spend = models.DecimalField(_("minimum spend"), max_digits=12, decimal_places=2, default=0)
    scope = models.CharField(_("valid for"), max_length=10, choices=Scope.choices, default=Scope.ALL)
    products = models.ManyToManyField("catalog.Product", verbose_name=_("products"), blank=True, related_name="+")
    categories = models.ManyToManyField("catalog.Category", verbose_name=_("categories"), blank=True, related_name="+")
    storefront = models.ForeignKey(
        "agents.Storefront",
        verbose_name=_("storefront"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    starts_at = models.DateTimeField(_("valid from"), default=timezone.now)
    ends_at = models.DateTimeField(_("valid until"))
    total_limit = models.PositiveIntegerField(_("total uses"), null=True, blank=True)
    per_user_limit = models.PositiveIntegerField(_("uses per buyer"), null=True, blank=True, default=1)
    new_buyers_only = models.BooleanField(_("new buyers only"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    # Uses taken and not returned: kept by the conditional UPDATEs of the redemption.
    used = models.PositiveIntegerField(_("used"), default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.SET_NULL, editable=False
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        constraints = [
            models.CheckConstraint(
                condition=Q(total_limit__isnull=True) | Q(used__lte=F("total_limit")), name="coupon_used_le_limit"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="coupon_amount_not_negative"),
            models.CheckConstraint(condition=Q(percent__gte=0) & Q(percent__lte=100), name="coupon_percent_range"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="coupon_window_forward"),
        ]

    def __str__(self):
        return self.name


class CouponCode(models.Model):
    """A code buyers type: stored upper case, looked up case-insensitively."""

    coupon = models.ForeignKey(Coupon, verbose_name=_("coupon"), related_name="codes", on_delete=models.CASCADE)
    code = models.CharField(_("code"), max_length=32, unique=True)
    # None: a public code (only the coupon's limits apply); 1 for generated codes.
    max_uses = models.PositiveIntegerField(_("uses of this code"), null=True, blank=True)
    used = models.PositiveIntegerField(_("used"), default=0, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ("id",)
        verbose_name = _("coupon code")
        verbose_name_plural = _("coupon codes")
        constraints = [
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(used__lte=F("max_uses")), name="couponcode_used_le_max"
            ),
            models.CheckConstraint(condition=Q(code=models.functions.Upper("code")), name="couponcode_upper"),
        ]

    def __str__(self):
        return self.code


class CouponUse(models.Model):
    """One order's use of a coupon: who, how much off, who funds it."""

    coupon = models.ForeignKey(Coupon, verbose_name=_("coupon"), related_name="uses", on_delete=models.PROTECT)
    code = models.ForeignKey(CouponCode, verbose_name=_("code"), related_name="uses", on_delete=models.PROTECT)
    order = models.OneToOneField(
        "orders.Order", verbose_name=_("order"), related_name="coupon_use", on_delete=models.PROTECT
    )
    buyer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    # A guest's normalised email (the per-buyer limit counts per email for guests).
    email = models.EmailField(_("email"), blank=True, db_index=True)
    discount = models.DecimalField(_("discount"), max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(_("used"), auto_now_add=True)
    # The use came back: the order lapsed unpaid, was cancelled or refunded in full.
    released_at = models.DateTimeField(_("returned"), null=True, blank=True)
    release_reason = models.CharField(_("why returned"), max_length=40, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("coupon use")
        verbose_name_plural = _("coupon uses")
        constraints = [models.CheckConstraint(condition=Q(discount__gt=0), name="couponuse_discount_positive")]
        indexes = [models.Index(fields=["coupon", "buyer"], name="couponuse_coupon_buyer_idx")]

    def __str__(self):
        return f"{self.code_id} → {self.order_id}"
