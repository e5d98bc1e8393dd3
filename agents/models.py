"""Agent levels, the upline tree and downline pricing.

Prices an agent pays are resolved by ``agents.selectors.agent_costs``; rows here are only
written by ``agents.services`` (and staff in admin for levels and level prices).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class PriceKind(models.TextChoices):
    FIXED = "fixed", _("Fixed amount")
    PERCENT = "percent", _("Percentage")


class AgentLevel(models.Model):
    """A level staff define (普通, 铜牌, 银牌, 金牌 ...); ``rank`` orders them, higher is better."""

    name = models.CharField(_("name"), max_length=40)
    rank = models.PositiveSmallIntegerField(_("rank"), unique=True)
    sort = models.PositiveIntegerField(_("sort order"), default=0)

    class Meta:
        ordering = ("sort", "rank")
        verbose_name = _("agent level")
        verbose_name_plural = _("agent levels")

    def __str__(self):
        return self.name


class LevelPrice(models.Model):
    """What an agent of ``level`` directly under the platform pays, per product or per category.

    Fixed: the price itself. Percent: that percentage of the product's retail price.
    Without a row the product's own price applies.
    """

    level = models.ForeignKey(AgentLevel, verbose_name=_("level"), related_name="prices", on_delete=models.CASCADE)
    product = models.ForeignKey(
        "catalog.Product", verbose_name=_("product"), null=True, blank=True, related_name="+", on_delete=models.CASCADE
    )
    category = models.ForeignKey(
        "catalog.Category",
        verbose_name=_("category"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.CASCADE,
    )
    kind = models.CharField(_("kind"), max_length=10, choices=PriceKind.choices, default=PriceKind.FIXED)
    value = models.DecimalField(_("value"), max_digits=12, decimal_places=4)

    class Meta:
        verbose_name = _("level price")
        verbose_name_plural = _("level prices")
        constraints = [
            models.CheckConstraint(
                condition=Q(product__isnull=False, category__isnull=True)
                | Q(product__isnull=True, category__isnull=False),
                name="levelprice_product_xor_category",
            ),
            models.CheckConstraint(condition=Q(value__gte=0), name="levelprice_value_not_negative"),
            # NULLs are distinct, so each only bites on the rows where its target is set.
            models.UniqueConstraint(fields=["level", "product"], name="levelprice_unique_product"),
            models.UniqueConstraint(fields=["level", "category"], name="levelprice_unique_category"),
        ]

    def __str__(self):
        target = self.product or self.category
        return f"{self.level} · {target}: {self.value}{'%' if self.kind == PriceKind.PERCENT else ''}"


class Agent(models.Model):
    """A reseller. ``upline`` null means directly under the platform (depth 1).

    ``path`` is the materialized path of ids from the top of the tree down to this agent,
    e.g. ``/3/17/42/``: the chain is one query by id, the subtree one ``startswith``.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), related_name="agent", on_delete=models.PROTECT
    )
    level = models.ForeignKey(AgentLevel, verbose_name=_("level"), related_name="agents", on_delete=models.PROTECT)
    upline = models.ForeignKey(
        "self", verbose_name=_("upline"), null=True, blank=True, related_name="downline", on_delete=models.PROTECT
    )
    depth = models.PositiveSmallIntegerField(_("depth"), editable=False)
    path = models.CharField(_("path"), max_length=255, db_index=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ("id",)
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        constraints = [
            models.CheckConstraint(condition=Q(depth__gte=1), name="agent_depth_positive"),
            models.CheckConstraint(
                condition=Q(upline__isnull=True, depth=1) | Q(upline__isnull=False, depth__gt=1),
                name="agent_depth_matches_upline",
            ),
        ]

    def __str__(self):
        return f"{self.user} ({self.level})"

    @property
    def chain_ids(self) -> list[int]:
        """Ids from the top agent down to this one."""
        return [int(part) for part in self.path.strip("/").split("/") if part]


class Markup(models.Model):
    """What ``agent`` adds over its own cost for its direct downline.

    Scope: one product, one category (a top-level category covers its sub-categories), or
    everything. ``downline_level`` null applies to any level of downline agent.
    """

    class Scope(models.TextChoices):
        PRODUCT = "product", _("Product")
        CATEGORY = "category", _("Category")
        ALL = "all", _("Everything")

    agent = models.ForeignKey(Agent, verbose_name=_("agent"), related_name="markups", on_delete=models.CASCADE)
    scope = models.CharField(_("scope"), max_length=10, choices=Scope.choices)
    product = models.ForeignKey(
        "catalog.Product", verbose_name=_("product"), null=True, blank=True, related_name="+", on_delete=models.CASCADE
    )
    category = models.ForeignKey(
        "catalog.Category",
        verbose_name=_("category"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.CASCADE,
    )
    downline_level = models.ForeignKey(
        AgentLevel,
        verbose_name=_("downline level"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.CASCADE,
        help_text=_("Empty: any level."),
    )
    kind = models.CharField(_("kind"), max_length=10, choices=PriceKind.choices)
    value = models.DecimalField(_("value"), max_digits=12, decimal_places=4)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ("agent", "scope", "id")
        verbose_name = _("markup")
        verbose_name_plural = _("markups")
        constraints = [
            models.CheckConstraint(
                condition=Q(scope="product", product__isnull=False, category__isnull=True)
                | Q(scope="category", product__isnull=True, category__isnull=False)
                | Q(scope="all", product__isnull=True, category__isnull=True),
                name="markup_scope_matches_target",
            ),
            models.CheckConstraint(condition=Q(value__gte=0), name="markup_value_not_negative"),
            # One markup per (agent, target, downline level); "any level" is a NULL, so it
            # gets its own partial constraint on every backend.
            models.UniqueConstraint(
                fields=["agent", "product", "downline_level"],
                condition=Q(scope="product", downline_level__isnull=False),
                name="markup_unique_product_level",
            ),
            models.UniqueConstraint(
                fields=["agent", "product"],
                condition=Q(scope="product", downline_level__isnull=True),
                name="markup_unique_product_any",
            ),
            models.UniqueConstraint(
                fields=["agent", "category", "downline_level"],
                condition=Q(scope="category", downline_level__isnull=False),
                name="markup_unique_category_level",
            ),
            models.UniqueConstraint(
                fields=["agent", "category"],
                condition=Q(scope="category", downline_level__isnull=True),
                name="markup_unique_category_any",
            ),
            models.UniqueConstraint(
                fields=["agent", "downline_level"],
                condition=Q(scope="all", downline_level__isnull=False),
                name="markup_unique_all_level",
            ),
            models.UniqueConstraint(
                fields=["agent"],
                condition=Q(scope="all", downline_level__isnull=True),
                name="markup_unique_all_any",
            ),
        ]

    def __str__(self):
        target = self.product or self.category or _("everything")
        unit = "%" if self.kind == PriceKind.PERCENT else ""
        return f"{self.agent} · {target} · {self.downline_level or _('any level')}: +{self.value}{unit}"
