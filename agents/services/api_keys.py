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

import copy
import hmac
import ipaddress
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, connection, transaction
from django.db.models.expressions import RawSQL
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
    single-use.

    A verified request costs one statement: the key, agent and user come from this process's
    copy, and the nonce's INSERT checks them against the database (``_nonce_record``), so a
    revocation or any other change to them applies from the next request."""
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
    if not KEY_ID_RE.fullmatch(key_id):
        raise Refused("unknown_key", _("No such API key."))
    paths = [path] + ([path_as_sent] if path_as_sent and path_as_sent != path else [])
    key = _key_cached(key_id)
    for _attempt in range(3):
        fresh = key is None
        if key is None:
            key = _key_load(key_id)
            if key is None:
                raise Refused("unknown_key", _("No such API key."))
        try:
            _key_check(
                key,
                timestamp=timestamp,
                nonce=nonce,
                signature=signature,
                method=method,
                paths=paths,
                body=body,
                ip=ip,
                now=now,
            )
        except Refused:
            if fresh:
                raise
            key = None  # refused on this process's copy: decide on the rows as they are now
            continue
        outcome = _nonce_record(key, nonce=nonce, now=now)
        if outcome is True:
            break
        if outcome is False:
            raise Refused("nonce_reused", _("This X-Nonce has been used already: send a new one."), key=key)
        # The key, its agent or its user changed since they were read (revoked, rotated, another
        # allow-list, the account disabled, another level ...), or the key is gone: read again.
        key = None
    else:  # pragma: no cover - the rows changed under three reads in a row
        raise Refused("unknown_key", _("No such API key."))
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
        master = _KEYS.get(key_id)
        if master is not None:
            master.last_used_at = now
    return key


def _key_check(
    key: ApiKey,
    *,
    timestamp: str,
    nonce: str,
    signature: str,
    method: str,
    paths: list[str],
    body: bytes,
    ip: str | None,
    now,
) -> None:
    """The checks on a key as read: its signature, revocation, IP allow-list and account."""
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


# --- Keys kept per process -----------------------------------------------------------------
# A key, its agent and the agent's user are read once per process and kept with a fingerprint
# of the three rows as read (md5 of their JSON, the key's ``last_used_at`` left out). Every
# request's nonce is recorded by one statement that also compares that fingerprint with the
# rows as they are now, and records nothing when they differ: then the rows are read again and
# the request decided on them. So a change to the key, the agent or the user (revoked, rotated,
# allow-list, account disabled, level) applies from the very next request, as without the copy,
# and a verified request costs one statement (the nonce's) instead of three.
# The fingerprint is PostgreSQL's SQL: on other databases (SQLite in development) nothing is
# kept, the rows are read on every request and the nonce is recorded by the ORM.

_KEYS: dict[str, ApiKey] = {}
_KEYS_MAX = 1000


def _kept() -> bool:
    return connection.vendor == "postgresql"


def _fingerprint_sql() -> tuple[str, str, str, str]:
    key, agent, user = ApiKey._meta.db_table, Agent._meta.db_table, get_user_model()._meta.db_table
    sql = f"md5((to_jsonb({key}) - 'last_used_at')::text || to_jsonb({agent})::text || to_jsonb({user})::text)"
    return sql, key, agent, user


def _key_load(key_id: str) -> ApiKey | None:
    """The key with its agent and user, from the database (kept for this process's next requests)."""
    if not _kept():
        return ApiKey.objects.select_related("agent__user").filter(key_id=key_id).first()
    fingerprint, *_tables = _fingerprint_sql()
    key = (
        ApiKey.objects.select_related("agent__user")
        .annotate(_fingerprint=RawSQL(fingerprint, ()))  # noqa: S611 - no user input in it
        .filter(key_id=key_id)
        .first()
    )
    if key is None:
        _KEYS.pop(key_id, None)
        return None
    if len(_KEYS) >= _KEYS_MAX:
        _KEYS.clear()
    _KEYS[key_id] = key
    return _key_copy(key)


def _key_cached(key_id: str) -> ApiKey | None:
    master = _KEYS.get(key_id)
    return _key_copy(master) if master is not None else None


def _key_copy(master: ApiKey) -> ApiKey:
    """A request's own copy of a kept key, agent and user: whatever a request caches on them
    (a related row read later) stays with that request."""
    key, agent, user = _row_copy(master), _row_copy(master.agent), _row_copy(master.agent.user)
    agent.user = user  # also the user's reverse cache (user.agent)
    key.agent = agent
    return key


def _row_copy(row):
    """What ``copy.copy(row)`` makes of a model instance (its fields, and its own state with its
    own cache of related rows), without pickling's detour through ``__reduce__`` and the app
    registry. These models have no binary field (the one thing ``__getstate__`` converts)."""
    new = row.__class__.__new__(row.__class__)
    new.__dict__.update(row.__dict__)
    new._state = state = copy.copy(row._state)
    state.fields_cache = state.fields_cache.copy()
    return new


def _nonce_record(key: ApiKey, *, nonce: str, now) -> bool | None:
    """Record the nonce if the key's rows are still those ``key`` was read from: True when
    recorded, False when the nonce was used already, None when the rows changed (or are gone)
    and nothing was recorded. One statement, committed by itself (autocommit) outside a
    transaction: a nonce counts once used, whatever the rest of the request does. Elsewhere
    than on PostgreSQL the key was read by this request: the nonce alone, True or False."""
    if not _kept():
        try:
            with transaction.atomic():
                ApiNonce.objects.create(key=key, nonce=nonce)
        except IntegrityError:
            return False
        return True
    fingerprint, key_table, agent_table, user_table = _fingerprint_sql()
    nonce_table = ApiNonce._meta.db_table
    sql = f"""
        WITH k AS (
            SELECT {key_table}.id, {fingerprint} = %s AS same
            FROM {key_table}
            JOIN {agent_table} ON {agent_table}.id = {key_table}.agent_id
            JOIN {user_table} ON {user_table}.id = {agent_table}.user_id
            WHERE {key_table}.id = %s
        ), n AS (
            INSERT INTO {nonce_table} (key_id, nonce, seen_at)
            SELECT id, %s, %s FROM k WHERE same
            ON CONFLICT (key_id, nonce) DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT same FROM k), EXISTS (SELECT 1 FROM n)
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [key._fingerprint, key.pk, nonce, now])  # type: ignore[attr-defined]
        same, recorded = cursor.fetchone()
    if not same:
        _KEYS.pop(key.key_id, None)
        return None
    return bool(recorded)


def nonces_purge() -> int:
    """Forget nonces older than the timestamp window: a replay of one is refused by its time."""
    cutoff = timezone.now() - timedelta(seconds=settings.AGENT_API_MAX_SKEW * 2)
    deleted, _rows = ApiNonce.objects.filter(seen_at__lt=cutoff).delete()
    return deleted
