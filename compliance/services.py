"""Compliance's writes: the audit log (one call records a security-relevant event, in the audit
table and the security log) and credit events (recorded where they happen)."""

import logging

from marketplace.http import client_ip

from .models import AuditEvent, CreditEvent
from .selectors import credit_email_normalise

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


def credit_event_record(*, user=None, email: str = "", kind: str, reference: str = "", detail: str = "") -> CreditEvent:
    """An event of a member (``user``) or, with no user, of the guest known by ``email``."""
    email = "" if user is not None else credit_email_normalise(email)
    if user is None and not email:
        raise ValueError("a credit event belongs to a user or to a guest email")
    return CreditEvent.objects.create(user=user, email=email, kind=kind, reference=reference[:40], detail=detail[:300])


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
