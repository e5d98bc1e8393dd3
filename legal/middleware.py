"""A member who has not accepted the version in force of an agreement they are bound by is sent
to the accept page (once a new version takes effect: 电子商务法 第三十四条), then back.

Only HTML page views (GET, not htmx fragments) are stopped; the API (agents sign their requests
and are bound by the agent agreement they accepted), the admin, static files, the legal pages
themselves, logging out and the payment callbacks are never. With no version published nothing
is required (and nothing is read: the published versions are cached).
"""

from urllib.parse import urlencode

from django.http import HttpResponseRedirect
from django.urls import reverse

from . import selectors

SESSION_KEY = "legal_accepted"  # the ids of the versions in force this session has found accepted
EXEMPT_PREFIXES = (
    "/api/",
    "/admin/",
    "/static/",
    "/media/",
    "/legal/",
    "/accounts/logout/",
    "/accounts/2fa/",
    "/payments/",
    "/i18n/",
    "/healthz",
    "/health/",
    "/metrics",
    "/favicon.ico",
    "/risk/",
)


class AgreementAcceptMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        redirect = self._redirect(request)
        return redirect if redirect is not None else self.get_response(request)

    def _redirect(self, request):
        if request.method != "GET" or request.headers.get("HX-Request"):
            return None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.path.startswith(EXEMPT_PREFIXES) or "html" not in request.headers.get("Accept", "text/html"):
            return None
        required = selectors.required_for(kinds=selectors.MEMBER_KINDS + selectors.AGENT_KINDS)
        if not required:
            return None
        ids = sorted(v.id for v in required)
        if any(v.kind in selectors.AGENT_KINDS for v in required):
            # Becoming an agent binds to the agent agreement: the session's answer no longer holds.
            # (The reverse one-to-one is cached on the user: the nav reads it on every page anyway.)
            ids.append(int(selectors.AgreementDocument.AGENT in selectors.kinds_for_user(user)))
        if request.session.get(SESSION_KEY) == ids:
            return None
        if selectors.user_pending(user=user):
            query = urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(f"{reverse('legal:accept')}?{query}")
        request.session[SESSION_KEY] = ids
        return None
