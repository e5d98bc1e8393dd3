"""Compliance's writes: the audit log (one call records a security-relevant event, in the audit
table and the security log), credit events (recorded where they happen), and the platform's
qualifications (staff's changes kept as history, expiry warnings)."""

import hashlib
import io
import logging
import re
from datetime import date, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from marketplace.errors import NotFound, ServiceError
from marketplace.http import client_ip
from marketplace.text import email_normalise

from .models import AuditEvent, CreditEvent, Qualification, QualificationChange, QualificationWarning

log = logging.getLogger("marketplace.security")


def audit_record(
    *, action: str, outcome: str, actor=None, target: str = "", request=None, ip: str | None = None, detail: str = ""
) -> AuditEvent:
    """Write one audit row (and a log line). ``request`` fills in the IP and path."""
    path = ""
    if request is not None:
        ip = ip or client_ip(request)
        path = request.get_full_path()[:300]
        if actor is None and getattr(request, "user", None) is not None and request.user.is_authenticated:
            actor = request.user
    event = AuditEvent.objects.create(
        actor=actor if actor is not None and getattr(actor, "pk", None) else None,
        action=action[:60],
        target=str(target)[:120],
        outcome=outcome,
        ip=ip,
        path=path,
        detail=detail[:500],
    )
    level = logging.WARNING if outcome == AuditEvent.Outcome.DENIED else logging.INFO
    log.log(level, "%s %s target=%s actor=%s ip=%s %s", action, outcome, target, event.actor_id, ip, detail)
    return event


def audit_denied(*, action: str, request=None, actor=None, target: str = "", detail: str = "") -> AuditEvent:
    return audit_record(
        action=action, outcome=AuditEvent.Outcome.DENIED, actor=actor, target=target, request=request, detail=detail
    )


def credit_event_record(
    *, user=None, email: str = "", kind: str, reference: str = "", detail: str = "", weight=None
) -> CreditEvent:
    """An event of a member (``user``) or, with no user, of the guest known by ``email``
    (``weight``: a staff adjustment's own points; other kinds weigh what settings say)."""
    email = "" if user is not None else email_normalise(email)
    if user is None and not email:
        raise ValueError("a credit event belongs to a user or to a guest email")
    return CreditEvent.objects.create(
        user=user, email=email, kind=kind, reference=reference[:40], detail=detail[:300], weight=weight
    )


def credit_events_cancel(*, kind: str, reference: str, by=None, reason: str, request=None) -> int:
    """Take back the events of ``kind`` recorded under ``reference`` (staff found the case was a
    false alarm: a dismissed risk alert). The rows stay, as the record, with a weight of 0 (the
    rating counts their own weight: ``compliance.rating``) and the reason in their detail;
    audited. How many were cancelled (0 on a repeat)."""
    if not reference:
        return 0
    events = list(CreditEvent.objects.filter(kind=kind, reference=reference).exclude(weight=0).order_by("pk"))
    for event in events:
        event.weight = 0
        event.detail = f"[cancelled] {reason}: {event.detail}"[:300]
        event.save(update_fields=["weight", "detail"])
    if events:
        audit_record(
            action="credit_event_cancelled",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=by,
            request=request,
            target=reference,
            detail=f"{kind} x{len(events)}: {reason}"[:300],
        )
    return len(events)


def credit_events_attach(*, email: str, user) -> int:
    """A guest's credit events (by their normalised ``email``) become ``user``'s, once the
    address is verified as the user's (``aftersales.services.claims``); how many moved."""
    if not email or user is None:
        return 0
    return CreditEvent.objects.filter(user__isnull=True, email=email).update(user=user, email="")


def mfa_reset_by_staff(*, user, by, request=None) -> int:
    """Staff take away every authenticator of ``user`` (a lost phone and lost recovery codes):
    the account signs in with its password again and, if staff, must set up a new one before
    anything else. Audited as ``mfa_reset_by_staff``; the number of authenticators removed."""
    from allauth.mfa.models import Authenticator

    authenticators = list(Authenticator.objects.filter(user_id=user.pk).order_by("pk"))
    kinds = ", ".join(sorted({str(a.type) for a in authenticators}))
    Authenticator.objects.filter(pk__in=[a.pk for a in authenticators]).delete()
    audit_record(
        action="mfa_reset_by_staff",
        outcome=AuditEvent.Outcome.ALLOWED,
        actor=by,
        target=user.email,
        request=request,
        detail=f"removed: {kinds or 'none'}",
    )
    return len(authenticators)


# --- qualifications (电子商务法 第十五条: the licences the platform shows) -------------------------


class QualificationError(ServiceError):
    """A qualification refused as entered; ``field`` names the form field it belongs to."""

    code = "qualification_invalid"

    def __init__(self, message=None, *, field: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.field = field


# GB 32100-2015 (统一社会信用代码): 18 characters from this set (no I, O, S, V, Z); the 18th is a check
# character: weights 3^i mod 31 over the first 17, check = 31 - (sum mod 31), 31 counting as 0.
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC_RE = re.compile(r"^[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}$")


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character of a code's first 17 characters."""
    total = sum(USCC_CHARS.index(char) * weight for char, weight in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31]


def uscc_validate(value: str) -> str:
    """A unified social credit code, upper-cased and without spaces, or a QualificationError
    that says what is wrong (length, a character outside the set, the check character)."""
    code = re.sub(r"[\s-]", "", value or "").upper()
    if len(code) != 18:
        raise QualificationError(
            _("A unified social credit code has 18 characters (this has %(n)d).") % {"n": len(code)}, field="number"
        )
    bad = sorted({char for char in code if char not in USCC_CHARS})
    if bad:
        raise QualificationError(
            _("%(chars)s cannot appear in a unified social credit code (it never uses I, O, S, V or Z).")
            % {"chars": "、".join(bad)},
            field="number",
        )
    if not _USCC_RE.match(code):
        raise QualificationError(
            _("Characters 3 to 8 of a unified social credit code are the region's six digits."), field="number"
        )
    if uscc_check_char(code[:17]) != code[17]:
        raise QualificationError(
            _("The check character does not match: the code has a mistake. Copy it again from the licence."),
            field="number",
        )
    return code


_ICP_FILING_RE = re.compile(r"^[\u4e00-\u9fff]ICP备\d{6,12}号(?:-\d{1,4})?$")
_TELECOM_RE = re.compile(r"^(?:[\u4e00-\u9fff]{0,2}[AB][12](?:\.[A-Z0-9]{1,6})?-\d{8}|[\u4e00-\u9fff]ICP证\d{6}号)$")
_PUBLIC_SECURITY_RE = re.compile(r"^[\u4e00-\u9fff]公网安备(\d{14})号$")

QUALIFICATION_FIELDS = ("kind", "number", "company_name", "scope", "valid_from", "valid_until", "is_shown")
IMAGE_MAX_BYTES = 5 * 1024 * 1024
IMAGE_MAX_SIDE = 2000  # legible: a licence's small print stays readable
IMAGE_MAX_PIXELS = 60_000_000  # refuses decompression bombs before decoding
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP"}
KEEP = object()  # qualification_save(image=KEEP): the image stays as it is


def qualification_clean(values: dict, *, has_image: bool) -> dict:
    """Each kind's rules over the submitted ``values`` (QUALIFICATION_FIELDS); returns them
    normalised (spaces dropped from numbers, text stripped) or raises a QualificationError."""
    Kind = Qualification.Kind
    out = dict(values)
    kind = out.get("kind")
    if kind not in Kind.values:
        raise QualificationError(_("Choose the kind of qualification."), field="kind")
    for name in ("company_name", "scope"):
        out[name] = (out.get(name) or "").strip()
    number = re.sub(r"\s+", "", out.get("number") or "")
    valid_from, valid_until = out.get("valid_from"), out.get("valid_until")
    if valid_from and valid_until and valid_until < valid_from:
        raise QualificationError(_("The validity cannot end before it starts."), field="valid_until")
    if kind == Kind.BUSINESS_LICENCE:
        number = uscc_validate(number)
        if not out["company_name"]:
            raise QualificationError(_("Enter the company name as the licence shows it."), field="company_name")
        if not out["scope"]:
            raise QualificationError(_("Enter the business scope as the licence shows it."), field="scope")
        if not valid_from:
            raise QualificationError(_("Enter the date the licence's term begins."), field="valid_from")
        if not has_image:
            raise QualificationError(_("Upload an image of the licence."), field="image_upload")
    elif kind == Kind.ICP_FILING:
        if not _ICP_FILING_RE.match(number):
            raise QualificationError(
                _("An ICP filing number looks like 京ICP备2024012345号 or 京ICP备2024012345号-1."), field="number"
            )
    elif kind == Kind.TELECOM_LICENCE:
        number = number.upper()
        if not _TELECOM_RE.match(number):
            raise QualificationError(
                _("A value-added telecom business licence number looks like 京B2-20240123 or B2-20240123."),
                field="number",
            )
        if not valid_until:
            raise QualificationError(_("Enter the last day the licence is valid."), field="valid_until")
    elif kind == Kind.PUBLIC_SECURITY_FILING and not _PUBLIC_SECURITY_RE.match(number):
        raise QualificationError(
            _("A public security filing number looks like 京公网安备11010502000001号 (14 digits)."), field="number"
        )
    out["number"] = number
    return out


def qualification_image_encode(*, data: bytes) -> bytes:
    """Check an uploaded licence image (PNG, JPEG or WebP, at most 5 MB, really an image), fit it
    in 2000x2000, drop its metadata (EXIF, GPS, ICC) and keep it as JPEG."""
    if not data:
        raise QualificationError(_("The file is empty."), field="image_upload")
    if len(data) > IMAGE_MAX_BYTES:
        raise QualificationError(_("The image is at most 5 MB."), field="image_upload")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt, (width, height) = probe.format, probe.size
            probe.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise QualificationError(_("This file is not an image we can read."), field="image_upload") from None
    if fmt not in IMAGE_FORMATS:
        raise QualificationError(_("Upload a PNG, JPEG or WebP image."), field="image_upload")
    if not width or not height or width * height > IMAGE_MAX_PIXELS:
        raise QualificationError(_("This image is too large in pixels."), field="image_upload")
    img: Image.Image
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)  # the first frame of an animated image
            img.load()
            img = ImageOps.exif_transpose(img)  # apply the orientation, then drop the metadata
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.new("RGB", rgba.size, "white")
                img.paste(rgba, mask=rgba.getchannel("A"))
            img = img.convert("RGB")
            img.thumbnail((IMAGE_MAX_SIDE, IMAGE_MAX_SIDE), Image.Resampling.LANCZOS)
            # A fresh image holds pixels only: no EXIF, ICC profile or comments.
            clean = Image.new("RGB", img.size)
            clean.paste(img)
            out = io.BytesIO()
            clean.save(out, format="JPEG", quality=85, optimize=True, progressive=True)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise QualificationError(_("This file is not an image we can read."), field="image_upload") from None
    return out.getvalue()


def _image_summary(data) -> str | None:
    if not data:
        return None
    data = bytes(data)
    return f"{len(data)} B sha256:{hashlib.sha256(data).hexdigest()[:16]}"


def _history_value(value):
    return value.isoformat() if isinstance(value, date) else value


def qualification_save(*, actor, qualification_id: int | None, values: dict, image=KEEP) -> Qualification:
    """Create (``qualification_id=None``) or change a qualification from staff's ``values`` and,
    with ``image`` as bytes from ``qualification_image_encode`` (or None to remove it), its image.

    The row is locked while the old values are read, so the history row written beside the change
    (who, when, each field's old and new value) describes exactly this save. A save that changes
    nothing writes no history. The footer's cached list is forgotten (again when the change commits)."""
    from .selectors import qualifications_forget

    with transaction.atomic():
        old: dict | None = None
        if qualification_id is None:
            qualification = Qualification()
        else:
            found = Qualification.objects.select_for_update().filter(pk=qualification_id).first()
            if found is None:
                raise NotFound
            qualification = found
            old = {name: getattr(qualification, name) for name in QUALIFICATION_FIELDS}
        has_image = bool(qualification.image) if image is KEEP else bool(image)
        values = qualification_clean({name: values.get(name) for name in QUALIFICATION_FIELDS}, has_image=has_image)
        changes = {
            name: [_history_value(old.get(name) if old else None), _history_value(values[name])]
            for name in QUALIFICATION_FIELDS
            if old is None or old[name] != values[name]
        }
        if image is not KEEP:
            before, after = _image_summary(qualification.image), _image_summary(image)
            if before != after:
                changes["image"] = [before, after]
        if old is not None and not changes:
            return qualification
        for name, value in values.items():
            setattr(qualification, name, value)
        now = timezone.now()
        if "image" in changes:
            qualification.image = image or None
            qualification.image_updated_at = now if image else None
        try:
            with transaction.atomic():
                qualification.save()
        except IntegrityError:
            raise QualificationError(
                _("A qualification of this kind with this number is already recorded."), field="number"
            ) from None
        QualificationChange.objects.create(
            qualification=qualification,
            actor=actor if getattr(actor, "pk", None) else None,
            action=QualificationChange.Action.CREATED if old is None else QualificationChange.Action.CHANGED,
            changes=changes,
        )
        qualifications_forget()  # now and again at commit (marketplace.localcache.local_forget)
    return qualification


# Stages of the expiry warning: (stage, days before the end at which it is due). Past the end,
# the EXPIRED notice. A qualification first seen inside a window gets only the latest stage.
WARNING_STAGES = (
    (QualificationWarning.Stage.DAYS_30, 30),
    (QualificationWarning.Stage.DAYS_7, 7),
)


def qualification_warning_recipients() -> list[str]:
    """Who hears about expiring qualifications: active staff who may change them (superusers
    included) with an email, and the addresses in settings.COMPLIANCE_EMAILS."""
    User = get_user_model()
    users = User.objects.with_perm(
        "compliance.change_qualification", include_superusers=True, backend="accounts.backends.ModelBackend"
    ).filter(is_active=True, is_staff=True)
    emails = [email for email in users.exclude(email="").order_by("pk").values_list("email", flat=True)]
    for email in getattr(settings, "COMPLIANCE_EMAILS", ()):
        if email and email not in emails:
            emails.append(email)
    return emails


def _due_stage(days_left: int) -> str | None:
    if days_left < 0:
        return QualificationWarning.Stage.EXPIRED
    due = [stage for stage, days in WARNING_STAGES if days_left <= days]
    return due[-1] if due else None


def qualification_expiry_warn(*, today: date | None = None) -> int:
    """Email staff about shown qualifications whose validity ends within 30 days, within 7 days, or
    has ended: once per stage and end date (a QualificationWarning row records each; a warning
    whose email fails is rolled back and tried again on the next run). Returns emails sent."""
    today = today or timezone.localdate()
    horizon = today + timedelta(days=max(days for _stage, days in WARNING_STAGES))
    sent = 0
    candidates = (
        Qualification.objects.filter(is_shown=True, valid_until__isnull=False, valid_until__lte=horizon)
        .defer("image")
        .order_by("valid_until", "pk")
    )
    order: list[str] = [str(s) for s, _days in WARNING_STAGES] + [str(QualificationWarning.Stage.EXPIRED)]
    for qualification in candidates:
        assert qualification.valid_until is not None  # filtered above
        days_left = (qualification.valid_until - today).days
        stage = _due_stage(days_left)
        if stage is None:
            continue
        with transaction.atomic():
            warning, created = QualificationWarning.objects.get_or_create(
                qualification=qualification, valid_until=qualification.valid_until, stage=stage
            )
            if not created:
                continue
            # The earlier stages this run skipped are done too: no 30-day email after the 7-day one.
            for earlier in order[: order.index(stage)]:
                QualificationWarning.objects.get_or_create(
                    qualification=qualification,
                    valid_until=qualification.valid_until,
                    stage=earlier,
                    defaults={"recipients": 0},
                )
            recipients = qualification_warning_recipients()
            if not recipients:
                log.warning("qualification %s expires %s: nobody to warn", qualification.pk, qualification.valid_until)
            else:
                _send_expiry_warning(qualification, days_left, recipients)
                sent += 1
            QualificationWarning.objects.filter(pk=warning.pk).update(recipients=len(recipients))
    return sent


def _send_expiry_warning(qualification: Qualification, days_left: int, recipients: list[str]) -> None:
    with translation.override(settings.LANGUAGE_CODE):
        label = qualification.get_kind_display()
        end = qualification.valid_until.isoformat() if qualification.valid_until else ""
        if days_left < 0:
            subject = _("[Qualification expired] %(kind)s %(number)s ended on %(date)s")
            intro = _(
                "It is now shown as expired on every page. Renew it and enter the new validity in admin; "
                "the pages show the change at once."
            )
        else:
            subject = _("[Qualification expiring] %(kind)s %(number)s ends in %(days)d days (%(date)s)")
            intro = _(
                "Renew it before it ends: an expired qualification is shown as expired on every page. "
                "Enter the new validity in admin when it is renewed."
            )
        subject = subject % {"kind": label, "number": qualification.number, "days": days_left, "date": end}
        try:
            url = settings.SITE_URL + reverse("admin:compliance_qualification_change", args=[qualification.pk])
        except NoReverseMatch:
            url = ""
        body = "\n".join([intro, "", f"{label}: {qualification.number}", url]) + "\n"
    EmailMessage(subject, body, None, recipients).send()
