import string
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Round
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from marketplace.money import quantize, split
from marketplace.randomness import random_chars
from marketplace.transitions import StateMachine, StatusChange, choice_display, table

_ALPHABET = string.ascii_uppercase + string.digits
_RANDOM_CHARS = 18


def new_order_number() -> str:
    """Date prefix for humans plus 18 random characters (93 bits): unguessable.

    28 characters of [A-Z0-9]: fits both gateways' out_trade_no (at most 32, Alipay's 64).
    The random part is ``random_chars``: one ``secrets`` draw below 36**18, spelled in base 36.
    """
    return timezone.localtime().strftime("%y%m%d%H%M") + random_chars(_RANDOM_CHARS, _ALPHABET)


class Channel(models.TextChoices):
    WEB = "web", _("Platform site")
    STOREFRONT = "storefront", _("Agent storefront")
    API = "api", _("Agent API")


class Fulfilment(models.TextChoices):
    STOCK = "stock", _("Stock")
    UPSTREAM = "upstream", _("Supplier's system")
    MANUAL = "manual", _("Manual top-up")


class Order(models.Model):
    Channel = Channel
    Fulfilment = Fulfilment

    class Status(models.TextChoices):
        PENDING = "pending", _("Awaiting payment")
        PAID = "paid", _("Paid, delivering")
        DELIVERED = "delivered", _("Delivered")
        EXPIRED = "expired", _("Expired (not paid in time)")
        CANCELLED = "cancelled", _("Cancelled")
        # Paid, but the stock was gone by then (a late payment): the money goes back.
        REFUND_PENDING = "refund_pending", _("Paid, to be refunded")
        REFUNDED = "refunded", _("Refunded")

    number = models.CharField(_("order number"), max_length=32, unique=True, default=new_order_number, editable=False)
    # A member's order has a buyer; a guest's has none and a guest email instead (never both).
    # No index of its own: the unique (buyer, idempotency_key) index leads with it.
    buyer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("buyer"),
        null=True,
        blank=True,
        related_name="orders",
        on_delete=models.PROTECT,
        db_index=False,
    )
    # A guest's email, normalised (stripped, lower case): where the delivery email goes, and
    # how the guest finds the order again.
    guest_email = models.EmailField(_("guest email"), max_length=254, blank=True, db_index=True)
    # The guest's optional query password, only as a Django password hash (empty: none set).
    query_password = models.CharField(_("query password"), max_length=128, blank=True, editable=False)
    product = models.ForeignKey(
        "catalog.Product", verbose_name=_("product"), related_name="+", on_delete=models.PROTECT
    )
    product_name = models.CharField(_("product name"), max_length=120)
    quantity = models.PositiveIntegerField(_("quantity"))
    unit_price = models.DecimalField(_("unit price"), max_digits=12, decimal_places=2)
    subtotal = models.DecimalField(_("subtotal"), max_digits=12, decimal_places=2)
    # Room for coupons (marketing) and agent pricing: the order keeps what was charged and why.
    discount = models.DecimalField(_("discount"), max_digits=12, decimal_places=2, default=0)
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    idempotency_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("pay before"))
    paid_at = models.DateTimeField(_("paid"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    # A paid order's next delivery check: set in the same UPDATE that marks it paid, pushed
    # back each time the sweeper queues its fulfilment again, cleared when delivered. The
    # intent to deliver lives in the payment's own transaction, not in a publish after it.
    delivery_due_at = models.DateTimeField(_("delivery due"), null=True, blank=True, editable=False)
    buyer_notified_at = models.DateTimeField(_("buyer notified"), null=True, blank=True)
    buyer_ip = models.GenericIPAddressField(_("buyer IP"), null=True, blank=True)
    # The browser's device identifier (risk.middleware: a hash, never the cookie), "" if none.
    buyer_device = models.CharField(_("buyer device"), max_length=40, blank=True)
    # Where the sale was made: the platform's own site, an agent's storefront, or an agent's
    # shop through the integration API. ``agent`` is the selling agent (the storefront's owner,
    # or the agent buying at its own cost on the site or through the API).
    channel = models.CharField(_("sold through"), max_length=10, choices=Channel.choices, default=Channel.WEB)
    # No index of its own: order_agent_time_idx (agent, created_at) leads with it.
    agent = models.ForeignKey(
        "agents.Agent",
        verbose_name=_("agent"),
        null=True,
        blank=True,
        related_name="sales",
        on_delete=models.PROTECT,
        db_index=False,
    )
    # The agent's own order number (API orders): an order is placed once per number.
    agent_order_no = models.CharField(_("agent's order number"), max_length=64, blank=True)
    callback_url = models.URLField(_("callback URL"), max_length=300, blank=True)
    # Codes of this order refunded or on their way back (decided refunds; kept by payments.services.refunds).
    refunded_quantity = models.PositiveIntegerField(_("codes refunded"), default=0)
    # The real-name verification the order was placed with (products that need one: the
    # buyer's, a guest's, or an API order's end user's; compliance.realname).
    realname_verification = models.ForeignKey(
        "compliance.RealNameVerification",
        verbose_name=_("real-name verification"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
        editable=False,
    )
    # Where the buyer came from, for the agents' share tools and the marketing reports: a
    # poster or share link ("poster:<id>"), a campaign; empty when unknown. Set once at placing.
    # Not indexed: nothing filters on it (the share report groups an agent's own sales by it).
    source = models.CharField(_("source"), max_length=40, blank=True, editable=False)
    # Who pays the coupon discount (``discount``): the issuing agent, out of its earnings on the
    # order; none: the platform. The use itself is marketing's ``CouponUse`` (``order.coupon_use``).
    discount_funder = models.ForeignKey(
        "agents.Agent",
        verbose_name=_("discount funded by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
        editable=False,
    )

    # Where the order's goods come from, decided when it is placed (``catalog.Product.supply_mode``
    # and the stock then): reserved codes, the supplier's system after payment (``UpstreamOrder``),
    # or a staff member's manual top-up (``ManualTopup``).
    fulfilment = models.CharField(
        _("fulfilled from"), max_length=10, choices=Fulfilment.choices, default=Fulfilment.STOCK, editable=False
    )
    # A direct top-up's fields as the buyer gave them (checked against the product's declaration).
    topup_values = models.JSONField(_("top-up details"), default=dict, blank=True, editable=False)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        constraints = [
            models.UniqueConstraint(fields=["buyer", "idempotency_key"], name="order_idempotent_per_buyer"),
            models.UniqueConstraint(
                fields=["guest_email", "idempotency_key"],
                condition=Q(buyer__isnull=True),
                name="order_idempotent_per_guest",
            ),
            models.CheckConstraint(
                condition=(Q(buyer__isnull=False) & Q(guest_email="")) | (Q(buyer__isnull=True) & ~Q(guest_email="")),
                name="order_buyer_or_guest",
            ),
            models.UniqueConstraint(
                fields=["agent", "agent_order_no"],
                condition=~Q(agent_order_no=""),
                name="order_once_per_agent_order_no",
            ),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=Q(refunded_quantity__lte=models.F("quantity")), name="order_refunded_le_quantity"
            ),
            models.CheckConstraint(condition=Q(unit_price__gt=0), name="order_unit_price_positive"),
            models.CheckConstraint(condition=Q(discount__gte=0), name="order_discount_not_negative"),
            models.CheckConstraint(condition=Q(total__gte=0), name="order_total_not_negative"),
            # Rounded to the cent so the check means the same on SQLite (the embedded default),
            # which keeps decimals as binary floats: 10.10 - 0.30 is not 9.80 there. On
            # PostgreSQL both sides are numeric(12, 2) and the ROUND changes nothing.
            models.CheckConstraint(
                condition=Q(total=Round(models.F("subtotal") - models.F("discount"), 2)),
                name="order_total_is_subtotal_less_discount",
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="order_pending_expiry_idx"),
            models.Index(fields=["delivery_due_at"], condition=Q(status="paid"), name="order_delivery_due_idx"),
            # Delivery emails not sent yet, by delivery time (orders.services.orders.delivery_emails_send).
            models.Index(
                fields=["delivered_at"],
                condition=Q(status="delivered", buyer_notified_at__isnull=True),
                name="order_delivery_email_due_idx",
            ),
            models.Index(fields=["agent", "created_at"], name="order_agent_time_idx"),
            # Unpaid orders held by one client (risk's stock-hogging cap, orders.services.risk).
            models.Index(fields=["buyer_ip"], condition=Q(status="pending"), name="order_pending_ip_idx"),
            models.Index(fields=["buyer_device"], condition=Q(status="pending"), name="order_pending_device_idx"),
            models.Index(fields=["guest_email"], condition=Q(status="pending"), name="order_pending_guest_idx"),
        ]

    def __str__(self):
        return self.number

    def get_absolute_url(self):
        if self.buyer_id is None:
            return reverse("orders:guest_detail", args=[self.number])
        return reverse("orders:detail", args=[self.number])

    def get_status_display(self) -> str:
        return choice_display(self, "status")

    @property
    def is_guest(self) -> bool:
        return self.buyer_id is None

    @property
    def buyer_email(self) -> str:
        """Where the buyer's emails go: the member's address, or the guest's."""
        return self.guest_email if self.buyer_id is None else self.buyer.email

    def discount_slots(self, start: int, count: int) -> Decimal:
        """The discount on ``count`` of the order's codes from position ``start``: the order's
        discount split over its codes to the fen, the remainder on the last (``money.split``).
        The codes of one order are interchangeable (one product, one price), so refunds take
        the positions in the order they refund codes: what each refund pays back sums, over a
        full refund, to exactly what was paid."""
        if not self.discount or count <= 0:
            return Decimal("0.00")
        return sum(split(self.discount, self.quantity)[start : start + count], Decimal("0.00"))

    def paid_for(self, start: int, count: int) -> Decimal:
        """What was paid for ``count`` codes from position ``start``: their price less their
        share of the discount."""
        return quantize(self.unit_price * count) - self.discount_slots(start, count)

    @property
    def is_payable(self) -> bool:
        return self.status == self.Status.PENDING and self.expires_at > timezone.now()


class OrderStatusChange(StatusChange):
    subject = "order"

    order = models.ForeignKey(Order, verbose_name=_("order"), related_name="history", on_delete=models.CASCADE)
    from_status = models.CharField(_("from"), max_length=16, blank=True, choices=Order.Status.choices)
    to_status = models.CharField(_("to"), max_length=16, choices=Order.Status.choices)

    def get_to_status_display(self) -> str:
        return choice_display(self, "to_status")


# A code replaced on a delivered order (补发) is a row in the order's history whose status does
# not change (delivered → delivered), its note naming the two order codes. The order page reads
# it (``orders.selectors.orders.order_for_buyer``): the outcome, and which code is the replacement.
REISSUE_NOTE_PREFIX = "reissue:"
# A guest order that joined an account (``orders.services.attach``): a history row whose status
# does not change either, its note naming the address it was bought with.
ATTACH_NOTE_PREFIX = "attached:"


def reissue_note(old_id: int, new_id: int) -> str:
    return f"{REISSUE_NOTE_PREFIX}{old_id}:{new_id}"


def reissue_parse(note: str) -> tuple[int, int] | None:
    """(old order code id, new order code id) of a reissue's history note, else None."""
    if not note.startswith(REISSUE_NOTE_PREFIX):
        return None
    old, _sep, new = note.removeprefix(REISSUE_NOTE_PREFIX).partition(":")
    return (int(old), int(new)) if old.isdigit() and new.isdigit() else None


OrderStatus = Order.Status
ORDER_FLOW = StateMachine(
    transitions=table(
        {
            OrderStatus.PENDING: [OrderStatus.PAID, OrderStatus.EXPIRED, OrderStatus.CANCELLED],
            OrderStatus.PAID: [OrderStatus.DELIVERED, OrderStatus.REFUND_PENDING],
            # A payment that arrives after the order lapsed: delivered if stock can be
            # reserved again, otherwise refunded.
            OrderStatus.EXPIRED: [OrderStatus.PAID, OrderStatus.REFUND_PENDING],
            OrderStatus.CANCELLED: [OrderStatus.PAID, OrderStatus.REFUND_PENDING],
            OrderStatus.DELIVERED: [OrderStatus.REFUNDED],
            OrderStatus.REFUND_PENDING: [OrderStatus.REFUNDED],
            OrderStatus.REFUNDED: [],
        }
    ),
    history_model=OrderStatusChange,
    history_fk="order",
    entered_at={OrderStatus.PAID: "paid_at", OrderStatus.DELIVERED: "delivered_at"},
    model=Order,
)


class OrderCode(models.Model):
    """A code held by an order. One live holder per code, enforced by the database."""

    order = models.ForeignKey(Order, verbose_name=_("order"), related_name="codes", on_delete=models.PROTECT)
    code = models.ForeignKey(
        "catalog.CardCode", verbose_name=_("card code"), related_name="+", on_delete=models.PROTECT
    )
    reserved_at = models.DateTimeField(_("reserved"), auto_now_add=True)
    released_at = models.DateTimeField(_("released"), null=True, blank=True)

    class Meta:
        ordering = ("id",)
        verbose_name = _("order code")
        verbose_name_plural = _("order codes")
        constraints = [
            models.UniqueConstraint(
                fields=["code"], condition=Q(released_at__isnull=True), name="one_live_order_per_code"
            )
        ]

    def __str__(self):
        return f"{self.order.number} / {self.code_id}"


class EmailRefusal(models.Model):
    """The mail server refused the buyer's address for an order's email (smtplib's
    ``SMTPRecipientsRefused``). A permanent refusal (a 5xx reply: no such user, domain unknown)
    ends the attempts: the email stays claimed (``Order.buyer_notified_at``) and is never sent again
    to that address. A temporary one (4xx: mailbox full, greylisted) is tried again at
    ``retry_at``, later after each refusal, within DELIVERY_EMAIL_MAX_AGE_HOURS. Without this, a
    mistyped address was offered to the mail server on every run (every 2 s for a minute, then every
    minute for a day): on a busy day, enough such retries get a sender throttled by its provider."""

    order = models.OneToOneField(Order, verbose_name=_("order"), related_name="email_refusal", on_delete=models.CASCADE)
    address = models.CharField(_("address"), max_length=254)
    code = models.PositiveSmallIntegerField(_("reply code"))
    reply = models.CharField(_("reply"), max_length=300, blank=True)
    permanent = models.BooleanField(_("permanent"), default=False)
    attempts = models.PositiveIntegerField(_("refusals"), default=1)
    first_at = models.DateTimeField(_("first refused"))
    last_at = models.DateTimeField(_("last refused"))
    retry_at = models.DateTimeField(_("next attempt"), null=True, blank=True)

    class Meta:
        verbose_name = _("email refused by the mail server")
        verbose_name_plural = _("emails refused by the mail server")

    def __str__(self):
        return f"{self.address} {self.code}"


class CodeReveal(models.Model):
    """Every time a buyer shows a code's secret. A code with no row here was never seen."""

    order_code = models.ForeignKey(OrderCode, verbose_name=_("code"), related_name="reveals", on_delete=models.PROTECT)
    # None: the order's guest, who proved it in this browser (query password or emailed code).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    at = models.DateTimeField(_("time"), auto_now_add=True)
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)

    class Meta:
        ordering = ("-at",)
        verbose_name = _("code reveal")
        verbose_name_plural = _("code reveal log")

    def __str__(self):
        return f"{self.user or 'guest'} @ {self.at:%Y-%m-%d %H:%M}"


class OrderShare(models.Model):
    """The price chain snapshotted when the order was placed: for each agent above the sale,
    what it paid per code and what it earns per code. Later markup changes do not touch it.

    ``unit_earning`` of the selling agent is the order's unit price less its cost (zero when
    it buys for itself); of each upline, the markup it charged the next agent down.
    """

    order = models.ForeignKey(Order, verbose_name=_("order"), related_name="shares", on_delete=models.CASCADE)
    agent = models.ForeignKey("agents.Agent", verbose_name=_("agent"), related_name="+", on_delete=models.PROTECT)
    depth = models.PositiveSmallIntegerField(_("level in the chain"))
    unit_cost = models.DecimalField(_("cost per code"), max_digits=12, decimal_places=2)
    unit_earning = models.DecimalField(_("earning per code"), max_digits=12, decimal_places=2)

    class Meta:
        ordering = ("order", "depth")
        verbose_name = _("price share")
        verbose_name_plural = _("price chain")
        constraints = [
            models.UniqueConstraint(fields=["order", "agent"], name="ordershare_once_per_agent"),
            models.CheckConstraint(condition=Q(unit_earning__gte=0), name="ordershare_earning_not_negative"),
        ]

    def __str__(self):
        return f"{self.order_id} · L{self.depth} {self.agent_id}: +{self.unit_earning}"


class ApiCallback(models.Model):
    """A signed POST to the agent's URL (an order delivered), retried with backoff.

    It belongs to the delivery of an order (``orders.services.callbacks``); it was ``agents.ApiCallback``
    and keeps its table (``agents_apicallback``) and rows."""

    class Status(models.TextChoices):
        PENDING = "pending", _("To send")
        DELIVERED = "delivered", pgettext_lazy("callback", "Delivered")
        FAILED = "failed", _("Given up")

    agent = models.ForeignKey(
        "agents.Agent", verbose_name=_("agent"), related_name="callbacks", on_delete=models.CASCADE
    )
    key = models.ForeignKey(
        "agents.ApiKey",
        verbose_name=_("API key"),
        null=True,
        blank=True,
        related_name="callbacks",
        on_delete=models.SET_NULL,
    )
    order = models.ForeignKey(Order, verbose_name=_("order"), related_name="+", on_delete=models.PROTECT)
    event = models.CharField(_("event"), max_length=30)
    url = models.URLField(_("URL"), max_length=300)
    payload = models.TextField(_("payload"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True, db_index=True)
    last_status_code = models.PositiveSmallIntegerField(_("last HTTP status"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    delivered_at = models.DateTimeField(pgettext_lazy("callback", "delivered"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        db_table = "agents_apicallback"  # the table it had in agents: moved without copying
        ordering = ("-id",)
        verbose_name = _("API callback")
        verbose_name_plural = _("API callbacks")
        constraints = [models.UniqueConstraint(fields=["order", "event"], name="apicallback_once_per_event")]

    def __str__(self):
        return f"{self.event} {self.order_id} → {self.url}"


class ApiCallbackStatusChange(StatusChange):
    subject = "callback"

    callback = models.ForeignKey(
        ApiCallback, verbose_name=_("API callback"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=ApiCallback.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=ApiCallback.Status.choices)


CallbackStatus = ApiCallback.Status
# A retry stays pending (attempts and next_attempt_at count them): history rows are the
# outcomes and the resends only.
CALLBACK_FLOW = StateMachine(
    transitions=table(
        {
            CallbackStatus.PENDING: [CallbackStatus.DELIVERED, CallbackStatus.FAILED],
            # Sent again (staff, the agent, or a forced send); or a send whose answer came in
            # after another attempt had given up.
            CallbackStatus.FAILED: [CallbackStatus.PENDING, CallbackStatus.DELIVERED],
            CallbackStatus.DELIVERED: [CallbackStatus.PENDING],  # sent again on request
        }
    ),
    history_model=ApiCallbackStatusChange,
    history_fk="callback",
    entered_at={CallbackStatus.DELIVERED: "delivered_at"},
    model=ApiCallback,
)


class GuestAccessCode(models.Model):
    """A one-time code emailed to a guest's address, proving the guest may reveal an order's
    codes in this browser. Only its hash is stored; short-lived, single use, few attempts."""

    order = models.ForeignKey(Order, verbose_name=_("order"), related_name="+", on_delete=models.CASCADE)
    code_hash = models.CharField(max_length=128, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"))
    attempts = models.PositiveSmallIntegerField(_("failed attempts"), default=0)
    used_at = models.DateTimeField(_("used"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("guest access code")
        verbose_name_plural = _("guest access codes")
        indexes = [models.Index(fields=["order", "created_at"], name="guest_code_order_time_idx")]

    def __str__(self):
        return f"{self.order_id} @ {self.created_at:%Y-%m-%d %H:%M}"


class GuestLookupLink(models.Model):
    """A one-time link emailed by the order lookup (no query password at hand): opening it and
    confirming shows ``orders`` in that browser, with their codes. Only the SHA-256 of its
    random token is stored; short-lived, used once."""

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    email = models.EmailField(_("sent to"), max_length=254, db_index=True)
    orders = models.ManyToManyField(Order, verbose_name=_("orders"), related_name="+")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"))
    used_at = models.DateTimeField(_("used"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("guest lookup link")
        verbose_name_plural = _("guest lookup links")
        indexes = [models.Index(fields=["email", "created_at"], name="guest_lookup_email_time_idx")]

    def __str__(self):
        return f"{self.email} @ {self.created_at:%Y-%m-%d %H:%M}"


class GuestBrowser(models.Model):
    """A guest's browser, known by a long-lived random cookie of which only the SHA-256 is kept:
    the guest orders placed or proved in it ("my recent orders"), which it may see again (never
    their codes without a fresh proof)."""

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    orders = models.ManyToManyField(Order, verbose_name=_("orders"), related_name="+")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_seen_at = models.DateTimeField(_("last seen"), auto_now=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("guest browser")
        verbose_name_plural = _("guest browsers")

    def __str__(self):
        return f"{self.token_hash[:8]}… @ {self.created_at:%Y-%m-%d %H:%M}"


class UpstreamOrder(models.Model):
    """The order we place at a supplier for an order fulfilled upstream: one per order (the
    supplier's idempotency key is our order number), so nothing is ever paid upstream twice.

    ``placing``: a call is (or was) in flight; its outcome is unknown until asked, so the next
    attempt queries before it places. ``pending``: the supplier accepted and has not finished.
    """

    class State(models.TextChoices):
        NEW = "new", _("To be placed")
        PLACING = "placing", _("Placing (outcome not known yet)")
        PENDING = "pending", _("Placed, supplier working")
        DONE = "done", _("Delivered by the supplier")
        FAILED = "failed", _("Failed (buyer refunded)")

    order = models.OneToOneField(Order, verbose_name=_("order"), related_name="upstream", on_delete=models.PROTECT)
    connection = models.ForeignKey(
        "supply.SupplierConnection", verbose_name=_("supplier connection"), related_name="+", on_delete=models.PROTECT
    )
    supplier_ref = models.CharField(_("supplier's product"), max_length=100)
    quantity = models.PositiveIntegerField(_("quantity"))
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.NEW)
    supplier_order_no = models.CharField(_("supplier's order number"), max_length=100, blank=True)
    cost = models.DecimalField(_("cost"), max_digits=12, decimal_places=2, null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("calls made"), default=0)
    next_check_at = models.DateTimeField(_("next check"), null=True, blank=True)
    give_up_at = models.DateTimeField(_("refund if not delivered by"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("supplier order")
        verbose_name_plural = _("supplier orders")
        indexes = [
            models.Index(
                fields=["next_check_at"], condition=Q(state__in=["new", "placing", "pending"]), name="upstream_due_idx"
            ),
            models.Index(fields=["connection", "created_at"], name="upstream_connection_time_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="upstream_quantity_positive"),
            models.CheckConstraint(condition=Q(cost__isnull=True) | Q(cost__gte=0), name="upstream_cost_not_negative"),
        ]

    def __str__(self):
        return f"{self.order_id} @ {self.connection_id}"


class UpstreamOrderStatusChange(StatusChange):
    subject = "upstream"

    upstream = models.ForeignKey(
        UpstreamOrder, verbose_name=_("supplier order"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=UpstreamOrder.State.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=UpstreamOrder.State.choices)


UpstreamState = UpstreamOrder.State
UPSTREAM_FLOW = StateMachine(
    transitions=table(
        {
            UpstreamState.NEW: [UpstreamState.PLACING, UpstreamState.FAILED],
            # A call in flight: accepted (pending), finished at once (done), refused (failed), or
            # its outcome unknown (stays placing: asked again before any new call).
            UpstreamState.PLACING: [UpstreamState.PENDING, UpstreamState.DONE, UpstreamState.FAILED],
            UpstreamState.PENDING: [UpstreamState.DONE, UpstreamState.FAILED],
            UpstreamState.DONE: [],
            UpstreamState.FAILED: [],
        }
    ),
    history_model=UpstreamOrderStatusChange,
    history_fk="upstream",
    status_field="state",
    entered_at={UpstreamState.DONE: "finished_at", UpstreamState.FAILED: "finished_at"},
    model=UpstreamOrder,
)


class ManualTopup(models.Model):
    """A direct top-up that staff carry out by hand (``catalog.Product.SupplyMode.MANUAL``): the
    queue in admin, with its SLA (``due_at``), done or failed with a note. Failed is refunded."""

    class State(models.TextChoices):
        QUEUED = "queued", _("Waiting for staff")
        DONE = "done", _("Topped up")
        FAILED = "failed", _("Failed (buyer refunded)")

    order = models.OneToOneField(Order, verbose_name=_("order"), related_name="manual_topup", on_delete=models.PROTECT)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.QUEUED)
    due_at = models.DateTimeField(_("due"))
    warned_at = models.DateTimeField(_("warning sent"), null=True, blank=True)
    breached_at = models.DateTimeField(_("SLA breached"), null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("handled by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    note = models.CharField(_("note"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("queued"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ("due_at", "id")
        verbose_name = _("manual top-up")
        verbose_name_plural = _("manual top-ups")
        indexes = [models.Index(fields=["due_at"], condition=Q(state="queued"), name="manual_topup_queued_idx")]

    def __str__(self):
        return str(self.order_id)


class ManualTopupStatusChange(StatusChange):
    subject = "topup"  # the foreign key's name (StatusChange.__str__ reads <subject>_id)

    topup = models.ForeignKey(
        ManualTopup, verbose_name=_("manual top-up"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=ManualTopup.State.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=ManualTopup.State.choices)


TopupState = ManualTopup.State
MANUAL_TOPUP_FLOW = StateMachine(
    transitions=table(
        {TopupState.QUEUED: [TopupState.DONE, TopupState.FAILED], TopupState.DONE: [], TopupState.FAILED: []}
    ),
    history_model=ManualTopupStatusChange,
    history_fk="topup",
    status_field="state",
    entered_at={TopupState.DONE: "finished_at", TopupState.FAILED: "finished_at"},
    model=ManualTopup,
)
