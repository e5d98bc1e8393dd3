"""One error type for every refusal a service raises, and the one place that maps it.

A service refuses by raising a ``ServiceError`` (or an app's subclass of it, such as
``TicketError``). The error carries:

- ``code``: stable, snake_case, for machines (the API's JSON ``code``, tests, logs). A class
  declares its default code; an instance may name a more precise one (``code=...``).
- ``message``: what the person who asked reads. Translate it at raise time with ``gettext``
  (the request's language is active then), as the services already do. ``str(error)`` is the
  message, so code that shows ``str(exc)`` keeps working.
- ``status``: a hint for the HTTP mapping (400 unless the class says otherwise).

Which one to raise:

- ``NotFound`` (404): the thing does not exist, *or the caller may not know it exists* (someone
  else's order or ticket). Services raise this, never ``django.http.Http404``.
- ``Forbidden`` (403): the caller is known but lacks the right (staff without a permission).
- ``Conflict`` (409): the request was fine but the state says no (sold out, not enough balance,
  an illegal status move because someone else acted first).
- ``ServiceError`` or the app's subclass (400): anything else the person can fix or must accept
  (a missing reason, a window that closed, an amount out of range).

Programming errors (a ledger entry that does not balance, a call outside a transaction) are
not refusals: they stay plain exceptions (``ValueError``, ``RuntimeError``) and end as a 500.

Where it is mapped (one place per kind of caller):

- pages: ``ServiceErrorMiddleware`` (404 / 403 pages, otherwise a message and a redirect back
  for a POST, or a page with the message and the status for a GET);
- admin actions and admin views: ``admin_action_run`` (a message on the page);
- the API: ``api.views.api_exception_handler`` (its JSON error with ``code`` and ``status``).

``NotFound`` is also a ``Http404`` and ``Forbidden`` a Django ``PermissionDenied``, so code
that already handles Django's own (``get_object_or_404`` callers, DRF, tests) sees them as
before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refusal with a stable ``code``, a readable ``message`` and an HTTP ``status`` hint."""

    code: str = "invalid"
    status: int = 400

    def __init__(self, message: Any = None, *, code: str | None = None, status: int | None = None, **extra: Any):
        if message is None:
            message = self.default_message()
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra  # more fields for the API's JSON body

    @classmethod
    def default_message(cls) -> str:
        return _("This request cannot be carried out.")


class NotFound(ServiceError, Http404):
    """It does not exist, or the caller may not learn that it does (answered 404)."""

    code = "not_found"
    status = 404

    @classmethod
    def default_message(cls) -> str:
        return _("Not found.")


class Forbidden(ServiceError, DjangoPermissionDenied):
    """The caller may not do this (answered 403)."""

    code = "forbidden"
    status = 403

    @classmethod
    def default_message(cls) -> str:
        return _("You are not allowed to do this.")


class Conflict(ServiceError):
    """The state of things refuses it (answered 409): sold out, no balance, already decided."""

    code = "conflict"
    status = 409


# Refusals a catch-all ``except ServiceError`` re-raises: Django answers them 404 and 403.
PASS_THROUGH = (NotFound, Forbidden)


# --- pages ------------------------------------------------------------------------------------


def _back(request: HttpRequest) -> str:
    """Where a refused POST goes back to: the page it came from (same site only), else itself."""
    referer = request.META.get("HTTP_REFERER", "")
    if referer and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return referer
    return request.get_full_path()


def service_error_response(request: HttpRequest, error: ServiceError) -> HttpResponse | None:
    """The page answer to a refusal nobody caught: ``None`` for 404 and 403 (Django's own pages
    answer those, since NotFound and Forbidden are Http404 and PermissionDenied), a message and
    a redirect back for a POST, the refusal page with the error's status for a GET."""
    if isinstance(error, (Http404, DjangoPermissionDenied)):
        return None
    log.info("refused %s %s: %s (%s)", request.method, request.path, error.code, error)
    if request.method == "POST":
        messages.error(request, str(error))
        return HttpResponseRedirect(_back(request))
    status = error.status if 400 <= error.status < 500 else 409
    return render(request, "refused.html", {"error": error}, status=status)


class ServiceErrorMiddleware:
    """Turns a ``ServiceError`` a page view let through into its answer (see above). The API
    never gets here: DRF hands its views' errors to ``api_exception_handler`` first."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, ServiceError):
            return service_error_response(request, exception)
        return None


# --- admin ------------------------------------------------------------------------------------


def admin_action_run(
    modeladmin, request: HttpRequest, fn: Callable[[], Any], *, label: str = "", done: Any = None
) -> tuple[bool, Any]:
    """Run one service call for an admin action or view: a refusal becomes an error message on
    the page (prefixed by ``label``, e.g. the ticket's number), success shows ``done`` (a text,
    or a function of the result). Returns ``(ok, result)``. NotFound and Forbidden propagate to
    Django's 404 and 403 pages (as Http404 and PermissionDenied did); anything else is a 500."""
    try:
        result = fn()
    except PASS_THROUGH:
        raise
    except ServiceError as exc:
        modeladmin.message_user(request, f"{label}: {exc}" if label else str(exc), messages.ERROR)
        return False, None
    if done is not None:
        text = done(result) if callable(done) else done
        modeladmin.message_user(request, text, messages.SUCCESS)
    return True, result
