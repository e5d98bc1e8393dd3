"""What a request gets when a service behind it fails: a retry where that is safe, otherwise
a clear 503 (a page, or the API's JSON error) instead of a 500.

- The database connection was dropped by the server: a GET or HEAD runs once more on a new
  connection (reads are safe to repeat); anything else, or a second failure, gets a 503.
- The database or the Celery broker cannot be reached where the request needs it (and
  nothing else can do the work): a 503 with Retry-After.

The cache never gets here: it treats Redis errors as misses (settings.CACHES).
"""

import logging

import kombu.exceptions
import redis.exceptions
from django.conf import settings
from django.conf.urls.i18n import is_language_prefix_patterns_used
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponse, JsonResponse
from django.http.request import split_domain_port, validate_host
from django.middleware import locale
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _

from .db import connection_lost
from .logcontext import REQUEST_ID_HEADER, log_context_start, request_id_clean

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30
_DATABASE_ERRORS = (OperationalError, InterfaceError)
_BROKER_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def service_unavailable(request) -> HttpResponse:
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {
                "code": "service_unavailable",
                "message": _("The service is briefly unavailable: try again in a minute."),
                "retry_after": RETRY_AFTER_SECONDS,
            },
            status=503,
        )
    else:
        # Rendered without context processors or base.html: they may need the database.
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def user_loaded(request) -> HttpResponse | None:
    """Load ``request.user`` now (its session and user rows) for a middleware that needs it
    before the view: ``None`` once loaded, else the 503 to answer. An exception there, outside
    the view, reaches no ``process_exception``. A dropped connection is retried once whatever
    the method: these are reads and nothing of the request has run yet; a second loss is a 503.

    The user's row is read by the request's first statement, so that read is the connection's
    health check (CONN_HEALTH_CHECKS would send a ``SELECT 1`` first, a round trip that only turns
    a dead connection into a new one: the retry below does the same). A request that loads no
    user from the database (anonymous) keeps Django's check for its first statement.
    """
    checked_here = not connection.in_atomic_block and not connection.health_check_done
    for attempt in (1, 2):
        try:
            if checked_here:
                connection.health_check_done = True
            member = request.user.is_authenticated  # evaluates the lazy user (session, user rows)
            if checked_here and not member:
                connection.health_check_done = False  # no user row read: the check still runs
            return None
        except _DATABASE_ERRORS as exc:
            if not connection_lost(exc):
                raise
            connection.close()
            if attempt == 2:
                log.error("database unavailable for %s %s: %s", request.method, request.path, exc)
                return service_unavailable(request)
            log.warning(
                "database connection lost loading the user of %s %s; retrying once", request.method, request.path
            )
    return None


class ServiceFaultMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, _DATABASE_ERRORS):
            lost = connection_lost(exception)
            if not lost:
                return None  # a failing statement, not an outage: a real 500, reported
            connection.close()
            if request.method in ("GET", "HEAD") and request.resolver_match is not None:
                log.warning("database connection lost during %s %s; retrying once", request.method, request.path)
                match = request.resolver_match
                try:
                    return match.func(request, *match.args, **match.kwargs)
                except _DATABASE_ERRORS as again:
                    exception = again
            log.error("database unavailable for %s %s: %s", request.method, request.path, exception)
            return service_unavailable(request)
        if isinstance(exception, _BROKER_ERRORS):
            log.error("broker unavailable for %s %s: %s", request.method, request.path, exception)
            return service_unavailable(request)
        return None


# The paths a load balancer's health probe and Prometheus ask for by a container's address.
PROBE_PATHS = frozenset({"/healthz", "/metrics"})
PROBE_PREFIX = "/health/"


class ProbeHostMiddleware:
    """The health endpoints and /metrics answer whatever Host they are asked with.

    A load balancer's health check and Prometheus' service discovery address each container by
    its IP (``Host: 10.0.3.7:8000``; Prometheus' ``dns_sd_configs`` finding every web
    container), which no ``DJANGO_ALLOWED_HOSTS`` can list ahead of time, and Django
    answers such a request 400 (DisallowedHost) before any view. For these paths only, a Host that
    is not allowed is replaced by the first allowed one: their answers build no URL from the Host
    (what the check protects: password-reset links, redirects) and are never cached, and /metrics
    still wants its token or an allowed address. Every other path keeps Django's check."""

    def __init__(self, get_response):
        self.get_response = get_response
        hosts = [h.lstrip(".") for h in settings.ALLOWED_HOSTS if h != "*"]
        self.stand_in = hosts[0] if hosts else ""

    def __call__(self, request):
        path = request.path_info
        if self.stand_in and (path in PROBE_PATHS or path.startswith(PROBE_PREFIX)):
            host = request.META.get("HTTP_HOST", "")
            domain, _port = split_domain_port(host)
            if not (domain and validate_host(domain, settings.ALLOWED_HOSTS)):
                request.META["HTTP_HOST"] = self.stand_in
        return self.get_response(request)


class RequestIdMiddleware:
    """A request id for every request: the proxy's X-Request-ID if it sent a sane one, else a new
    one. Logged on every line of the request (marketplace.logcontext), passed to the tasks it
    queues, and sent back in the response's X-Request-ID so a complaint can be traced."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_clean(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        # Set, not scoped: Django logs a request's 404s and 500s (django.request) after the
        # middleware has returned, and those lines must carry the id too. The next request on
        # this thread sets all three afresh.
        log_context_start(request_id=request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class LocaleMiddleware(locale.LocaleMiddleware):
    """Django's, without the language looked for in the path where no URL has a language
    prefix (the site uses no ``i18n_patterns``): Django reads it on the way in and out, twice
    per request, and uses it only with such patterns. A path's first segment ("p", "orders",
    "pay") is never a language, and ``get_supported_language_variant`` keeps only successes,
    so each read ran its whole search again (~1 % of a page's CPU). With prefixed patterns,
    Django's own methods run."""

    def process_request(self, request):
        if is_language_prefix_patterns_used(getattr(request, "urlconf", settings.ROOT_URLCONF))[0]:
            return super().process_request(request)
        translation.activate(translation.get_language_from_request(request, check_path=False))
        request.LANGUAGE_CODE = translation.get_language()
        return None

    def process_response(self, request, response):
        if is_language_prefix_patterns_used(getattr(request, "urlconf", settings.ROOT_URLCONF))[0]:
            return super().process_response(request, response)
        patch_vary_headers(response, ("Accept-Language",))
        response.headers.setdefault("Content-Language", translation.get_language())
        return response
