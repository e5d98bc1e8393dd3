"""Publishing agreement versions and recording their acceptance.

电子商务法 第三十四条: 电子商务平台经营者修改平台服务协议和交易规则，应当在其首页显著位置公开征求意见……
修改内容应当至少在实行前七日予以公示。 A new version is therefore published (shown on /legal/ and in
the site banner) at least seven days before it takes effect; ``agreement_version_publish``
refuses an earlier date.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.errors import Conflict, ServiceError
from marketplace.http import client_ip
from marketplace.text import email_normalise

from . import selectors
from .models import AgreementAcceptance, AgreementVersion

NOTICE_DAYS = 7  # 电子商务法 第三十四条: 至少在实行前七日予以公示


class AgreementError(ServiceError):
    code = "agreement_invalid"


def agreement_version_create(
    *, kind: str, version: str, title: str, body: str, effective_at: datetime, by=None
) -> AgreementVersion:
    """A draft version (not shown anywhere until published)."""
    if AgreementVersion.objects.filter(kind=kind, version=version).exists():
        raise AgreementError(_("This document already has a version %(version)s.") % {"version": version})
    return AgreementVersion.objects.create(
        kind=kind, version=version.strip(), title=title.strip(), body=body, effective_at=effective_at, created_by=by
    )


def agreement_version_publish(*, version: AgreementVersion, by=None, now: datetime | None = None) -> AgreementVersion:
    """Publish a draft: from now on it is shown, and it can no longer change.

    电子商务法 第三十四条: the text is public at least seven days before it takes effect, so
    ``effective_at`` must be at least ``now + 7 days``. The first version of a kind replaces no
    earlier terms (there is nothing to change from, so nothing the notice period protects), and
    may take effect at once.
    """
    now = now or timezone.now()
    with transaction.atomic():
        row = AgreementVersion.objects.select_for_update().get(pk=version.pk)
        if row.published_at is not None:
            raise Conflict(_("This version is already published; publish a new version to change it."))
        first = not AgreementVersion.objects.filter(kind=row.kind, published_at__isnull=False).exists()
        if not first and row.effective_at < now + timedelta(days=NOTICE_DAYS):
            earliest = timezone.localtime(now + timedelta(days=NOTICE_DAYS))
            raise AgreementError(
                _(
                    "A new version must be published at least %(days)d days before it takes effect "
                    "(E-Commerce Law, Art. 34): choose %(date)s or later."
                )
                % {"days": NOTICE_DAYS, "date": earliest.strftime("%Y-%m-%d %H:%M")},
                code="agreement_notice_too_short",
            )
        if first and row.effective_at < now:
            row.effective_at = now  # never in force before it was public
        row.published_at = now
        row.save(update_fields=["published_at", "effective_at"])
    selectors.published_forget()
    return row


def _user_agent(request) -> str:
    return (request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:300]


def agreements_accept(
    *, versions: Iterable[selectors.Published | AgreementVersion], user=None, email: str = "", order=None, request=None
) -> list[AgreementAcceptance]:
    """Record that ``user`` (or the guest ``email`` for ``order``) accepted ``versions``, with the
    request's IP and user agent. A repeat records nothing new."""
    if (user is None) == (not email):
        raise ValueError("an acceptance belongs to a user or to a guest email")
    ip = client_ip(request) if request is not None else None
    agent = _user_agent(request)
    made = []
    for version in versions:
        lookup = {"version_id": version.id}
        if user is not None:
            lookup["user"] = user
        elif order is not None:
            lookup["order"] = order
        if (user is not None or order is not None) and AgreementAcceptance.objects.filter(**lookup).exists():
            continue
        try:
            with transaction.atomic():
                made.append(
                    AgreementAcceptance.objects.create(
                        version_id=version.id,
                        user=user,
                        email="" if user is not None else email_normalise(email),
                        order=order,
                        ip=ip,
                        user_agent=agent,
                    )
                )
        except IntegrityError:  # accepted at the same moment in another tab
            continue
    return made
