"""Authentication of the integration API: every request signed with the agent's key.

Headers: ``X-Api-Key`` (the key ID), ``X-Timestamp`` (Unix seconds), ``X-Nonce`` (16-64 of
``[A-Za-z0-9_-]``, never reused) and ``X-Signature``::

    hex(HMAC-SHA256(secret, METHOD + "\\n" + canonical_target(path_with_query) + "\\n"
                            + timestamp + "\\n" + nonce + "\\n" + sha256_hex(body)))

The canonical path is computed here from what every WSGI server gives: the decoded path
(``PATH_INFO``, bytes as latin-1 text) and the query string as sent (``QUERY_STRING``).

The checks themselves are ``agents.services.api_keys.request_verify``; this class adapts them to DRF and
logs every refusal in the audit log. No session and no CSRF: the signature is the credential.
"""

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from agents.services import api_keys
from compliance.services import audit_denied
from marketplace import signing
from marketplace.http import client_ip

AUTH_SCHEME = "X-Signature"


class Unauthenticated(exceptions.AuthenticationFailed):
    """401 with our machine-readable code."""

    def __init__(self, code: str, message: str):
        super().__init__(detail=message, code=code)
        self.api_code = code


class Forbidden(exceptions.PermissionDenied):
    """403 with our machine-readable code."""

    def __init__(self, code: str, message: str):
        super().__init__(detail=message, code=code)
        self.api_code = code


def signed_target(request) -> str:
    """The canonical path and query of a Django request (``marketplace.signing.canonical_target``)."""
    meta = request.META
    script_name = request.path[: len(request.path) - len(request.path_info)]
    path = script_name.encode() + (_wsgi_bytes(meta, "PATH_INFO") or b"/")
    query = _wsgi_bytes(meta, "QUERY_STRING")
    return signing.canonical_path_bytes(path) + ("?" + signing.canonical_query(query) if query else "")


def _wsgi_bytes(meta, key: str) -> bytes:
    value = meta.get(key, "")
    try:
        return value.encode("iso-8859-1")
    except UnicodeEncodeError:  # not a WSGI server's latin-1 text (ASGI, a test): take it as UTF-8
        return value.encode()


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:40])


class SignedRequestAuthentication(BaseAuthentication):
    """``request.user`` is the agent's user, ``request.auth`` the ``ApiKey``."""

    def authenticate(self, request):
        raw = request._request  # the Django request: its body, path and (anonymous) user
        meta = raw.META
        key_id = meta.get("HTTP_X_API_KEY", "").strip()
        try:
            key = api_keys.request_verify(
                key_id=key_id,
                timestamp=meta.get("HTTP_X_TIMESTAMP", "").strip(),
                nonce=meta.get("HTTP_X_NONCE", "").strip(),
                signature=meta.get("HTTP_X_SIGNATURE", "").strip(),
                method=raw.method,
                path=signed_target(raw),
                # gunicorn passes the request target exactly as sent; other servers do not.
                path_as_sent=meta.get("RAW_URI", ""),
                body=raw.body,
                ip=client_ip(raw),
            )
        except api_keys.Refused as refusal:
            audit_denied(
                action="api.auth",
                request=raw,
                actor=refusal.key.agent.user if refusal.key is not None else None,
                # The key ID as sent is the client's text: printable characters only (a NUL
                # cannot be stored), at most 40.
                target=f"apikey:{(refusal.key.key_id if refusal.key is not None else _printable(key_id))[:40] or '?'}",
                detail=f"{refusal.code}: {refusal.message}",
            )
            if refusal.status == 403:
                raise Forbidden(refusal.code, refusal.message) from None
            raise Unauthenticated(refusal.code, refusal.message) from None
        return key.agent.user, key

    def authenticate_header(self, request):
        # A value here makes DRF answer 401 (not 403) to a missing or bad signature.
        return f'{AUTH_SCHEME} realm="api"'
