"""Real-name verification: the provider adapter (name + identity number -> match / mismatch / no
record), and the services and selectors around it (verify once, reuse a verified match, mask,
reveal with a dedicated permission and an audit row).

The provider has the shape of the common two-element (二要素) check APIs sold on cloud API
markets: a POST of the name and the 18-character number, signed with an app key and secret,
answering one of three results. ``REALNAME_PROVIDER`` picks it:

- ``"http"``: :class:`HttpProvider`, a real HTTPS call (``requests``), signed as the Alibaba Cloud
  API Gateway specifies for its "digest signature" authentication (阿里云 API 网关《使用摘要签名
  认证方式调用 API》, https://help.aliyun.com/zh/api-gateway/user-guide/use-digest-authentication-to-call-an-api):
  headers ``X-Ca-Key``, ``X-Ca-Timestamp`` (milliseconds), ``X-Ca-Nonce`` (a UUID),
  ``X-Ca-Signature-Method: HmacSHA256``, ``X-Ca-Signature-Headers`` (the X-Ca headers signed, by
  name, comma-separated) and ``X-Ca-Signature`` = base64(HMAC-SHA256(app secret, string to sign)),
  where the string to sign is::

      POST\\n<Accept>\\n<Content-MD5>\\n<Content-Type>\\n<Date>\\n
      <header>:<value>\\n ... (the signed headers, sorted by name)
      <path>?<form and query parameters sorted by name, key=value joined by &>

  A form body (``application/x-www-form-urlencoded``) takes part through its parameters, so its
  Content-MD5 is empty (as the spec says for form bodies). The provider answers JSON
  ``{"code": "0", "result": {"res": "1" | "2" | "3"}}`` (1 match, 2 mismatch, 3 no record), the
  form most of these APIs share; any other answer, an HTTP error or a timeout is
  :class:`RealNameUnavailable` ("try again later") and nothing is recorded as verified.
- ``"sandbox"``: :class:`SandboxProvider`, deterministic answers for development and demos. It
  is refused in production: a system check error (``compliance.checks``) and a runtime refusal
  in :func:`realname_provider`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace import crypto
from marketplace.errors import Conflict, ServiceError

from .identity import id_number_validate

log = logging.getLogger(__name__)

SANDBOX = "sandbox"
HTTP = "http"
# How many failed checks (mismatch, no record) one member or guest may make a day: the provider
# is paid per call, and names are not to be guessed against a number.
FAILED_CHECKS_PER_DAY = 5


class Result:
    MATCH = "match"
    MISMATCH = "mismatch"
    NO_RECORD = "no_record"


class RealNameError(ServiceError):
    """A real-name check refused (mismatch, no record, too many attempts, already used)."""

    code = "real_name_refused"
    status = 422


class RealNameRequired(ServiceError):
    """The product needs a verified real name and the buyer has none."""

    code = "real_name_required"
    status = 403


class RealNameUnavailable(ServiceError):
    """The provider could not answer (error, timeout, unreadable answer): try again later."""

    code = "real_name_unavailable"
    status = 503

    @classmethod
    def default_message(cls) -> str:
        return _("The real-name check is not available right now. Please try again later.")


# --- the providers ----------------------------------------------------------------------------


class Provider(Protocol):
    name: str

    def check(self, *, name: str, id_number: str) -> str:
        """One of ``Result``'s values, or raise RealNameUnavailable."""
        ...


class SandboxProvider:
    """Deterministic answers for development: a name containing 不符 (or "mismatch") does not
    match, 无记录 (or "norecord") has no record, 故障 (or "unavailable") fails like a provider
    down; every other name matches. Never in production (see ``realname_provider``)."""

    name = SANDBOX

    def check(self, *, name: str, id_number: str) -> str:
        lowered = name.lower()
        if "故障" in name or "unavailable" in lowered:
            raise RealNameUnavailable
        if "不符" in name or "mismatch" in lowered:
            return Result.MISMATCH
        if "无记录" in name or "norecord" in lowered:
            return Result.NO_RECORD
        return Result.MATCH


SIGNED_HEADERS = ("x-ca-key", "x-ca-nonce", "x-ca-signature-method", "x-ca-timestamp")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"
ACCEPT = "application/json"


def string_to_sign(
    *, method: str, accept: str, content_md5: str, content_type: str, date: str, headers: dict, path: str, params: dict
) -> str:
    """The Alibaba Cloud API Gateway string to sign (see the module's docstring). ``headers``:
    the signed headers (names lower-case); ``params``: query and form parameters."""
    lines = [method.upper(), accept, content_md5, content_type, date]
    signed = "".join(f"{name}:{headers[name]}\n" for name in sorted(headers))
    query = "&".join(f"{k}={v}" if v != "" else k for k, v in sorted(params.items()))
    return "\n".join(lines) + "\n" + signed + (f"{path}?{query}" if query else path)


def sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


class HttpProvider:
    """The two-element check over HTTPS, signed with the app key and secret (module docstring)."""

    name = HTTP

    def __init__(self, *, url: str, app_key: str, app_secret: str, timeout: float):
        if not (url and app_key and app_secret):
            raise ImproperlyConfigured("Set REALNAME_URL, REALNAME_APP_KEY and REALNAME_APP_SECRET")
        self.url, self.app_key, self.app_secret, self.timeout = url, app_key, app_secret, timeout

    def signed_headers(self, *, params: dict, now_ms: int | None = None, nonce: str | None = None) -> dict:
        ca = {
            "x-ca-key": self.app_key,
            "x-ca-nonce": nonce or str(uuid.uuid4()),
            "x-ca-signature-method": "HmacSHA256",
            "x-ca-timestamp": str(now_ms if now_ms is not None else int(time.time() * 1000)),
        }
        text = string_to_sign(
            method="POST",
            accept=ACCEPT,
            content_md5="",
            content_type=FORM_CONTENT_TYPE,
            date="",
            headers=ca,
            path=urlsplit(self.url).path or "/",
            params=params,
        )
        return {
            "Accept": ACCEPT,
            "Content-Type": FORM_CONTENT_TYPE,
            "X-Ca-Key": ca["x-ca-key"],
            "X-Ca-Nonce": ca["x-ca-nonce"],
            "X-Ca-Signature-Method": ca["x-ca-signature-method"],
            "X-Ca-Timestamp": ca["x-ca-timestamp"],
            "X-Ca-Signature-Headers": ",".join(SIGNED_HEADERS),
            "X-Ca-Signature": sign(self.app_secret, text),
        }

    def check(self, *, name: str, id_number: str) -> str:
        params = {"idCard": id_number, "name": name}
        try:
            response = requests.post(
                self.url, data=params, headers=self.signed_headers(params=params), timeout=self.timeout
            )
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            # Never the number or the name in the log.
            log.warning("real-name provider failed: %s", type(exc).__name__)
            raise RealNameUnavailable from None
        code = str(body.get("code", "")) if isinstance(body, dict) else ""
        res = (
            str((body.get("result") or {}).get("res", ""))
            if isinstance(body, dict) and isinstance(body.get("result"), dict)
            else ""
        )
        if code != "0" or res not in {"1", "2", "3"}:
            log.warning("real-name provider answered code=%s res=%s", code[:20], res[:20])
            raise RealNameUnavailable
        return {"1": Result.MATCH, "2": Result.MISMATCH, "3": Result.NO_RECORD}[res]


def realname_provider() -> Provider:
    """The configured provider. The sandbox is refused in production (also a system check error,
    ``compliance.checks.realname_provider_check``): a made-up "match" must never count there."""
    kind = settings.REALNAME_PROVIDER
    if kind == SANDBOX:
        if settings.PRODUCTION:
            raise ImproperlyConfigured("The sandbox real-name provider cannot be used in production")
        return SandboxProvider()
    if kind == HTTP:
        return HttpProvider(
            url=settings.REALNAME_URL,
            app_key=settings.REALNAME_APP_KEY,
            app_secret=settings.REALNAME_APP_SECRET,
            timeout=settings.REALNAME_TIMEOUT,
        )
    raise ImproperlyConfigured(f"REALNAME_PROVIDER must be {SANDBOX!r} or {HTTP!r}, not {kind!r}")


# --- services ---------------------------------------------------------------------------------


def _name_clean(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise RealNameError(_("Enter your name as it is on your identity card."), code="real_name_missing")
    if len(name) > 60:
        raise RealNameError(_("A name has at most 60 characters."), code="real_name_invalid")
    return name


@dataclass(frozen=True)
class Subject:
    """Whose verification: a member, a guest's email, or an agent API's end user (neither)."""

    user: Any = None  # a User, or None
    email: str = ""
    source: str = "member"


def _failures_today(subject: Subject):
    from .models import RealNameVerification

    since = timezone.now() - timedelta(days=1)
    rows = RealNameVerification.objects.filter(checked_at__gte=since).exclude(result=Result.MATCH)
    if subject.user is not None:
        return rows.filter(user=subject.user).count()
    if subject.email:
        return rows.filter(user__isnull=True, email=subject.email).count()
    return 0


def realname_verify(*, subject: Subject, name: str, id_number: str, provider: Provider | None = None):
    """Verify ``name`` + ``id_number`` for ``subject`` and return the ``RealNameVerification``
    that matched; raise ``IdNumberError`` (the local GB 11643-1999 check), ``RealNameError``
    (mismatch, no record, too many failures, the number verified on another account) or
    ``RealNameUnavailable`` (the provider could not answer: nothing is recorded).

    A verified match is reused: a member's own, or for a guest or an API end user an earlier
    match of the same name and number (no second paid call to the provider). Each answer the
    provider gives (match or not) is recorded, the number encrypted with the card codes' key ring
    and looked up by its keyed digest."""
    from .models import RealNameVerification

    name = _name_clean(name)
    parsed = id_number_validate(id_number)
    digest = crypto.keyed_digest(parsed.number)
    previous = RealNameVerification.objects.filter(id_digest=digest, result=Result.MATCH).order_by("-checked_at")
    if subject.user is not None:
        own = RealNameVerification.objects.filter(user=subject.user, result=Result.MATCH).first()
        if own is not None:
            if own.id_digest == digest and own.name == name:
                return own
            raise RealNameError(
                _("Your account is already verified with another name or number."), code="real_name_already"
            )
        if previous.filter(user__isnull=False).exclude(user=subject.user).exists():
            raise Conflict(_("This identity number is already verified on another account."), code="id_number_in_use")
    else:
        for row in previous.filter(user__isnull=True)[:20]:
            if row.name == name:
                return row
    if _failures_today(subject) >= FAILED_CHECKS_PER_DAY:
        raise RealNameError(
            _("Too many failed real-name checks today. Please try again tomorrow."), code="real_name_too_many"
        )
    provider = provider or realname_provider()
    result = provider.check(name=name, id_number=parsed.number)  # or RealNameUnavailable
    row = RealNameVerification(
        user=subject.user,
        email=subject.email if subject.user is None else "",
        source=subject.source,
        id_digest=digest,
        birth_date=parsed.birth_date,
        result=result,
        provider=provider.name,
    )
    row.name = name
    row.id_number = parsed.number
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:  # the same member verified at the same moment in another request
        raise Conflict(
            _("This identity number is already verified on another account."), code="id_number_in_use"
        ) from None
    if result == Result.MISMATCH:
        raise RealNameError(
            _("The name and the identity number do not match. Check both against your identity card."),
            code="real_name_mismatch",
        )
    if result == Result.NO_RECORD:
        raise RealNameError(
            _("No record of this identity number was found. Check it against your identity card."),
            code="real_name_no_record",
        )
    return row


def realname_of(*, user) -> object | None:
    """A member's verified match, or None."""
    from .models import RealNameVerification

    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return RealNameVerification.objects.filter(user=user, result=Result.MATCH).first()


def product_needs_real_name(product) -> bool:
    """A product needs a verified real name if it says so, its category or the category's parent
    says so, or it is a game top-up (the minors' limits read the verified birth date)."""
    if product.requires_real_name or product.is_game_topup:
        return True
    category = product.category
    if category is None:
        return False
    if category.requires_real_name:
        return True
    return bool(category.parent_id and category.parent.requires_real_name)


def realname_for_purchase(
    *, product, buyer, guest_email: str = "", real_name: str = "", id_number: str = "", api: bool = False
):
    """The verification an order of ``product`` carries, or None when it needs none.

    A member uses their verified match (``RealNameRequired`` asks them to verify first; a member
    who types a name and number at checkout is verified then). A guest, or an agent's API order
    for its end user (``api``), gives the name and number with the order and is verified the same
    way (the API's orders carry the end user's verification, not the agent's)."""
    if not product_needs_real_name(product):
        return None
    if api:
        if not (real_name or id_number):
            raise RealNameRequired(
                _("This product requires the end user's real name: send real_name and id_number with the order."),
                code="real_name_required",
            )
        return realname_verify(subject=Subject(source="api"), name=real_name, id_number=id_number)
    if buyer is not None:
        own = realname_of(user=buyer)
        if own is not None:
            return own
        if real_name or id_number:
            return realname_verify(subject=Subject(user=buyer), name=real_name, id_number=id_number)
        raise RealNameRequired(
            _("This product requires real-name verification. Verify your name and identity number first."),
            code="real_name_required",
        )
    if not (real_name or id_number):
        raise RealNameRequired(
            _("This product requires real-name verification: enter your name and identity number."),
            code="real_name_required",
        )
    return realname_verify(subject=Subject(email=guest_email, source="guest"), name=real_name, id_number=id_number)


def realname_reveal(*, actor, verification_id: int, request=None) -> tuple[str, str]:
    """The full name and number of a verification, for staff holding
    ``compliance.reveal_id_number``; every reveal (and every refused one) is an audit row."""
    from marketplace.errors import Forbidden, NotFound

    from .models import RealNameVerification
    from .services import audit_record

    target = f"realname:{verification_id}"
    if not (actor and actor.is_active and actor.is_staff and actor.has_perm("compliance.reveal_id_number")):
        audit_record(action="realname.reveal", outcome="denied", actor=actor, target=target, request=request)
        raise Forbidden(_("Revealing identity numbers needs its own permission."))
    row = RealNameVerification.objects.filter(pk=verification_id).first()
    if row is None:
        raise NotFound
    audit_record(action="realname.reveal", outcome="allowed", actor=actor, target=target, request=request)
    return row.name, row.id_number
