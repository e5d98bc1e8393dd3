"""Sales reports of an agent's subtree: reads only, aggregated in the database.

"Sales" are the orders delivered through the agent or any agent below it (``Order.agent`` in
the subtree, found by the materialized path), never anything outside it. "Earnings" are the
agent's own ``Commission`` rows on those orders, net of refunded codes. Margin is earnings as
a share of revenue. Each report is a fixed handful of grouped queries, whatever the number of
days, products or downline agents.

They read orders, so they live in ``orders`` (above ``agents``), with the agent centre's pages
that show them (``orders.views.agent_sales``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.db.models import Case, Count, DecimalField, F, FilteredRelation, Q, Sum, Value, When
from django.db.models.functions import Coalesce, Floor, Round, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import Agent
from ledger import services as ledger
from ledger.selectors import balances_of

from ..models import Order
from . import share

ZERO = Decimal("0.00")
PRESETS = (7, 30, 90)
DEFAULT_DAYS = 30
MAX_DAYS = 366
MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=14, decimal_places=2)


# --- the period ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: date  # first day, inclusive (local time)
    end: date  # last day, inclusive
    preset: str = ""  # "7", "30", "90", or "" for custom dates

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        """Aware [start, end) datetimes in the site's time zone."""
        tz = timezone.get_current_timezone()
        return (
            datetime.combine(self.start, time.min, tzinfo=tz),
            datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=tz),
        )

    def query(self) -> str:
        if self.preset:
            return f"days={self.preset}"
        return f"start={self.start.isoformat()}&end={self.end.isoformat()}"


def period_last(days: int, *, today: date | None = None) -> Period:
    today = today or timezone.localdate()
    return Period(start=today - timedelta(days=days - 1), end=today, preset=str(days))


def period_parse(params, *, today: date | None = None) -> tuple[Period, str]:
    """The period asked for in query ``params``: ``days`` (a preset) or ``start``/``end``.

    Returns the period and an error message for the person (the default period then applies).
    """
    today = today or timezone.localdate()
    start_raw, end_raw = (params.get("start") or "").strip(), (params.get("end") or "").strip()
    if start_raw or end_raw:
        try:
            start = date.fromisoformat(start_raw) if start_raw else None
            end = date.fromisoformat(end_raw) if end_raw else today
        except ValueError:
            return period_last(DEFAULT_DAYS, today=today), _("Enter dates as YYYY-MM-DD.")
        if start is None:
            return period_last(DEFAULT_DAYS, today=today), _("Choose the first day of the period.")
        if end > today:
            end = today
        if start > end:
            return period_last(DEFAULT_DAYS, today=today), _("The first day must be on or before the last day.")
        if (end - start).days + 1 > MAX_DAYS:
            return period_last(DEFAULT_DAYS, today=today), _("Choose a period of at most %(n)d days.") % {"n": MAX_DAYS}
        for preset in PRESETS:
            if end == today and (end - start).days + 1 == preset:
                return Period(start=start, end=end, preset=str(preset)), ""
        return Period(start=start, end=end), ""
    days_raw = (params.get("days") or "").strip()
    if days_raw:
        if days_raw.isdigit() and int(days_raw) in PRESETS:
            return period_last(int(days_raw), today=today), ""
        return period_last(DEFAULT_DAYS, today=today), _("Choose one of the periods offered.")
    return period_last(DEFAULT_DAYS, today=today), ""


# --- rows ------------------------------------------------------------------------------------


@dataclass
class Row:
    """``gross``: the codes kept at their price; ``discount``: the coupons' discount on them;
    ``revenue``: net, what buyers paid for them (gross − discount)."""

    orders: int = 0
    codes: int = 0
    revenue: Decimal = ZERO
    earnings: Decimal = ZERO
    gross: Decimal = ZERO
    discount: Decimal = ZERO

    def add(self, other: Row) -> None:
        self.orders += other.orders
        self.codes += other.codes
        self.revenue += other.revenue
        self.earnings += other.earnings
        self.gross += other.gross
        self.discount += other.discount

    @property
    def margin(self) -> Decimal | None:
        """Earnings as a percentage of revenue (one decimal), None without revenue."""
        if not self.revenue:
            return None
        return (self.earnings * 100 / self.revenue).quantize(Decimal("0.1"))


R = TypeVar("R", bound=Row)


@dataclass
class DayRow(Row):
    day: date | None = None


@dataclass
class ProductRow(Row):
    product_id: int = 0
    name: str = ""


@dataclass
class DownlineRow(Row):
    agent: Agent | None = None  # None: the agent's own (direct) sales
    team_size: int = 0


@dataclass
class Report:
    period: Period
    totals: Row = field(default_factory=Row)
    daily: list[DayRow] = field(default_factory=list)
    products: list[ProductRow] = field(default_factory=list)
    downline: list[DownlineRow] = field(default_factory=list)

    @property
    def top_products(self) -> list[ProductRow]:
        return self.products[:5]

    @property
    def most_active(self) -> list[DownlineRow]:
        def busiest_first(r: DownlineRow) -> tuple[int, Decimal, int]:
            assert r.agent is not None  # the own row (agent None) is filtered out below
            return (-r.orders, -r.revenue, r.agent.pk)

        rows = [r for r in self.downline if r.agent is not None and r.orders]
        return sorted(rows, key=busiest_first)[:5]


def _sales(*, root: Agent, earner: Agent, period: Period):
    """Delivered orders of ``root``'s subtree in ``period``, with ``earner``'s commission joined
    (at most one commission row per order and agent, so the join never multiplies orders)."""
    start, end = period.bounds
    return (
        Order.objects.filter(
            status=Order.Status.DELIVERED,
            agent__path__startswith=root.path,
            delivered_at__gte=start,
            delivered_at__lt=end,
        )
        .annotate(mine=FilteredRelation("commissions", condition=Q(commissions__agent_id=earner.pk)))
        .order_by()
    )


def _kept_discount():
    """The coupon discount on an order's codes kept: the order's discount less what its refunded
    codes took back (``Order.discount_slots``: the refunded positions come first, each an equal
    share to the fen, the remainder on the last code, which a partly refunded order still keeps)."""
    # In fen, rounded before the division and multiplied back by 0.01 rather than divided by 100:
    # SQLite (the embedded default) keeps decimals as binary floats (0.29 * 100 is 28.99...) and
    # divides integers as integers (333 / 100 is 3); on PostgreSQL's numeric both forms are exact.
    share = Floor(Round(F("discount") * 100) / F("quantity"))
    return F("discount") - F("refunded_quantity") * share * Value(Decimal("0.01"), output_field=MONEY)


def _aggregates(earner: Agent):
    earned = F("mine__unit_amount") * (F("mine__quantity") - F("mine__reversed_quantity"))
    # The earner's own coupon is paid out of its earnings on the order (``Commission.net_amount``).
    own_coupon = Case(When(discount_funder_id=earner.pk, then=_kept_discount()), default=Value(ZERO))
    return {
        "n_orders": Count("id"),
        # Net of refunds: a partly refunded order counts the codes it kept and what they sold for.
        "n_codes": Coalesce(Sum(F("quantity") - F("refunded_quantity")), 0),
        "s_gross": Coalesce(
            Sum(F("unit_price") * (F("quantity") - F("refunded_quantity")), output_field=MONEY),
            Value(ZERO),
            output_field=MONEY,
        ),
        "s_discount": Coalesce(Sum(_kept_discount(), output_field=MONEY), Value(ZERO), output_field=MONEY),
        "s_earnings": Coalesce(Sum(earned - own_coupon, output_field=MONEY), Value(ZERO), output_field=MONEY),
    }


def _fill(row: R, values: Mapping[str, Any]) -> R:
    row.orders = values["n_orders"]
    row.codes = values["n_codes"]
    row.gross = Decimal(values["s_gross"]).quantize(Decimal("0.01"))
    row.discount = Decimal(values["s_discount"]).quantize(Decimal("0.01"))
    row.revenue = row.gross - row.discount  # net: what the buyers paid for the codes kept
    row.earnings = Decimal(values["s_earnings"]).quantize(Decimal("0.01"))
    return row


def report_daily(*, root: Agent, earner: Agent, period: Period) -> list[DayRow]:
    """One row per day of the period (days without sales included), in one query."""
    tz = timezone.get_current_timezone()
    found = {}
    for values in (
        _sales(root=root, earner=earner, period=period)
        .annotate(day=TruncDate("delivered_at", tzinfo=tz))
        .values("day")
        .annotate(**_aggregates(earner))
    ):
        day = values["day"]
        if isinstance(day, datetime):
            day = day.date()
        found[day] = _fill(DayRow(day=day), values)
    return [found.get(day) or DayRow(day=day) for day in period.days]


def report_products(*, root: Agent, earner: Agent, period: Period) -> list[ProductRow]:
    """Sales by product, best revenue first, in one query."""
    rows = [
        _fill(ProductRow(product_id=v["product_id"], name=v["product_name"]), v)
        for v in _sales(root=root, earner=earner, period=period)
        .values("product_id", "product_name")
        .annotate(**_aggregates(earner))
    ]
    # One product sold under two names (renamed in the period) is one row, under its latest name.
    merged: dict[int, ProductRow] = {}
    for row in rows:
        if row.product_id in merged:
            merged[row.product_id].add(row)
        else:
            merged[row.product_id] = row
    return sorted(merged.values(), key=lambda r: (-r.revenue, -r.orders, r.name))


def report_downline(*, agent: Agent, period: Period) -> list[DownlineRow]:
    """Sales by direct downline agent, each with its whole subtree rolled up; the agent's own
    sales first. Two queries: sales grouped by selling agent, and the direct downline."""
    direct = list(
        Agent.objects.filter(upline=agent)
        .select_related("user", "level")
        .annotate(team=Count("downline", distinct=True))
        .order_by("pk")
    )
    own = DownlineRow(agent=None)
    rows = {d.pk: DownlineRow(agent=d, team_size=d.team) for d in direct}
    index = agent.depth  # in a descendant's path, the id at this index is the direct downline's
    for values in (
        _sales(root=agent, earner=agent, period=period).values("agent_id", "agent__path").annotate(**_aggregates(agent))
    ):
        row = _fill(Row(), values)
        if values["agent_id"] == agent.pk:
            own.add(row)
            continue
        ids = [int(x) for x in values["agent__path"].strip("/").split("/") if x]
        target = rows.get(ids[index]) if len(ids) > index else None
        if target is not None:
            target.add(row)
    # Ties by the agent's pk (the key of ``rows``).
    ordered = [rows[pk] for pk in sorted(rows, key=lambda pk: (-rows[pk].revenue, -rows[pk].orders, pk))]
    return [own, *ordered]


@dataclass
class SourceRow(Row):
    source: str = ""  # Order.source: "poster:storefront", "poster:<product id>", "coupon:<code>"; "" none
    kind: str = ""  # "poster", "coupon", ...; "" for sales without a source
    label: str = ""


def report_sources(*, agent: Agent, period: Period) -> list[SourceRow]:
    """The agent's own sales (its storefront's and its own orders, not its downline's) by share
    source (推广效果): which poster or coupon brought which sales, best revenue first, and the
    sales without a source last, so the rows add up to all the agent's own sales. One grouped
    query and one for the products' names. New kinds of source (a coupon's) need no change."""
    rows = []
    for values in (
        _sales(root=agent, earner=agent, period=period)
        .filter(agent=agent)
        .values("source")
        .annotate(**_aggregates(agent))
    ):
        rows.append(_fill(SourceRow(source=values["source"]), values))
    names = share.source_names(r.source for r in rows)
    for row in rows:
        row.kind, row.label = names[row.source].kind, names[row.source].label
    return sorted(rows, key=lambda r: (not r.source, -r.revenue, -r.orders, r.source))


def sales_report(*, agent: Agent, period: Period) -> Report:
    """The dashboard's report for ``agent``'s whole subtree: four queries."""
    daily = report_daily(root=agent, earner=agent, period=period)
    totals = Row()
    for row in daily:
        totals.add(row)
    return Report(
        period=period,
        totals=totals,
        daily=daily,
        products=report_products(root=agent, earner=agent, period=period),
        downline=report_downline(agent=agent, period=period),
    )


def downline_sales(*, agent: Agent, since_days: int = 30) -> dict[int, DownlineRow]:
    """Recent sales of each direct downline's subtree, with ``agent``'s earnings on them."""
    period = period_last(since_days)
    return {r.agent.pk: r for r in report_downline(agent=agent, period=period) if r.agent is not None}


def downline_page(*, agent: Agent):
    """The direct downline, with the size of each one's own direct downline (one query)."""
    return (
        Agent.objects.filter(upline=agent)
        .select_related("user", "level")
        .annotate(team=Count("downline", distinct=True))
        .order_by("-created_at", "-pk")
    )


def latest_commissions(*, agent: Agent, limit: int = 8):
    return agent.commissions.select_related("order").order_by("-created_at", "-pk")[:limit]


def balances(*, user) -> dict[str, Decimal]:
    """The agent's pending and available commission and its wallet (``balances_of``: one
    query, reading only; an account not opened yet is zero)."""
    specs = {
        "pending": ledger.commission_pending(user),
        "available": ledger.commission_available(user),
        "wallet": ledger.wallet(user),
    }
    found = balances_of(*specs.values())
    return {name: found[spec.code] for name, spec in specs.items()}
