"""A per-process copy, for a few seconds, of small site-wide values kept in the shared cache.

Every page's footer and middleware read the same few values (the agreements in force, the
qualifications shown, the promised response time): from Redis that is a round trip and an
unpickling each, several per page. Here a process keeps what it read for ``LOCAL_SECONDS``.
A change applies at once in the process that made it (its ``local_forget`` with the shared
cache's delete) and within ``LOCAL_SECONDS`` in the others. Tests clear it with the cache."""

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction
from django.template.loader import get_template
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language

from marketplace.pagecache import pages_forget

LOCAL_SECONDS = 10.0
_store: dict[str, tuple[float, Any]] = {}
MAX_ENTRIES = 1000
_kept: list["Kept"] = []  # every ``Kept`` (emptied with the copies above)
FRAGMENT = "fragment:"  # the keys of ``local_fragment``
T = TypeVar("T")


def local_get_or_set(key: str, load: Callable[[], Any], seconds: int) -> Any:
    """The value of ``key``: this process's copy while fresh, else the shared cache's (``load()``
    computes and stores it there for ``seconds`` when missing). ``load`` must not return None."""
    now = time.monotonic()
    hit = _store.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = cache.get(key)
    if value is None:
        value = load()
        cache.set(key, value, seconds)
    _store[key] = (now + LOCAL_SECONDS, value)
    return value


def local_only(key: str, load: Callable[[], Any]) -> Any:
    """``load()`` kept in this process only, for ``LOCAL_SECONDS`` (values that are cheap to
    load but read by every page, e.g. model rows that must not be pickled into the shared
    cache); ``local_forget(key)`` after a change."""
    now = time.monotonic()
    hit = _store.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = load()
    _store[key] = (now + LOCAL_SECONDS, value)
    return value


def local_forget(key: str) -> None:
    """Forget ``key`` here and in the shared cache (the others' copies end within LOCAL_SECONDS).
    Inside a transaction, again when it commits: a page read in between (the old rows still the
    committed ones) may have cached the old value."""
    _forget(key)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _forget(key))


def _forget(key: str) -> None:
    _store.pop(key, None)
    for name in [k for k in _store if k.startswith(FRAGMENT)]:  # fragments may show the value
        _store.pop(name, None)
    for kept in _kept:  # lists kept for a few seconds may show it too
        kept.clear()
    pages_forget()  # whole pages of anonymous visitors (marketplace.pagecache) may show it too
    cache.delete(key)


def local_clear() -> None:
    """Forget every per-process copy (tests, with the shared cache's clear)."""
    _store.clear()
    for kept in _kept:
        kept.clear()
    pages_forget()


def local_fragment(key: str, render: Callable[[], T]) -> T:
    """A rendered template fragment kept in this process for ``LOCAL_SECONDS`` (the
    ``{% localcache %}`` tag; the text split at its per-call parts when it has some): what it
    shows may be that old, like the values above."""
    now = time.monotonic()
    hit = _store.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    if len(_store) > MAX_ENTRIES:  # keys are few (fragment x language x flags); a bound all the same
        _store.clear()
    text = render()
    _store[key] = (now + LOCAL_SECONDS, text)
    return text


class _Recent:
    """At most ``limit`` entries by key, the least recently used out first (``Drawn``, ``Kept``)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _get(self, key: tuple) -> Any:
        entry = self._items.get(key)
        if entry is not None:
            self._items.move_to_end(key)
        return entry

    def _put(self, key: tuple, entry: Any) -> None:
        self._items[key] = entry
        self._items.move_to_end(key)
        if len(self._items) > self.limit:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class Drawn(_Recent):
    """HTML drawn once per process for each key and reused: at most ``limit`` kept, the least
    recently used out first. The key must hold everything the HTML shows (language included):
    nothing is ever stale, only forgotten (the product cards, the order rows, the templates'
    URLs: ``templatetags/kept.py``)."""

    def get_or_draw(self, key: tuple, draw: Callable[[], str]) -> str:
        html = self._get(key)
        if html is None:
            html = draw()
            self._put(key, html)
        return html

    def template(self, name: str, key: tuple, context: dict) -> SafeString:
        """Template ``name`` drawn with ``context`` once per (``name``, language, ``*key``): ``key``
        holds every value the context shows, a value whose text is what is shown by its text
        (``Decimal("1.0")`` and ``Decimal("1.00")`` are equal keys but draw differently)."""
        html = self.get_or_draw((name, get_language(), *key), lambda: get_template(name).render(context))
        return mark_safe(html)  # noqa: S308 (rendered, and escaped, by the template engine)

    def template_for_order(self, name: str, key: tuple, context: dict, *, number: str, token) -> SafeString | None:
        """An order's part: template ``name`` drawn as ``template`` draws it, with ``context``
        holding ``SAMPLE_NUMBER`` where the order's number goes (``csrf_token`` is set to
        ``SAMPLE_TOKEN`` here), then this order's ``number`` and the viewer's ``token`` put in the
        samples' places, so one text serves every order (``key``: everything else it shows).
        None where the samples cannot stand for them (a number or a token not of plain letters
        and digits, or no token): the caller draws the template as it stands."""
        token_text = str(token) if token else ""
        if not (_plain(number) and _plain(token_text)) or token_text == "NOTPROVIDED":
            return None
        html = self.template(name, key, {**context, "csrf_token": SAMPLE_TOKEN})
        return mark_safe(html.replace(SAMPLE_NUMBER, number).replace(SAMPLE_TOKEN, token_text))  # noqa: S308 (alphanumeric values into markup the engine escaped)


# ``Drawn.template_for_order``'s stand-ins. The number is 28 characters of [A-Z0-9] like an
# order's or a recharge's (new_order_number), with a date prefix no clock gives (month 00); the
# token is 64 of [a-zA-Z0-9] like a masked CSRF token.
SAMPLE_NUMBER = "0000000000SAMPLE0NUMBER00000"
SAMPLE_TOKEN = "SampleCsrfToken" + "0" * 49


def _plain(text: str) -> bool:
    return text.isascii() and text.isalnum()


def shown_text(value) -> str | None:
    """A value as a ``Drawn`` key holds it when its text is what is shown (a Decimal's digits)."""
    return None if value is None else str(value)


def _now() -> float:
    """The clock of ``Kept`` (a function so that tests can move it)."""
    return time.monotonic()


class Kept(_Recent):
    """Values kept in this process for a few seconds each (the caller's ``seconds``), at most
    ``limit`` of them, the least recently used out first: for reads whose answer may be that old
    (a page's list of products, its stock included, for every viewer who pays the same prices).
    ``local_clear`` and ``local_forget`` empty every one."""

    def __init__(self, limit: int):
        super().__init__(limit)
        _kept.append(self)

    def get_or_load(self, key: tuple, load: Callable[[], T], seconds: float) -> T:
        now = _now()
        hit = self._get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        self._put(key, (now + seconds, value))
        return value
