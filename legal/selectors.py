"""Reads of the agreements: what is in force, what is coming, who must accept what.

Every page reads the published versions (the footer's links, the banner of an upcoming
version, the accept middleware), so they are read once and cached until the next publish
(``legal.services`` forgets the cache; other processes' copies end within
marketplace.localcache.LOCAL_SECONDS). With none published nothing is required of anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from marketplace.localcache import local_forget, local_get_or_set

from .models import AgreementAcceptance, AgreementDocument, AgreementVersion

CACHE_KEY = "legal:published:v1"
CACHE_SECONDS = 300

# What a member accepts (sign-up, and again at each new version): the user agreement and the
# privacy policy; an agent, the agent agreement too. A guest accepts at checkout what governs a
# purchase: the user agreement, the refund policy and the privacy policy.
MEMBER_KINDS = (AgreementDocument.USER, AgreementDocument.PRIVACY)
AGENT_KINDS = (AgreementDocument.AGENT,)
GUEST_KINDS = (AgreementDocument.USER, AgreementDocument.REFUND, AgreementDocument.PRIVACY)


@dataclass(frozen=True)
class Published:
    """A published version, as the pages need it (cached: no model instance)."""

    id: int
    kind: str
    version: str
    title: str
    effective_at: datetime
    published_at: datetime

    @property
    def label(self) -> str:
        return str(AgreementDocument(self.kind).label)

    @property
    def url(self) -> str:
        from django.urls import reverse

        return reverse("legal:version", args=[self.kind, self.version])


def published_versions() -> list[Published]:
    """Every published version, newest effective first (cached: shared, and per process for
    a few seconds, marketplace.localcache; a publication forgets it)."""

    def load() -> list[Published]:
        return [
            Published(id=pk, kind=kind, version=label, title=title, effective_at=effective, published_at=published)
            for pk, kind, label, title, effective, published in AgreementVersion.objects.filter(
                published_at__isnull=False
            )
            .order_by("-effective_at", "-published_at", "-id")
            .values_list("id", "kind", "version", "title", "effective_at", "published_at")
            if published is not None
        ]

    return cast(list[Published], local_get_or_set(CACHE_KEY, load, CACHE_SECONDS))


def published_forget() -> None:
    local_forget(CACHE_KEY)


def in_force(*, now: datetime | None = None) -> dict[str, Published]:
    """The version in force of each kind that has one: the latest published that took effect."""
    now = now or timezone.now()
    found: dict[str, Published] = {}
    for row in published_versions():
        if row.effective_at <= now and row.kind not in found:
            found[row.kind] = row
    return found


def upcoming(*, now: datetime | None = None) -> dict[str, Published]:
    """The next version of each kind: published, not yet in effect (the soonest)."""
    now = now or timezone.now()
    found: dict[str, Published] = {}
    for row in reversed(published_versions()):  # soonest effective first
        if row.effective_at > now and row.kind not in found:
            found[row.kind] = row
    return found


def kind_versions(*, kind: str) -> list[Published]:
    return [row for row in published_versions() if row.kind == kind]


def version_get(*, kind: str, version: str) -> AgreementVersion | None:
    return AgreementVersion.objects.filter(kind=kind, version=version, published_at__isnull=False).first()


def required_for(*, kinds, now: datetime | None = None) -> list[Published]:
    """The versions in force of ``kinds`` (in that order): what a person must accept."""
    force = in_force(now=now)
    return [force[kind] for kind in kinds if kind in force]


def kinds_for_user(user) -> tuple[str, ...]:
    kinds: tuple[str, ...] = MEMBER_KINDS
    # User.is_agent follows the agent profile (agents.Agent.user): no import of agents.
    if getattr(user, "is_agent", False):
        kinds += AGENT_KINDS
    return kinds


def user_pending(*, user, now: datetime | None = None) -> list[Published]:
    """The versions in force ``user`` has not accepted yet (empty: nothing is asked)."""
    required = required_for(kinds=MEMBER_KINDS + AGENT_KINDS, now=now)
    if not required:
        return []
    if any(v.kind in AGENT_KINDS for v in required) and AgreementDocument.AGENT not in kinds_for_user(user):
        required = [v for v in required if v.kind not in AGENT_KINDS]
    accepted = set(
        AgreementAcceptance.objects.filter(user=user, version_id__in=[v.id for v in required]).values_list(
            "version_id", flat=True
        )
    )
    return [v for v in required if v.id not in accepted]


def legal_context(request) -> dict:
    """Context processor: ``LEGAL_IN_FORCE`` (the footer's links) and ``LEGAL_UPCOMING`` (the
    banner of a published version not yet in effect), read only by a page that shows them."""
    return {
        "LEGAL_IN_FORCE": SimpleLazyObject(lambda: sorted(in_force().values(), key=_kind_order)),
        "LEGAL_UPCOMING": SimpleLazyObject(lambda: sorted(upcoming().values(), key=_kind_order)),
    }


def _kind_order(row: Published) -> int:
    return list(AgreementDocument.values).index(row.kind)
