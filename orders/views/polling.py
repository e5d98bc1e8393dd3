"""What an order page's status badge polls for, members' and guests' alike."""

from django.http import HttpResponse
from django.shortcuts import render

from ..models import Order


def status_badge_or_refresh(request, order: Order) -> HttpResponse:
    """The polling answer of an order page (members' and guests'): the fresh status badge, or
    a full reload once the order is delivered or its status moved since the page was drawn."""
    if order.status == Order.Status.DELIVERED or request.GET.get("seen", order.status) != order.status:
        response = HttpResponse()
        response["HX-Refresh"] = "true"
        return response
    return render(request, "orders/_status_badge.html", {"order": order})
