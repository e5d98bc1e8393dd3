from typing import TypeVar

from django.conf import settings

from marketplace.errors import NotFound

T = TypeVar("T")


def found_or_404(value: T | None) -> T:
    """A selector's answer, or 404 (``NotFound``, an Http404) when it found nothing: selectors
    that return None leave the 404 to the view (someone else's order does not exist for them)."""
    if value is None:
        raise NotFound
    return value


def client_ip(request) -> str | None:
    """The client's address, for reveal logs and orders.

    Behind ``NUM_PROXIES`` trusted reverse proxies, each appends the address it saw to
    X-Forwarded-For, so the client is that many entries from the right; anything further left
    was sent by the client and proves nothing.
    """
    hops = settings.NUM_PROXIES
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR") or None
