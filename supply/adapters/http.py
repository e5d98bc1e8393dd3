"""The HTTP plumbing every adapter shares: one call with the connection's timeout, and the
mapping of what went wrong to SupplyUnavailable (never sent) or SupplyOutcomeUnknown (may have
been received)."""

from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from .base import SupplyOutcomeUnknown, SupplyUnavailable

USER_AGENT = "kamarket-supply/1.0"


def timeouts(seconds: int) -> tuple[float, float]:
    """(connect, read): connecting gets at most 5 seconds, reading the whole budget."""
    return (float(min(5, seconds)), float(seconds))


def _never_connected(exc: requests.ConnectionError) -> bool:
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, NewConnectionError) or isinstance(getattr(cause, "reason", None), NewConnectionError)


def send(method: str, url: str, *, timeout: int, **kwargs: Any) -> requests.Response:
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    try:
        return requests.request(
            method, url, headers=headers, timeout=timeouts(timeout), allow_redirects=False, **kwargs
        )
    except (requests.ConnectTimeout, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
        raise SupplyUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
    except requests.ConnectionError as exc:
        # No connection made (refused, no such host): nothing was sent. A connection reset after
        # the request went out is a ConnectionError too, and then the outcome is unknown.
        if _never_connected(exc):
            raise SupplyUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
        raise SupplyOutcomeUnknown(f"{type(exc).__name__}: {exc}"[:300]) from exc
    except requests.RequestException as exc:  # a read timeout above all
        raise SupplyOutcomeUnknown(f"{type(exc).__name__}: {exc}"[:300]) from exc


def json_of(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise SupplyOutcomeUnknown(f"HTTP {response.status_code}: not JSON: {response.text[:150]}") from exc
