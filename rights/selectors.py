"""Reads of the authorisation ledger and of rights notices: the ledger's rows and its XLSX
export, the takedowns of a period (for the monthly compliance report), a document for staff, and
the public register of notices (电子商务法 第四十四条)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Font  # type: ignore[import-untyped]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]

from .models import AuthorisationReview, RightsDocument, RightsNotice, RightsNoticeStatusChange

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


# --- the public register of notices (电子商务法 第四十四条) -----------------------------------------
#
# 第四十四条: 电子商务平台经营者应当及时公示收到的本法第四十二条、第四十三条规定的通知、声明及处理结果.
# What is published is what the article asks for (the notice, the counter-notice's existence, each
# step and the outcome) and no more (个人信息保护法 第六条, minimisation): never the rights holder's
# email or IP, nor the evidence, the counter-notice's text or staff's notes (free text that may
# name people, case numbers, addresses). The notifier's name is not published either: the form
# takes "your name or your company's", a natural person's name is personal information, and we
# cannot tell the two apart reliably; the page says "the rights holder filed a notice" instead.
# So the rows are loaded with ``only()`` the public columns and handed to the templates as
# ``PublicNotice``s, which have no field for anything private: a template cannot show it by mistake.

PUBLIC_PAGE_SIZE = 30
PUBLIC_COLUMNS = (
    "number",
    "status",
    "right_claimed",
    "right_detail",
    "received_at",
    "taken_down_at",
    "forwarded_at",
    "counter_delivered_at",
    "restore_due_at",
    "restored_at",
    "complaint_reported_at",
    "withdrawn_at",
    "product__name",
    "product__supplier__name",
)


@dataclass(frozen=True)
class PublicStep:
    """One step of a notice's public timeline: the status it entered, and when."""

    status: str
    label: str
    at: datetime


@dataclass(frozen=True)
class PublicNotice:
    """A notice as the public register shows it (see the comment above: nothing private)."""

    number: str
    status: str
    status_label: str
    product_name: str
    supplier_name: str
    right_label: str
    right_detail: str
    received_at: datetime
    taken_down_at: datetime | None
    forwarded_at: datetime | None
    counter_delivered_at: datetime | None
    restore_due_at: datetime | None
    restored_at: datetime | None
    complaint_reported_at: datetime | None
    withdrawn_at: datetime | None
    steps: tuple[PublicStep, ...] = ()

    @property
    def is_closed(self) -> bool:
        return self.status in (
            RightsNotice.Status.RESTORED,
            RightsNotice.Status.UPHELD,
            RightsNotice.Status.WITHDRAWN,
        )


def _public(notice: RightsNotice, steps: tuple[PublicStep, ...] = ()) -> PublicNotice:
    return PublicNotice(
        number=notice.number,
        status=notice.status,
        status_label=str(notice.get_status_display()),
        product_name=notice.product.name,
        supplier_name=notice.product.supplier.name,
        right_label=str(notice.get_right_claimed_display()),
        right_detail=notice.right_detail,
        received_at=notice.received_at,
        taken_down_at=notice.taken_down_at,
        forwarded_at=notice.forwarded_at,
        counter_delivered_at=notice.counter_delivered_at,
        restore_due_at=notice.restore_due_at,
        restored_at=notice.restored_at,
        complaint_reported_at=notice.complaint_reported_at,
        withdrawn_at=notice.withdrawn_at,
        steps=steps,
    )


def _public_rows() -> QuerySet[RightsNotice]:
    return RightsNotice.objects.select_related("product", "product__supplier").only(*PUBLIC_COLUMNS)


def notices_public(*, status: str = "", query: str = "") -> QuerySet[RightsNotice]:
    """Every notice, newest first, with its product and supplier in the same query; ``status``
    (one of ``RightsNotice.Status``, anything else ignored) and ``query`` (a reference number, whole
    or in part, or words of the product's name) narrow it."""
    rows = _public_rows()
    if status in RightsNotice.Status.values:
        rows = rows.filter(status=status)
    query = " ".join((query or "").split())[:100]
    if query:
        rows = rows.filter(Q(number__icontains=query.replace(" ", "")) | Q(product__name__icontains=query))
    return rows.order_by("-received_at", "-id")


def notices_public_page(*, status: str = "", query: str = "", page: str | int | None = None) -> tuple[Page, list]:
    """A page of the register (``PUBLIC_PAGE_SIZE`` a page; a page number out of range or not a
    number gives the last or the first page) and its rows as ``PublicNotice``s."""
    found = Paginator(notices_public(status=status, query=query), PUBLIC_PAGE_SIZE).get_page(page)
    return found, [_public(n) for n in found.object_list]


def notice_public(*, number: str) -> PublicNotice | None:
    """One notice by its reference, with its timeline from the status history (the statuses and
    their times; the notes are staff's and not published), or None."""
    notice = _public_rows().filter(number=(number or "").strip().upper()[:20]).first()
    if notice is None:
        return None
    history = RightsNoticeStatusChange.objects.filter(notice_id=notice.pk).only("to_status", "at").order_by("at", "pk")
    steps = tuple(PublicStep(status=h.to_status, label=str(h.get_to_status_display()), at=h.at) for h in history)
    return _public(notice, steps)
