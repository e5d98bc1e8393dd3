"""The staff dashboard on the admin index: what needs someone today, each with a link to the
list that shows exactly those rows (the admin's own filters, so a count and its list agree).

Reads only, a constant number of queries (one per figure, two for the stock), whatever the
number of orders or products.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.admin import SimpleListFilter
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from catalog.models import CardCode, Product
from catalog.selectors import stock_counts
from orders.models import ApiCallback, ManualTopup, Order
from payments.models import Mismatch, Refund
from payments.selectors import refunds_overdue

from ..models import Ticket
from .tickets import SlaFilter

LOW_STOCK = getattr(settings, "LOW_STOCK_THRESHOLD", 10)


@dataclass
class Figure:
    count: int
    url: str


@dataclass
class LowStock:
    product: Product
    available: int
    url: str


@dataclass
class Dashboard:
    day: datetime
    sales_orders: int
    sales_total: Decimal
    sales_url: str
    low_stock: list[LowStock] = field(default_factory=list)
    low_stock_url: str = ""
    tickets_at_risk: Figure | None = None
    tickets_overdue: Figure | None = None
    refunds_late: Figure | None = None
    mismatches: Figure | None = None
    callbacks_failed: Figure | None = None
    topups_waiting: Figure | None = None  # the manual top-up queue (人工代充)
    topups_overdue: int = 0
    tools: list[tuple[str, str]] = field(default_factory=list)


def _admin_list(model, query: str = "") -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{query}" if query else url


def _filtered(filter_class: type[SimpleListFilter], value: str, queryset):
    """The rows an admin list filter shows for ``value`` (the filter's own query, reused)."""
    list_filter = filter_class.__new__(filter_class)
    list_filter.used_parameters = {filter_class.parameter_name: value}
    return list_filter.queryset(None, queryset)


def staff_dashboard(*, user, now: datetime | None = None) -> Dashboard:
    now = timezone.localtime(now or timezone.now())
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def may_view(model) -> bool:
        return user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")

    sales = Order.objects.filter(created_at__gte=start, paid_at__isnull=False).aggregate(
        n=Count("id"), total=Sum("total")
    )
    board = Dashboard(
        day=start,
        sales_orders=sales["n"] or 0,
        sales_total=sales["total"] or Decimal("0.00"),
        sales_url=_admin_list(
            Order, f"created_at__year={start.year}&created_at__month={start.month}&created_at__day={start.day}"
        ),
    )
    if may_view(Product):
        # Manual top-ups hold no codes: never "low on stock".
        products = list(
            Product.objects.filter(is_active=True)
            .exclude(supply_mode=Product.SupplyMode.MANUAL)
            .only("id", "name")
            .order_by("sort_order", "id")
        )
        counts = stock_counts([p.pk for p in products])
        low = sorted((counts.get(p.pk, 0), p.pk, p) for p in products if counts.get(p.pk, 0) < LOW_STOCK)
        board.low_stock = [
            LowStock(p, n, _admin_list(CardCode, f"product__id__exact={p.pk}&status__exact=available"))
            for n, _pk, p in low
        ]
        board.low_stock_url = _admin_list(Product, "is_active__exact=1&o=6")  # sorted by the "available" column
    if may_view(Ticket):
        tickets = Ticket.objects.all()
        board.tickets_at_risk = Figure(
            _filtered(SlaFilter, "at_risk", tickets).count(), _admin_list(Ticket, "sla=at_risk")
        )
        board.tickets_overdue = Figure(
            _filtered(SlaFilter, "overdue", tickets).count(), _admin_list(Ticket, "sla=overdue")
        )
    if may_view(Refund):
        board.refunds_late = Figure(refunds_overdue(now).count(), _admin_list(Refund, "attention=late"))
    if may_view(Mismatch):
        board.mismatches = Figure(
            Mismatch.objects.filter(resolved_at__isnull=True).count(), _admin_list(Mismatch, "resolved=no")
        )
    if may_view(ApiCallback):
        board.callbacks_failed = Figure(
            ApiCallback.objects.filter(status=ApiCallback.Status.FAILED).count(),
            _admin_list(ApiCallback, "status__exact=failed"),
        )
    if may_view(ManualTopup):
        queued = ManualTopup.objects.filter(state=ManualTopup.State.QUEUED)
        board.topups_waiting = Figure(queued.count(), _admin_list(ManualTopup))
        board.topups_overdue = queued.filter(due_at__lte=now).count()
    board.tools = _tools(user)
    return board


def _tools(user) -> list[tuple[str, str]]:
    """The admin's own pages that are not a model's list, for those who may open them."""
    tools = []
    if user.has_perm("catalog.import_stock"):
        tools.append((_("Import card codes"), reverse("admin:catalog_stockbatch_import")))
    if user.has_perm("payments.view_payment"):
        tools.append((_("Payment channels"), reverse("admin:payments_channels")))
    if user.has_perm("ledger.view_entry"):
        tools.append((_("Trial balance"), reverse("admin:ledger_trial_balance")))
    if user.has_perm("aftersales.view_ticket"):
        tools.append((_("SLA report"), reverse("admin:aftersales_sla_report")))
    return tools
