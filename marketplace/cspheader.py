"""django-csp's middleware, with the Content-Security-Policy header built once per process.

django-csp builds both headers (the enforced one and the report-only one) from settings on every
response: a copy of the policy's directives, a dataclass turned into a dict, the directives joined
(about 80 µs, some 3 % of a small page). This site's policy depends on nothing in the request: no
nonce in it, and no view changes it (``@csp_update``, ``@csp_replace``, ``@csp_exempt``). So the
header text is kept per setting (``CONTENT_SECURITY_POLICY``, ``..._REPORT_ONLY``) while the
setting is the same object (``override_settings`` gives a new one); a response a view changed the
policy of (``_csp_update`` and friends), or whose request used ``request.csp_nonce``, is built by
django-csp as before. Headers are byte-identical to django-csp's (tests/test_csp_header.py).
"""

from __future__ import annotations

import http.client as http_client
from typing import Any

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from csp.utils import build_policy
from django.conf import settings

# Attributes the view decorators put on a response: its policy is its own.
PER_RESPONSE = ("_csp_config", "_csp_update", "_csp_replace", "_csp_config_ro", "_csp_update_ro", "_csp_replace_ro")
# (header, setting, the decorator's exemption attribute, report-only)
HEADERS = (
    (HEADER, "CONTENT_SECURITY_POLICY", "_csp_exempt", False),
    (HEADER_REPORT_ONLY, "CONTENT_SECURITY_POLICY_REPORT_ONLY", "_csp_exempt_ro", True),
)
_DEBUG_EXEMPT = (http_client.INTERNAL_SERVER_ERROR, http_client.NOT_FOUND)
_MISSING = object()

# setting name -> (the setting's object, the header built from it, its excluded path prefixes)
_built: dict[str, tuple[Any, str, tuple[str, ...]]] = {}


def built(name: str, report_only: bool) -> tuple[str, tuple[str, ...]]:
    """The header ``build_policy`` makes from setting ``name`` (no per-response parts, no nonce)
    and the setting's EXCLUDE_URL_PREFIXES, built again only when the setting is another object."""
    policy = getattr(settings, name, _MISSING)
    kept = _built.get(name)
    if kept is not None and kept[0] is policy:
        return kept[1], kept[2]
    header = build_policy(report_only=report_only)
    config = policy if isinstance(policy, dict) else {}
    prefixes = tuple(config.get("EXCLUDE_URL_PREFIXES", None) or ())
    _built[name] = (policy, header, prefixes)  # holding the object: its id is not reused
    return header, prefixes


class CSPMiddleware(DjangoCSPMiddleware):
    def process_response(self, request, response):
        if getattr(request, "_csp_nonce", None) is not None or any(hasattr(response, a) for a in PER_RESPONSE):
            return super().process_response(request, response)
        if response.status_code in _DEBUG_EXEMPT and settings.DEBUG:
            return response
        path = request.path_info
        for header, name, exempt, report_only in HEADERS:
            value, prefixes = built(name, report_only)
            if (
                value
                and header not in response
                and getattr(response, exempt, False) is False
                and not (prefixes and path.startswith(prefixes))
            ):
                response[header] = value
        # As django-csp: the nonce cannot be asked for once the header is written.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response
