"""The audit log of staff sign-ins and of two-factor changes (issue 13).

These are observations, not business flow: allauth and Django announce sign-ins, failed
passwords and authenticator changes only through signals, and this module writes each one down
(compliance.services.audit_record). Connected in ComplianceConfig.ready().

- ``staff_login``: a staff member signed in (allowed; the detail names the factors used), or a
  wrong password was given for a staff account (denied; the detail says so). Failures for buyers
  are not audited here: the login locks count them (accounts.services).
- ``staff_mfa``: a wrong second-factor code for a staff account (denied).
- ``mfa_added`` / ``mfa_removed`` / ``mfa_reset``: an authenticator of anyone's account was
  added, removed, or its recovery codes regenerated, by its owner (staff resets in admin are
  audited by compliance.admin as ``mfa_reset_by_staff``).
"""

from allauth.account.authentication import get_authentication_records
from allauth.account.signals import user_logged_in
from allauth.mfa import signals as mfa_signals
from django.contrib.auth.signals import user_logged_in as django_user_logged_in
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from accounts.selectors import user_by_login

from .middleware import MFA_ACTIVATED_KEY, staff_session_begin
from .models import AuditEvent
from .services import audit_denied, audit_record


def _target(user) -> str:
    return getattr(user, "email", "") or str(user)


@receiver(user_logged_in, dispatch_uid="audit_staff_login")
def staff_logged_in(sender, request, user, **kwargs) -> None:
    if not user.is_staff:
        return
    methods = [r.get("method", "") for r in get_authentication_records(request, user)]
    factors = sorted({m for m in methods if m})
    audit_record(
        action="staff_login",
        outcome=AuditEvent.Outcome.ALLOWED,
        actor=user,
        target=_target(user),
        request=request,
        detail="factors: " + (", ".join(factors) or "unknown"),
    )


@receiver(django_user_logged_in, dispatch_uid="staff_session_begin")
def staff_session_clock(sender, request, user, **kwargs) -> None:
    """Every way of signing in (allauth's forms, a password reset, admin's force_login in tests)
    starts a staff session's clock (compliance.middleware). Not an audit: allauth's signal is."""
    if user.is_staff and request is not None and hasattr(request, "session"):
        staff_session_begin(request)


@receiver(user_login_failed, dispatch_uid="audit_staff_login_failed")
def staff_login_failed(sender, credentials, request=None, **kwargs) -> None:
    login = str(credentials.get("email") or credentials.get("username") or "")
    user = user_by_login(login=login)
    if user is None or not user.is_staff:
        return
    audit_denied(action="staff_login", request=request, actor=user, target=_target(user), detail="wrong password")


@receiver(mfa_signals.authentication_failed, dispatch_uid="audit_staff_mfa_failed")
def staff_mfa_failed(sender, request, user, authenticator=None, **kwargs) -> None:
    if not user.is_staff:
        return
    kind = getattr(authenticator, "type", "") or "code"
    audit_denied(action="staff_mfa", request=request, actor=user, target=_target(user), detail=f"wrong {kind}")


def _mfa_change(action: str, request, user, authenticator) -> None:
    audit_record(
        action=action,
        outcome=AuditEvent.Outcome.ALLOWED,
        actor=getattr(request, "user", None) or user,
        target=_target(user),
        request=request,
        detail=str(authenticator.type) + (f" #{authenticator.pk}" if authenticator.pk else ""),
    )


@receiver(mfa_signals.authenticator_added, dispatch_uid="audit_mfa_added")
def mfa_added(sender, request, user, authenticator, **kwargs) -> None:
    _mfa_change("mfa_added", request, user, authenticator)
    if authenticator.type != authenticator.Type.RECOVERY_CODES:
        # Activating took a valid code from the new authenticator, in a signed-in session: it
        # counts as this session's second factor (compliance.middleware.mfa_passed).
        request.session[MFA_ACTIVATED_KEY] = user.pk


@receiver(mfa_signals.authenticator_removed, dispatch_uid="audit_mfa_removed")
def mfa_removed(sender, request, user, authenticator, **kwargs) -> None:
    _mfa_change("mfa_removed", request, user, authenticator)


@receiver(mfa_signals.authenticator_reset, dispatch_uid="audit_mfa_reset")
def mfa_reset(sender, request, user, authenticator, **kwargs) -> None:
    _mfa_change("mfa_reset", request, user, authenticator)
