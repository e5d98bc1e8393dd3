"""The device identifier: a random id in a signed cookie, plus a hash of the user agent.

``request.device_id`` is ``"<cookie hash>.<user-agent hash>"`` (29 characters, nothing the
client could read back as its cookie), or "" when the request brought no valid cookie (a first
visit, a client that drops cookies, the signed API): such a request is counted by its IP and
account only. A missing or forged cookie is replaced on the answer, except for callers that are
not browsers (``NO_COOKIE_PREFIXES``: the API, the payment gateways' notifications). Views pass the id to the
services as a plain string, like ``ip=client_ip(request)``: ``device=device_id(request)``.
"""

import hashlib
import secrets
from functools import lru_cache

from django.conf import settings
from django.core import signing

SALT = "risk.device"
MAX_AGE = 2 * 365 * 24 * 3600
# Callers that are not browsers get no cookie: the signed API and the gateways' notifications
# (a server-to-server POST keeps no cookie; signing and sending one cost ~50 µs per callback).
NO_COOKIE_PREFIXES = ("/api/", "/payments/notify/")


def _hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# Every request of a browser brings the same cookie and user agent: the signature check and the
# two hashes are kept per process for the values seen last (pure functions of their arguments;
# the signing keys are arguments, so a rotated SECRET_KEY is obeyed at once).
KEPT = 4096


@lru_cache(maxsize=KEPT)
def device_of(token: str, user_agent: str) -> str:
    return f"{_hash(token, 20)}.{_hash(user_agent, 8)}"


@lru_cache(maxsize=KEPT)
def _unsigned(raw: str, key: str, fallbacks: tuple[str, ...]) -> str:
    """The cookie's token (BadSignature when forged: not kept)."""
    return signing.Signer(key=key, fallback_keys=fallbacks, salt=SALT).unsign(raw)


def cookie_token(raw: str) -> str | None:
    """The random token in a device cookie, None when its signature is not this site's."""
    try:
        return _unsigned(raw, settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))
    except signing.BadSignature:
        return None


def device_id(request) -> str:
    return getattr(request, "device_id", "")


class DeviceMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = settings.RISK_DEVICE_COOKIE
        raw = request.COOKIES.get(name)
        token = cookie_token(raw) if raw else None
        user_agent = request.META.get("HTTP_USER_AGENT", "")[:500]
        request.device_id = device_of(token, user_agent) if token else ""
        response = self.get_response(request)
        if token is None and not request.path.startswith(NO_COOKIE_PREFIXES):
            value = signing.Signer(salt=SALT).sign(secrets.token_urlsafe(16))
            response.set_cookie(
                name,
                value,
                max_age=MAX_AGE,
                httponly=True,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response
