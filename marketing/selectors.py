"""Reads of coupons: each coupon's figures for the staff and agent pages.

Per coupon: ``uses_live`` (uses taken and not returned), ``uses_released`` (returned: the order
lapsed, was cancelled, or refunded in full while the coupon was valid), ``buyers`` (distinct
members plus distinct guest emails among the live uses), and over the sales it made (orders
delivered and not refunded in full): ``sales``, ``revenue`` (what the buyers paid: the orders'
totals) and ``cost`` (the discounts given: what the coupon cost its funder).
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from .models import Coupon

_MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=14, decimal_places=2)
_LIVE = Q(uses__released_at__isnull=True)
# A sale: its order delivered and not refunded in full ("refunded" is orders' final status).
_SOLD = _LIVE & Q(uses__order__delivered_at__isnull=False) & ~Q(uses__order__status="refunded")


def coupon_figures(queryset: QuerySet[Coupon] | None = None) -> QuerySet[Coupon]:
    """``queryset`` (all coupons by default) annotated with the figures above, one query."""
    queryset = Coupon.objects.all() if queryset is None else queryset
    zero = Value(Decimal("0.00"), output_field=_MONEY)
    return queryset.annotate(
        uses_live=Count("uses", filter=_LIVE),
        uses_released=Count("uses", filter=Q(uses__released_at__isnull=False)),
        members=Count("uses__buyer", filter=_LIVE, distinct=True),
        guests=Count("uses__email", filter=_LIVE & Q(uses__buyer__isnull=True), distinct=True),
        sales=Count("uses", filter=_SOLD),
        revenue=Coalesce(Sum("uses__order__total", filter=_SOLD), zero),
        cost=Coalesce(Sum("uses__discount", filter=_SOLD), zero),
    )


def coupons_of_agent(*, agent) -> QuerySet[Coupon]:
    """An agent's own coupons with their figures, newest first."""
    return coupon_figures(Coupon.objects.filter(agent=agent)).order_by("-pk")


def coupon_of_agent(*, agent, pk: int) -> Coupon | None:
    """One of the agent's own coupons (None for another's or none: the page answers 404)."""
    return coupons_of_agent(agent=agent).filter(pk=pk).first()
