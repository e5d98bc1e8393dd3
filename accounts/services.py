"""Failed logins: three locks, so that a stranger cannot lock a buyer or an agent out.

allauth's own limit keyed on the email alone: five wrong passwords from anywhere locked the
owner out too. Instead (all limits are settings, see README):

- ``client``: one account from one client (its IP address, IPv6 by /64), 5 failures / 5 min.
  The owner, coming from elsewhere, still gets in.
- ``ip``: one client across all accounts, against one address spraying many accounts.
- ``account``: one account from every client, far above the first (30 failures an hour), the
  last line against distributed guessing. It locks the account for everyone for a while and
  emails the owner once per lockout, with a link to reset the password.

Each lock: LIMIT failures within WINDOW minutes of the first failure lock it for LOCK minutes,
after which counting starts afresh. While a lock holds no password is checked, so the right
one is refused too. Locks and counters live in the cache (Redis in production), keyed by a hash
of the login as typed, for unknown emails exactly as for known ones: they tell nothing about
which emails have accounts.
"""

import logging
import time
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from .models import User
from .selectors import ACCOUNT, CLIENT, IP, TIERS, LoginLock, lock_cache_key, lock_subject, login_lock_find

log = logging.getLogger(__name__)


def _policy(kind: str) -> tuple[int, int, int]:
    """(failures, window in seconds, lock in seconds) of one lock, read from the settings."""
    prefix = {CLIENT: "LOGIN_CLIENT", IP: "LOGIN_IP", ACCOUNT: "LOGIN_ACCOUNT"}[kind]
    return (
        getattr(settings, f"{prefix}_FAILURE_LIMIT"),
        getattr(settings, f"{prefix}_WINDOW_MINUTES") * 60,
        getattr(settings, f"{prefix}_LOCK_MINUTES") * 60,
    )


def _failures_key(kind: str, subject: str) -> str:
    return f"login:{kind}:failures:{subject}"


def _count(key: str, window: int) -> int:
    """One more failure in a window that starts at the first one (atomic in Redis and locmem)."""
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # the window ended between add and incr
        cache.set(key, 1, timeout=window)
        return 1


def login_failure_record(*, login: str, ip: str | None) -> LoginLock | None:
    """Count a wrong password for this login from this client; the lock that now holds, if any.

    The failure that reaches a limit starts that lock (and clears its count). Only the request
    that starts an account lock warns the owner: once per lockout, however many attempts follow.
    """
    for kind in TIERS:
        limit, window, lock_seconds = _policy(kind)
        subject = lock_subject(kind, login=login, ip=ip)
        failures_key = _failures_key(kind, subject)
        if _count(failures_key, window) < limit:
            continue
        until = time.time() + lock_seconds
        started = cache.add(lock_cache_key(kind, subject), until, timeout=lock_seconds)
        cache.delete(failures_key)
        if started:
            log.warning("login lock %s started for %s minutes (%s)", kind, lock_seconds // 60, subject)
            if kind == ACCOUNT:
                _warn_owner(login=login, until=until)
    return login_lock_find(login=login, ip=ip)


def login_success_record(*, login: str, ip: str | None) -> None:
    """The right password: this client's failures for this account are forgotten.

    The other counts stay: a login to one's own account must not reset a spray, nor the owner's
    login the count of a distributed attack.
    """
    cache.delete(_failures_key(CLIENT, lock_subject(CLIENT, login=login, ip=ip)))


def login_locks_clear(*, login: str, ip: str | None = None) -> None:
    """The owner proved themselves (a new password, e.g. by the reset link): unlock the account
    for everyone, and for the client they did it from."""
    keys = [lock_cache_key(ACCOUNT, lock_subject(ACCOUNT, login=login, ip=ip))]
    keys.append(_failures_key(ACCOUNT, lock_subject(ACCOUNT, login=login, ip=ip)))
    if ip:
        subject = lock_subject(CLIENT, login=login, ip=ip)
        keys += [lock_cache_key(CLIENT, subject), _failures_key(CLIENT, subject)]
    cache.delete_many(keys)


def _warn_owner(*, login: str, until: float) -> None:
    user = User.objects.filter(email__iexact=login.strip()).only("pk").first()
    if user is None:  # an unknown email is locked all the same, but there is nobody to tell
        return
    try:
        login_lock_warn(user_id=user.pk, until=until)
    except Exception:  # the lock stands; the email is retried by a task
        log.warning("login lock email to user %s failed; queued for retry", user.pk, exc_info=True)
        from .tasks import warn_login_locked

        try:
            warn_login_locked.delay(user.pk, until)
        except Exception:
            log.exception("could not queue the login lock email to user %s", user.pk)


def login_lock_warn(*, user_id: int, until: float) -> None:
    """Email the owner that sign-in to the account is paused, until when, and how to reset the
    password. No addresses of the attempts and no secret in it."""
    user = User.objects.get(pk=user_id)
    with translation.override(settings.LANGUAGE_CODE):
        context = {
            "email": user.email,
            "failures": settings.LOGIN_ACCOUNT_FAILURE_LIMIT,
            "window_minutes": settings.LOGIN_ACCOUNT_WINDOW_MINUTES,
            "until": timezone.localtime(datetime.fromtimestamp(until, tz=UTC)),
            "reset_url": settings.SITE_URL + reverse("account_reset_password"),
            "site_url": settings.SITE_URL,
        }
        subject = _("Sign-in to your account is paused after many wrong passwords")
        body = render_to_string("account/email/login_locked.txt", context)
    send_mail(subject, body, None, [user.email])
