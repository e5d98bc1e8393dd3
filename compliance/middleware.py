"""Staff sessions (issue 13): a second factor before anything else, and shorter lifetimes.

A staff account's powers are not only in admin (a ticket's images, a dossier), so the rule is
on the session, not on admin's pages: while ``STAFF_MFA_REQUIRED`` holds (always in
production), a staff member's session that has not passed a second factor reaches only the
pages that set one up or ask for it (``EXEMPT_PREFIXES``: allauth under /accounts/, the language
switch, static files). Everything else answers 403 with a page that says what to do: set up an
authenticator, or confirm with the one they have. Admin's own login view is no way around it:
it is allauth's (marketplace/urls.py), and a signed-in staff member asking for it is refused
here like for any other page.

"Passed a second factor" is allauth's record of this session's authentications holding an
``mfa`` entry (a code or security key at login, or a later confirmation), or the session having
just activated an authenticator (which takes a valid code too; set by compliance.receivers).

Lifetimes: a staff session ends after ``STAFF_SESSION_MINUTES`` without a request (the session
cookie and the stored session expire then too) and ``STAFF_SESSION_MAX_HOURS`` after it began
at the latest, whatever the activity. Ending one is audited.
"""

import time

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from marketplace.middleware import user_loaded

from .models import AuditEvent
from .services import audit_denied, audit_record

SINCE_KEY = "staff_session_since"
SEEN_KEY = "staff_session_seen"
MFA_ACTIVATED_KEY = "staff_mfa_activated"  # the user id whose authenticator this session activated
SEEN_RESOLUTION = 60  # seconds: the session is written at most once a minute to note activity


def exempt_prefixes() -> tuple[str, ...]:
    return ("/accounts/", "/i18n/", settings.STATIC_URL, "/healthz", "/health/", "/metrics", "/favicon.ico")


def mfa_passed(request) -> bool:
    """Has this session passed a second factor for its user?"""
    user = request.user
    if any(record.get("method") == "mfa" for record in get_authentication_records(request, user)):
        return True
    return request.session.get(MFA_ACTIVATED_KEY) == user.pk


def _has_authenticator(user) -> bool:
    return Authenticator.objects.filter(
        user_id=user.pk, type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
    ).exists()


def staff_session_begin(request) -> None:
    """A staff member signed in (compliance.receivers, on Django's user_logged_in): start the
    session's clock and shorten its cookie."""
    now = time.time()
    request.session[SINCE_KEY] = now
    request.session[SEEN_KEY] = now
    # The cookie and the stored session last this long from their last write (see _expired).
    request.session.set_expiry(settings.STAFF_SESSION_MINUTES * 60)


class StaffSessionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (fault := user_loaded(request)) is not None:  # the first statement of most requests
            return fault
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_staff:
            ended = self._expired(request)
            if ended:
                return ended
            exempt = request.path.startswith(exempt_prefixes())
            if settings.STAFF_MFA_REQUIRED and not exempt and not mfa_passed(request):
                return self._refuse(request)
        response = self.get_response(request)
        user = getattr(request, "user", None)  # a login in this request changed it
        if user is not None and user.is_authenticated and user.is_staff:
            if SINCE_KEY not in request.session:  # made staff while signed in
                staff_session_begin(request)
            elif request.session.get("_session_expiry") != settings.STAFF_SESSION_MINUTES * 60:
                # allauth's login form sets its own expiry ("remember me") after signing in.
                request.session.set_expiry(settings.STAFF_SESSION_MINUTES * 60)
        return response

    def _expired(self, request):
        session = request.session
        since, seen = session.get(SINCE_KEY), session.get(SEEN_KEY)
        if since is None or seen is None:
            return None  # begun on the way out (a login, or a user made staff mid-session)
        now = time.time()
        if now - since > settings.STAFF_SESSION_MAX_HOURS * 3600:
            reason = _("Your staff session has ended: it may last %(hours)s hours. Please sign in again.") % {
                "hours": settings.STAFF_SESSION_MAX_HOURS
            }
            detail = f"longer than {settings.STAFF_SESSION_MAX_HOURS} h"
        elif now - seen > settings.STAFF_SESSION_MINUTES * 60:
            reason = _(
                "Your staff session has ended after %(minutes)s minutes without activity. Please sign in again."
            ) % {"minutes": settings.STAFF_SESSION_MINUTES}
            detail = f"idle over {settings.STAFF_SESSION_MINUTES} min"
        else:
            if now - seen > SEEN_RESOLUTION:
                session[SEEN_KEY] = now  # written, so the cookie and the stored session live on
            return None
        audit_record(
            action="staff_session_end",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=request.user,
            target=request.user.email,
            request=request,
            detail=detail,
        )
        logout(request)
        messages.warning(request, reason)
        return redirect_to_login(request.get_full_path())

    @staticmethod
    def _refuse(request):
        user = request.user
        has_authenticator = _has_authenticator(user)
        audit_denied(
            action="staff_mfa_required",
            request=request,
            target=user.email,
            detail="not confirmed this session" if has_authenticator else "no authenticator set up",
        )
        response = render(
            request,
            "account/staff_mfa_required.html",
            {"has_authenticator": has_authenticator, "next": request.get_full_path()},
            status=403,
        )
        add_never_cache_headers(response)
        return response
