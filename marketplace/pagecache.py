"""Whole pages kept for a few seconds per process for anonymous visitors (issue 17).

The catalogue's home, category and product pages and a storefront's home are the same for every
anonymous visitor who asks for the same URL in the same language. ``@anonymous_page`` keeps such
an answer in this process for ``settings.PAGE_CACHE_SECONDS`` (3 s by default) and serves it
again without running the view: the middleware around the view still runs for every request.

**How old a page can be.** An answer is served at most ``PAGE_CACHE_SECONDS`` after its view ran,
so the stock, prices and availability it shows are never older than that (plus what the view
itself reads through caches: the site-wide values of ``marketplace.localcache``, 10 s). Each
gunicorn worker keeps its own copy; nothing is shared, nothing is invalidated: the bound is the
TTL alone. ``local_forget`` (a change of the site-wide values) empties it in the changing process.

**What is never cached or replayed.**
- Anyone with a session cookie (a logged-in member; an anonymous visitor whose session holds a
  landing note, a guest order, pending messages ...) or a messages cookie: the view runs. A
  session or messages written by the view, or a cookie it set, keep its answer out of the cache
  (so ``?src=`` of a poster link is recorded for every visitor, as before).
- Set-Cookie: only the view's body, status and headers are kept; the cookies (CSRF, device id,
  language) are set by the middleware around the view, for each visitor, as without the cache.
- The CSRF token: while a cacheable page is rendered ``csrf_token`` is a placeholder
  (``csrf_placeholder``, a context processor), replaced in every answer, first or replayed, by
  this visitor's own masked token (``get_token``: which also sets the CSRF cookie if needed).
- Only 200 answers to GET/HEAD are kept. The key is the view, scheme, host, full path (query
  string included), language and whether the request is htmx's; the pages have no per-device
  templates and no CSP nonce (scripts are 'self' only, settings' Content-Security-Policy).

The store is bounded (``MAX_BYTES``, least recently used out first)."""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.utils.cache import patch_vary_headers

# Never in any page's text: letters and digits only, so escaping leaves it as it is.
PLACEHOLDER = "csrfPageCachePlaceholder7Qk2ZpT9wLx4"
_PLACEHOLDER_BYTES = PLACEHOLDER.encode()
_FLAG = "_page_cache_render"  # set on the request while a cacheable page is rendered
MAX_BYTES = 16 * 1024 * 1024
_SKIPPED_HEADERS = {"content-length", "set-cookie"}

_lock = threading.Lock()
_pages: OrderedDict[tuple, tuple[float, bytes, int, list[tuple[str, str]]]] = OrderedDict()
_bytes = 0


def _now() -> float:
    """The clock of the TTL (a function so that tests can move it)."""
    return time.monotonic()


def pages_forget() -> None:
    """Forget every page kept in this process (tests; ``local_forget`` after a site-wide change)."""
    global _bytes
    with _lock:
        _pages.clear()
        _bytes = 0


def csrf_placeholder(request: HttpRequest) -> dict:
    """Context processor (after Django's own ``csrf``): the placeholder as ``csrf_token`` while a
    cacheable page is rendered; nothing otherwise."""
    if getattr(request, _FLAG, False):
        return {"csrf_token": PLACEHOLDER}
    return {}


def _key(request: HttpRequest, name: str) -> tuple | None:
    """The page's key, or None when this request must not be served or stored from the cache."""
    if settings.PAGE_CACHE_SECONDS <= 0 or request.method not in ("GET", "HEAD"):
        return None
    cookies = request.COOKIES
    if settings.SESSION_COOKIE_NAME in cookies or CookieStorage.cookie_name in cookies:
        return None
    user = getattr(request, "user", None)
    if user is None or user.is_authenticated:
        return None
    return (
        name,
        request.scheme,
        request.get_host(),
        request.get_full_path(),
        getattr(request, "LANGUAGE_CODE", ""),
        request.headers.get("HX-Request", ""),
    )


def _storable(request: HttpRequest, response: HttpResponse) -> bool:
    if response.status_code != 200 or response.streaming or response.cookies:
        return False
    session = getattr(request, "session", None)
    if session is not None and session.modified:
        return False
    messages = getattr(request, "_messages", None)  # none were pending: no cookie, no session
    return not getattr(messages, "added_new", False)


def _store(key: tuple, response: HttpResponse) -> None:
    global _bytes
    content = response.content
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _SKIPPED_HEADERS]
    expires = _now() + settings.PAGE_CACHE_SECONDS
    with _lock:
        old = _pages.pop(key, None)
        if old is not None:
            _bytes -= len(old[1])
        _pages[key] = (expires, content, response.status_code, headers)
        _bytes += len(content)
        while _bytes > MAX_BYTES and _pages:
            _bytes -= len(_pages.popitem(last=False)[1][1])


def _cached(key: tuple) -> HttpResponse | None:
    with _lock:
        hit = _pages.get(key)
        if hit is None:
            return None
        if hit[0] <= _now():
            return None
        _pages.move_to_end(key)
    _, content, status, headers = hit
    return HttpResponse(content, status=status, headers=headers)


def _personal(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """This visitor's CSRF token in place of the placeholder; the answer varies on the cookie."""
    if not response.streaming and _PLACEHOLDER_BYTES in response.content:
        response.content = response.content.replace(_PLACEHOLDER_BYTES, get_token(request).encode())
    patch_vary_headers(response, ("Cookie",))
    return response


def anonymous_page(view: Callable) -> Callable:
    """Keep the view's answer for anonymous visitors ``PAGE_CACHE_SECONDS`` in this process."""
    name = f"{view.__module__}.{view.__qualname__}"

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        key = _key(request, name)
        if key is None:
            return view(request, *args, **kwargs)
        response = _cached(key)
        if response is None:
            setattr(request, _FLAG, True)
            try:
                response = view(request, *args, **kwargs)
            finally:
                setattr(request, _FLAG, False)
            if _storable(request, response):
                _store(key, response)
        return _personal(request, response)

    return wrapped
