"""The Content-Security-Policy header built once per process (marketplace/cspheader.py): the same
bytes as django-csp's middleware for every kind of response, the view decorators still obeyed, a
changed setting followed, and the policy built once for many responses."""

import re
from unittest import mock

import pytest
from csp.constants import NONCE, SELF
from csp.decorators import csp_exempt, csp_replace, csp_update
from csp.exceptions import CSPNonceError
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound
from django.test import RequestFactory, override_settings

from marketplace import cspheader
from marketplace.cspheader import CSPMiddleware

NONCE_VALUE = re.compile(r"'nonce-[^']+'")
HEADERS = ("Content-Security-Policy", "Content-Security-Policy-Report-Only")
SITE = getattr(settings, "CONTENT_SECURITY_POLICY", None) or settings.CONTENT_SECURITY_POLICY_REPORT_ONLY


def plain(request):
    return HttpResponse("ok")


VIEWS = {
    "plain": plain,
    "not found": lambda request: HttpResponseNotFound("no"),
    "update": csp_update({"img-src": ["https://img.example"]})(plain),
    "update report-only": csp_update({"img-src": ["https://img.example"]}, REPORT_ONLY=True)(plain),
    "replace": csp_replace({"script-src": ["https://js.example"]})(plain),
    "replace report-only": csp_replace({"script-src": None}, REPORT_ONLY=True)(plain),
    "exempt": csp_exempt()(plain),
    "exempt report-only": csp_exempt(REPORT_ONLY=True)(plain),
    "header set by the view": lambda request: HttpResponse("x", headers={h: "default-src 'none'" for h in HEADERS}),
}
SETTINGS = {
    "enforced": {"CONTENT_SECURITY_POLICY": SITE, "CONTENT_SECURITY_POLICY_REPORT_ONLY": None},
    "report-only": {"CONTENT_SECURITY_POLICY": None, "CONTENT_SECURITY_POLICY_REPORT_ONLY": SITE},
    "both, one excluding /excluded/": {
        "CONTENT_SECURITY_POLICY": {**SITE, "EXCLUDE_URL_PREFIXES": ["/excluded/"]},
        "CONTENT_SECURITY_POLICY_REPORT_ONLY": {"DIRECTIVES": {"default-src": [SELF], "script-src": [SELF, NONCE]}},
    },
    "debug": {"DEBUG": True},
}


def _answer(middleware_class, view, path: str, use_nonce: bool):
    request = RequestFactory().get(path)

    def get_response(request):
        if use_nonce:
            str(request.csp_nonce)
        return view(request)

    response = middleware_class(get_response)(request)
    # A nonce is random per request: masked (whether it is there and where still compared).
    return {h: response.get(h) and NONCE_VALUE.sub("'nonce-*'", response[h]) for h in HEADERS}, request


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("path", ["/", "/excluded/page/"])
@pytest.mark.parametrize("use_nonce", [False, True])
def test_the_headers_are_django_csps(setting, view, path, use_nonce):
    with override_settings(**SETTINGS[setting]):
        for _ in range(2):  # built, then kept
            ours, request = _answer(CSPMiddleware, VIEWS[view], path, use_nonce)
            theirs, their_request = _answer(DjangoCSPMiddleware, VIEWS[view], path, use_nonce)
            assert ours == theirs
            # The nonce cannot be asked for once the header is written (django-csp's rule).
            assert _nonce_refused(request) == _nonce_refused(their_request)
    assert _nonce_refused(request) == (not use_nonce and not (setting == "debug" and view == "not found"))


def _nonce_refused(request) -> bool:
    try:
        str(request.csp_nonce)
    except CSPNonceError:
        return True
    return False


def test_the_decorators_change_the_header():
    with override_settings(CONTENT_SECURITY_POLICY=SITE, CONTENT_SECURITY_POLICY_REPORT_ONLY=None):
        plain_header = _answer(CSPMiddleware, plain, "/", False)[0]["Content-Security-Policy"]
        updated = _answer(CSPMiddleware, VIEWS["update"], "/", False)[0]["Content-Security-Policy"]
        replaced = _answer(CSPMiddleware, VIEWS["replace"], "/", False)[0]["Content-Security-Policy"]
        assert "https://img.example" in updated and "https://img.example" not in plain_header
        assert "script-src https://js.example" in replaced and "script-src 'self'" in plain_header
        assert _answer(CSPMiddleware, VIEWS["exempt"], "/", False)[0]["Content-Security-Policy"] is None


def test_a_changed_setting_is_followed():
    other = {"DIRECTIVES": {"default-src": [SELF], "img-src": ["https://other.example"]}}
    with override_settings(CONTENT_SECURITY_POLICY=SITE, CONTENT_SECURITY_POLICY_REPORT_ONLY=None):
        first = _answer(CSPMiddleware, plain, "/", False)[0]["Content-Security-Policy"]
        with override_settings(CONTENT_SECURITY_POLICY=other):
            changed = _answer(CSPMiddleware, plain, "/", False)[0]["Content-Security-Policy"]
        again = _answer(CSPMiddleware, plain, "/", False)[0]["Content-Security-Policy"]
        with override_settings(CONTENT_SECURITY_POLICY=other):
            expected = _answer(DjangoCSPMiddleware, plain, "/", False)[0]["Content-Security-Policy"]
    assert changed == expected and "https://other.example" in changed
    assert first == again != changed and "https://other.example" not in first


def test_the_policy_is_built_once_for_many_responses():
    cspheader._built.clear()
    with mock.patch.object(cspheader, "build_policy", wraps=build_policy) as built:
        for _ in range(20):
            assert any(_answer(CSPMiddleware, plain, "/", False)[0].values())
    assert built.call_count == 2  # each header once: the enforced one and the report-only one


@pytest.mark.django_db
def test_a_page_sends_the_sites_policy(client):
    response = client.get("/healthz")
    header = "Content-Security-Policy" if getattr(settings, "CONTENT_SECURITY_POLICY", None) else HEADERS[1]
    assert response[header] == build_policy(report_only=header == HEADERS[1])
