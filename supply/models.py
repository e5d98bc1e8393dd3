"""Connections to suppliers' systems (issue 16): how we reach one supplier, with which secret
(encrypted with the key ring, never shown again), how its generic API signs, and what staff need
to see (state, balance, last error); which of our products comes from which supplier product
(``UpstreamProduct``, with the supplier's availability cached); and what the daily
reconciliation of supplier orders found (``SupplyMismatch``).
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from catalog.models import Product, Supplier
from marketplace.crypto import declare_encrypted

# Our names for the generic adapter's request and reply fields; a connection maps each to the
# supplier's own name in ``field_map`` (missing entries keep these names).
DEFAULT_FIELD_MAP = {
    "app_id": "app_id",
    "timestamp": "timestamp",
    "nonce": "nonce",
    "order_no": "order_no",  # our order number, the idempotency key
    "product_id": "product_id",
    "quantity": "quantity",
    "supplier_order_no": "supplier_order_no",
    "status": "status",
    "codes": "codes",
    "card_number": "card_number",
    "card_secret": "card_secret",
    "cost": "cost",
    "name": "name",
    "stock": "stock",
    "products": "products",
    "balance": "balance",
    "code": "code",  # the reply's result code: "0" (or ``success_code``) is success
    "message": "message",
    "data": "data",
    "notify_id": "notify_id",  # a callback's own id: the same id twice is a duplicate
}
# The supplier's order states, mapped to ours: pending, done, failed.
DEFAULT_STATUS_MAP = {"success": "done", "processing": "pending", "failed": "failed"}
DEFAULT_PATHS = {
    "products": "/products",
    "order_place": "/order/place",
    "order_query": "/order/query",
    "balance": "/balance",
}


class SupplierConnection(models.Model):
    class Kind(models.TextChoices):
        GENERIC_HTTP = "generic_http", _("Generic signed HTTP")
        KAMARKET = "kamarket", _("Another platform running this product (agent API)")

    class State(models.TextChoices):
        ENABLED = "enabled", _("Enabled")
        DISABLED = "disabled", _("Disabled")

    class SignAlgorithm(models.TextChoices):
        MD5 = "md5", _("MD5 over the sorted parameters with the key appended")
        HMAC_SHA256 = "hmac_sha256", _("HMAC-SHA256 over the sorted parameters, keyed with the secret")

    class KeyPlacement(models.TextChoices):
        KEY_PARAM = "key_param", _("Append &key=SECRET")
        RAW = "raw", _("Append the secret as it is")

    class BodyFormat(models.TextChoices):
        JSON = "json", _("JSON")
        FORM = "form", _("Form (application/x-www-form-urlencoded)")

    supplier = models.ForeignKey(
        Supplier, verbose_name=_("supplier"), on_delete=models.PROTECT, related_name="connections"
    )
    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.GENERIC_HTTP)
    base_url = models.URLField(_("base URL"), max_length=300)
    app_id = models.CharField(
        _("app ID / key ID"), max_length=100, help_text=_("Our account's public identifier at the supplier.")
    )
    # The secret, encrypted with marketplace.crypto (the card codes' key ring); never shown again.
    secret_encrypted = models.TextField(blank=True, editable=False)
    secret_set_at = models.DateTimeField(_("secret set at"), null=True, blank=True, editable=False)

    sign_algorithm = models.CharField(
        _("signature"), max_length=20, choices=SignAlgorithm.choices, default=SignAlgorithm.MD5
    )
    sign_key_placement = models.CharField(
        _("key placement (MD5)"), max_length=20, choices=KeyPlacement.choices, default=KeyPlacement.KEY_PARAM
    )
    sign_uppercase = models.BooleanField(_("upper-case hex signature"), default=True)
    sign_field = models.CharField(_("signature field name"), max_length=40, default="sign")
    body_format = models.CharField(
        _("request body"), max_length=10, choices=BodyFormat.choices, default=BodyFormat.JSON
    )
    success_code = models.CharField(_("success result code"), max_length=20, default="0")
    not_found_code = models.CharField(_("result code for an unknown order"), max_length=20, default="404")
    field_map = models.JSONField(
        _("field names"), default=dict, blank=True, help_text=_("Our field name → the supplier's, where they differ.")
    )
    status_map = models.JSONField(
        _("order states"),
        default=dict,
        blank=True,
        help_text=_("The supplier's order state → pending, done or failed."),
    )
    paths = models.JSONField(_("paths"), default=dict, blank=True, help_text=_("Operation → path under the base URL."))
    timeout_seconds = models.PositiveSmallIntegerField(_("timeout (seconds)"), default=10)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.DISABLED)

    last_error = models.CharField(_("last error"), max_length=300, blank=True, editable=False)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True, editable=False)
    balance = models.DecimalField(
        _("balance with the supplier"), max_digits=14, decimal_places=2, null=True, blank=True, editable=False
    )
    balance_at = models.DateTimeField(_("balance read at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        verbose_name = _("supplier connection")
        verbose_name_plural = _("supplier connections")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gte=1, timeout_seconds__lte=60), name="supply_timeout_range"
            ),
        ]

    def __str__(self):
        return self.name

    def field(self, name: str) -> str:
        return str((self.field_map or {}).get(name) or DEFAULT_FIELD_MAP[name])

    def path(self, operation: str) -> str:
        return str((self.paths or {}).get(operation) or DEFAULT_PATHS[operation])

    def status_of(self, value: str) -> str:
        mapping = {**DEFAULT_STATUS_MAP, **(self.status_map or {})}
        return mapping.get(str(value), "pending")


class SupplierCallback(models.Model):
    """A verified callback from a supplier, kept so a replay (the same nonce) is refused and a
    duplicate (the same event again, under a new nonce) is recognised and changes nothing."""

    connection = models.ForeignKey(SupplierConnection, on_delete=models.CASCADE, related_name="callbacks")
    event_id = models.CharField(max_length=100)
    nonce = models.CharField(max_length=100)
    our_number = models.CharField(max_length=60, blank=True)
    state = models.CharField(max_length=20, blank=True)
    times_seen = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "event_id"], name="supply_callback_event_once"),
        ]

    def __str__(self):
        return self.event_id


class SupplierCallbackNonce(models.Model):
    """Every nonce a verified callback used, per connection: the same nonce twice is a replay."""

    connection = models.ForeignKey(SupplierConnection, on_delete=models.CASCADE, related_name="+")
    nonce = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "nonce"], name="supply_callback_nonce_once")]

    def __str__(self):
        return self.nonce


class UpstreamProduct(models.Model):
    """Our product ``product`` is bought at the moment of sale from ``connection``'s product
    ``supplier_ref``. ``cost`` and ``available`` are the supplier's last word (``available_at``);
    displayed stock is never older than ``supply.services.AVAILABILITY_MAX_AGE``."""

    product = models.OneToOneField(
        Product, verbose_name=_("product"), related_name="upstream", on_delete=models.CASCADE
    )
    connection = models.ForeignKey(
        SupplierConnection, verbose_name=_("supplier connection"), related_name="products", on_delete=models.PROTECT
    )
    supplier_ref = models.CharField(_("supplier's product ID"), max_length=100)
    cost = models.DecimalField(
        _("cost per unit"), max_digits=12, decimal_places=2, null=True, blank=True, editable=False
    )
    available = models.IntegerField(_("available at the supplier"), null=True, blank=True, editable=False)
    available_at = models.DateTimeField(_("availability read at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("upstream product")
        verbose_name_plural = _("upstream products")
        constraints = [
            models.UniqueConstraint(fields=["connection", "supplier_ref"], name="upstream_product_once"),
        ]

    def __str__(self):
        return f"{self.product} ← {self.connection}:{self.supplier_ref}"


class SupplyReconciliation(models.Model):
    """One day's reconciliation of one connection's supplier orders against ours."""

    connection = models.ForeignKey(
        SupplierConnection,
        verbose_name=_("supplier connection"),
        related_name="reconciliations",
        on_delete=models.PROTECT,
    )
    day = models.DateField(_("day"))
    orders_checked = models.PositiveIntegerField(_("orders checked"), default=0)
    mismatches = models.PositiveIntegerField(_("mismatches"), default=0)
    our_cost = models.DecimalField(_("cost by our records"), max_digits=14, decimal_places=2, default=0)
    supplier_cost = models.DecimalField(_("cost by the supplier"), max_digits=14, decimal_places=2, default=0)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-day", "connection")
        verbose_name = _("supplier reconciliation")
        verbose_name_plural = _("supplier reconciliations")
        constraints = [models.UniqueConstraint(fields=["connection", "day"], name="supply_reconciliation_once")]

    def __str__(self):
        return f"{self.connection} {self.day}"


class SupplyMismatch(models.Model):
    """A difference the reconciliation found, for staff to settle (as payment bills' are)."""

    class Kind(models.TextChoices):
        MISSING_AT_SUPPLIER = "missing_there", _("Our supplier order is unknown to the supplier")
        STATE = "state", _("The supplier's state differs from ours")
        COST = "cost", _("The supplier charged a different amount")
        UNDELIVERED = "undelivered", _("Done at the supplier, not delivered to our buyer")

    reconciliation = models.ForeignKey(
        SupplyReconciliation, verbose_name=_("reconciliation"), related_name="items", on_delete=models.CASCADE
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    our_number = models.CharField(_("our order number"), max_length=60)
    ours = models.CharField(_("by our records"), max_length=200, blank=True)
    theirs = models.CharField(_("by the supplier"), max_length=200, blank=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("resolved by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    resolution_note = models.CharField(_("resolution"), max_length=300, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("supplier mismatch")
        verbose_name_plural = _("supplier mismatches")
        constraints = [
            models.UniqueConstraint(fields=["reconciliation", "our_number", "kind"], name="supply_mismatch_once")
        ]

    def __str__(self):
        return f"{self.our_number}: {self.kind}"


# The columns that hold marketplace.crypto's tokens (manage.py rotate_card_keys, keys_check).
declare_encrypted("supply.SupplierConnection", "secret_encrypted")
