import string

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from marketplace.randomness import random_chars
from marketplace.transitions import StateMachine, StatusChange, table

# How each channel is named to people (codes stay in URLs, logs and the ledger).
CHANNEL_NAMES = {
    "alipay": _("Alipay"),
    "wechat": _("WeChat Pay"),
    "balance": _("Balance"),
    "sandbox": _("Sandbox payment"),
}

RECHARGE_PREFIX = "R"  # order numbers start with a digit: one namespace of out_trade_no for both
BALANCE = "balance"  # the channel code of payments made from the buyer's balance


def new_recharge_number() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return RECHARGE_PREFIX + timezone.localtime().strftime("%y%m%d%H%M") + random_chars(17, alphabet)


class Recharge(models.Model):
    """Money a user adds to their balance through a gateway."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Awaiting payment")
        PAID = "paid", _("Credited")

    number = models.CharField(_("number"), max_length=32, unique=True, default=new_recharge_number, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), related_name="recharges", on_delete=models.PROTECT
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("pay before"))
    paid_at = models.DateTimeField(_("credited"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("recharge")
        verbose_name_plural = _("recharges")
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="recharge_amount_positive")]

    def __str__(self):
        return self.number

    def get_absolute_url(self):
        return reverse("wallet:home")

    @property
    def total(self):  # what a cashier asks for, as for an order
        return self.amount

    @property
    def is_payable(self) -> bool:
        return self.status == self.Status.PENDING and self.expires_at > timezone.now()


class RechargeStatusChange(StatusChange):
    subject = "recharge"

    recharge = models.ForeignKey(Recharge, verbose_name=_("recharge"), related_name="history", on_delete=models.CASCADE)
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=Recharge.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=Recharge.Status.choices)


RECHARGE_FLOW = StateMachine(
    transitions=table({Recharge.Status.PENDING: [Recharge.Status.PAID], Recharge.Status.PAID: []}),
    history_model=RechargeStatusChange,
    history_fk="recharge",
    entered_at={Recharge.Status.PAID: "paid_at"},
    model=Recharge,
)


def payable_model(number: str):
    """Orders and recharges share one number space at the gateways; the prefix tells which."""
    from orders.models import Order

    return Recharge if number.startswith(RECHARGE_PREFIX) else Order


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

    # What was paid for: an order, or a recharge of the buyer's balance (exactly one).
    order = models.ForeignKey(
        "orders.Order",
        verbose_name=_("order"),
        null=True,
        blank=True,
        related_name="payments",
        on_delete=models.PROTECT,
    )
    recharge = models.ForeignKey(
        "Recharge", verbose_name=_("recharge"), null=True, blank=True, related_name="payments", on_delete=models.PROTECT
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
            models.CheckConstraint(
                condition=Q(order__isnull=False, recharge__isnull=True) | Q(order__isnull=True, recharge__isnull=False),
                name="payment_for_order_or_recharge",
            ),
        ]

    def __str__(self):
        return f"{self.gateway}:{self.trade_no}"

    @property
    def number(self) -> str:
        """The out_trade_no this payment was for: its order's or its recharge's."""
        return self.order.number if self.order_id else self.recharge.number

    @property
    def payer(self):
        return self.order.buyer if self.order_id else self.recharge.user

    @property
    def channel_name(self) -> str:
        return str(CHANNEL_NAMES.get(self.gateway, self.gateway))


# A payment's status is what it was recorded as (the money for the order, or money to give
# back): it never moves. What happens to money given back is its Refund's status.
PAYMENT_FLOW = StateMachine(transitions=table({s: [] for s in Payment.Status.values}), model=Payment)


def new_refund_number() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "F" + timezone.localtime().strftime("%y%m%d%H%M") + random_chars(17, alphabet)


class Refund(models.Model):
    """Money going back to a buyer, to the channel it came from (balance payments: the balance).

    ``number`` is our out_refund_no / out_request_no: the gateway refunds once per number,
    however often it is asked, so a retried call can never refund twice.
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", _("Requested")
        PROCESSING = "processing", _("At the gateway")
        SUCCEEDED = "succeeded", _("Refunded")
        FAILED = "failed", _("Failed: staff to act")

    number = models.CharField(_("refund number"), max_length=32, unique=True, default=new_refund_number, editable=False)
    payment = models.ForeignKey(Payment, verbose_name=_("payment"), related_name="refunds", on_delete=models.PROTECT)
    order = models.ForeignKey(
        "orders.Order", verbose_name=_("order"), null=True, blank=True, related_name="refunds", on_delete=models.PROTECT
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    quantity = models.PositiveIntegerField(_("codes refunded"), default=0)
    reason = models.CharField(_("reason"), max_length=300)
    # The same request made twice (double click, two staff) is one refund.
    idempotency_key = models.CharField(max_length=120, unique=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.REQUESTED)
    gateway_refund_id = models.CharField(_("gateway refund id"), max_length=64, blank=True)
    attempts = models.PositiveIntegerField(_("gateway calls"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("requested"), auto_now_add=True, db_index=True)
    succeeded_at = models.DateTimeField(_("refunded"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status__in=["requested", "processing"]), name="refund_due_idx"
            )
        ]

    def __str__(self):
        return self.number


class RefundStatusChange(StatusChange):
    subject = "refund"

    refund = models.ForeignKey(Refund, verbose_name=_("refund"), related_name="history", on_delete=models.CASCADE)
    from_status = models.CharField(_("from"), max_length=12, blank=True, choices=Refund.Status.choices)
    to_status = models.CharField(_("to"), max_length=12, choices=Refund.Status.choices)


RefundStatus = Refund.Status
REFUND_FLOW = StateMachine(
    transitions=table(
        {
            RefundStatus.REQUESTED: [RefundStatus.PROCESSING],  # claimed by a worker (refund_execute)
            # A worker's lease that ran out is taken over in place (processing stays processing).
            RefundStatus.PROCESSING: [RefundStatus.SUCCEEDED, RefundStatus.FAILED],
            # Staff send it back to the gateway; or a worker whose gateway call outlasted its lease
            # learns the refund went through after another worker gave up on it
            # (the money is back: that is the truth, whatever we thought).
            RefundStatus.FAILED: [RefundStatus.PROCESSING, RefundStatus.SUCCEEDED],
            RefundStatus.SUCCEEDED: [],
        }
    ),
    history_model=RefundStatusChange,
    history_fk="refund",
    entered_at={RefundStatus.SUCCEEDED: "succeeded_at"},
    model=Refund,
)


# --- Reconciliation ------------------------------------------------------------------------


class PaymentAttempt(models.Model):
    """An order or recharge started at a real gateway: what the active query asks about and,
    once it can no longer be paid, closes there. Unique per (number, gateway)."""

    number = models.CharField(_("order or recharge number"), max_length=32)
    gateway = models.CharField(_("gateway"), max_length=20)
    created_at = models.DateTimeField(_("started"), default=timezone.now, editable=False)
    # When the next active query is due; empty once nothing is left to do (paid, or closed).
    next_query_at = models.DateTimeField(_("next query"), null=True, blank=True)
    queries = models.PositiveIntegerField(_("queries"), default=0)
    last_state = models.CharField(_("gateway's last answer"), max_length=40, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    closed_at = models.DateTimeField(_("closed at the gateway"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("payment attempt")
        verbose_name_plural = _("payment attempts")
        constraints = [models.UniqueConstraint(fields=["number", "gateway"], name="payment_attempt_once_per_gateway")]
        indexes = [
            models.Index(
                fields=["next_query_at"], condition=Q(next_query_at__isnull=False), name="payment_attempt_due_idx"
            )
        ]

    def __str__(self):
        return f"{self.gateway}:{self.number}"


class ReconciliationRun(models.Model):
    """One gateway's bill for one day (Beijing time), matched against our payments and refunds."""

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed (bill not downloaded)")

    gateway = models.CharField(_("gateway"), max_length=20)
    day = models.DateField(_("day"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=300, blank=True)
    bill_lines = models.PositiveIntegerField(_("bill lines"), default=0)
    our_records = models.PositiveIntegerField(_("our payments and refunds"), default=0)
    matched = models.PositiveIntegerField(_("matched"), default=0)
    missing_here = models.PositiveIntegerField(_("missing here"), default=0)
    missing_there = models.PositiveIntegerField(_("missing there"), default=0)
    amount_differs = models.PositiveIntegerField(_("amount differs"), default=0)
    bill_payments_total = models.DecimalField(_("bill: paid in"), max_digits=14, decimal_places=2, default=0)
    bill_refunds_total = models.DecimalField(_("bill: refunded"), max_digits=14, decimal_places=2, default=0)
    our_payments_total = models.DecimalField(_("ours: paid in"), max_digits=14, decimal_places=2, default=0)
    our_refunds_total = models.DecimalField(_("ours: refunded"), max_digits=14, decimal_places=2, default=0)

    class Meta:
        ordering = ("-day", "gateway")
        verbose_name = _("reconciliation run")
        verbose_name_plural = _("reconciliation runs")
        constraints = [models.UniqueConstraint(fields=["gateway", "day"], name="reconciliation_once_per_gateway_day")]

    def __str__(self):
        return f"{self.gateway} {self.day:%Y-%m-%d}"

    @property
    def mismatch_total(self) -> int:
        return self.missing_here + self.missing_there + self.amount_differs


class ReconciliationRunStatusChange(StatusChange):
    subject = "run"

    run = models.ForeignKey(
        ReconciliationRun, verbose_name=_("reconciliation run"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=ReconciliationRun.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=ReconciliationRun.Status.choices)


RunStatus = ReconciliationRun.Status
RECONCILIATION_FLOW = StateMachine(
    transitions=table(
        {
            RunStatus.RUNNING: [RunStatus.DONE, RunStatus.FAILED],
            # A day is run again (a new bill, a fix): its run starts over.
            RunStatus.DONE: [RunStatus.RUNNING],
            # ... and a run that compared the bill is done even if a concurrent run of the same
            # day failed to download it meanwhile.
            RunStatus.FAILED: [RunStatus.RUNNING, RunStatus.DONE],
        }
    ),
    history_model=ReconciliationRunStatusChange,
    history_fk="run",
    model=ReconciliationRun,
)


class Mismatch(models.Model):
    """A difference between a gateway's bill and our records, for staff to look into."""

    class Kind(models.TextChoices):
        MISSING_HERE = "missing_here", _("On the bill, not recorded here")
        MISSING_THERE = "missing_there", _("Recorded here, not on the bill")
        AMOUNT_DIFFERS = "amount_differs", _("Amount differs")

    run = models.ForeignKey(
        ReconciliationRun, verbose_name=_("reconciliation run"), related_name="mismatches", on_delete=models.CASCADE
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    order_number = models.CharField(_("order number"), max_length=64, blank=True)
    trade_no = models.CharField(_("gateway trade number"), max_length=64, blank=True)
    refund_no = models.CharField(_("refund number"), max_length=64, blank=True)
    ours = models.DecimalField(_("our amount"), max_digits=12, decimal_places=2, null=True, blank=True)
    theirs = models.DecimalField(_("bill amount"), max_digits=12, decimal_places=2, null=True, blank=True)
    note = models.CharField(_("note"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("found"), default=timezone.now)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("resolved by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    resolution_note = models.CharField(_("resolution"), max_length=500, blank=True)

    class Meta:
        ordering = ("run", "kind", "id")
        verbose_name = _("reconciliation mismatch")
        verbose_name_plural = _("reconciliation mismatches")
        permissions = [("resolve_mismatch", _("Can mark reconciliation mismatches resolved"))]
        indexes = [models.Index(fields=["run", "kind"], name="mismatch_run_kind_idx")]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.refund_no or self.trade_no or self.order_number}"
