"""Sales figures for the half-yearly storefront operator report (网络交易监督管理办法 第二十五条).

The operators' identities are ``agents.selectors.operators_report_rows``; the sales are orders,
and ``orders`` sits above ``agents`` (it may import agents, never the reverse), so the figures
are read here and joined to the identity rows by ``operators_report``.

第二十五条 asks the report to mark the individual operators whose yearly sales exceed the amount
of 第八条第三款 (¥100,000 a year of sporadic small-value sales, the shops on the platform added
together): ``OperatorReportLine.over_small_sales_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import OperatorIdentity
from agents.selectors import SMALL_SALES_YEARLY_LIMIT, OperatorReportRow, operators_report_rows

from ..models import Channel, Order

ZERO = Decimal("0.00")
MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=14, decimal_places=2)
# Orders that were paid (a sale took place), whatever happened after; refunds are reported apart.
SOLD = (Order.Status.PAID, Order.Status.DELIVERED, Order.Status.REFUND_PENDING, Order.Status.REFUNDED)


@dataclass(frozen=True)
class OperatorSales:
    orders: int = 0
    amount: Decimal = ZERO  # what buyers paid for the orders paid in the period
    refunded: Decimal = ZERO  # of which refunded (codes refunded x unit price)


def operator_sales(*, start: datetime, end: datetime, agent_ids=None) -> dict[int, OperatorSales]:
    """Per selling agent, its storefront's orders paid in ``[start, end)``: how many, their amount
    and the part refunded. One grouped query; agents without sales are absent."""
    qs = Order.objects.filter(channel=Channel.STOREFRONT, status__in=SOLD, paid_at__gte=start, paid_at__lt=end)
    if agent_ids is not None:
        qs = qs.filter(agent_id__in=list(agent_ids))
    refunded = ExpressionWrapper(F("refunded_quantity") * F("unit_price"), output_field=MONEY)
    rows = (
        qs.values("agent_id")
        .order_by("agent_id")
        .annotate(
            n=Count("id"),
            amount=Coalesce(Sum("total"), ZERO, output_field=MONEY),
            refunded=Coalesce(Sum(refunded), ZERO, output_field=MONEY),
        )
    )
    return {
        row["agent_id"]: OperatorSales(orders=row["n"], amount=row["amount"], refunded=row["refunded"]) for row in rows
    }


@dataclass(frozen=True)
class OperatorReportLine:
    identity: OperatorReportRow
    sales: OperatorSales  # in the report's period
    year_amount: Decimal  # paid in the calendar year up to the period's end

    @property
    def over_small_sales_limit(self) -> bool:
        """An individual past ¥100,000 this year: to be marked in the report (第二十五条)."""
        return (
            self.identity.operator_type == OperatorIdentity.Kind.INDIVIDUAL
            and self.year_amount > SMALL_SALES_YEARLY_LIMIT
        )


def operators_report(*, start: datetime, end: datetime) -> list[OperatorReportLine]:
    """The identity rows of ``agents.selectors.operators_report_rows`` with each operator's sales.

    Like those rows, it carries FULL ID numbers and credit codes: for the permission-protected,
    audited report only."""
    rows = operators_report_rows(start=start, end=end)
    agent_ids = [row.agent_id for row in rows]
    in_period = operator_sales(start=start, end=end, agent_ids=agent_ids)
    last = timezone.localtime(end - timedelta(microseconds=1))  # the period's last instant, local time
    year_start = last.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    in_year = operator_sales(start=year_start, end=end, agent_ids=agent_ids)
    return [
        OperatorReportLine(
            identity=row,
            sales=in_period.get(row.agent_id, OperatorSales()),
            year_amount=in_year.get(row.agent_id, OperatorSales()).amount,
        )
        for row in rows
    ]
