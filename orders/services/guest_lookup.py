"""Order lookup for guests (no account), and the browser that remembers a guest's orders.

Three ways to find guest orders again, none of which tells a stranger anything:

- order number + query password, or email + query password: the orders whose own password
  matches (an email's newest GUEST_LOOKUP_EMAIL_MAX_ORDERS with a password are checked). A
  wrong password, an unknown number and an unknown email get one and the same refusal, after
  as many password hashes as a match would have cost (see ``_checks``).
- an order number or an email alone: a one-time link is emailed to the order's address (or to
  that address, for all its recent guest orders). The request only queues a task, which does
  the looking up and the sending: the answer, and the time it takes, are the same whether or
  not anything was found; the link's token never leaves the worker but in the email.
- this browser: the orders placed or proved in it (``GuestBrowser``, a cookie of which only the
  SHA-256 is stored), which it may see again, never their codes without a fresh proof.

Every attempt counts against three limits (the client's network, the email, the order number;
``marketplace.ratelimit``, settings GUEST_LOOKUP_*), for found and unknown subjects alike, so
that a refusal for "too many" tells nothing either. Failed and throttled attempts are audited.

Audit targets: an order number as typed (normalised), as the guest pages' own audit rows do, so
that staff see attempts on one order together; an email only masked and hashed
(``gu***@example.net#<sha256>``): rows for one address stay linked, and the log keeps no address
a stranger typed (个人信息保护法 第六条: collect no more personal information than the purpose needs).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from compliance import services as compliance
from marketplace.celery import publish
from marketplace.errors import ServiceError
from marketplace.http import client_ip
from marketplace.ratelimit import RateLimit, Throttled, client_network, rate_limits_hit
from marketplace.text import email_normalise

from ..models import GuestBrowser, GuestLookupLink, Order
from ..selectors.guest import TOKEN_MAX_LENGTH, token_hash

EMAIL, NUMBER = "email", "number"
PASSWORD_ACTION = "guest_lookup.password"
THROTTLED_ACTION = "guest_lookup.throttled"
LINK_ACTION = "guest_lookup.link"
# An email lookup hashes at least this many passwords, found orders or not: an address with
# one, two or three password-protected orders answers as slowly as an unknown one.
MIN_EMAIL_CHECKS = 3
# Orders a one-time link for an email covers: its newest guest orders.
LINK_MAX_ORDERS = 50


class LookupRefused(ServiceError):
    """Nothing matched: one message for a wrong password, an unknown number or email."""

    code = "guest_lookup_refused"
    status = 400

    @classmethod
    def default_message(cls) -> str:
        return _(
            "We found no order for what you entered. Check the order number or email and the query "
            "password, or leave the password empty and we will email you a link."
        )


class LookupThrottled(ServiceError):
    """Too many lookups from this network, or for this email or order number."""

    code = "guest_lookup_throttled"
    status = 429

    def __init__(self, throttled: Throttled):
        super().__init__(_("Too many order lookups. Please wait a while, then try again."))
        self.throttled = throttled


@dataclass(frozen=True)
class LookupQuery:
    """What a visitor typed: an order number (normalised) or an email (normalised)."""

    kind: str
    value: str


def audit_target(query: LookupQuery) -> str:
    if query.kind == NUMBER:
        return query.value[:40]
    local, _at, domain = query.value.partition("@")
    digest = hashlib.sha256(query.value.encode()).hexdigest()[:16]
    return f"{local[:2]}***@{domain[:60]}#{digest}"


def _throttle(*, query: LookupQuery, request) -> None:
    """Count this attempt on every limit it falls under; ``LookupThrottled`` (audited) past one."""
    minutes = 60
    limits = [
        RateLimit(
            "guest_lookup.ip",
            client_network(client_ip(request)),
            settings.GUEST_LOOKUP_IP_LIMIT,
            settings.GUEST_LOOKUP_IP_WINDOW_MINUTES * minutes,
        )
    ]
    if query.kind == EMAIL:
        limits.append(
            RateLimit(
                "guest_lookup.email",
                query.value,
                settings.GUEST_LOOKUP_EMAIL_LIMIT,
                settings.GUEST_LOOKUP_EMAIL_WINDOW_MINUTES * minutes,
            )
        )
    else:
        limits.append(
            RateLimit(
                "guest_lookup.number",
                query.value,
                settings.GUEST_LOOKUP_NUMBER_LIMIT,
                settings.GUEST_LOOKUP_NUMBER_WINDOW_MINUTES * minutes,
            )
        )
    throttled = rate_limits_hit(limits)
    if throttled is not None:
        compliance.audit_denied(
            action=THROTTLED_ACTION,
            request=request,
            target=audit_target(query),
            detail=f"{throttled.scope} limit, {throttled.retry_after}s left",
        )
        raise LookupThrottled(throttled)


def _checks(password: str, hashes: list[str], *, at_least: int) -> list[bool]:
    """``password`` against each hash; padded with checks against no hash (Django then runs its
    default hasher once, as for a user without a usable password) up to ``at_least``, so that
    "nothing there" costs what "something there" does."""
    results = [check_password(password, encoded) for encoded in hashes]
    for _pad in range(at_least - len(hashes)):
        check_password(password, "")
    return results


def guest_lookup_password(*, query: LookupQuery, password: str, request=None) -> list[Order]:
    """The guest orders ``query`` names whose query password is ``password`` (newest first).
    ``LookupThrottled`` past a limit; ``LookupRefused`` (audited) when none matches."""
    _throttle(query=query, request=request)
    guests = Order.objects.filter(buyer__isnull=True).exclude(query_password="")
    if query.kind == NUMBER:
        candidates = list(guests.filter(number=query.value)[:1])
        at_least = 1
    else:
        newest = guests.filter(guest_email=query.value).order_by("-id")
        candidates = list(newest[: settings.GUEST_LOOKUP_EMAIL_MAX_ORDERS])
        at_least = MIN_EMAIL_CHECKS
    results = _checks(password, [o.query_password for o in candidates], at_least=at_least)
    why = f"wrong query password ({len(candidates)} orders)" if candidates else "no guest order with a query password"
    found = [order for order, ok in zip(candidates, results, strict=True) if ok]
    if not found:
        compliance.audit_denied(action=PASSWORD_ACTION, request=request, target=audit_target(query), detail=why)
        raise LookupRefused()
    return found


# --- the one-time link --------------------------------------------------------------------------


def guest_lookup_link_request(*, query: LookupQuery, request=None) -> None:
    """Queue the one-time link for ``query`` (``guest_lookup_link_send`` finds and sends it);
    ``LookupThrottled`` past a limit. Nothing here depends on what exists."""
    _throttle(query=query, request=request)
    from ..tasks import send_lookup_link

    if not publish(send_lookup_link, query.kind, query.value):
        raise ServiceError(_("We could not send the email just now. Please try again in a few minutes."))


def guest_lookup_link_send(*, kind: str, value: str) -> bool:
    """The task's work: the guest orders ``kind``/``value`` names, a fresh link for them, the
    email. Sends nothing when there are none, or when GUEST_LOOKUP_LINKS_PER_HOUR links went to
    that address in the last hour (audited; the visitor was told the same either way)."""
    now = timezone.now()
    guests = Order.objects.filter(buyer__isnull=True)
    if kind == NUMBER:
        orders = list(guests.filter(number=value)[:1])
        email = orders[0].guest_email if orders else ""
    else:
        email = email_normalise(value)
        orders = list(guests.filter(guest_email=email).order_by("-id")[:LINK_MAX_ORDERS])
    if not orders:
        return False
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        sent = GuestLookupLink.objects.filter(email=email, created_at__gte=now - timedelta(hours=1)).count()
        if sent >= settings.GUEST_LOOKUP_LINKS_PER_HOUR:
            compliance.audit_denied(
                action=LINK_ACTION,
                target=audit_target(LookupQuery(EMAIL, email)),
                detail=f"not sent: {sent} links to this address in the last hour",
            )
            return False
        link = GuestLookupLink.objects.create(
            token_hash=token_hash(token),
            email=email,
            expires_at=now + timedelta(minutes=settings.GUEST_LOOKUP_LINK_MINUTES),
        )
        link.orders.set(orders)
    _email_link(email=email, token=token, count=len(orders))
    return True


def _email_link(*, email: str, token: str, count: int) -> None:
    with translation.override(settings.LANGUAGE_CODE):
        context = {
            "url": settings.SITE_URL + reverse("orders:guest_lookup_link", args=[token]),
            "count": count,
            "minutes": settings.GUEST_LOOKUP_LINK_MINUTES,
            "site": settings.SITE_URL,
        }
        body = render_to_string("orders/email/lookup_link.txt", context)
        send_mail(_("Your orders: a one-time link"), body, None, [email])


def guest_lookup_link_use(*, token: str, request=None) -> list[Order]:
    """Use a one-time link (once, before it expires): its guest orders, newest first.
    ``LookupRefused`` (audited) for an unknown, used or expired link."""
    now = timezone.now()
    digest = token_hash(token)
    with transaction.atomic():
        used = GuestLookupLink.objects.filter(token_hash=digest, used_at__isnull=True, expires_at__gt=now).update(
            used_at=now
        )
        if used:
            link = GuestLookupLink.objects.get(token_hash=digest)
            return list(link.orders.filter(buyer__isnull=True).order_by("-id"))
    compliance.audit_denied(
        action=LINK_ACTION, request=request, target=f"link {digest[:12]}", detail="used, expired or unknown"
    )
    raise LookupRefused(_("This link is not valid any more: it works once, for a short time. Ask for a new one below."))


# --- the browser's orders -----------------------------------------------------------------------


def guest_browser_remember(*, token: str | None, orders: list[Order]) -> str:
    """Remember guest ``orders`` for the browser whose cookie is ``token`` (a new browser, and a
    new token, when it has none or an unknown one); returns the token to set again."""
    known = token and len(token) <= TOKEN_MAX_LENGTH
    browser = GuestBrowser.objects.filter(token_hash=token_hash(token or "")).first() if known else None
    if browser is None:
        token = secrets.token_urlsafe(32)
        browser = GuestBrowser.objects.create(token_hash=token_hash(token))
    else:
        GuestBrowser.objects.filter(pk=browser.pk).update(last_seen_at=timezone.now())
    browser.orders.add(*[o for o in orders if o.buyer_id is None])
    assert token is not None
    return token


def guest_browser_forget(*, token: str | None) -> None:
    """This browser forgets its guest orders (a shared computer): its row goes."""
    if token:
        GuestBrowser.objects.filter(token_hash=token_hash(token)).delete()


def guest_lookup_purge() -> int:
    """Daily: links a day past their expiry, and browsers not seen for the cookie's lifetime."""
    now = timezone.now()
    links = GuestLookupLink.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()[0]
    stale = now - timedelta(days=settings.GUEST_BROWSER_COOKIE_DAYS)
    browsers = GuestBrowser.objects.filter(last_seen_at__lt=stale).delete()[0]
    return links + browsers
