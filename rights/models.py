"""The authorisation (copyright) review ledger and rights holders' notices.

``AuthorisationReview``: a supplier's authorisation to sell some products (the brand owner's or
its licensee's letter, the certificate), uploaded to private storage, decided by a reviewer with a
validity. Approval opens the products to sale until that date (``Product.sale_authorised_until``);
past it, beat expires the review and takes the products off sale. Together, the reviews are the
台账 (ledger) staff export to XLSX for an inspection.

``RightsNotice``: a rights holder's notice (电子商务法 第四十二条 to 第四十五条): the product is taken
down at once, the notice forwarded to the supplier; a counter-notice is forwarded to the rights
holder, and 15 days after it reached them the product comes back unless they reported a complaint
or a lawsuit (第四十三条). Every step is timestamped, kept as a status change and audited.

Written only through ``rights.services``; statuses move only through the machines below.
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from catalog.models import Product, Supplier
from marketplace.transitions import StateMachine, StatusChange, table


class AuthorisationReview(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", _("Submitted, awaiting review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        EXPIRED = "expired", _("Expired")
        REVOKED = "revoked", _("Revoked")

    supplier = models.ForeignKey(
        Supplier, verbose_name=_("supplier"), related_name="authorisation_reviews", on_delete=models.PROTECT
    )
    products = models.ManyToManyField(Product, verbose_name=_("products covered"), related_name="authorisation_reviews")
    certificate_no = models.CharField(_("certificate number"), max_length=100)
    rights_holder = models.CharField(
        _("rights holder"), max_length=200, blank=True, help_text=_("Who granted the authorisation (the brand owner).")
    )
    submission_note = models.TextField(_("submission note"), max_length=2000, blank=True)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.SUBMITTED)
    submitted_at = models.DateTimeField(_("submitted at"), default=timezone.now)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("submitted by"), related_name="+", on_delete=models.PROTECT
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewer"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_note = models.TextField(_("decision note"), max_length=2000, blank=True)
    valid_until = models.DateField(
        _("valid until"), null=True, blank=True, help_text=_("The last day the products may be sold under it.")
    )
    expired_at = models.DateTimeField(_("expired at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        ordering = ("-submitted_at", "-id")
        verbose_name = _("authorisation review")
        verbose_name_plural = _("authorisation reviews (ledger)")
        permissions = [("export_ledger", _("Can export the authorisation ledger"))]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="approved") | Q(valid_until__isnull=False), name="authreview_approved_has_validity"
            ),
        ]
        indexes = [models.Index(fields=["status", "valid_until"], name="authreview_status_valid_idx")]

    def __str__(self):
        return f"#{self.pk} {self.certificate_no}"


class AuthorisationReviewStatusChange(StatusChange):
    subject = "review"

    review = models.ForeignKey(
        AuthorisationReview, verbose_name=_("review"), related_name="history", on_delete=models.PROTECT
    )
    from_status = models.CharField(_("from"), max_length=12, blank=True, choices=AuthorisationReview.Status.choices)
    to_status = models.CharField(_("to"), max_length=12, choices=AuthorisationReview.Status.choices)


ReviewStatus = AuthorisationReview.Status
REVIEW_FLOW = StateMachine(
    transitions=table(
        {
            ReviewStatus.SUBMITTED: [ReviewStatus.APPROVED, ReviewStatus.REJECTED],
            # Expired by beat the day after valid_until; revoked by staff (the brand owner withdrew it,
            # the documents turned out false).
            ReviewStatus.APPROVED: [ReviewStatus.EXPIRED, ReviewStatus.REVOKED],
            ReviewStatus.REJECTED: [],
            ReviewStatus.EXPIRED: [],
            ReviewStatus.REVOKED: [],
        }
    ),
    history_model=AuthorisationReviewStatusChange,
    history_fk="review",
    entered_at={ReviewStatus.EXPIRED: "expired_at", ReviewStatus.REVOKED: "revoked_at"},
    model=AuthorisationReview,
)


class ReviewWarning(models.Model):
    """An expiry warning emailed to staff about an approved review (30 and 7 days before its
    validity ends): once per review and stage (``rights.services.review_expiry_warn``)."""

    class Stage(models.TextChoices):
        DAYS_30 = "30d", _("30 days before")
        DAYS_7 = "7d", _("7 days before")

    review = models.ForeignKey(AuthorisationReview, related_name="warnings", on_delete=models.PROTECT)
    valid_until = models.DateField()
    stage = models.CharField(max_length=4, choices=Stage.choices)
    sent_at = models.DateTimeField(auto_now_add=True)
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-sent_at", "-id")
        verbose_name = _("authorisation expiry warning")
        verbose_name_plural = _("authorisation expiry warnings")
        constraints = [
            models.UniqueConstraint(fields=["review", "valid_until", "stage"], name="reviewwarning_once_uniq"),
        ]

    def __str__(self):
        return f"{self.review_id} {self.stage} {self.valid_until}"


def notice_number() -> str:
    """A notice's reference, given to the rights holder: RN + date + 6 random characters."""
    return f"RN{timezone.localdate():%Y%m%d}{secrets.token_hex(3).upper()}"


class RightsNotice(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        TAKEN_DOWN = "taken_down", _("Product taken down")
        COUNTER_NOTICED = "counter_noticed", _("Counter-notice forwarded")
        RESTORED = "restored", _("Product restored")
        UPHELD = "upheld", _("Complaint or lawsuit reported: kept down")
        WITHDRAWN = "withdrawn", _("Withdrawn by the rights holder")

    class Right(models.TextChoices):
        COPYRIGHT = "copyright", _("Copyright")
        TRADEMARK = "trademark", _("Trademark")
        DISTRIBUTION = "distribution", _("Exclusive distribution or licence")
        OTHER = "other", _("Other intellectual property right")

    number = models.CharField(_("reference"), max_length=20, unique=True, default=notice_number, editable=False)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.RECEIVED)
    product = models.ForeignKey(
        Product, verbose_name=_("product"), related_name="rights_notices", on_delete=models.PROTECT
    )
    product_reference = models.CharField(_("product as given"), max_length=300)
    notifier_name = models.CharField(_("rights holder"), max_length=120)
    notifier_email = models.EmailField(_("rights holder's email"))
    right_claimed = models.CharField(_("right claimed"), max_length=16, choices=Right.choices)
    right_detail = models.CharField(_("registration or certificate"), max_length=200, blank=True)
    evidence = models.TextField(_("preliminary evidence"), max_length=5000)
    declaration_accepted_at = models.DateTimeField(_("declaration accepted at"))
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    taken_down_at = models.DateTimeField(_("taken down at"), null=True, blank=True)
    # Forwarded to the supplier (电子商务法 第四十二条: 转送平台内经营者).
    forwarded_to = models.EmailField(_("forwarded to"), blank=True)
    forwarded_at = models.DateTimeField(_("forwarded at"), null=True, blank=True)
    # The counter-notice (第四十三条), recorded by staff, and when it reached the rights holder: the
    # 15 days count from then.
    counter_notice = models.TextField(_("counter-notice"), max_length=5000, blank=True)
    counter_received_at = models.DateTimeField(_("counter-notice received at"), null=True, blank=True)
    counter_recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("counter-notice recorded by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )
    counter_delivered_at = models.DateTimeField(
        _("counter-notice delivered to the rights holder at"), null=True, blank=True
    )
    restore_due_at = models.DateTimeField(_("restore due at"), null=True, blank=True)
    complaint_note = models.TextField(_("complaint or lawsuit"), max_length=2000, blank=True)
    complaint_reported_at = models.DateTimeField(_("complaint or lawsuit reported at"), null=True, blank=True)
    restored_at = models.DateTimeField(_("restored at"), null=True, blank=True)
    withdrawn_at = models.DateTimeField(_("withdrawn at"), null=True, blank=True)

    class Meta:
        ordering = ("-received_at", "-id")
        verbose_name = _("rights notice")
        verbose_name_plural = _("rights notices")
        indexes = [models.Index(fields=["status", "restore_due_at"], name="rightsnotice_status_due_idx")]

    def __str__(self):
        return self.number


class RightsNoticeStatusChange(StatusChange):
    subject = "notice"

    notice = models.ForeignKey(RightsNotice, verbose_name=_("notice"), related_name="history", on_delete=models.PROTECT)
    from_status = models.CharField(_("from"), max_length=16, blank=True, choices=RightsNotice.Status.choices)
    to_status = models.CharField(_("to"), max_length=16, choices=RightsNotice.Status.choices)


NoticeStatus = RightsNotice.Status
NOTICE_FLOW = StateMachine(
    transitions=table(
        {
            NoticeStatus.RECEIVED: [NoticeStatus.TAKEN_DOWN],
            # Without a counter-notice the product stays down; the rights holder may withdraw, or
            # staff record that the supplier conceded or a complaint/lawsuit was filed.
            NoticeStatus.TAKEN_DOWN: [NoticeStatus.COUNTER_NOTICED, NoticeStatus.UPHELD, NoticeStatus.WITHDRAWN],
            NoticeStatus.COUNTER_NOTICED: [NoticeStatus.RESTORED, NoticeStatus.UPHELD, NoticeStatus.WITHDRAWN],
            NoticeStatus.RESTORED: [],
            NoticeStatus.UPHELD: [],
            NoticeStatus.WITHDRAWN: [],
        }
    ),
    history_model=RightsNoticeStatusChange,
    history_fk="notice",
    entered_at={
        NoticeStatus.TAKEN_DOWN: "taken_down_at",
        NoticeStatus.RESTORED: "restored_at",
        NoticeStatus.UPHELD: "complaint_reported_at",
        NoticeStatus.WITHDRAWN: "withdrawn_at",
    },
    model=RightsNotice,
)
# The statuses in which a notice keeps its product off sale.
NOTICE_HOLDING = (NoticeStatus.TAKEN_DOWN, NoticeStatus.COUNTER_NOTICED, NoticeStatus.UPHELD)


class RightsDocument(models.Model):
    """A file of a review (the authorisation letter, certificate) or of a notice (the evidence, the
    counter-notice's evidence), under PRIVATE_MEDIA_ROOT/rights/ with a random name: never under a
    public folder, served only by ``rights.views.document`` to staff who may view its record."""

    class Kind(models.TextChoices):
        AUTHORISATION = "authorisation", _("Authorisation document")
        EVIDENCE = "evidence", _("Rights holder's evidence")
        COUNTER_EVIDENCE = "counter_evidence", _("Counter-notice evidence")

    review = models.ForeignKey(
        AuthorisationReview, null=True, blank=True, related_name="documents", on_delete=models.PROTECT
    )
    notice = models.ForeignKey(RightsNotice, null=True, blank=True, related_name="documents", on_delete=models.PROTECT)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    path = models.CharField(_("stored as"), max_length=200, editable=False)  # relative to PRIVATE_MEDIA_ROOT
    original_name = models.CharField(_("file name"), max_length=120)
    content_type = models.CharField(_("type"), max_length=40)
    size = models.PositiveIntegerField(_("size (bytes)"))
    sha256 = models.CharField("SHA-256", max_length=64)
    uploaded_at = models.DateTimeField(_("uploaded"), auto_now_add=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("uploaded by"),
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.PROTECT,
    )

    class Meta:
        ordering = ("id",)
        verbose_name = _("document")
        verbose_name_plural = _("documents")
        constraints = [
            models.CheckConstraint(
                condition=Q(review__isnull=False, notice__isnull=True) | Q(review__isnull=True, notice__isnull=False),
                name="rightsdocument_review_or_notice",
            ),
        ]

    def __str__(self):
        return self.original_name
