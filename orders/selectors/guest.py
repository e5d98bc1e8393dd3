"""Reads for guests' order lookup: the orders a browser remembers (``GuestBrowser``, known by
the SHA-256 of its cookie) and whether a one-time lookup link is still good."""

import hashlib

from django.utils import timezone

from ..models import GuestBrowser, GuestLookupLink, Order
from .orders import with_email_refusal

# Longer than any token we hand out (43 characters): anything else is not ours, unhashed.
TOKEN_MAX_LENGTH = 100


def token_hash(token: str) -> str:
    """How a browser's or a link's random token is stored: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _usable(token: str | None) -> bool:
    return bool(token) and len(token or "") <= TOKEN_MAX_LENGTH


def guest_browser_orders(*, token: str | None, limit: int) -> list[Order]:
    """The browser's guest orders, newest first, at most ``limit``: for its list (no codes), each
    with whether its address was refused (``with_email_refusal``), in the same statement."""
    if not _usable(token):
        return []
    remembered = GuestBrowser.orders.through.objects.filter(guestbrowser__token_hash=token_hash(token or ""))
    rows = Order.objects.filter(buyer__isnull=True, pk__in=remembered.values("order_id"))
    return list(with_email_refusal(rows.select_related("product")).order_by("-id")[:limit])


def guest_browser_has_order(*, token: str | None, number: str) -> bool:
    """Whether the browser remembers the guest order ``number`` (it may then see it)."""
    if not _usable(token):
        return False
    return GuestBrowser.orders.through.objects.filter(
        guestbrowser__token_hash=token_hash(token or ""), order__number=number, order__buyer__isnull=True
    ).exists()


def guest_lookup_link_live(*, token: str) -> bool:
    """Whether a one-time link is unused and unexpired (read only: a GET never uses it)."""
    if not _usable(token):
        return False
    return GuestLookupLink.objects.filter(
        token_hash=token_hash(token), used_at__isnull=True, expires_at__gt=timezone.now()
    ).exists()
