"""marketplace.middleware.LocaleMiddleware answers as Django's LocaleMiddleware: the same
language activated, the same request.LANGUAGE_CODE, the same Vary and Content-Language headers
and the same redirects, for the site's URLs (no language prefixes) and for a URLconf with
``i18n_patterns`` (Django's methods then run); only the path's language search is skipped."""

from __future__ import annotations

from unittest import mock

import pytest
from django.conf.urls.i18n import i18n_patterns
from django.http import HttpResponse, HttpResponseNotFound
from django.middleware.locale import LocaleMiddleware as DjangoLocaleMiddleware
from django.test import RequestFactory
from django.urls import path
from django.utils import translation
from django.utils.translation import trans_real

from marketplace.middleware import LocaleMiddleware

# A URLconf with language prefixes (as a request's ``urlconf``): Django's own behaviour runs.
urlpatterns = i18n_patterns(path("page/", lambda request: HttpResponse("page")), prefix_default_language=True)
PREFIXED = __name__

PATHS = ["/", "/p/some-card/", "/orders/checkout/x/", "/pay/KM1/", "/en/", "/zh-hans/p/x/", "/page/", "/en/page/"]
HEADERS = [
    {},
    {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"},
    {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"},
    {"HTTP_ACCEPT_LANGUAGE": "fr"},
    {"HTTP_COOKIE": "django_language=en"},
    {"HTTP_COOKIE": "django_language=zh-hans", "HTTP_ACCEPT_LANGUAGE": "en"},
]


def answer(middleware_class, path_, headers, status, urlconf):
    request = RequestFactory().get(path_, **headers)
    if urlconf:
        request.urlconf = urlconf
    response_class = HttpResponseNotFound if status == 404 else HttpResponse

    def view(request):
        return response_class(translation.get_language())

    with translation.override(None):
        response = middleware_class(view)(request)
        return (
            request.LANGUAGE_CODE,
            response.status_code,
            response.content,
            response.get("Location"),
            response.get("Vary"),
            response.get("Content-Language"),
        )


@pytest.mark.parametrize("urlconf", [None, PREFIXED])
@pytest.mark.parametrize("status", [200, 404])
@pytest.mark.parametrize("headers", HEADERS)
@pytest.mark.parametrize("path_", PATHS)
def test_answers_as_djangos(path_, headers, status, urlconf):
    assert answer(LocaleMiddleware, path_, headers, status, urlconf) == answer(
        DjangoLocaleMiddleware, path_, headers, status, urlconf
    )


def test_no_language_search_in_a_path_without_prefixes():
    real = trans_real.get_language_from_path
    with mock.patch("django.utils.translation.trans_real.get_language_from_path", wraps=real) as from_path:
        assert answer(LocaleMiddleware, "/p/some-card/", {}, 200, None)[1] == 200
        assert from_path.call_count == 0
        assert answer(LocaleMiddleware, "/page/", {}, 404, PREFIXED)[3] == "/zh-hans/page/"
        assert from_path.call_count > 0  # with prefixed patterns, Django's methods run
