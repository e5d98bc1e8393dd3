"""Agent levels, the upline tree and downline pricing.

Prices an agent pays are resolved by ``agents.selectors.agent_costs``; rows here are only
written by ``agents.services`` (and staff in admin for levels and level prices).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from marketplace.crypto import declare_encrypted
from marketplace.transitions import StateMachine, StatusChange, table


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


class Invitation(models.Model):
    """An upline's invitation: a link (/agents/join/<code>/) or the bare code, for one level."""

    code = models.CharField(pgettext_lazy("invitation", "code"), max_length=16, unique=True)
    upline = models.ForeignKey(Agent, verbose_name=_("upline"), related_name="invitations", on_delete=models.CASCADE)
    level = models.ForeignKey(AgentLevel, verbose_name=_("level granted"), related_name="+", on_delete=models.PROTECT)
    max_uses = models.PositiveIntegerField(_("uses allowed"), default=1)
    uses = models.PositiveIntegerField(_("used"), default=0)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        constraints = [models.CheckConstraint(condition=Q(uses__lte=models.F("max_uses")), name="invitation_uses")]

    def __str__(self):
        return self.code


class AgentMove(models.Model):
    """History of the tree: every change of an agent's upline (joining included), by whom and why."""

    agent = models.ForeignKey(Agent, verbose_name=_("agent"), related_name="moves", on_delete=models.CASCADE)
    from_upline = models.ForeignKey(
        Agent, verbose_name=_("from upline"), null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    to_upline = models.ForeignKey(
        Agent, verbose_name=_("to upline"), null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    from_path = models.CharField(_("old path"), max_length=255, blank=True)
    to_path = models.CharField(_("new path"), max_length=255)
    subtree_size = models.PositiveIntegerField(_("agents moved with it"), default=0)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    invitation = models.ForeignKey(
        Invitation, verbose_name=_("invitation"), null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    at = models.DateTimeField(_("time"), auto_now_add=True)

    class Meta:
        ordering = ("-at", "-id")
        verbose_name = _("tree change")
        verbose_name_plural = _("tree history")

    def __str__(self):
        return f"{self.agent_id}: {self.from_path or '∅'} → {self.to_path}"


class Storefront(models.Model):
    """An agent's shop for end buyers at /s/<slug>/, at the agent's retail prices."""

    agent = models.OneToOneField(Agent, verbose_name=_("agent"), related_name="storefront", on_delete=models.CASCADE)
    slug = models.SlugField(_("address"), max_length=40, unique=True)
    name = models.CharField(_("shop name"), max_length=60)
    notice = models.TextField(_("notice"), max_length=2000, blank=True)
    contact = models.CharField(_("contact"), max_length=200, blank=True)
    # The logo is kept in the database (re-encoded PNG, at most a few tens of KB): it is served
    # by a view on any deployment, with no media server to set up.
    logo = models.BinaryField(_("logo"), null=True, blank=True, editable=False)
    logo_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Retail price of products without their own: the agent's cost plus this.
    default_markup_kind = models.CharField(
        _("default markup kind"), max_length=10, choices=PriceKind.choices, default=PriceKind.PERCENT
    )
    default_markup_value = models.DecimalField(_("default markup"), max_digits=12, decimal_places=4, default=10)
    is_open = models.BooleanField(_("open"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("storefront")
        verbose_name_plural = _("storefronts")
        constraints = [
            models.CheckConstraint(condition=Q(default_markup_value__gte=0), name="storefront_markup_not_negative")
        ]

    def __str__(self):
        return f"{self.name} (/s/{self.slug}/)"


class RetailPrice(models.Model):
    """A storefront's own price for one product (never below the agent's cost when sold)."""

    storefront = models.ForeignKey(
        Storefront, verbose_name=_("storefront"), related_name="prices", on_delete=models.CASCADE
    )
    product = models.ForeignKey(
        "catalog.Product", verbose_name=_("product"), related_name="+", on_delete=models.CASCADE
    )
    price = models.DecimalField(_("retail price"), max_digits=12, decimal_places=2)
    is_listed = models.BooleanField(_("listed"), default=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("retail price")
        verbose_name_plural = _("retail prices")
        constraints = [
            models.UniqueConstraint(fields=["storefront", "product"], name="retailprice_unique"),
            models.CheckConstraint(condition=Q(price__gt=0), name="retailprice_positive"),
        ]

    def __str__(self):
        return f"{self.storefront_id} · {self.product_id}: {self.price}"


class Commission(models.Model):
    """What one agent earns on one delivered order: pending until the refund window closes.

    Booked in the ledger (``agents.services.commissions``); ``reversed_quantity`` codes of it were
    refunded inside the window and their share reversed.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending (refund window open)")
        AVAILABLE = "available", _("Available")
        REVERSED = "reversed", _("Reversed (refunded)")

    order = models.ForeignKey(
        "orders.Order", verbose_name=_("order"), related_name="commissions", on_delete=models.PROTECT
    )
    agent = models.ForeignKey(Agent, verbose_name=_("agent"), related_name="commissions", on_delete=models.PROTECT)
    depth = models.PositiveSmallIntegerField(_("level in the chain"))
    unit_amount = models.DecimalField(_("per code"), max_digits=12, decimal_places=2)
    quantity = models.PositiveIntegerField(_("codes"))
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    reversed_quantity = models.PositiveIntegerField(_("codes refunded"), default=0)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    available_at = models.DateTimeField(_("available from"), db_index=True)
    settled_at = models.DateTimeField(_("made available"), null=True, blank=True)
    created_at = models.DateTimeField(_("booked"), auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("commission")
        verbose_name_plural = _("commissions")
        constraints = [
            models.UniqueConstraint(fields=["order", "agent"], name="commission_once_per_order_agent"),
            models.CheckConstraint(condition=Q(unit_amount__gte=0), name="commission_not_negative"),
            models.CheckConstraint(
                condition=Q(reversed_quantity__lte=models.F("quantity")), name="commission_reversed_le_quantity"
            ),
        ]
        indexes = [models.Index(fields=["agent", "created_at"], name="commission_agent_time_idx")]

    def __str__(self):
        return f"{self.agent_id} · {self.order_id}: {self.amount}"

    @property
    def net_amount(self):
        """What is still owed: the codes not refunded, less their share of the agent's own coupon
        on the order (``Order.discount_slots``), if it funded one."""
        left = self.quantity - self.reversed_quantity
        net = self.unit_amount * left
        if left and self.order.discount_funder_id == self.agent_id:
            net -= self.order.discount_slots(self.reversed_quantity, left)
        return net


class CommissionStatusChange(StatusChange):
    subject = "commission"

    commission = models.ForeignKey(
        Commission, verbose_name=_("commission"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=Commission.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=Commission.Status.choices)


CommissionStatus = Commission.Status
# Booked pending in bulk when the order is delivered (the initial state, no move); then each
# row on its own, locked: settled when the refund window closes, or reversed by a refund.
COMMISSION_FLOW = StateMachine(
    transitions=table(
        {
            CommissionStatus.PENDING: [CommissionStatus.AVAILABLE, CommissionStatus.REVERSED],
            CommissionStatus.AVAILABLE: [
                CommissionStatus.REVERSED
            ],  # refunded after the window: taken back from the balance
            CommissionStatus.REVERSED: [],
        }
    ),
    history_model=CommissionStatusChange,
    history_fk="commission",
    entered_at={CommissionStatus.AVAILABLE: "settled_at"},
    model=Commission,
)


class Withdrawal(models.Model):
    """An agent takes available commission out: requested, reviewed by staff, paid out."""

    class Status(models.TextChoices):
        REQUESTED = "requested", _("Awaiting review")
        APPROVED = "approved", _("Approved, paying out")
        PAID = "paid", _("Paid out")
        REJECTED = "rejected", _("Rejected")
        FAILED = "failed", _("Payout failed: staff to act")

    class Method(models.TextChoices):
        ALIPAY = "alipay", _("Alipay account")
        BANK = "bank", _("Bank transfer")

    number = models.CharField(_("number"), max_length=32, unique=True, editable=False)
    agent = models.ForeignKey(Agent, verbose_name=_("agent"), related_name="withdrawals", on_delete=models.PROTECT)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    fee = models.DecimalField(_("fee"), max_digits=12, decimal_places=2, default=0)
    net = models.DecimalField(_("paid out"), max_digits=12, decimal_places=2)
    method = models.CharField(_("method"), max_length=10, choices=Method.choices)
    payee_name = models.CharField(_("payee name"), max_length=60)
    payee_account = models.TextField(_("payee account (encrypted)"))  # marketplace.crypto
    bank_name = models.CharField(_("bank"), max_length=60, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.REQUESTED)
    idempotency_key = models.CharField(max_length=64, editable=False)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewed by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    reviewed_at = models.DateTimeField(_("reviewed"), null=True, blank=True)
    reject_reason = models.CharField(_("reason for rejection"), max_length=300, blank=True)
    payout_reference = models.CharField(_("payout reference"), max_length=64, blank=True)
    payout_error = models.CharField(_("payout error"), max_length=300, blank=True)
    paid_at = models.DateTimeField(_("paid out at"), null=True, blank=True)
    created_at = models.DateTimeField(_("requested"), auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("withdrawal")
        verbose_name_plural = _("withdrawals")
        permissions = [("reveal_payee_account", _("Can see agents' full payout accounts"))]
        constraints = [
            models.UniqueConstraint(fields=["agent", "idempotency_key"], name="withdrawal_idempotent_per_agent"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="withdrawal_amount_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="withdrawal_fee_not_negative"),
            models.CheckConstraint(condition=Q(net=models.F("amount") - models.F("fee")), name="withdrawal_net"),
            models.CheckConstraint(condition=Q(net__gt=0), name="withdrawal_net_positive"),
        ]

    def __str__(self):
        return self.number


class WithdrawalStatusChange(StatusChange):
    subject = "withdrawal"

    withdrawal = models.ForeignKey(
        Withdrawal, verbose_name=_("withdrawal"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=Withdrawal.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=Withdrawal.Status.choices)


WithdrawalStatus = Withdrawal.Status
WITHDRAWAL_FLOW = StateMachine(
    transitions=table(
        {
            WithdrawalStatus.REQUESTED: {WithdrawalStatus.APPROVED, WithdrawalStatus.REJECTED},
            # approved -> rejected only for a bank transfer not yet made (see withdrawal_reject)
            WithdrawalStatus.APPROVED: {WithdrawalStatus.PAID, WithdrawalStatus.FAILED, WithdrawalStatus.REJECTED},
            WithdrawalStatus.FAILED: {
                WithdrawalStatus.APPROVED,
                WithdrawalStatus.REJECTED,
            },  # retried, or the money goes back to the agent
            WithdrawalStatus.PAID: set(),
            WithdrawalStatus.REJECTED: set(),
        }
    ),
    history_model=WithdrawalStatusChange,
    history_fk="withdrawal",
    entered_at={WithdrawalStatus.PAID: "paid_at"},
    model=Withdrawal,
)


class ApiKey(models.Model):
    """An agent's key for the integration API. The secret is shown once, kept encrypted.

    After a rotation the previous secret keeps working until ``previous_valid_until`` so a
    shop can switch without downtime; revoking ends both at once.
    """

    agent = models.ForeignKey(Agent, verbose_name=_("agent"), related_name="api_keys", on_delete=models.CASCADE)
    name = models.CharField(_("name"), max_length=60)
    key_id = models.CharField(_("key ID"), max_length=40, unique=True)
    secret = models.TextField(_("secret (encrypted)"))
    previous_secret = models.TextField(_("previous secret (encrypted)"), blank=True)
    previous_valid_until = models.DateTimeField(_("previous secret valid until"), null=True, blank=True)
    ip_allowlist = models.TextField(
        _("allowed IPs"), blank=True, help_text=_("One IP address or network (CIDR) per line. Empty: any.")
    )
    callback_url = models.URLField(_("callback URL"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    rotated_at = models.DateTimeField(_("rotated"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self):
        return f"{self.name} ({self.key_id})"


class ApiNonce(models.Model):
    """Nonces seen within the signature window: a second use of one is a replay."""

    key = models.ForeignKey(ApiKey, related_name="+", on_delete=models.CASCADE)
    nonce = models.CharField(max_length=64)
    seen_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "nonce"], name="apinonce_once_per_key")]

    def __str__(self):
        return self.nonce


class OperatorIdentity(models.Model):
    """Who runs a storefront: the platform's register of its in-platform operators.

    网络交易监督管理办法 第二十四条: the platform collects each operator's true identity, address,
    contact details (and licences), verifies and registers them, and re-checks them at least every
    six months; 第二十五条: it reports them to the provincial market regulator every January and
    July (``agents.selectors.operators_report_rows``). A registered business gives its name, its
    统一社会信用代码 and its licence; an individual not registered as a market entity gives the
    name and ID number and declares why no registration is needed (电子商务法 第十条: 零星小额交易).

    One per agent, written only by ``agents.services.operators``: submitted by the agent, verified
    or rejected by staff (``OPERATOR_IDENTITY_FLOW``); a change after verification is submitted
    again. A storefront opens, and its public pages answer, only while this is verified.
    The ID number is encrypted (``marketplace.crypto``), shown masked; the full number needs
    ``agents.reveal_operator_id_number`` and each look is audited. The licence image is kept here
    (re-encoded JPEG, no metadata), never under MEDIA: only staff's admin view serves it.
    """

    class Kind(models.TextChoices):
        INDIVIDUAL = "individual", _("Individual (not registered as a business)")
        BUSINESS = "business", _("Registered business (company or sole proprietorship)")

    class Status(models.TextChoices):
        SUBMITTED = "submitted", _("Awaiting verification")
        VERIFIED = "verified", _("Verified")
        REJECTED = "rejected", _("Rejected")

    agent = models.OneToOneField(
        Agent, verbose_name=_("agent"), related_name="operator_identity", on_delete=models.PROTECT
    )
    kind = models.CharField(_("operator type"), max_length=10, choices=Kind.choices)
    # The individual's legal name, or the business's legal representative (法定代表人/经营者).
    legal_name = models.CharField(_("legal name"), max_length=60)
    id_number = models.TextField(_("ID number (encrypted)"), blank=True)  # marketplace.crypto
    id_number_digest = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    company_name = models.CharField(_("company name"), max_length=100, blank=True)
    credit_code = models.CharField(_("unified social credit code"), max_length=18, blank=True, db_index=True)
    # 网络交易监督管理办法 第十二条、第二十五条: the actual place of business and a contact.
    address = models.CharField(_("actual business address"), max_length=200)
    phone = models.CharField(_("contact phone"), max_length=20)
    # 网络交易监督管理办法 第二十五条(二): an unregistered individual's self-declaration of why
    # registration is not needed (电子商务法 第十条: sporadic small-value transactions).
    small_sales_declared = models.BooleanField(_("declares sporadic small-value sales"), default=False)
    licence_image = models.BinaryField(_("business licence image"), null=True, blank=True, editable=False)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.SUBMITTED)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    verified_at = models.DateTimeField(_("verified"), null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewed by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    reviewed_at = models.DateTimeField(_("reviewed"), null=True, blank=True)
    reject_reason = models.CharField(_("reason for rejection"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ("-submitted_at", "-id")
        verbose_name = _("storefront operator identity")
        verbose_name_plural = _("storefront operator identities")
        permissions = [("reveal_operator_id_number", _("Can see storefront operators' full ID numbers"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="individual", company_name="", credit_code="") & ~Q(id_number="")
                | Q(kind="business", id_number="") & ~Q(company_name="") & ~Q(credit_code=""),
                name="operatoridentity_kind_fields",
            ),
        ]

    def __str__(self):
        return self.company_name or self.legal_name


class OperatorIdentityStatusChange(StatusChange):
    subject = "identity"

    identity = models.ForeignKey(
        OperatorIdentity, verbose_name=_("operator identity"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=OperatorIdentity.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=OperatorIdentity.Status.choices)


OperatorStatus = OperatorIdentity.Status
# Submitted by the agent (the initial state), decided by staff; a verified or rejected identity
# the agent changes is submitted again (网络交易监督管理办法 第二十四条: verified on every update).
OPERATOR_IDENTITY_FLOW = StateMachine(
    transitions=table(
        {
            OperatorStatus.SUBMITTED: [OperatorStatus.VERIFIED, OperatorStatus.REJECTED],
            OperatorStatus.VERIFIED: [OperatorStatus.SUBMITTED],
            OperatorStatus.REJECTED: [OperatorStatus.SUBMITTED],
        }
    ),
    history_model=OperatorIdentityStatusChange,
    history_fk="identity",
    entered_at={OperatorStatus.SUBMITTED: "submitted_at", OperatorStatus.VERIFIED: "verified_at"},
    model=OperatorIdentity,
)


# The columns that hold marketplace.crypto's tokens (manage.py rotate_card_keys, keys_check).
declare_encrypted("agents.Withdrawal", "payee_account")
declare_encrypted("agents.ApiKey", "secret", "previous_secret")
declare_encrypted("agents.OperatorIdentity", "id_number")
