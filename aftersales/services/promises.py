"""The buyer protections every page states, read from the configuration they depend on.

A page never hard-codes "7 days" or "48 hours": the refund window is ``REFUND_WINDOW_DAYS``
and the first-response promise is the longest first-response deadline of the SLA policies
(staff may change those in admin), so what a page promises is what the clocks enforce.
The policy figure is cached (one query per ``CACHE_SECONDS`` at most, and none on a page
that does not show it); saving or deleting a policy forgets it at once.
"""

from typing import cast

from django.conf import settings
from django.utils.functional import cached_property

from marketplace.localcache import local_forget, local_get_or_set

CACHE_KEY = "aftersales:promise:first_response_hours"
CACHE_SECONDS = 300


def first_response_hours() -> int:
    """The longest first-response deadline over all ticket kinds, in hours."""

    def longest() -> int:
        from ..models import SlaPolicy
        from .tickets import DEFAULT_SLA

        hours = SlaPolicy.objects.order_by("-first_response_hours").values_list("first_response_hours", flat=True)
        return hours.first() or DEFAULT_SLA["first_response_hours"]

    # get_or_set returns what is cached or what longest() returned: an int. The stubs say
    # "Any | None" because a cached None would come back as None; nothing here caches one.
    return cast(int, local_get_or_set(CACHE_KEY, longest, CACHE_SECONDS))


def forget(**_kwargs) -> None:
    """Signal receiver: an SLA policy changed (other processes follow within
    marketplace.localcache.LOCAL_SECONDS), now and again when the change commits."""
    local_forget(CACHE_KEY)


class Promises:
    """Read lazily by templates: ``{{ PROMISES.refund_days }}``, ``{{ PROMISES.response_hours }}``."""

    @property
    def refund_days(self) -> int:
        return settings.REFUND_WINDOW_DAYS

    @cached_property
    def response_hours(self) -> int:
        return first_response_hours()


def promises(request) -> dict:
    """Context processor."""
    return {"PROMISES": Promises()}
