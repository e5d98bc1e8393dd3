"""Secrets at rest (card codes): MultiFernet with rotatable keys, and a keyed hash for lookups.

Keys come from settings (the environment in production). The first Fernet key encrypts;
all of them decrypt, so a new key can be put in front and old tokens rotated at leisure.
"""

import hashlib
import hmac
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
