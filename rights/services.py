"""The writes of the authorisation ledger and of rights holders' notices.

Reviews: ``review_submit`` (documents to private storage), ``review_approve`` (a validity: the
covered products may be sold until then), ``review_reject``, ``review_revoke``; beat's
``reviews_expire_due`` (past valid_until: expired, products off sale) and
``review_expiry_warn`` (staff warned 30 and 7 days before). ``product_activate`` puts a product on
sale only under an approved, unexpired review and without a hold.

Notices (电子商务法 第四十二条 to 第四十五条): ``notice_file`` (public form: the product held off
sale at once, the notice forwarded to the supplier), ``notice_counter_record`` (staff record the
supplier's counter-notice, forwarded to the rights holder), ``notice_complaint_report`` (the rights
holder reported a complaint or a lawsuit: the product stays down), ``notice_withdraw``, and beat's
``notices_restore_due`` (15 days after the counter-notice reached the rights holder).

The purchase rule that these fields feed (``orders.selectors.orders.product_refusal`` and
``catalog.selectors.products_on_sale``): a product with ``sale_hold`` set, or whose
``sale_authorised_until`` is in the past, is neither listed nor sold. An empty
``sale_authorised_until`` is a product from before the ledger (legacy, not yet enforced there),
so the shop and its tests keep their products; *activating* one (admin, ``product_activate``)
needs an approved review, and an approved review that lapses takes it off sale for good.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Max
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from PIL import Image

from catalog.models import Product, Supplier
from compliance.models import AuditEvent
from compliance.services import audit_record
from marketplace.errors import NotFound, ServiceError

from .models import (
    NOTICE_FLOW,
    NOTICE_HOLDING,
    REVIEW_FLOW,
    AuthorisationReview,
    ReviewWarning,
    RightsDocument,
    RightsNotice,
)

log = logging.getLogger(__name__)
ALLOWED = AuditEvent.Outcome.ALLOWED
ReviewStatus = AuthorisationReview.Status
NoticeStatus = RightsNotice.Status

# 电子商务法 第四十三条: the measures end if, within 15 days of the counter-notice reaching the rights
# holder, the platform is not told that a complaint or a lawsuit was filed.
COUNTER_NOTICE_WAIT = timedelta(days=15)


class RightsError(ServiceError):
    code = "rights_refused"

    def __init__(self, message=None, *, field: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.field = field


# --- documents (private storage) --------------------------------------------------------------

DOCUMENT_MAX_BYTES = 10 * 1024 * 1024
DOCUMENTS_MAX = 10
_IMAGE_TYPES = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}


@dataclass(frozen=True)
class CheckedDocument:
    data: bytes
    original_name: str
    content_type: str
    ext: str


def _safe_name(name: str, ext: str) -> str:
    stem = re.sub(r"[^\w.\-\u4e00-\u9fff]+", "_", Path(name or "document").stem)[:80] or "document"
    return f"{stem}.{ext}"


def document_check(*, name: str, data: bytes) -> CheckedDocument:
    """An uploaded document, checked by its content (not its name or declared type): a PDF
    (``%PDF-`` header) or a PNG, JPEG or WebP image that Pillow decodes; at most 10 MB."""
    if not data:
        raise RightsError(_("%(name)s is empty.") % {"name": name}, field="documents")
    if len(data) > DOCUMENT_MAX_BYTES:
        raise RightsError(_("%(name)s is larger than 10 MB.") % {"name": name}, field="documents")
    if data[:5] == b"%PDF-":
        return CheckedDocument(data, _safe_name(name, "pdf"), "application/pdf", "pdf")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:  # any decoder error, a decompression bomb: not a document we take
        raise RightsError(
            _("%(name)s is not a PDF or a PNG, JPEG or WebP image.") % {"name": name}, field="documents"
        ) from None
    if fmt not in _IMAGE_TYPES:
        raise RightsError(_("%(name)s is not a PDF or a PNG, JPEG or WebP image.") % {"name": name}, field="documents")
    content_type, ext = _IMAGE_TYPES[fmt]
    return CheckedDocument(data, _safe_name(name, ext), content_type, ext)


def _documents_store(
    documents: list[CheckedDocument], *, written: list[Path], kind: str, by=None, review=None, notice=None
) -> list[RightsDocument]:
    """Write the files under PRIVATE_MEDIA_ROOT/rights/ (random names, never overwriting) and
    their rows, inside the caller's transaction. Each path written is added to ``written``: the
    caller removes them if its transaction fails (``_files_undone``)."""
    root = Path(settings.PRIVATE_MEDIA_ROOT)
    now = timezone.now()
    rows = []
    for document in documents:
        relative = Path("rights") / f"{now:%Y}" / f"{now:%m}" / f"{secrets.token_urlsafe(18)}.{document.ext}"
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as fh:
            fh.write(document.data)
        written.append(target)
        os.chmod(target, 0o640)
        rows.append(
            RightsDocument.objects.create(
                review=review,
                notice=notice,
                kind=kind,
                path=relative.as_posix(),
                original_name=document.original_name[:120],
                content_type=document.content_type,
                size=len(document.data),
                sha256=hashlib.sha256(document.data).hexdigest(),
                uploaded_by=by if getattr(by, "pk", None) else None,
            )
        )
    return rows


def _files_undone(written: list[Path]) -> None:
    """The files of a transaction that failed: removed, so no file outlives its row."""
    for path in written:
        path.unlink(missing_ok=True)


def document_path(document: RightsDocument) -> Path:
    """The file on disk, refusing anything that would resolve outside the private rights folder."""
    root = (Path(settings.PRIVATE_MEDIA_ROOT) / "rights").resolve()
    path = (Path(settings.PRIVATE_MEDIA_ROOT) / document.path).resolve()
    if root not in path.parents:
        raise NotFound
    return path


# --- the products' sale authorisation ---------------------------------------------------------


def _today(today: date | None) -> date:
    return today or timezone.localdate()


def product_sale_refusal(*, product: Product, today: date | None = None) -> str | None:
    """Why ``product`` may not be put on sale now (None when it may): a rights holder's notice
    holds it, or no approved review covers it up to today. Read by the admin's form and by
    ``product_activate``."""
    if product.sale_hold:
        return _("It is held off sale: %(hold)s. It comes back when the notice is settled.") % {
            "hold": product.sale_hold
        }
    today = _today(today)
    covered = AuthorisationReview.objects.filter(
        products=product, status=ReviewStatus.APPROVED, valid_until__gte=today
    ).exists()
    if not covered:
        return _(
            "No approved authorisation review covers it today: submit the supplier's authorisation "
            "documents for review (Authorisation reviews) and have them approved first."
        )
    return None


def product_activate(*, product_id: int, by, request=None) -> Product:
    """Put a product on sale (``is_active``), refused without an approved, unexpired review or
    with a hold. Audited."""
    with transaction.atomic():
        product = Product.objects.select_for_update().filter(pk=product_id).first()
        if product is None:
            raise NotFound
        why = product_sale_refusal(product=product)
        if not why and not product.is_active:
            product.is_active = True
            product.save(update_fields=["is_active", "updated_at"])
            audit_record(
                action="rights.product_activated",
                outcome=ALLOWED,
                actor=by,
                request=request,
                target=f"product:{product.pk}",
            )
    if why:  # audited outside the transaction the refusal rolls back
        audit_record(
            action="rights.product_activation_refused",
            outcome=AuditEvent.Outcome.DENIED,
            actor=by,
            request=request,
            target=f"product:{product.pk}",
            detail=why,
        )
        raise RightsError(why, code="sale_not_authorised")
    return product


def _products_sync(product_ids, *, today: date, by=None, reason: str) -> list[int]:
    """Each product's ``sale_authorised_until`` from its approved reviews: the latest validity
    still running; with none, a date in the past (never empty again: an empty one means "from
    before the ledger") and the product taken off sale (audited). Returns the ids taken off sale."""
    off: list[int] = []
    yesterday = today - timedelta(days=1)
    for product in Product.objects.filter(pk__in=list(product_ids)).order_by("pk").select_for_update(of=("self",)):
        latest = AuthorisationReview.objects.filter(
            products=product, status=ReviewStatus.APPROVED, valid_until__gte=today
        ).aggregate(latest=Max("valid_until"))["latest"]
        fields = ["sale_authorised_until", "updated_at"]
        if latest is not None:
            product.sale_authorised_until = latest
        else:
            current = product.sale_authorised_until
            product.sale_authorised_until = min(current, yesterday) if current else yesterday
            if product.is_active:
                product.is_active = False
                fields.append("is_active")
                off.append(product.pk)
                audit_record(
                    action="rights.product_off_sale",
                    outcome=ALLOWED,
                    actor=by,
                    target=f"product:{product.pk}",
                    detail=reason,
                )
        product.save(update_fields=fields)
    return off


# --- reviews ------------------------------------------------------------------------------------


def review_submit(
    *,
    supplier_id: int,
    product_ids: list[int],
    certificate_no: str,
    documents: list[CheckedDocument],
    by,
    rights_holder: str = "",
    note: str = "",
    request=None,
) -> AuthorisationReview:
    """Record a supplier's authorisation for some of its products, with its documents, awaiting
    a reviewer's decision. Audited."""
    certificate_no = (certificate_no or "").strip()
    if not certificate_no:
        raise RightsError(_("Enter the authorisation certificate's number."), field="certificate_no")
    if not documents:
        raise RightsError(_("Upload the authorisation documents (PDF or images)."), field="documents")
    if len(documents) > DOCUMENTS_MAX:
        raise RightsError(_("At most %(n)d documents per review.") % {"n": DOCUMENTS_MAX}, field="documents")
    supplier = Supplier.objects.filter(pk=supplier_id).first()
    if supplier is None:
        raise RightsError(_("Choose the supplier."), field="supplier")
    products = list(Product.objects.filter(pk__in=list(product_ids)).order_by("pk"))
    if not products:
        raise RightsError(_("Choose the products the authorisation covers."), field="products")
    foreign = [p.name for p in products if p.supplier_id != supplier.pk]
    if foreign:
        raise RightsError(
            _("These products come from another supplier: %(names)s.") % {"names": "、".join(foreign)}, field="products"
        )
    written: list[Path] = []
    try:
        with transaction.atomic():
            review = AuthorisationReview.objects.create(
                supplier=supplier,
                certificate_no=certificate_no[:100],
                rights_holder=(rights_holder or "").strip()[:200],
                submission_note=(note or "").strip()[:2000],
                submitted_by=by,
            )
            review.products.set(products)
            review.history.create(from_status="", to_status=ReviewStatus.SUBMITTED, actor=by, note="submitted")
            _documents_store(documents, written=written, kind=RightsDocument.Kind.AUTHORISATION, by=by, review=review)
            audit_record(
                action="rights.review_submitted",
                outcome=ALLOWED,
                actor=by,
                request=request,
                target=f"review:{review.pk}",
                detail=f"{supplier.name} {certificate_no}: {len(products)} product(s), {len(documents)} document(s)",
            )
    except Exception:
        _files_undone(written)
        raise
    return review


def _review_locked(review_id: int) -> AuthorisationReview:
    review = AuthorisationReview.objects.select_for_update().filter(pk=review_id).first()
    if review is None:
        raise NotFound
    return review


def review_approve(
    *, review_id: int, by, valid_until: date, note: str = "", request=None, today: date | None = None
) -> AuthorisationReview:
    """The reviewer approves: the covered products may be sold until ``valid_until`` (their
    ``sale_authorised_until``). Not by the person who submitted it (two people see each
    authorisation), not with a validity already past. Audited."""
    today = _today(today)
    if valid_until is None or valid_until < today:
        raise RightsError(_("The validity must end today or later."), field="valid_until")
    with transaction.atomic():
        review = _review_locked(review_id)
        if review.submitted_by_id == getattr(by, "pk", None):
            raise RightsError(_("Another reviewer decides: you submitted this authorisation."), code="same_person")
        changed = REVIEW_FLOW.apply(
            review,
            ReviewStatus.APPROVED,
            actor=by,
            note=note,
            update={
                "reviewer": by,
                "decided_at": timezone.now(),
                "decision_note": (note or "").strip()[:2000],
                "valid_until": valid_until,
            },
        )
        if changed:
            _products_sync(review.products.values_list("pk", flat=True), today=today, by=by, reason=str(review))
            audit_record(
                action="rights.review_approved",
                outcome=ALLOWED,
                actor=by,
                request=request,
                target=f"review:{review.pk}",
                detail=f"valid until {valid_until.isoformat()}",
            )
    return review


def review_reject(*, review_id: int, by, note: str, request=None) -> AuthorisationReview:
    """The reviewer rejects, saying why (kept in the ledger). Audited."""
    note = (note or "").strip()
    if not note:
        raise RightsError(_("Say why the authorisation is rejected."), field="note")
    with transaction.atomic():
        review = _review_locked(review_id)
        if review.submitted_by_id == getattr(by, "pk", None):
            raise RightsError(_("Another reviewer decides: you submitted this authorisation."), code="same_person")
        if REVIEW_FLOW.apply(
            review,
            ReviewStatus.REJECTED,
            actor=by,
            note=note,
            update={"reviewer": by, "decided_at": timezone.now(), "decision_note": note[:2000]},
        ):
            audit_record(
                action="rights.review_rejected",
                outcome=ALLOWED,
                actor=by,
                request=request,
                target=f"review:{review.pk}",
                detail=note,
            )
    return review


def review_revoke(*, review_id: int, by, note: str, request=None, today: date | None = None) -> AuthorisationReview:
    """An approved authorisation withdrawn before its end (the brand owner revoked it, the
    documents proved false): products it alone covered leave sale at once. Audited."""
    note = (note or "").strip()
    if not note:
        raise RightsError(_("Say why the authorisation is revoked."), field="note")
    with transaction.atomic():
        review = _review_locked(review_id)
        if REVIEW_FLOW.apply(review, ReviewStatus.REVOKED, actor=by, note=note):
            _products_sync(review.products.values_list("pk", flat=True), today=_today(today), by=by, reason=str(review))
            audit_record(
                action="rights.review_revoked",
                outcome=ALLOWED,
                actor=by,
                request=request,
                target=f"review:{review.pk}",
                detail=note,
            )
    return review


def reviews_expire_due(*, today: date | None = None) -> int:
    """Beat, daily: approved reviews whose validity ended before ``today`` become expired and the
    products they alone covered leave sale (``is_active`` off, audited). Safe to run twice."""
    today = _today(today)
    due = AuthorisationReview.objects.filter(status=ReviewStatus.APPROVED, valid_until__lt=today).order_by("pk")
    expired = 0
    for review_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            review = _review_locked(review_id)
            if review.status != ReviewStatus.APPROVED or review.valid_until is None or review.valid_until >= today:
                continue
            REVIEW_FLOW.apply(review, ReviewStatus.EXPIRED, note=f"validity ended {review.valid_until.isoformat()}")
            off = _products_sync(review.products.values_list("pk", flat=True), today=today, reason=str(review))
            audit_record(
                action="rights.review_expired",
                outcome=ALLOWED,
                target=f"review:{review.pk}",
                detail=f"valid until {review.valid_until.isoformat()}; off sale: {off}",
            )
            expired += 1
    return expired


WARNING_STAGES = ((ReviewWarning.Stage.DAYS_30, 30), (ReviewWarning.Stage.DAYS_7, 7))


def review_warning_recipients() -> list[str]:
    """Active staff who may decide reviews (superusers included), and settings.COMPLIANCE_EMAILS."""
    User = get_user_model()
    users = User.objects.with_perm(
        "rights.change_authorisationreview",
        include_superusers=True,
        backend="accounts.backends.ModelBackend",
    ).filter(is_active=True, is_staff=True)
    emails = list(users.exclude(email="").order_by("pk").values_list("email", flat=True))
    for email in getattr(settings, "COMPLIANCE_EMAILS", ()):
        if email and email not in emails:
            emails.append(email)
    return emails


def review_expiry_warn(*, today: date | None = None) -> int:
    """Email staff about approved reviews whose validity ends within 30 days and within 7 days,
    once per stage and end date (a ReviewWarning each; a review first seen inside the 7 days gets
    only that one). Returns the emails sent."""
    today = _today(today)
    sent = 0
    stages = [str(stage) for stage, _days in WARNING_STAGES]
    candidates = AuthorisationReview.objects.filter(
        status=ReviewStatus.APPROVED, valid_until__gte=today, valid_until__lte=today + timedelta(days=30)
    ).select_related("supplier")
    for review in candidates.order_by("valid_until", "pk"):
        assert review.valid_until is not None
        days_left = (review.valid_until - today).days
        due = [stage for stage, days in WARNING_STAGES if days_left <= days]
        if not due:
            continue
        stage = due[-1]
        with transaction.atomic():
            warning, created = ReviewWarning.objects.get_or_create(
                review=review, valid_until=review.valid_until, stage=stage
            )
            if not created:
                continue
            for earlier in stages[: stages.index(str(stage))]:
                ReviewWarning.objects.get_or_create(review=review, valid_until=review.valid_until, stage=earlier)
            recipients = review_warning_recipients()
            if recipients:
                _send_review_warning(review, days_left, recipients)
                sent += 1
            else:
                log.warning("authorisation review %s ends %s: nobody to warn", review.pk, review.valid_until)
            ReviewWarning.objects.filter(pk=warning.pk).update(recipients=len(recipients))
    return sent


def _admin_url(name: str, pk: int) -> str:
    try:
        return settings.SITE_URL + reverse(name, args=[pk])
    except NoReverseMatch:
        return ""


def _send_review_warning(review: AuthorisationReview, days_left: int, recipients: list[str]) -> None:
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("[Authorisation expiring] %(supplier)s %(number)s ends in %(days)d days (%(date)s)") % {
            "supplier": review.supplier.name,
            "number": review.certificate_no,
            "days": days_left,
            "date": review.valid_until.isoformat() if review.valid_until else "",
        }
        products = "、".join(review.products.order_by("pk").values_list("name", flat=True))
        body = "\n".join(
            [
                _(
                    "When it ends, the products it covers leave sale automatically. Submit the renewed "
                    "authorisation for review before then."
                ),
                "",
                _("Products: %(names)s") % {"names": products},
                _admin_url("admin:rights_authorisationreview_change", review.pk),
            ]
        )
    EmailMessage(subject, body + "\n", None, recipients).send()


# --- rights holders' notices (电子商务法 第四十二条 to 第四十五条) ----------------------------------


def notice_product_find(reference: str) -> Product | None:
    """The product a notice names: its slug, or a page address of it (``/p/<slug>/`` on the
    platform or in a storefront)."""
    reference = (reference or "").strip()
    if not reference:
        return None
    path = urlparse(reference).path if "/" in reference else reference
    parts = [part for part in path.split("/") if part]
    candidates = [parts[i + 1] for i, part in enumerate(parts[:-1]) if part == "p"] or parts[-1:]
    for slug in reversed(candidates):
        product = Product.objects.filter(slug=slug[:80]).first()
        if product is not None:
            return product
    return None


def _hold_sync(product_id: int, *, by=None, reason: str) -> None:
    """The product's ``sale_hold`` from its notices still holding it (the oldest names the hold),
    emptied when none is left. Audited when it changes."""
    product = Product.objects.select_for_update().get(pk=product_id)
    holding = (
        RightsNotice.objects.filter(product_id=product_id, status__in=NOTICE_HOLDING)
        .order_by("received_at", "pk")
        .first()
    )
    hold = (_("rights holder's notice %(number)s") % {"number": holding.number})[:200] if holding else ""
    if product.sale_hold == hold:
        return
    product.sale_hold = hold
    product.save(update_fields=["sale_hold", "updated_at"])
    audit_record(
        action="rights.product_held" if hold else "rights.product_hold_lifted",
        outcome=ALLOWED,
        actor=by,
        target=f"product:{product_id}",
        detail=reason,
    )


def notice_file(
    *,
    product_reference: str,
    notifier_name: str,
    notifier_email: str,
    right_claimed: str,
    evidence: str,
    declaration: bool,
    right_detail: str = "",
    files: list[CheckedDocument] = (),  # type: ignore[assignment]
    ip: str | None = None,
    request=None,
) -> RightsNotice:
    """A rights holder's notice from the public form. The product is held off sale at once
    (第四十二条: 及时采取删除、屏蔽、断开链接、终止交易和服务等必要措施), the notice is forwarded to the
    supplier (第四十二条: 将该通知转送平台内经营者) and a receipt sent to the rights holder. Audited."""
    product = notice_product_find(product_reference)
    if product is None:
        raise RightsError(
            _("No product found at this address: copy the product page's address from your browser."),
            field="product_reference",
        )
    if not declaration:
        # 第四十二条: the notice must include preliminary evidence; a false notice causing loss is the
        # notifier's liability (a malicious one, double). They confirm that they know it.
        raise RightsError(_("Confirm the declaration to file the notice."), field="declaration")
    if right_claimed not in RightsNotice.Right.values:
        raise RightsError(_("Choose the right you hold."), field="right_claimed")
    evidence = (evidence or "").strip()
    if len(evidence) < 20:
        raise RightsError(
            _("Describe the right and why this product infringes it (preliminary evidence, at least 20 characters)."),
            field="evidence",
        )
    written: list[Path] = []
    try:
        with transaction.atomic():
            notice = RightsNotice.objects.create(
                product=product,
                product_reference=product_reference.strip()[:300],
                notifier_name=notifier_name.strip()[:120],
                notifier_email=notifier_email.strip().lower()[:254],
                right_claimed=right_claimed,
                right_detail=(right_detail or "").strip()[:200],
                evidence=evidence[:5000],
                declaration_accepted_at=timezone.now(),
                ip=ip,
            )
            notice.history.create(from_status="", to_status=NoticeStatus.RECEIVED, note="public form")
            if files:
                _documents_store(list(files), written=written, kind=RightsDocument.Kind.EVIDENCE, notice=notice)
            audit_record(
                action="rights.notice_received",
                outcome=ALLOWED,
                request=request,
                ip=ip,
                target=f"notice:{notice.number}",
                detail=f"product:{product.pk} {right_claimed} by {notice.notifier_email}",
            )
            NOTICE_FLOW.apply(notice, NoticeStatus.TAKEN_DOWN, note="held off sale on receipt (Art. 42)")
            _hold_sync(product.pk, reason=f"notice {notice.number}")
    except Exception:
        _files_undone(written)
        raise
    notice_forward(notice_id=notice.pk)
    _send_notice_receipt(notice)
    return notice


def _supplier_recipients(notice: RightsNotice) -> tuple[str, list[str]]:
    """Where the notice goes: the supplier's contact email, else (recorded as not forwarded)
    the compliance staff, who must reach the supplier another way."""
    contact = notice.product.supplier.contact_email
    if contact:
        return contact, [contact]
    return "", review_warning_recipients()


def notice_forward(*, notice_id: int, by=None) -> bool:
    """Email the notice to the supplier's contact and record when (``forwarded_at``); a send
    that fails is logged and audited, and staff forward it again from admin. True when sent to
    the supplier."""
    notice = RightsNotice.objects.select_related("product__supplier").get(pk=notice_id)
    contact, recipients = _supplier_recipients(notice)
    if not recipients:
        log.warning("rights notice %s: no supplier contact and nobody on staff to tell", notice.number)
        return False
    with translation.override(settings.LANGUAGE_CODE):
        if contact:
            subject = _("[Rights notice %(number)s] %(product)s has been taken down") % {
                "number": notice.number,
                "product": notice.product.name,
            }
        else:
            subject = _("[Rights notice %(number)s] the supplier has no contact email: forward it yourself") % {
                "number": notice.number
            }
        body = "\n".join(
            [
                _(
                    "A rights holder has filed the notice below about a product you supply. Under Art. 42 of the "
                    "E-Commerce Law the product has been taken off sale. If you believe there is no infringement, "
                    "send us a counter-notice with your preliminary evidence (Art. 43), quoting the reference."
                ),
                "",
                _("Reference: %(number)s") % {"number": notice.number},
                _("Product: %(name)s") % {"name": notice.product.name},
                _("Rights holder: %(name)s") % {"name": notice.notifier_name},
                _("Right claimed: %(right)s %(detail)s")
                % {"right": notice.get_right_claimed_display(), "detail": notice.right_detail},
                _("Received at: %(at)s") % {"at": timezone.localtime(notice.received_at).strftime("%Y-%m-%d %H:%M")},
                "",
                notice.evidence,
            ]
        )
    try:
        EmailMessage(subject, body + "\n", None, recipients).send()
    except Exception as exc:  # SMTP away: the takedown stands; the forward is retried from admin
        log.warning("rights notice %s: forwarding failed: %s", notice.number, exc)
        audit_record(
            action="rights.notice_forward_failed",
            outcome=AuditEvent.Outcome.DENIED,
            actor=by,
            target=f"notice:{notice.number}",
            detail=str(exc)[:300],
        )
        return False
    if contact:
        RightsNotice.objects.filter(pk=notice.pk).update(forwarded_to=contact, forwarded_at=timezone.now())
    audit_record(
        action="rights.notice_forwarded" if contact else "rights.notice_forward_no_contact",
        outcome=ALLOWED,
        actor=by,
        target=f"notice:{notice.number}",
        detail=f"to {contact or ', '.join(recipients)}",
    )
    return bool(contact)


def _send_notice_receipt(notice: RightsNotice) -> None:
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("[Rights notice %(number)s] received: the product is off sale") % {"number": notice.number}
        body = "\n".join(
            [
                _(
                    "We received your notice and took the product off sale. It has been forwarded to the supplier. "
                    "If the supplier sends a counter-notice, we forward it to you; the product then comes back "
                    "15 days after it reached you unless you tell us, within those 15 days, that you have filed a "
                    "complaint with the authorities or a lawsuit (E-Commerce Law Art. 43)."
                ),
                "",
                _("Reference: %(number)s") % {"number": notice.number},
                _("Product: %(name)s") % {"name": notice.product.name},
            ]
        )
    try:
        EmailMessage(subject, body + "\n", None, [notice.notifier_email]).send()
    except Exception as exc:
        log.warning("rights notice %s: receipt not sent: %s", notice.number, exc)


def _notice_locked(notice_id: int) -> RightsNotice:
    notice = RightsNotice.objects.select_for_update().filter(pk=notice_id).first()
    if notice is None:
        raise NotFound
    return notice


def notice_counter_record(
    *,
    notice_id: int,
    by,
    text: str,
    received_at: datetime | None = None,
    files: list[CheckedDocument] = (),  # type: ignore[assignment]
    request=None,
) -> RightsNotice:
    """Staff record the supplier's counter-notice (第四十三条: a statement that there is no
    infringement, with preliminary evidence) and it is emailed to the rights holder within the
    same step; the 15 days count from that delivery (``restore_due_at``). An email that cannot be
    sent fails the whole step: staff try again, the clock never starts unseen. Audited."""
    text = (text or "").strip()
    if len(text) < 20:
        raise RightsError(
            _("Enter the counter-notice: the statement that there is no infringement and its evidence."),
            field="text",
        )
    written: list[Path] = []
    try:
        with transaction.atomic():
            notice = _notice_locked(notice_id)
            now = timezone.now()
            if notice.status == NoticeStatus.COUNTER_NOTICED:
                return notice  # a repeat (a double click): recorded and sent once
            NOTICE_FLOW.require(notice.status, NoticeStatus.COUNTER_NOTICED)
            if files:
                _documents_store(
                    list(files), written=written, kind=RightsDocument.Kind.COUNTER_EVIDENCE, by=by, notice=notice
                )
            NOTICE_FLOW.apply(
                notice,
                NoticeStatus.COUNTER_NOTICED,
                actor=by,
                note="counter-notice forwarded to the rights holder (Art. 43)",
                update={
                    "counter_notice": text[:5000],
                    "counter_received_at": received_at or now,
                    "counter_recorded_by": by,
                    "counter_delivered_at": now,
                    "restore_due_at": now + COUNTER_NOTICE_WAIT,
                },
            )
            _send_counter_notice(notice)
            audit_record(
                action="rights.counter_notice_forwarded",
                outcome=ALLOWED,
                actor=by,
                request=request,
                target=f"notice:{notice.number}",
                detail=f"to {notice.notifier_email}; restore due {notice.restore_due_at:%Y-%m-%d %H:%M}",
            )
    except Exception:
        _files_undone(written)
        raise
    return notice


def _send_counter_notice(notice: RightsNotice) -> None:
    due = timezone.localtime(notice.restore_due_at) if notice.restore_due_at else None
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("[Rights notice %(number)s] the supplier's counter-notice") % {"number": notice.number}
        body = "\n".join(
            [
                _(
                    "The supplier answered your notice with the counter-notice below (E-Commerce Law Art. 43). "
                    "You may file a complaint with the competent authority or a lawsuit. If we are not told, "
                    "by %(due)s, that you have done so, the product goes back on sale."
                )
                % {"due": due.strftime("%Y-%m-%d %H:%M") if due else ""},
                _("To tell us, reply to this email quoting the reference, with the complaint's or the case's proof."),
                "",
                _("Reference: %(number)s") % {"number": notice.number},
                _("Product: %(name)s") % {"name": notice.product.name},
                "",
                notice.counter_notice,
            ]
        )
    EmailMessage(subject, body + "\n", None, [notice.notifier_email]).send()


def notice_complaint_report(*, notice_id: int, by, note: str, request=None) -> RightsNotice:
    """Staff record that the rights holder filed a complaint or a lawsuit (or that the supplier
    conceded): the notice is upheld and the product stays down. Audited."""
    note = (note or "").strip()
    if not note:
        raise RightsError(_("Say what was reported: the authority or court, the case number, the date."), field="note")
    with transaction.atomic():
        notice = _notice_locked(notice_id)
        if NOTICE_FLOW.apply(notice, NoticeStatus.UPHELD, actor=by, note=note, update={"complaint_note": note[:2000]}):
            _hold_sync(notice.product_id, by=by, reason=f"notice {notice.number} upheld")
            audit_record(
                action="rights.notice_upheld",
                outcome=ALLOWED,
                actor=by,
                request=request,
                target=f"notice:{notice.number}",
                detail=note,
            )
    return notice


def notice_withdraw(*, notice_id: int, by, note: str, request=None) -> RightsNotice:
    """The rights holder withdrew the notice: the hold it placed is lifted (if no other notice
    holds the product). Audited."""
    note = (note or "").strip()
    if not note:
        raise RightsError(_("Say how the rights holder withdrew the notice."), field="note")
    with transaction.atomic():
        notice = _notice_locked(notice_id)
        if NOTICE_FLOW.apply(notice, NoticeStatus.WITHDRAWN, actor=by, note=note):
            _hold_sync(notice.product_id, by=by, reason=f"notice {notice.number} withdrawn")
            audit_record(
                action="rights.notice_withdrawn",
                outcome=ALLOWED,
                actor=by,
                request=request,
                target=f"notice:{notice.number}",
                detail=note,
            )
    return notice


def notices_restore_due(*, now: datetime | None = None) -> int:
    """Beat: counter-noticed notices whose 15 days since the counter-notice reached the rights
    holder have passed with no complaint or lawsuit reported (第四十三条: 应当及时终止所采取的措施)
    are closed as restored and the product's hold lifted. Safe to run twice."""
    now = now or timezone.now()
    due = RightsNotice.objects.filter(
        status=NoticeStatus.COUNTER_NOTICED, restore_due_at__lte=now, complaint_reported_at__isnull=True
    ).order_by("pk")
    restored = 0
    for notice_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            notice = _notice_locked(notice_id)
            if (
                notice.status != NoticeStatus.COUNTER_NOTICED
                or not notice.restore_due_at
                or notice.restore_due_at > now
            ):
                continue
            NOTICE_FLOW.apply(
                notice, NoticeStatus.RESTORED, note="15 days after the counter-notice, no complaint (Art. 43)"
            )
            _hold_sync(notice.product_id, reason=f"notice {notice.number} restored")
            audit_record(action="rights.notice_restored", outcome=ALLOWED, target=f"notice:{notice.number}")
            restored += 1
    return restored
