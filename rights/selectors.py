"""Reads of the authorisation ledger and of rights notices: the ledger's rows and its XLSX
export, the takedowns of a period (for the monthly compliance report), a document for staff."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Font  # type: ignore[import-untyped]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]

from .models import AuthorisationReview, RightsDocument, RightsNotice

# --- the ledger (台账) ---------------------------------------------------------------------------


def ledger_reviews(queryset: QuerySet[AuthorisationReview] | None = None) -> QuerySet[AuthorisationReview]:
    """Every review (or those of ``queryset``) with what the ledger shows, oldest first."""
    reviews = queryset if queryset is not None else AuthorisationReview.objects.all()
    return (
        reviews.select_related("supplier", "submitted_by", "reviewer")
        .prefetch_related("products")
        .annotate(documents_count=Count("documents", distinct=True))
        .order_by("submitted_at", "pk")
    )


def _when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else ""


def _who(user) -> str:
    return user.email if user is not None else ""


def ledger_rows(queryset: QuerySet[AuthorisationReview] | None = None) -> list[list[str | int]]:
    """The ledger's rows, one per review, in the columns of ``ledger_headers``."""
    rows: list[list[str | int]] = []
    for review in ledger_reviews(queryset):
        rows.append(
            [
                review.pk,
                "、".join(p.name for p in sorted(review.products.all(), key=lambda p: p.pk)),
                review.supplier.name,
                review.certificate_no,
                review.rights_holder,
                review.documents_count,  # type: ignore[attr-defined]
                _when(review.submitted_at),
                _who(review.submitted_by),
                _when(review.decided_at),
                _who(review.reviewer),
                review.decision_note,
                review.valid_until.isoformat() if review.valid_until else "",
                str(review.get_status_display()),
            ]
        )
    return rows


def ledger_headers() -> list[str]:
    return [
        _("No."),
        _("Products"),
        _("Supplier"),
        _("Certificate no."),
        _("Rights holder"),
        _("Documents"),
        _("Submitted at"),
        _("Submitted by"),
        _("Decided at"),
        _("Decided by"),
        _("Decision"),
        _("Valid until"),
        _("Status"),
    ]


def ledger_xlsx(queryset: QuerySet[AuthorisationReview] | None = None) -> bytes:
    """The ledger as an XLSX workbook (one sheet, a header row, one row per review)."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = str(_("Authorisation ledger"))[:31]
    sheet.append(ledger_headers())
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in ledger_rows(queryset):
        sheet.append(row)
    widths = [6, 40, 20, 20, 20, 8, 17, 24, 17, 24, 40, 12, 16]
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# --- takedowns (the monthly compliance report) -------------------------------------------------


@dataclass(frozen=True)
class Takedowns:
    """The notices received in [start, end): how many, how they stand now, and the rows."""

    received: int
    restored: int
    upheld: int
    withdrawn: int
    still_down: int
    rows: list[RightsNotice]


def takedowns_in_period(start: datetime, end: datetime) -> Takedowns:
    """Notices received from ``start`` (inclusive) to ``end`` (exclusive), with their product, by
    status. Every notice takes its product down on receipt, so each is a takedown."""
    notices = RightsNotice.objects.filter(received_at__gte=start, received_at__lt=end)
    S = RightsNotice.Status
    counts = notices.aggregate(
        received=Count("pk"),
        restored=Count("pk", filter=Q(status=S.RESTORED)),
        upheld=Count("pk", filter=Q(status=S.UPHELD)),
        withdrawn=Count("pk", filter=Q(status=S.WITHDRAWN)),
        still_down=Count("pk", filter=Q(status__in=(S.TAKEN_DOWN, S.COUNTER_NOTICED))),
    )
    rows = list(notices.select_related("product", "product__supplier").order_by("received_at", "pk"))
    return Takedowns(rows=rows, **counts)


# --- documents -----------------------------------------------------------------------------------


def document_for_staff(*, pk: int, may_view_reviews: bool, may_view_notices: bool) -> RightsDocument | None:
    """The document, if the staff member may view the record it belongs to."""
    document = RightsDocument.objects.filter(pk=pk).first()
    if document is None:
        return None
    if document.review_id is not None and may_view_reviews:
        return document
    if document.notice_id is not None and may_view_notices:
        return document
    return None
