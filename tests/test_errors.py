"""One error type (marketplace/errors.py): every refusal is a ServiceError with a stable code,
and one mapping answers it for pages, admin actions and the API."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.messages import ERROR, get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import RequestFactory
from django.urls import include, path
from django.utils import translation
from rest_framework.test import APIRequestFactory

from api.views import api_exception_handler
from marketplace.errors import Conflict, Forbidden, NotFound, ServiceError, admin_action_run

ROOT = Path(__file__).resolve().parent.parent
APPS = [
    "marketplace",
    "accounts",
    "ledger",
    "compliance",
    "agents",
    "catalog",
    "orders",
    "payments",
    "aftersales",
    "api",
]

# Exception classes that are not a service's refusal, and why. Anything else must be a ServiceError.
ALLOWED = {
    "ledger.services.UnbalancedEntry": "a programming error (lines that do not sum to zero): stays a ValueError",
    "payments.services.payments._Reject": "private control flow inside notification_receive, never leaves the module",
    "orders.views.storefront._Closed": "private control flow of a view: it renders the closed-shop page itself",
    "payments.gateways.base.NotificationRejected": "a gateway's unverifiable notification: logged and answered "
    "in the gateway's own protocol, never shown to a person",
    "api.views.PayloadTooLarge": "a DRF APIException of the API's transport layer (api_exception_handler)",
    "api.views.InvalidCharacters": "a DRF APIException of the API's transport layer (api_exception_handler)",
    "api.views.Busy": "a DRF Throttled of the API's transport layer: admission control's 429 (api_exception_handler)",
    "api.auth.Unauthenticated": "DRF's authentication failure (WWW-Authenticate), answered by DRF",
    "api.auth.Forbidden": "DRF's permission refusal of a request, answered by DRF",
}


def _modules():
    for app in APPS:
        package = importlib.import_module(app)
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{app}."):
            if ".migrations" in info.name or ".tests" in info.name:
                continue
            yield importlib.import_module(info.name)


# What Django makes for every model (Order.DoesNotExist): not ours to derive.
DJANGO_MADE = {"DoesNotExist", "MultipleObjectsReturned"}


def _exception_classes():
    """Every exception class defined in the apps (module level, or nested in a class)."""
    seen = {}
    for module in _modules():
        for _name, obj in vars(module).items():
            candidates = [obj] + ([v for v in vars(obj).values() if inspect.isclass(v)] if inspect.isclass(obj) else [])
            for cls in candidates:
                if (
                    inspect.isclass(cls)
                    and issubclass(cls, BaseException)
                    and cls.__module__ == module.__name__
                    and cls.__module__ != "marketplace.errors"
                    and cls.__name__ not in DJANGO_MADE
                ):
                    seen[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return seen


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_exception_class_is_a_service_error_or_allowed_with_a_reason():
    found = _exception_classes()
    assert "aftersales.services.tickets.TicketError" in found  # the walk sees the apps
    stray = sorted(name for name, cls in found.items() if not issubclass(cls, ServiceError) and name not in ALLOWED)
    assert stray == [], f"derive these from marketplace.errors.ServiceError, or allow-list them with a reason: {stray}"
    stale = sorted(set(ALLOWED) - set(found))
    assert stale == [], f"allow-listed but gone: {stale}"


def test_every_service_error_has_a_code_and_declared_codes_are_unique():
    list(_modules())  # import every app module, so every subclass is defined
    classes = [c for c in _subclasses(ServiceError) if c.__module__.split(".")[0] in APPS]
    assert len(classes) >= 17
    declared = {}
    for cls in classes:
        assert isinstance(cls.code, str) and cls.code, cls
        assert cls.code == cls.code.lower() and " " not in cls.code, cls
        assert 400 <= cls.status < 600, cls
        if "code" in vars(cls):
            assert cls.code not in declared, f"{cls} reuses {declared.get(cls.code)}'s code {cls.code}"
            declared[cls.code] = cls


def test_the_kinds():
    assert isinstance(NotFound(), Http404) and NotFound().status == 404 and NotFound().code == "not_found"
    assert isinstance(Forbidden(), PermissionDenied) and Forbidden().status == 403
    assert Conflict("sold out").status == 409 and str(Conflict("sold out")) == "sold out"
    error = ServiceError("nope", code="too_late", status=410, extra_field=1)
    assert (error.code, error.status, error.message, error.extra, str(error)) == (
        "too_late",
        410,
        "nope",
        {"extra_field": 1},
        "nope",
    )
    assert ServiceError.code == "invalid"  # an instance's code does not change its class's
    with translation.override("en"):
        assert str(NotFound()) == "Not found."


# --- pages: the middleware, through the whole stack ---------------------------------------------


def _raise(error):
    def view(request):
        raise error

    return view


urlpatterns = [
    path("boom/not-found/", _raise(NotFound())),
    path("boom/forbidden/", _raise(Forbidden())),
    path("boom/conflict/", _raise(Conflict("Someone else decided first."))),
    path("boom/refused/", _raise(ServiceError("Give a reason."))),
    path("", include("marketplace.urls")),
]


@pytest.fixture
def _english(settings):
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.mark.urls("tests.test_errors")
@pytest.mark.django_db
@pytest.mark.usefixtures("_english")
def test_page_mapping(client):
    assert client.get("/boom/not-found/").status_code == 404
    assert client.post("/boom/not-found/").status_code == 404
    assert client.get("/boom/forbidden/").status_code == 403
    # A GET: a page with the message and the error's status.
    response = client.get("/boom/conflict/")
    assert response.status_code == 409
    assert b"Someone else decided first." in response.content and b'data-code="conflict"' in response.content
    assert client.get("/boom/refused/").status_code == 400
    # A POST: the message on the page it came from (same site only), else on itself.
    response = client.post("/boom/refused/", HTTP_REFERER="http://testserver/orders/")
    assert (response.status_code, response["Location"]) == (302, "http://testserver/orders/")
    assert [(m.level, m.message) for m in get_messages(response.wsgi_request)] == [(ERROR, "Give a reason.")]
    response = client.post("/boom/conflict/?x=1", HTTP_REFERER="https://evil.example/")
    assert (response.status_code, response["Location"]) == (302, "/boom/conflict/?x=1")


# --- admin ---------------------------------------------------------------------------------------


def _admin_request():
    request = RequestFactory().post("/admin/")
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def test_admin_action_run_shows_a_refusal_and_a_success():
    model_admin = admin.ModelAdmin(admin.models.LogEntry, admin.site)
    request = _admin_request()

    def refuse():
        raise Conflict("Already decided.")

    assert admin_action_run(model_admin, request, refuse, label="T-1", done="never") == (False, None)
    assert admin_action_run(model_admin, request, lambda: 7, done=lambda n: f"{n} done") == (True, 7)
    assert [(m.level, m.message) for m in request._messages] == [(ERROR, "T-1: Already decided."), (25, "7 done")]

    def crash():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):  # not a refusal: a 500, reported
        admin_action_run(model_admin, request, crash)

    def hidden():
        raise NotFound()

    with pytest.raises(Http404):  # Django's 404 page, as before
        admin_action_run(model_admin, request, hidden)


# --- API -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (NotFound("No such order."), 404, {"code": "not_found", "message": "No such order."}),
        (Forbidden("No."), 403, {"code": "forbidden", "message": "No."}),
        (Conflict("Sold out.", code="out_of_stock"), 409, {"code": "out_of_stock", "message": "Sold out."}),
        (ServiceError("Bad.", order_number="X1"), 400, {"code": "invalid", "message": "Bad.", "order_number": "X1"}),
    ],
)
def test_api_handler_answers_a_service_error_with_its_json(error, status, body):
    request = APIRequestFactory().get("/api/v1/orders/")
    response = api_exception_handler(error, {"request": request, "view": None})
    assert (response.status_code, response.data) == (status, body)


def test_services_do_not_raise_http404():
    """Views may raise Http404 themselves; services and selectors raise NotFound."""
    offenders = []
    for file in ROOT.glob("*/**/*.py"):
        rel = file.relative_to(ROOT)
        if rel.parts[0] in {"tests", ".venv", "bench"} or "migrations" in rel.parts:
            continue
        in_views_or_admin = {"views", "admin"} & set(rel.parts[:-1])  # the rooms' packages (agents/views/...)
        if "views" in file.stem or "admin" in file.stem or in_views_or_admin or rel.parts[0] not in APPS:
            continue
        if "raise Http404" in file.read_text():
            offenders.append(str(rel))
    assert offenders == []
