from django.db.models import Count, Prefetch, Q
from django.shortcuts import get_object_or_404

from ..models import Order, OrderCode


def orders_for_buyer(buyer):
    return Order.objects.filter(buyer=buyer).select_related("product").order_by("-id")


def order_counts_for_buyer(buyer) -> dict[str, int]:
    """The buyer's orders on the profile page: all, delivered and awaiting payment."""
    return Order.objects.filter(buyer=buyer).aggregate(
        total=Count("id"),
        delivered=Count("id", filter=Q(status=Order.Status.DELIVERED)),
        pending=Count("id", filter=Q(status=Order.Status.PENDING)),
    )


def order_for_buyer(buyer, number: str) -> Order:
    """The buyer's own order, or 404: another buyer's order does not exist for them."""
    codes = OrderCode.objects.filter(released_at__isnull=True).annotate(reveal_count=Count("reveals")).order_by("id")
    return get_object_or_404(
        Order.objects.select_related("product", "product__supplier").prefetch_related(
            Prefetch("codes", queryset=codes, to_attr="live_codes"), "history"
        ),
        buyer=buyer,
        number=number,
    )
