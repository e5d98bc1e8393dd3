"""After-sales: tickets with a first-response SLA, no-reason refund requests, reissues.

Rows here are written only by ``aftersales.services`` (and the SLA sweep); staff work in
admin through actions that call those services.
"""

import string
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from marketplace.randomness import random_chars
from marketplace.transitions import StateMachine, StatusChange, table


def _number(prefix: str) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + timezone.localtime().strftime("%y%m%d") + random_chars(10, alphabet)


def new_ticket_number() -> str:
    return _number("T")


class Kind(models.TextChoices):
    NOT_RECEIVED = "not_received", _("Code not received")
    INVALID = "invalid", _("Code invalid or already used")
    WRONG_ITEM = "wrong_item", _("Wrong item")
    REFUND = "refund", _("Refund request")
    CREDIT_APPEAL = "credit_appeal", _("Credit level appeal")
    OTHER = "other", _("Other")


class SlaPolicy(models.Model):
    """How fast staff must give a first response with a resolution plan, per ticket kind."""

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, unique=True)
    first_response_hours = models.PositiveIntegerField(_("first response within (hours)"), default=48)
    warn_after_hours = models.PositiveIntegerField(_("warn the assignee after (hours)"), default=36)
    resolution_hours = models.PositiveIntegerField(_("resolve within (hours)"), default=7 * 24)

    class Meta:
        verbose_name = _("SLA policy")
        verbose_name_plural = _("SLA policies")
        constraints = [
            models.CheckConstraint(
                condition=Q(warn_after_hours__lt=models.F("first_response_hours")), name="sla_warn_before_due"
            )
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.first_response_hours} h"


# Statuses in which the first-response clock runs (the SLA sweep's partial indexes hold these).
CLOCK_RUNNING = ("open", "awaiting_staff", "awaiting_buyer")


class Ticket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        AWAITING_STAFF = "awaiting_staff", _("Awaiting staff")
        AWAITING_BUYER = "awaiting_buyer", _("Awaiting buyer")
        RESOLVED = "resolved", _("Resolved")
        CLOSED = "closed", _("Closed")

    class Priority(models.IntegerChoices):
        NORMAL = 0, _("Normal")
        HIGH = 1, _("High")
        URGENT = 2, _("Urgent")

    Kind = Kind

    number = models.CharField(_("ticket number"), max_length=20, unique=True, default=new_ticket_number, editable=False)
    # The member who opened it; empty for a guest order's ticket (the order names the guest:
    # its guest_email, and the guest's browser proved it, ``orders.views.guest``).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("opened by"),
        null=True,
        blank=True,
        related_name="tickets",
        on_delete=models.PROTECT,
    )
    order = models.ForeignKey(
        "orders.Order", verbose_name=_("order"), null=True, blank=True, related_name="tickets", on_delete=models.PROTECT
    )
    order_code = models.ForeignKey(
        "orders.OrderCode",
        verbose_name=_("code"),
        null=True,
        blank=True,
        related_name="tickets",
        on_delete=models.PROTECT,
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    subject = models.CharField(_("subject"), max_length=120)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    priority = models.PositiveSmallIntegerField(_("priority"), choices=Priority.choices, default=Priority.NORMAL)
    # A dispute: a refund or complaint staff must decide (revealed codes, after the window ...).
    is_dispute = models.BooleanField(_("dispute"), default=False, db_index=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assigned to"),
        null=True,
        blank=True,
        related_name="assigned_tickets",
        on_delete=models.PROTECT,
    )
    created_at = models.DateTimeField(_("opened"), auto_now_add=True)
    last_activity_at = models.DateTimeField(_("last activity"), default=timezone.now)
    # The SLA clocks. The sweep finds due tickets through the partial indexes below only.
    first_response_due_at = models.DateTimeField(_("first response due"))
    warn_at = models.DateTimeField(_("warn at"))
    first_responded_at = models.DateTimeField(_("first response"), null=True, blank=True)
    warned_at = models.DateTimeField(_("warning sent"), null=True, blank=True)
    breached_at = models.DateTimeField(_("SLA breached"), null=True, blank=True)
    resolution_due_at = models.DateTimeField(_("resolution due"))
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    reopened_count = models.PositiveSmallIntegerField(_("times reopened"), default=0)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("ticket")
        verbose_name_plural = _("tickets")
        indexes = [
            # Warnings due: not answered, not warned yet, clock running (a ticket closed or
            # resolved leaves the index; reopened, it comes back).
            models.Index(
                fields=["warn_at"],
                condition=Q(first_responded_at__isnull=True, warned_at__isnull=True, status__in=CLOCK_RUNNING),
                name="ticket_warn_due_idx",
            ),
            # Breaches due: not answered, not breached yet, clock running.
            models.Index(
                fields=["first_response_due_at"],
                condition=Q(first_responded_at__isnull=True, breached_at__isnull=True, status__in=CLOCK_RUNNING),
                name="ticket_breach_due_idx",
            ),
        ]
        constraints = [
            # A guest's ticket (no user) must name its order: the order is who the guest is.
            models.CheckConstraint(
                condition=Q(user__isnull=False) | Q(order__isnull=False), name="ticket_user_or_order"
            ),
        ]

    def __str__(self):
        return self.number

    @property
    def is_guest(self) -> bool:
        """Opened on a guest order (no account): the buyer is the order's guest email."""
        return self.user_id is None


class TicketStatusChange(StatusChange):
    subject = "ticket"

    ticket = models.ForeignKey(Ticket, verbose_name=_("ticket"), related_name="history", on_delete=models.CASCADE)
    from_status = models.CharField(_("from"), max_length=16, blank=True, choices=Ticket.Status.choices)
    to_status = models.CharField(_("to"), max_length=16, choices=Ticket.Status.choices)


TicketStatus = Ticket.Status
TICKET_FLOW = StateMachine(
    transitions=table(
        {
            TicketStatus.OPEN: [
                TicketStatus.AWAITING_STAFF,
                TicketStatus.AWAITING_BUYER,
                TicketStatus.RESOLVED,
                TicketStatus.CLOSED,
            ],
            TicketStatus.AWAITING_STAFF: [TicketStatus.AWAITING_BUYER, TicketStatus.RESOLVED, TicketStatus.CLOSED],
            TicketStatus.AWAITING_BUYER: [TicketStatus.AWAITING_STAFF, TicketStatus.RESOLVED, TicketStatus.CLOSED],
            TicketStatus.RESOLVED: [TicketStatus.CLOSED, TicketStatus.AWAITING_STAFF],  # reopened within the window
            TicketStatus.CLOSED: [],
        }
    ),
    history_model=TicketStatusChange,
    history_fk="ticket",
    entered_at={TicketStatus.RESOLVED: "resolved_at", TicketStatus.CLOSED: "closed_at"},
    model=Ticket,
)


class TicketMessage(models.Model):
    ticket = models.ForeignKey(Ticket, verbose_name=_("ticket"), related_name="messages", on_delete=models.CASCADE)
    # Empty: the guest of the ticket's order wrote it (staff messages always name their author).
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("author"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    from_staff = models.BooleanField(_("from staff"), default=False)
    # Staff's notes to each other: never shown to the buyer.
    internal = models.BooleanField(_("internal note"), default=False)
    # Staff's first response must carry a resolution plan: that is what stops the SLA clock.
    is_resolution_plan = models.BooleanField(_("resolution plan"), default=False)
    body = models.TextField(_("message"), max_length=5000)
    created_at = models.DateTimeField(_("sent"), auto_now_add=True)

    class Meta:
        ordering = ("created_at", "id")
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        constraints = [
            models.CheckConstraint(
                condition=Q(from_staff=False) | Q(author__isnull=False), name="ticketmessage_staff_has_author"
            ),
        ]

    def __str__(self):
        return f"{self.ticket_id} · {self.author_id} @ {self.created_at:%Y-%m-%d %H:%M}"


class TicketAttachment(models.Model):
    """An image attached to a message, stored under PRIVATE_MEDIA_ROOT, served only to the parties."""

    message = models.ForeignKey(
        TicketMessage, verbose_name=_("message"), related_name="attachments", on_delete=models.CASCADE
    )
    # The attachment's address (/support/attachments/<public_id>/): random, so an address says
    # nothing about other attachments or how many there are. The sequential pk stays internal.
    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    path = models.CharField(_("stored as"), max_length=200, editable=False)  # relative to PRIVATE_MEDIA_ROOT
    original_name = models.CharField(_("file name"), max_length=120)
    content_type = models.CharField(_("type"), max_length=40)
    size = models.PositiveIntegerField(_("size (bytes)"))
    sha256 = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("uploaded"), auto_now_add=True)

    class Meta:
        ordering = ("id",)
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self):
        return self.original_name


class SlaEvent(models.Model):
    """A clock that fired for a ticket: warned, breached, escalated. Once each per ticket."""

    class Kind(models.TextChoices):
        WARNED = "warned", _("Warning sent")
        BREACHED = "breached", _("First-response SLA breached")
        ESCALATED = "escalated", _("Escalated to supervisors")

    ticket = models.ForeignKey(Ticket, verbose_name=_("ticket"), related_name="sla_events", on_delete=models.CASCADE)
    kind = models.CharField(_("event"), max_length=10, choices=Kind.choices)
    at = models.DateTimeField(_("time"), auto_now_add=True)
    detail = models.CharField(_("detail"), max_length=300, blank=True)
    # When its email went out (warnings and escalations). Still empty some minutes after the event
    # (the queueing failed, the worker died before sending): the sweep queues it again.
    notified_at = models.DateTimeField(_("email sent"), null=True, blank=True)

    class Meta:
        ordering = ("at", "id")
        verbose_name = _("SLA event")
        verbose_name_plural = _("SLA events")
        constraints = [models.UniqueConstraint(fields=["ticket", "kind"], name="slaevent_once_per_kind")]
        indexes = [
            models.Index(
                fields=["at"],
                condition=Q(notified_at__isnull=True, kind__in=("warned", "escalated")),
                name="slaevent_unsent_idx",
            )
        ]

    def __str__(self):
        return f"{self.ticket_id} {self.kind}"


class ReplyTemplate(models.Model):
    """A canned reply staff insert into the reply box and edit before sending (常用回复).

    The body may name the ticket's facts: {ticket}, {order}, {product}, {buyer}, {due} are
    filled in on the ticket's page; anything else in braces stays as written."""

    title = models.CharField(_("title"), max_length=60)
    body = models.TextField(_("text"), max_length=5000)
    # Offered on tickets of this kind only; empty: on every ticket.
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, blank=True)
    is_active = models.BooleanField(_("in use"), default=True)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ("sort_order", "title", "id")
        verbose_name = _("reply template")
        verbose_name_plural = _("reply templates")

    def __str__(self):
        return self.title


class RefundRequest(models.Model):
    """A buyer's refund of codes of an order: unrevealed within the window is approved at once;
    anything else becomes a dispute for staff (with its ticket)."""

    class Status(models.TextChoices):
        APPROVED = "approved", _("Approved automatically")
        UNDER_REVIEW = "under_review", _("Under review (dispute)")
        REFUNDED = "refunded", _("Refunded")
        REJECTED = "rejected", _("Rejected")

    order = models.ForeignKey(
        "orders.Order", verbose_name=_("order"), related_name="refund_requests", on_delete=models.PROTECT
    )
    # Empty for a guest order: the order is the guest's (its guest_email).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("buyer"),
        null=True,
        blank=True,
        related_name="refund_requests",
        on_delete=models.PROTECT,
    )
    codes = models.ManyToManyField(
        "orders.OrderCode", verbose_name=pgettext_lazy("list of card codes", "codes"), related_name="refund_requests"
    )
    # The request page's address (/support/refunds/<public_id>/): random, not the sequential pk.
    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    quantity = models.PositiveIntegerField(_("codes"))
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    status = models.CharField(_("status"), max_length=14, choices=Status.choices)
    # Why it went to review, e.g. "2 codes were revealed" or "after the 7-day window".
    review_reason = models.CharField(_("why reviewed"), max_length=300, blank=True)
    ticket = models.ForeignKey(
        Ticket,
        verbose_name=_("ticket"),
        null=True,
        blank=True,
        related_name="refund_requests",
        on_delete=models.PROTECT,
    )
    refund = models.ForeignKey(
        "payments.Refund",
        verbose_name=_("refund"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    idempotency_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("requested"), auto_now_add=True)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("decided by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )

    class Meta:
        ordering = ("-id",)
        verbose_name = _("refund request")
        verbose_name_plural = _("refund requests")
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="refundrequest_idempotent_per_user"),
            # A guest has no user row: the same form twice is one request per order.
            models.UniqueConstraint(
                fields=["order", "idempotency_key"],
                condition=Q(user__isnull=True),
                name="refundrequest_idempotent_per_guest_order",
            ),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="refundrequest_quantity_positive"),
        ]

    def __str__(self):
        return _("Refund request %(id)s") % {"id": self.pk}


class RefundRequestStatusChange(StatusChange):
    subject = "request"

    request = models.ForeignKey(
        RefundRequest, verbose_name=_("refund request"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=14, blank=True, choices=RefundRequest.Status.choices)
    to_status = models.CharField(_("to"), max_length=14, choices=RefundRequest.Status.choices)


RequestStatus = RefundRequest.Status
# A request is created approved (refunded in the same transaction) or under review (a dispute
# staff decide); refunded means decided and on its way: the buyer follows the refund's status.
REFUND_REQUEST_FLOW = StateMachine(
    transitions=table(
        {
            RequestStatus.APPROVED: [RequestStatus.REFUNDED],
            RequestStatus.UNDER_REVIEW: [RequestStatus.REFUNDED, RequestStatus.REJECTED],
            RequestStatus.REFUNDED: [],
            RequestStatus.REJECTED: [],
        }
    ),
    history_model=RefundRequestStatusChange,
    history_fk="request",
    entered_at={RequestStatus.REFUNDED: "decided_at", RequestStatus.REJECTED: "decided_at"},
    model=RefundRequest,
)


class Reissue(models.Model):
    """补发: a code reported invalid is marked defective and a replacement from stock delivered."""

    ticket = models.ForeignKey(
        Ticket, verbose_name=_("ticket"), null=True, blank=True, related_name="reissues", on_delete=models.PROTECT
    )
    order = models.ForeignKey(
        "orders.Order", verbose_name=_("order"), related_name="reissues", on_delete=models.PROTECT
    )
    old_code = models.OneToOneField(
        "orders.OrderCode", verbose_name=_("defective code"), related_name="reissued_as", on_delete=models.PROTECT
    )
    new_code = models.OneToOneField(
        "orders.OrderCode", verbose_name=_("replacement"), related_name="reissue_of", on_delete=models.PROTECT
    )
    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("by"), related_name="+", on_delete=models.PROTECT
    )
    reason = models.CharField(_("reason"), max_length=300)
    at = models.DateTimeField(_("time"), auto_now_add=True)

    class Meta:
        ordering = ("-at",)
        verbose_name = _("reissue")
        verbose_name_plural = _("reissues")

    def __str__(self):
        return f"{self.order_id}: {self.old_code_id} → {self.new_code_id}"


class ArbitrationCase(models.Model):
    """A dispute the buyer did not accept, sent to a third party (e.g. a consumer association)."""

    class Status(models.TextChoices):
        PREPARING = "preparing", _("Preparing the dossier")
        SUBMITTED = "submitted", _("Submitted to the third party")
        DECIDED = "decided", _("Decided")

    class Outcome(models.TextChoices):
        PENDING = "pending", pgettext_lazy("arbitration outcome", "Pending")
        BUYER = "buyer", _("In the buyer's favour")
        PLATFORM = "platform", _("In the platform's favour")
        PARTIAL = "partial", _("Partly in the buyer's favour")

    ticket = models.OneToOneField(
        Ticket, verbose_name=_("ticket"), related_name="arbitration", on_delete=models.PROTECT
    )
    # Empty: the guest of the ticket's order asked for it.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    buyer_statement = models.TextField(_("buyer's statement"), max_length=5000, blank=True)
    third_party = models.CharField(_("third party"), max_length=120, blank=True)
    case_number = models.CharField(_("their case number"), max_length=60, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PREPARING)
    outcome = models.CharField(
        pgettext_lazy("arbitration", "outcome"), max_length=10, choices=Outcome.choices, default=Outcome.PENDING
    )
    outcome_note = models.TextField(_("decision"), max_length=5000, blank=True)
    # Codes the decision refunds (for a partial outcome); the refund is made by the refund service.
    refund_quantity = models.PositiveIntegerField(_("codes to refund"), default=0)
    refund = models.ForeignKey(
        "payments.Refund", verbose_name=_("refund"), null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    created_at = models.DateTimeField(pgettext_lazy("arbitration", "opened"), auto_now_add=True)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    decided_at = models.DateTimeField(pgettext_lazy("arbitration", "decided"), null=True, blank=True)
    dossier_exported_at = models.DateTimeField(_("dossier exported"), null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name = _("arbitration case")
        verbose_name_plural = _("arbitration cases")

    def __str__(self):
        return f"{self.ticket.number} · {self.third_party or '—'} {self.case_number}"


class ArbitrationCaseStatusChange(StatusChange):
    subject = "case"

    case = models.ForeignKey(
        ArbitrationCase, verbose_name=_("arbitration case"), related_name="history", on_delete=models.CASCADE
    )
    from_status = models.CharField(_("from"), max_length=10, blank=True, choices=ArbitrationCase.Status.choices)
    to_status = models.CharField(_("to"), max_length=10, choices=ArbitrationCase.Status.choices)


CaseStatus = ArbitrationCase.Status
CASE_FLOW = StateMachine(
    transitions=table(
        {
            CaseStatus.PREPARING: [CaseStatus.SUBMITTED],
            CaseStatus.SUBMITTED: [CaseStatus.DECIDED],
            CaseStatus.DECIDED: [],
        }
    ),
    history_model=ArbitrationCaseStatusChange,
    history_fk="case",
    model=ArbitrationCase,
)
