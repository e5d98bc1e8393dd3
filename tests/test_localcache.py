"""marketplace.localcache's promise to the pages that read site-wide values through it: a change
applies at once in the process that made it, and within LOCAL_SECONDS in every other one."""

import pytest
from django.core.cache import cache

from marketplace import localcache

KEY = "tests:localcache:value"


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(localcache.time, "monotonic", lambda: now[0])
    return now


def test_another_processs_change_is_seen_within_local_seconds(clock):
    assert localcache.local_get_or_set(KEY, lambda: "old", 300) == "old"
    # Another process changes the value and forgets it: the shared entry goes, this copy stays.
    cache.delete(KEY)
    assert localcache.local_get_or_set(KEY, lambda: "new", 300) == "old"
    clock[0] += localcache.LOCAL_SECONDS - 0.01
    assert localcache.local_get_or_set(KEY, lambda: "new", 300) == "old"
    clock[0] += 0.02
    assert localcache.local_get_or_set(KEY, lambda: "new", 300) == "new"


def test_a_forget_applies_at_once_here_and_empties_what_may_show_the_value(clock):
    assert localcache.local_get_or_set(KEY, lambda: "old", 300) == "old"
    fragment = localcache.FRAGMENT + "footer:en"
    assert localcache.local_fragment(fragment, lambda: "<footer>old</footer>") == "<footer>old</footer>"
    kept = localcache.Kept(limit=4)
    assert kept.get_or_load(("home",), lambda: "old list", 3) == "old list"
    localcache.local_forget(KEY)
    assert cache.get(KEY) is None
    assert localcache.local_get_or_set(KEY, lambda: "new", 300) == "new"
    assert localcache.local_fragment(fragment, lambda: "<footer>new</footer>") == "<footer>new</footer>"
    assert kept.get_or_load(("home",), lambda: "new list", 3) == "new list"
