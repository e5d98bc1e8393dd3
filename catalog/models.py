from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from marketplace.crypto import declare_encrypted
from marketplace.transitions import StateMachine, StatusChange, table


class Category(models.Model):
    """Two levels: a top-level category and its sub-categories."""

    parent = models.ForeignKey(
        "self", verbose_name=_("parent"), null=True, blank=True, related_name="children", on_delete=models.PROTECT
    )
    name = models.CharField(_("name"), max_length=60)
    slug = models.SlugField(_("slug"), unique=True, max_length=60)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)
    is_active = models.BooleanField(_("active"), default=True)
    # Real-name rule for a whole category (a product can also require it on its own).
    requires_real_name = models.BooleanField(
        _("requires a verified real name"),
        default=False,
        help_text=_("Every product in this category (and its sub-categories) needs a buyer with a verified real name."),
    )

    class Meta:
        ordering = ("sort_order", "id")
        verbose_name = _("category")
        verbose_name_plural = _("categories")

    def __str__(self):
        return f"{self.parent.name} / {self.name}" if self.parent_id else self.name

    def get_absolute_url(self):
        return reverse("catalog:category", args=[self.slug])

    def clean(self):
        if self.parent_id and self.parent.parent_id:
            raise ValidationError({"parent": _("Categories have two levels: choose a top-level parent.")})
        if self.parent_id and self.pk and self.parent_id == self.pk:
            raise ValidationError({"parent": _("A category cannot be its own parent.")})


class Supplier(models.Model):
    """Where stock comes from, and whether the brand owner authorised it."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    is_authorised = models.BooleanField(_("officially authorised"), default=False)
    authorisation_cert_no = models.CharField(_("authorisation certificate number"), max_length=100, blank=True)
    authorisation_lookup_url = models.URLField(_("authorisation lookup link"), blank=True)
    authorised_until = models.DateField(_("authorised until"), null=True, blank=True)
    contact = models.CharField(_("contact"), max_length=200, blank=True)
    # Where rights holders' notices are forwarded (电子商务法 Art. 43).
    contact_email = models.EmailField(_("contact email"), blank=True)

    class Meta:
        ordering = ("name",)
        verbose_name = _("supplier")
        verbose_name_plural = _("suppliers")

    def __str__(self):
        return self.name

    def clean(self):
        if self.is_authorised and not self.authorisation_cert_no:
            raise ValidationError({"authorisation_cert_no": _("An authorised supplier needs a certificate number.")})


class Product(models.Model):
    class Kind(models.TextChoices):
        GAME_CARD = "game_card", _("Game point card")
        LICENCE_KEY = "licence_key", _("Software licence key")
        MEMBERSHIP = "membership", _("Membership")
        # 代充: the buyer gives an account (game, phone…) and the supplier credits it; no code
        # changes hands. The fields the buyer must give are declared in ``topup_fields``.
        DIRECT_TOPUP = "direct_topup", _("Direct top-up")

    class SupplyMode(models.TextChoices):
        STOCK = "stock", _("Stock only (imported codes)")
        UPSTREAM = "upstream", _("Upstream only (bought from the supplier at the moment of sale)")
        STOCK_FIRST = "stock_first", _("Stock first, then upstream")
        MANUAL = "manual", _("Manual top-up by staff")

    category = models.ForeignKey(
        Category, verbose_name=_("category"), related_name="products", on_delete=models.PROTECT
    )
    supplier = models.ForeignKey(
        Supplier, verbose_name=_("supplier"), related_name="products", on_delete=models.PROTECT
    )
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), unique=True, max_length=80)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    description = models.TextField(_("description"), blank=True)
    face_value = models.DecimalField(_("face value"), max_digits=12, decimal_places=2)
    price = models.DecimalField(_("price"), max_digits=12, decimal_places=2)
    min_per_order = models.PositiveIntegerField(_("minimum per order"), default=1)
    max_per_order = models.PositiveIntegerField(_("maximum per order"), default=10)
    refund_policy = models.TextField(
        _("refund policy"), blank=True, help_text=_("Leave empty for the platform's standard policy.")
    )
    is_active = models.BooleanField(_("on sale"), default=True)
    # Goods thieves prefer (easily resold, e.g. large-value cards): a credit level may forbid them.
    is_high_risk = models.BooleanField(
        _("high-risk goods"),
        default=False,
        help_text=_("Users whose credit level forbids high-risk goods cannot buy this product."),
    )
    requires_real_name = models.BooleanField(
        _("requires a verified real name"),
        default=False,
        help_text=_("Only buyers who verified their real name can buy this product."),
    )
    # Game top-ups follow the national limits on minors' spending (国家新闻出版署 2019 通知).
    is_game_topup = models.BooleanField(
        _("game top-up"),
        default=False,
        help_text=_("Minors' spending limits apply, which needs a verified real name."),
    )
    # The copyright/authorisation review ledger: the product may be on sale until this date
    # (the approved review's validity); empty means no approved review.
    sale_authorised_until = models.DateField(_("sale authorised until"), null=True, blank=True, editable=False)
    # Why the product is held off sale whatever is_active says (a rights holder's notice).
    sale_hold = models.CharField(_("held off sale"), max_length=200, blank=True, editable=False)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)
    # Where the goods come from (issue 16): imported stock, the supplier's system at the moment of
    # sale (``supply.UpstreamProduct`` names the connection and the supplier's product), stock
    # first and upstream when stock cannot cover an order, or (direct top-ups) staff by hand.
    supply_mode = models.CharField(_("supply"), max_length=12, choices=SupplyMode.choices, default=SupplyMode.STOCK)
    # A direct top-up's fields, a list of {"name", "label", "pattern", "min_length",
    # "max_length", "confirm", "help"} (``catalog.topup``): asked at checkout, checked before
    # payment, kept on the order (``Order.topup_values``), sent to the supplier.
    topup_fields = models.JSONField(_("top-up fields"), default=list, blank=True)
    # What one unit costs us when it is not from stock and the supplier does not say (manual
    # top-ups): booked as owed to the product's supplier on delivery.
    supply_cost = models.DecimalField(
        _("cost per unit (manual top-up)"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ("sort_order", "id")
        verbose_name = _("product")
        verbose_name_plural = _("products")
        permissions = [("import_stock", _("Can import card codes"))]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="product_price_positive"),
            models.CheckConstraint(condition=Q(face_value__gte=0), name="product_face_value_not_negative"),
            models.CheckConstraint(condition=Q(min_per_order__gte=1), name="product_min_at_least_one"),
            models.CheckConstraint(
                condition=Q(max_per_order__gte=models.F("min_per_order")), name="product_max_ge_min"
            ),
            models.CheckConstraint(
                condition=Q(supply_cost__isnull=True) | Q(supply_cost__gte=0), name="product_supply_cost_not_negative"
            ),
            # Staff top up by hand only what is a top-up; a top-up never comes from code stock.
            models.CheckConstraint(
                condition=~Q(supply_mode="manual") | Q(kind="direct_topup"), name="product_manual_is_topup"
            ),
            models.CheckConstraint(
                condition=~Q(kind="direct_topup") | Q(supply_mode__in=["upstream", "manual"]),
                name="product_topup_not_from_stock",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("catalog:product", args=[self.slug])

    @property
    def is_direct_topup(self) -> bool:
        return self.kind == self.Kind.DIRECT_TOPUP


class StockBatch(models.Model):
    """One import of card codes: who, when, from whom, at what cost, and what happened."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Importing")
        DONE = "done", _("Imported")
        REJECTED = "rejected", _("Rejected (nothing imported)")
        FAILED = "failed", _("Failed (nothing imported)")

    product = models.ForeignKey(Product, verbose_name=_("product"), related_name="batches", on_delete=models.PROTECT)
    supplier = models.ForeignKey(Supplier, verbose_name=_("supplier"), related_name="batches", on_delete=models.PROTECT)
    cost_price = models.DecimalField(_("cost price per code"), max_digits=12, decimal_places=2)
    # Empty for codes received from a supplier's system at the moment of sale (issue 16,
    # ``batch_receive``): ``source_name`` names the connection and the supplier's order.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("imported by"),
        related_name="+",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    source_name = models.CharField(_("source"), max_length=200, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    total_lines = models.PositiveIntegerField(_("lines"), default=0)
    processed_lines = models.PositiveIntegerField(_("lines processed"), default=0)
    imported_count = models.PositiveIntegerField(_("imported"), default=0)
    duplicate_count = models.PositiveIntegerField(_("duplicates"), default=0)
    malformed_count = models.PositiveIntegerField(_("malformed"), default=0)
    # [{"line": 12, "problem": "duplicate"}, ...]: line numbers and reasons, never the codes.
    report = models.JSONField(_("report"), default=list, blank=True)
    error = models.TextField(_("error"), blank=True)
    # The uploaded text, encrypted; emptied once the import has finished.
    payload = models.TextField(editable=False, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("stock batch")
        verbose_name_plural = _("stock batches")
        constraints = [models.CheckConstraint(condition=Q(cost_price__gte=0), name="batch_cost_not_negative")]

    def __str__(self):
        return f"#{self.pk} {self.product} ({self.get_status_display()})"

    @property
    def progress_percent(self) -> int:
        return int(100 * self.processed_lines / self.total_lines) if self.total_lines else 0


class StockBatchStatusChange(StatusChange):
    subject = "batch"

    batch = models.ForeignKey(StockBatch, verbose_name=_("batch"), related_name="history", on_delete=models.CASCADE)
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=StockBatch.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=StockBatch.Status.choices)


BatchStatus = StockBatch.Status
BATCH_FLOW = StateMachine(
    transitions=table(
        {
            # Claimed by the import task; a run killed mid-way is run again in place (running).
            BatchStatus.QUEUED: [BatchStatus.RUNNING],
            BatchStatus.RUNNING: [BatchStatus.DONE, BatchStatus.REJECTED, BatchStatus.FAILED],
            BatchStatus.DONE: [],
            BatchStatus.REJECTED: [],
            BatchStatus.FAILED: [],
        }
    ),
    history_model=StockBatchStatusChange,
    history_fk="batch",
    model=StockBatch,
)


class CardCode(models.Model):
    """One code: imported, encrypted at rest, reserved, sold exactly once.

    Which order holds a code is recorded by the orders app (``orders.OrderCode``), whose
    constraint allows one live holder per code; the status here is what stock counts read.
    """

    class Status(models.TextChoices):
        # Written by an import still running: not for sale until the whole batch is in.
        IMPORTING = "importing", _("Importing")
        AVAILABLE = "available", _("Available")
        RESERVED = "reserved", _("Reserved")
        SOLD = "sold", _("Sold")
        # Reported invalid by a buyer and confirmed by staff: never sold again, owed back by its
        # supplier (batch defect rates show which suppliers deliver bad codes).
        DEFECTIVE = "defective", _("Defective (the supplier owes it)")

    # No single-column indexes on product or batch: the claim query must only ever find
    # its codes through the partial "available" index below (see catalog.services).
    product = models.ForeignKey(
        Product, verbose_name=_("product"), related_name="codes", on_delete=models.PROTECT, db_index=False
    )
    batch = models.ForeignKey(
        StockBatch, verbose_name=_("batch"), related_name="codes", on_delete=models.PROTECT, db_index=False
    )
    card_number_enc = models.TextField(blank=True, editable=False)
    secret_enc = models.TextField(editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.AVAILABLE)
    created_at = models.DateTimeField(_("imported"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    defective_at = models.DateTimeField(_("marked defective"), null=True, blank=True)
    defect_note = models.CharField(_("defect"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("card code")
        verbose_name_plural = _("card codes")
        permissions = [("reveal_cardcode", _("Can reveal a card code's secret"))]
        constraints = [
            models.UniqueConstraint(fields=["product", "secret_hash"], name="cardcode_unique_secret_per_product"),
        ]
        indexes = [
            # Stock counts and the claim: oldest batch first, only codes still available.
            models.Index(
                fields=["product", "batch", "id"], condition=Q(status="available"), name="cardcode_available_idx"
            ),
        ]

    def __str__(self):
        return f"{self.product} #{self.pk}"


CodeStatus = CardCode.Status
# Codes move in bulk, one conditional UPDATE for all the codes of an order (``move_all``; the
# claim is raw SQL checked with ``require``), so this machine keeps no history: a row per code
# would cost the purchase path a write per code. A code's story is told by its order's
# ``OrderCode`` (reserved, released), the reveal log and ``defective_at``.
CODE_FLOW = StateMachine(
    transitions=table(
        {
            CodeStatus.IMPORTING: [CodeStatus.AVAILABLE],  # the whole batch at once when its import is done
            CodeStatus.AVAILABLE: [CodeStatus.RESERVED],  # claimed by an order (catalog.services.claim_sql)
            CodeStatus.RESERVED: [CodeStatus.AVAILABLE, CodeStatus.SOLD],  # released (unpaid), or delivered
            # Back on sale when refunded unrevealed; or confirmed invalid (never sold again).
            CodeStatus.SOLD: [CodeStatus.AVAILABLE, CodeStatus.DEFECTIVE],
            CodeStatus.DEFECTIVE: [],
        }
    ),
    model=CardCode,
)


class StaffReveal(models.Model):
    """Every time a staff member looks at a secret in admin."""

    code = models.ForeignKey(
        CardCode, verbose_name=_("card code"), related_name="staff_reveals", on_delete=models.PROTECT
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("staff"), related_name="+", on_delete=models.PROTECT
    )
    at = models.DateTimeField(_("time"), auto_now_add=True)
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)
    reason = models.CharField(_("reason"), max_length=200)

    class Meta:
        ordering = ("-at",)
        verbose_name = _("staff reveal")
        verbose_name_plural = _("staff reveals")

    def __str__(self):
        return f"{self.user} → {self.code_id} @ {self.at:%Y-%m-%d %H:%M}"


class RestockSubscription(models.Model):
    """ "Tell me when it is back": a member's (confirmed at once) or a guest's email (confirmed by a
    signed link emailed to it). One alert per subscription: the restock email ends it (to hear of
    the next restock, subscribe again), so a product that sells out and comes back every day
    cannot turn one click into a daily mailing. Unsubscribing (the link in every email) ends it too.

    Sending is claimed row by row (``claim``/``claimed_at``, then ``notified_at``): see
    ``catalog.services.restock_notify_run`` for why each subscriber is emailed exactly once.
    """

    product = models.ForeignKey(
        Product, verbose_name=_("product"), related_name="restock_subscriptions", on_delete=models.CASCADE
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("member"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.CASCADE,
    )
    # Stripped and lower case (marketplace.text.email_normalise); a member's address when
    # they subscribed.
    email = models.EmailField(_("email"))
    # The unsubscribe link's key (and, signed, the confirmation link's): unguessable.
    token = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("subscribed"), auto_now_add=True)
    confirmed_at = models.DateTimeField(_("confirmed"), null=True, blank=True)
    # Which sending run holds the row (its Celery task id) and since when: see restock_notify_run.
    claim = models.CharField(max_length=64, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    notified_at = models.DateTimeField(_("notified"), null=True, blank=True)
    # The import that brought the stock the alert announced (empty: found in stock by the sweeper).
    notified_batch = models.ForeignKey(
        StockBatch, verbose_name=_("restock batch"), null=True, blank=True, related_name="+", on_delete=models.SET_NULL
    )
    unsubscribed_at = models.DateTimeField(_("unsubscribed"), null=True, blank=True)
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    # The page the subscriber asked on (a storefront's product page, or the platform's): the alert
    # links back to it. Set by the view from its own URL, never from the client.
    page_path = models.CharField(_("page"), max_length=200, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("restock alert")
        verbose_name_plural = _("restock alerts")
        constraints = [
            # One live subscription per product and address (live: neither notified nor unsubscribed).
            models.UniqueConstraint(
                fields=["product", "email"],
                condition=Q(notified_at__isnull=True, unsubscribed_at__isnull=True),
                name="restock_one_live_per_email",
            ),
        ]
        indexes = [
            # The sender's scan: live, confirmed subscriptions of one product, in id order.
            models.Index(
                fields=["product", "id"],
                condition=Q(notified_at__isnull=True, unsubscribed_at__isnull=True, confirmed_at__isnull=False),
                name="restock_due_idx",
            ),
        ]

    def __str__(self):
        return f"{self.product} → {self.email}"

    @property
    def is_live(self) -> bool:
        return self.notified_at is None and self.unsubscribed_at is None


# The columns that hold marketplace.crypto's tokens (manage.py rotate_card_keys, keys_check).
declare_encrypted("catalog.CardCode", "secret_enc", "card_number_enc")
declare_encrypted("catalog.StockBatch", "payload")  # emptied once imported
