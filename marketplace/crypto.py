"""Secrets at rest (card codes): MultiFernet with rotatable keys, and a keyed hash for lookups.

Keys come from settings (the environment in production). The first Fernet key encrypts;
all of them decrypt, so a new key can be put in front and old tokens rotated at leisure.

Every column that holds such tokens is declared next to its model (``declare_encrypted``):
card codes, stock batches' uploads, agents' API secrets and payout accounts, storefront
operators' and real-name verifications' ID numbers, supplier credentials, two-factor secrets.
``rotate_all`` (``manage.py rotate_card_keys``) re-encrypts every one of them under the primary
key, and ``check_all`` (``manage.py keys_check``) decrypts every one, so that an old key is
dropped, or a backup restored, only once nothing needs a key that is not there.
tests/test_key_rotation.py fails if a column holds tokens without being declared.
"""

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.strip().encode()) for key in settings.CARD_CODE_KEYS if key.strip()])


@cache
def _hash_key() -> bytes:
    return settings.STOCK_HASH_KEY.encode()


def reset_key_cache() -> None:
    """For tests and the rotation command: forget keys loaded from settings."""
    _fernet.cache_clear()
    _hash_key.cache_clear()


def encrypt(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("cannot decrypt: no configured key matches") from exc


def encrypted_property(field: str, doc: str = "") -> property:
    """A model attribute read and written in clear and kept encrypted in ``field`` (``name`` over
    ``name_encrypted``): an empty field reads as ""; setting encrypts under the primary key.
    A plain ``property``, so a model's constructor takes it as a keyword like any other."""

    def get(obj) -> str:
        token = getattr(obj, field)
        return decrypt(token) if token else ""

    def put(obj, value: str) -> None:
        setattr(obj, field, encrypt(value))

    return property(get, put, doc=doc)


def rotate(token: str) -> str:
    """Re-encrypt a token under the primary (first) key."""
    return _fernet().rotate(token.encode()).decode()


def keyed_digest(text: str) -> str:
    """HMAC-SHA256 of a secret: equal secrets give equal digests, nothing can be read back."""
    return hmac.new(_hash_key(), text.encode(), hashlib.sha256).hexdigest()


def mask(text: str, keep: int = 4) -> str:
    if not text:
        return ""
    if len(text) <= keep:
        return "•" * len(text)
    return "•" * min(8, len(text) - keep) + text[-keep:]


# --- Where tokens are kept -----------------------------------------------------------------


@dataclass(frozen=True)
class Encrypted:
    """Columns of one model that hold tokens of this module."""

    model: str  # "app_label.ModelName"
    fields: tuple[str, ...]
    # For JSON columns: the keys of the object that hold tokens (the rest is left alone).
    json_keys: tuple[str, ...] = ()


_declared: dict[str, Encrypted] = {}


def declare_encrypted(model: str, *fields: str, json_keys: tuple[str, ...] = ()) -> None:
    """Say that these columns of ``model`` ("app_label.ModelName") hold tokens: empty values
    are allowed, anything else must decrypt."""
    _declared[model] = Encrypted(model, fields, json_keys)


def declared_encrypted() -> list[Encrypted]:
    return sorted(_declared.values(), key=lambda e: e.model)


def _tokens_of(entry: Encrypted, value) -> Iterator[tuple[str, str]]:
    """(where, token) for each token in one column's value."""
    if entry.json_keys:
        if isinstance(value, dict):
            for key in entry.json_keys:
                if value.get(key):
                    yield key, value[key]
    elif value:
        yield "", value


def rotate_all(*, chunk: int = 500) -> dict[str, int]:
    """Re-encrypt every declared token under the primary key; the rows seen per model. Rows are
    locked a chunk at a time (a sale skips a locked code and takes the next one)."""
    from django.apps import apps
    from django.db import transaction

    counts = {}
    for entry in declared_encrypted():
        model = apps.get_model(entry.model)
        manager = model._base_manager
        last, seen = None, 0
        while True:
            with transaction.atomic():
                rows = manager.select_for_update().order_by("pk").only("pk", *entry.fields)
                rows = list((rows if last is None else rows.filter(pk__gt=last))[:chunk])
                if not rows:
                    break
                for row in rows:
                    for name in entry.fields:
                        value = getattr(row, name)
                        if entry.json_keys:
                            for key, token in _tokens_of(entry, value):
                                value[key] = rotate(token)
                        elif value:
                            setattr(row, name, rotate(value))
                manager.bulk_update(rows, list(entry.fields))
            seen += len(rows)
            last = rows[-1].pk
        counts[entry.model] = seen
    return counts


@dataclass
class KeyCheck:
    """What ``check_all`` found for one model's declared columns."""

    model: str
    tokens: int = 0
    failed: int = 0
    examples: list[str] = field(default_factory=list)  # "pk 12 secret_enc", the first few


def check_all(*, primary_only: bool = False) -> list[KeyCheck]:
    """Decrypt every declared token with the configured keys (or the primary key alone: is it
    safe to drop the others?). Nothing is written and no plaintext is kept."""
    from django.apps import apps

    keys = [key.strip().encode() for key in settings.CARD_CODE_KEYS if key.strip()]
    fernet = Fernet(keys[0]) if primary_only else MultiFernet([Fernet(key) for key in keys])
    report = []
    for entry in declared_encrypted():
        model = apps.get_model(entry.model)
        found = KeyCheck(entry.model)
        rows = model._base_manager.order_by("pk").values_list("pk", *entry.fields)
        for pk, *values in rows.iterator(chunk_size=2000):
            for name, value in zip(entry.fields, values, strict=True):
                for key, token in _tokens_of(entry, value):
                    found.tokens += 1
                    try:
                        fernet.decrypt(token.encode())
                    except (InvalidToken, TypeError, ValueError):
                        found.failed += 1
                        if len(found.examples) < 5:
                            found.examples.append(f"pk {pk} {name}{'.' + key if key else ''}")
        report.append(found)
    return report
