"""Compliance's reads: credit events and audited refusals counted by the rules that read them,
and the qualifications every page shows."""

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypedDict, cast
from urllib.parse import urlsplit

from django.db.models import Q
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from marketplace.localcache import local_forget, local_get_or_set
from marketplace.text import email_normalise

from .models import AuditEvent, CreditEvent, Qualification


class CreditOwnerKeys(TypedDict):
    """One owner as the keywords of ``credit_event_record`` and the counts: a member (``user``,
    email empty) or a guest (``user`` None, their address)."""

    user: Any
    email: str


def credit_owner(*, user=None, email: str = "") -> Q:
    """Whose events: a member (``user``), else the guest known by ``email`` (normalised). A
    member's events and a guest's under the same address are different owners."""
    if user is not None:
        return Q(user=user)
    email = email_normalise(email)
    if not email:
        raise ValueError("a credit event belongs to a user or to a guest email")
    return Q(user__isnull=True, email=email)


def credit_events_count(*, user=None, email: str = "", kind: str, days: int) -> int:
    """How many ``kind`` events ``user`` (or the guest ``email``) had in the last ``days`` days."""
    return CreditEvent.objects.filter(
        credit_owner(user=user, email=email), kind=kind, at__gte=timezone.now() - timedelta(days=days)
    ).count()


def credit_summary(*, user=None, email: str = "") -> list[tuple[str, int]]:
    """The user's (or the guest ``email``'s) credit events by kind (label, count), all time, in one query.

    A dispute lost before staff and then won at arbitration (same reference) is not counted as
    lost: the third party found for the user."""
    Kind = CreditEvent.Kind
    counts: dict[str, int] = {}
    lost: list[str] = []
    overturned: set[str] = set()
    for kind, reference in CreditEvent.objects.filter(credit_owner(user=user, email=email)).values_list(
        "kind", "reference"
    ):
        if kind == Kind.DISPUTE_LOST:
            lost.append(reference)
            continue
        counts[kind] = counts.get(kind, 0) + 1
        if kind == Kind.ARBITRATION_WON and reference:
            overturned.add(reference)
    counts[Kind.DISPUTE_LOST] = sum(1 for reference in lost if not reference or reference not in overturned)
    return [(str(label), counts[kind]) for kind, label in Kind.choices if counts.get(kind)]


def audit_denied_count(*, action: str, target: str, since) -> int:
    """Refusals of ``action`` on ``target`` audited since ``since`` (e.g. wrong passwords)."""
    return AuditEvent.objects.filter(
        action=action, target=str(target)[:120], outcome=AuditEvent.Outcome.DENIED, at__gte=since
    ).count()


# --- qualifications ---------------------------------------------------------------------------

QUALIFICATIONS_CACHE_KEY = "compliance:qualifications:v1"
QUALIFICATIONS_CACHE_SECONDS = 3600  # a save forgets it at once; this only bounds a missed forget
MIIT_FILING_URL = "https://beian.miit.gov.cn/"
MPS_FILING_URL = "https://beian.mps.gov.cn/#/query/webSearch?code={code}"


@dataclass(frozen=True)
class ShownQualification:
    """A qualification as the pages show it (cached: dates, not "expired", which is read at render)."""

    pk: int
    kind: str
    number: str
    company_name: str
    scope: str
    valid_from: date | None
    valid_until: date | None
    image_version: int | None  # the image's timestamp, for its URL; None: no image

    @property
    def label(self) -> str:
        return str(Qualification.Kind(self.kind).label)

    @property
    def is_expired(self) -> bool:
        """Past its last valid day (Beijing date): shown as expired, never silently dropped."""
        return self.valid_until is not None and self.valid_until < timezone.localdate()

    @property
    def link(self) -> str:
        """Where the public checks it: the MIIT filing site for the ICP number, the MPS site for
        the public-security number (with its record code)."""
        if self.kind == Qualification.Kind.ICP_FILING:
            return MIIT_FILING_URL
        if self.kind == Qualification.Kind.PUBLIC_SECURITY_FILING:
            match = _PUBLIC_SECURITY_CODE.search(self.number)
            return MPS_FILING_URL.format(code=match.group(0)) if match else ""
        return ""

    @property
    def link_host(self) -> str:
        return urlsplit(self.link).hostname or ""

    @property
    def is_business_licence(self) -> bool:
        return self.kind == Qualification.Kind.BUSINESS_LICENCE


_PUBLIC_SECURITY_CODE = re.compile(r"\d{14}")
_KIND_ORDER = {kind: index for index, kind in enumerate(Qualification.Kind.values)}


def _qualifications_load() -> list[ShownQualification]:
    rows = Qualification.objects.filter(is_shown=True).values_list(
        "pk", "kind", "number", "company_name", "scope", "valid_from", "valid_until", "image_updated_at"
    )
    shown = [
        ShownQualification(
            pk=pk,
            kind=kind,
            number=number,
            company_name=company_name,
            scope=scope,
            valid_from=valid_from,
            valid_until=valid_until,
            image_version=int(stamp.timestamp()) if stamp else None,
        )
        for pk, kind, number, company_name, scope, valid_from, valid_until, stamp in rows
    ]
    shown.sort(key=lambda q: (_KIND_ORDER.get(q.kind, 99), q.pk))
    return shown


def qualifications_shown() -> list[ShownQualification]:
    """The qualifications the site shows, in the order of their kinds: one query per hour at most
    (``qualification_save`` forgets the cached list when its change commits)."""
    return cast(
        list[ShownQualification],
        local_get_or_set(QUALIFICATIONS_CACHE_KEY, _qualifications_load, QUALIFICATIONS_CACHE_SECONDS),
    )


def qualifications_forget() -> None:
    """At once in this process and the shared cache; other processes' per-process copies end
    within marketplace.localcache.LOCAL_SECONDS (10 s: 第十五条's 及时更新)."""
    local_forget(QUALIFICATIONS_CACHE_KEY)


def qualifications_context(request) -> dict:
    """Context processor: ``QUALIFICATIONS``, read (from the cache) only by a page that shows it.

    电子商务法 第十五条: 电子商务经营者应当在其首页显著位置，持续公示营业执照信息、与其经营业务有关的
    行政许可信息……信息发生变更的，应当及时更新公示信息. Every page's footer (templates/base.html and
    templates/storefront/base.html, through compliance/_footer.html) shows these, and a change
    shows at once (the save forgets the cache)."""
    return {"QUALIFICATIONS": SimpleLazyObject(qualifications_shown)}


def qualification_image(*, pk: int, staff_preview: bool = False) -> tuple[bytes, int] | None:
    """A qualification's image and its version, only while the record exists, has an image and
    is shown (``staff_preview``: shown or not, for staff who may view it in admin)."""
    rows = Qualification.objects.filter(pk=pk, image_updated_at__isnull=False)
    if not staff_preview:
        rows = rows.filter(is_shown=True)
    row = rows.values_list("image", "image_updated_at").first()
    if row is None or not row[0] or row[1] is None:
        return None
    return bytes(row[0]), int(row[1].timestamp())
