"""Reads for accounts: the login locks that hold for an attempt (see ``accounts.services``)."""

import hashlib
import math
import time
from dataclasses import dataclass

from django.core.cache import cache

from marketplace.ratelimit import client_network

from .models import User

# The three locks, in the order a page names them when several hold (the widest first).
ACCOUNT, CLIENT, IP = "account", "client", "ip"
TIERS = (ACCOUNT, CLIENT, IP)


@dataclass(frozen=True)
class LoginLock:
    """A lock that refuses a login: which one, and until when (epoch seconds)."""

    kind: str
    until: float

    @property
    def seconds_left(self) -> int:
        return max(1, math.ceil(self.until - time.time()))

    @property
    def minutes_left(self) -> int:
        """Rounded up: "1 minute" while any of it is left, never "0 minutes"."""
        return max(1, math.ceil(self.seconds_left / 60))


def login_key(login: str) -> str:
    """The login as typed (an email, any case), hashed: keys hold no addresses."""
    return hashlib.sha256(login.strip().lower().encode()).hexdigest()[:32]


def lock_subject(kind: str, *, login: str, ip: str | None) -> str:
    if kind == ACCOUNT:
        return login_key(login)
    if kind == CLIENT:
        return f"{login_key(login)}:{client_network(ip)}"
    return client_network(ip)


def lock_cache_key(kind: str, subject: str) -> str:
    return f"login:{kind}:lock:{subject}"


def login_lock_find(*, login: str, ip: str | None) -> LoginLock | None:
    """The lock that refuses this login from this client now, if any (the one ending last)."""
    keys = {kind: lock_cache_key(kind, lock_subject(kind, login=login, ip=ip)) for kind in TIERS}
    found = cache.get_many(list(keys.values()))
    now = time.time()
    locks = [LoginLock(kind, float(found[key])) for kind, key in keys.items() if key in found]
    locks = [lock for lock in locks if lock.until > now]
    if not locks:
        return None
    return max(locks, key=lambda lock: (lock.until, -TIERS.index(lock.kind)))


def user_by_login(*, login: str) -> User | None:
    """The account a login form's email names (case-insensitive), or None."""
    login = login.strip()
    if not login:
        return None
    return User.objects.filter(email__iexact=login).first()
