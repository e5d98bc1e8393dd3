"""Agents' keys for the integration API: issued, rotated, revoked, restricted; and the request
signature they verify (also used to sign our callbacks to the agent's shop).

A key is a public ``key_id`` and a secret shown once when issued (or rotated) and kept
encrypted (``marketplace.crypto``). Every request is signed::

    string_to_sign = "\\n".join([METHOD, canonical_target(path_with_query), timestamp, nonce,
                                sha256_hex(body)])
    X-Signature = hex(HMAC-SHA256(secret, string_to_sign))

``canonical_target`` is one form of the path and query that the client and the server compute
the same way whatever re-encoding happened on the way (an HTTP library, a proxy, a WSGI server
that hands us the path already decoded): see its docstring and api/schema_description.md.

After a rotation the previous secret keeps working for ``ROTATION_GRACE`` so a shop can
switch without downtime; revoking ends both at once.
"""

import hmac
import ipaddress
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace import crypto
from marketplace.errors import ServiceError
from marketplace.signing import canonical_target, signature_compute

from ..models import Agent, ApiKey, ApiNonce
from .agents import AgentError

ROTATION_GRACE = timedelta(hours=24)
MAX_ACTIVE_KEYS = 10
MAX_ALLOWLIST_ENTRIES = 50
LAST_USED_RESOLUTION = timedelta(minutes=1)
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Whole seconds in ASCII digits (str.isdigit() also admits "²" and other Unicode digits).
TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
# What a key ID can look like (the ones we issue are ak_ and 24 hex digits): anything else is
# refused before a query, so a NUL or a megabyte of text never reaches the database.
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
KEY_ID_PREFIX = "ak_"
SECRET_PREFIX = "sk_"
# What we promise agents about callbacks (orders.services.callbacks): tries before giving up.
CALLBACK_MAX_ATTEMPTS = 8


# --- The signature ------------------------------------------------------------------------
# The recipe (canonical form, string to sign, HMAC) is marketplace.signing's.


def signature_headers(*, key_id: str, secret: str, method: str, path: str, body: bytes) -> dict[str, str]:
    """The four headers of a signed request (a fresh timestamp and nonce) to ``path`` (with its
    query), signed in its canonical form."""
    path = canonical_target(path)
    timestamp = str(int(timezone.now().timestamp()))
    nonce = secrets.token_urlsafe(18)
    signature = signature_compute(secret=secret, method=method, path=path, timestamp=timestamp, nonce=nonce, body=body)
    return {"X-Api-Key": key_id, "X-Timestamp": timestamp, "X-Nonce": nonce, "X-Signature": signature}


# --- Input checks ----------------------------------------------------------------------------


def ip_allowlist_parse(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """One IP address or CIDR network per line (commas and spaces also separate).

    Raises ``AgentError`` naming the first entry that is neither.
    """
    entries = [part for part in re.split(r"[\s,;]+", text or "") if part]
    if len(entries) > MAX_ALLOWLIST_ENTRIES:
        raise AgentError(_("At most %(n)d addresses or networks.") % {"n": MAX_ALLOWLIST_ENTRIES}, field="ip_allowlist")
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise AgentError(
                _("“%(entry)s” is not an IP address or a network like 203.0.113.0/24.") % {"entry": entry[:60]},
                field="ip_allowlist",
            ) from None
    return networks


def _normalise_allowlist(text: str) -> str:
    return "\n".join(str(n) if n.num_addresses > 1 else str(n.network_address) for n in ip_allowlist_parse(text))


def _check_callback_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        return ""
    if len(url) > 300:
        raise AgentError(_("The callback URL is too long (at most 300 characters)."), field="callback_url")
    try:
        URLValidator(schemes=["https", "http"])(url)
    except ValidationError:  # Django's validator
        raise AgentError(_("Enter a full http:// or https:// address for callbacks."), field="callback_url") from None
    return url


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise AgentError(_("Give the key a name, for example the shop that will use it."), field="name")
    if len(name) > 60:
        raise AgentError(_("Key names are at most 60 characters."), field="name")
    return name


def ip_allowed(*, key: ApiKey, ip: str | None) -> bool:
    """An empty allow-list admits any address; otherwise the address must be in one entry."""
    networks = ip_allowlist_parse(key.ip_allowlist)
    if not networks:
        return True
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address.version == n.version and address in n for n in networks)


# --- Issuing, rotating, revoking --------------------------------------------------------------


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def apikey_create(*, agent: Agent, name: str, ip_allowlist: str = "", callback_url: str = "") -> tuple[ApiKey, str]:
    """Issue a key. Returns the key and its secret, which is never shown again."""
    name = _check_name(name)
    allowlist = _normalise_allowlist(ip_allowlist)
    callback_url = _check_callback_url(callback_url)
    with transaction.atomic():
        # Serialise one agent's key creation so the cap holds under double submits.
        Agent.objects.select_for_update().filter(pk=agent.pk).first()
        if agent.api_keys.filter(revoked_at__isnull=True).count() >= MAX_ACTIVE_KEYS:
            raise AgentError(
                _("You already have %(n)d active keys: revoke one you no longer use first.") % {"n": MAX_ACTIVE_KEYS}
            )
        secret = _new_secret()
        key = ApiKey.objects.create(
            agent=agent,
            name=name,
            key_id=KEY_ID_PREFIX + secrets.token_hex(12),
            secret=crypto.encrypt(secret),
            ip_allowlist=allowlist,
            callback_url=callback_url,
        )
    return key, secret


def _lock_own(agent: Agent, key_id) -> ApiKey:
    """The agent's own key, locked. Another agent's key is ``ApiKey.DoesNotExist``."""
    return ApiKey.objects.select_for_update().get(pk=key_id, agent=agent)


def apikey_rotate(*, agent: Agent, key_id: int) -> tuple[ApiKey, str]:
    """A new secret; the current one keeps working for ``ROTATION_GRACE`` (then is refused)."""
    with transaction.atomic():
        key = _lock_own(agent, key_id)
        if key.revoked_at is not None:
            raise AgentError(_("This key has been revoked: create a new one."))
        now = timezone.now()
        secret = _new_secret()
        key.previous_secret = key.secret
        key.previous_valid_until = now + ROTATION_GRACE
        key.secret = crypto.encrypt(secret)
        key.rotated_at = now
        key.save(update_fields=["previous_secret", "previous_valid_until", "secret", "rotated_at"])
    return key, secret


def apikey_revoke(*, agent: Agent, key_id: int) -> bool:
    """Revoke a key and any previous secret at once. False if it already was."""
    with transaction.atomic():
        key = _lock_own(agent, key_id)
        if key.revoked_at is not None:
            return False
        key.revoked_at = timezone.now()
        key.previous_secret = ""
        key.previous_valid_until = None
        key.save(update_fields=["revoked_at", "previous_secret", "previous_valid_until"])
    return True


def apikey_revoke_by_staff(*, key: ApiKey) -> bool:
    return apikey_revoke(agent=key.agent, key_id=key.pk)


def apikey_update(*, agent: Agent, key_id: int, name: str, ip_allowlist: str, callback_url: str) -> ApiKey:
    name = _check_name(name)
    allowlist = _normalise_allowlist(ip_allowlist)
    callback_url = _check_callback_url(callback_url)
    with transaction.atomic():
        key = _lock_own(agent, key_id)
        if key.revoked_at is not None:
            raise AgentError(_("This key has been revoked and cannot be changed."))
        key.name, key.ip_allowlist, key.callback_url = name, allowlist, callback_url
        key.save(update_fields=["name", "ip_allowlist", "callback_url"])
    return key


def apikey_secret(key: ApiKey) -> str:
    """The current secret in plain text (to sign callbacks)."""
    return crypto.decrypt(key.secret)


# --- Verifying a request --------------------------------------------------------------------


class Refused(ServiceError):
    """A request the API refuses: ``code`` for machines, ``message`` for people."""

    code = "api_key_refused"
    status = 401

    def __init__(self, code: str, message: str, *, status: int = 401, key: ApiKey | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.key = code, message, status, key


def _valid_secrets(key: ApiKey, now) -> list[str]:
    out = [crypto.decrypt(key.secret)]
    if key.previous_secret and key.previous_valid_until and key.previous_valid_until > now:
        out.append(crypto.decrypt(key.previous_secret))
    return out


def request_verify(
    *,
    key_id: str,
    timestamp: str,
    nonce: str,
    signature: str,
    method: str,
    path: str,
    body: bytes,
    ip: str | None,
    path_as_sent: str = "",
) -> ApiKey:
    """Check one signed request; returns its key (with ``agent`` and ``agent.user``) or raises
    ``Refused``. The checks run cheapest first, and a nonce is recorded only for a request
    whose signature is good, so junk cannot fill the nonce table.

    ``path`` is the canonical path and query (``canonical_target``) of the request. When the
    web server tells us the request target exactly as sent (gunicorn's ``RAW_URI``), a
    signature of that is accepted too (``path_as_sent``), for clients that sign what they send
    byte for byte. It weakens nothing: both strings name the same decoded path and the same
    query, so a signature cannot be carried to another resource, and the nonce is still
    single-use."""
    if not (key_id and timestamp and nonce and signature):
        raise Refused("missing_credentials", _("Send X-Api-Key, X-Timestamp, X-Nonce and X-Signature."))
    if not NONCE_RE.match(nonce):
        raise Refused("invalid_nonce", _("X-Nonce must be 16 to 64 characters of A-Z, a-z, 0-9, _ or -."))
    if not TIMESTAMP_RE.fullmatch(timestamp):
        raise Refused("invalid_timestamp", _("X-Timestamp must be Unix time in whole seconds."))
    now = timezone.now()
    if abs(int(now.timestamp()) - int(timestamp)) > settings.AGENT_API_MAX_SKEW:
        raise Refused(
            "timestamp_out_of_window",
            _("X-Timestamp is more than %(n)d seconds from our clock: check the time on your server.")
            % {"n": settings.AGENT_API_MAX_SKEW},
        )
    key = None
    if KEY_ID_RE.fullmatch(key_id):
        key = ApiKey.objects.select_related("agent__user").filter(key_id=key_id).first()
    if key is None:
        raise Refused("unknown_key", _("No such API key."))
    paths = [path] + ([path_as_sent] if path_as_sent and path_as_sent != path else [])
    expected = [
        signature_compute(secret=s, method=method, path=p, timestamp=timestamp, nonce=nonce, body=body)
        for s in _valid_secrets(key, now)
        for p in paths
    ]
    given = signature.strip().lower().encode()
    # Compare against every valid secret (no early exit), in constant time.
    matched = [hmac.compare_digest(e.encode(), given) for e in expected]
    if not any(matched):
        raise Refused("bad_signature", _("The signature does not match this request."), key=key)
    if key.revoked_at is not None:
        raise Refused("key_revoked", _("This API key has been revoked."), key=key)
    if not ip_allowed(key=key, ip=ip):
        raise Refused(
            "ip_not_allowed",
            _("Requests from %(ip)s are not allowed for this key.") % {"ip": ip or "?"},
            status=403,
            key=key,
        )
    if not key.agent.user.is_active:
        raise Refused("agent_inactive", _("This agent account is disabled."), status=403, key=key)
    try:
        with transaction.atomic():
            ApiNonce.objects.create(key=key, nonce=nonce)
    except IntegrityError:
        raise Refused("nonce_reused", _("This X-Nonce has been used already: send a new one."), key=key) from None
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def nonces_purge() -> int:
    """Forget nonces older than the timestamp window: a replay of one is refused by its time."""
    cutoff = timezone.now() - timedelta(seconds=settings.AGENT_API_MAX_SKEW * 2)
    deleted, _rows = ApiNonce.objects.filter(seen_at__lt=cutoff).delete()
    return deleted
