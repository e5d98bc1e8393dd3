"""What an order page's status badge polls for, members' and guests' alike.

The page polls every 2 s while payment or delivery is under way, so the answer reads nothing
but the order's status (one indexed statement: ``order_status_for_buyer``/``_for_guest``) and
draws the badge from it, not from the order page's rows."""

from dataclasses import dataclass

from django.http import HttpResponse

from ..models import Order
from ..templatetags.order_page import status_badge_html


@dataclass(frozen=True)
class StatusOnly:
    """What the status badge (``status_badge_html``) reads of an order: its status and its label."""

    status: str

    def get_status_display(self) -> str:
        return str(Order.Status(self.status).label)


def status_badge_or_refresh(request, status: str) -> HttpResponse:
    """The polling answer of an order page (members' and guests'): the fresh status badge, or
    a full reload once the order is delivered or its status moved since the page was drawn."""
    if status == Order.Status.DELIVERED or request.GET.get("seen", status) != status:
        response = HttpResponse()
        response["HX-Refresh"] = "true"
        return response
    # The badge needs no request context (no context processors run for it).
    return HttpResponse(status_badge_html(StatusOnly(status)))
