"""Staff's supplier pages that read our orders (a layer above ``supply``): each connection's
supplier orders today and failures today beside its balance and our books, the daily
reconciliations with their mismatches, resolved with a note."""

from datetime import datetime, time

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin, ResolutionAdminMixin, ResolvedFilter
from marketplace.errors import admin_action_run
from supply import services as supply
from supply.admin import SupplierConnectionAdmin
from supply.models import SupplierConnection, SupplyMismatch, SupplyReconciliation

from .models import UpstreamOrder
from .services import supply_reconciliation as reconciliation


def _today_start() -> datetime:
    today = timezone.now().astimezone(reconciliation.BEIJING).date()
    return datetime.combine(today, time.min, tzinfo=reconciliation.BEIJING)


def _count(**filters) -> Coalesce:
    rows = (
        UpstreamOrder.objects.filter(connection=OuterRef("pk"), **filters)
        .order_by()
        .values("connection")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def _mismatches_url(**query) -> str:
    return reverse("admin:supply_supplymismatch_changelist") + "?" + "&".join(f"{k}={v}" for k, v in query.items())


admin.site.unregister(SupplierConnection)


@admin.register(SupplierConnection)
class SupplierConnectionWithOrdersAdmin(SupplierConnectionAdmin):
    list_display = (*SupplierConnectionAdmin.list_display, "orders_today", "failures_today", "unresolved_link")

    def get_queryset(self, request):
        start = _today_start()
        unresolved = SupplyMismatch.objects.filter(reconciliation__connection=OuterRef("pk"), resolved_at__isnull=True)
        unresolved_count = unresolved.order_by().values("reconciliation__connection").annotate(n=Count("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                orders_today=_count(created_at__gte=start),
                failures_today=_count(state=UpstreamOrder.State.FAILED, finished_at__gte=start),
                unresolved=Coalesce(Subquery(unresolved_count.values("n"), output_field=IntegerField()), 0),
            )
        )

    @admin.display(description=_("supplier orders today"), ordering="orders_today")
    def orders_today(self, obj):
        return obj.orders_today

    @admin.display(description=_("failed today"), ordering="failures_today")
    def failures_today(self, obj):
        if not obj.failures_today:
            return "0"
        return format_html('<strong style="color:#ba2121">{}</strong>', obj.failures_today)

    @admin.display(description=_("unresolved mismatches"), ordering="unresolved")
    def unresolved_link(self, obj):
        if not obj.unresolved:
            return "0"
        url = _mismatches_url(reconciliation__connection__id__exact=obj.pk, resolved="no")
        return format_html('<a href="{}">{}</a>', url, obj.unresolved)


@admin.register(SupplyReconciliation)
class SupplyReconciliationAdmin(ReadOnlyAdmin):
    acted_on = True  # "reconcile again" is a service call
    list_display = (
        "day",
        "connection",
        "orders_checked",
        "mismatches",
        "unresolved_link",
        "our_cost",
        "supplier_cost",
        "cost_difference",
        "finished_at",
        "error",
    )
    list_filter = ("connection",)
    list_select_related = ("connection",)
    date_hierarchy = "day"
    readonly_fields = (
        "connection",
        "day",
        "orders_checked",
        "mismatches",
        "our_cost",
        "supplier_cost",
        "finished_at",
        "error",
        "created_at",
    )
    actions = ("run_again",)

    def get_queryset(self, request):
        unresolved = Count("items", filter=Q(items__resolved_at__isnull=True))
        return super().get_queryset(request).annotate(unresolved=unresolved)

    @admin.display(description=_("unresolved"), ordering="unresolved")
    def unresolved_link(self, obj):
        if not obj.unresolved:
            return "0"
        url = _mismatches_url(reconciliation__id__exact=obj.pk, resolved="no")
        return format_html('<a href="{}">{}</a>', url, obj.unresolved)

    @admin.display(description=_("supplier's − ours"))
    def cost_difference(self, obj):
        difference = obj.supplier_cost - obj.our_cost
        if not difference:
            return "0.00"
        return format_html('<strong style="color:#ba2121">{}</strong>', difference)

    @admin.action(description=_("Reconcile these days again"), permissions=["change"])
    def run_again(self, request, queryset):
        for run in queryset.select_related("connection").order_by("day", "pk"):
            admin_action_run(
                self,
                request,
                lambda r=run: reconciliation.supply_reconcile(connection_id=r.connection_id, day=r.day),
                label=f"{run.connection} {run.day}",
                done=lambda r, run=run: (
                    _("%(run)s: %(n)d orders checked, %(m)d mismatch(es).")
                    % {"run": f"{run.connection} {run.day}", "n": r.orders_checked, "m": r.mismatches}
                ),
            )


@admin.register(SupplyMismatch)
class SupplyMismatchAdmin(ResolutionAdminMixin, ReadOnlyAdmin):
    acted_on = True  # resolved through the action
    list_display = ("day", "connection", "kind", "our_number", "ours", "theirs", "resolution")
    list_filter = (ResolvedFilter, "kind", "reconciliation__connection")
    search_fields = ("our_number",)
    list_select_related = ("reconciliation__connection", "resolved_by")
    readonly_fields = (
        "reconciliation",
        "kind",
        "our_number",
        "ours",
        "theirs",
        "resolved_at",
        "resolved_by",
        "resolution_note",
    )
    actions = ("mark_resolved",)

    @admin.display(description=_("day"), ordering="reconciliation__day")
    def day(self, obj):
        return obj.reconciliation.day.isoformat()

    @admin.display(description=_("supplier connection"), ordering="reconciliation__connection")
    def connection(self, obj):
        return obj.reconciliation.connection

    @admin.action(description=_("Mark resolved (with a note)…"), permissions=["change"])
    def mark_resolved(self, request, queryset):
        form = self.resolve_form(request)
        if form.is_valid():
            ok, count = admin_action_run(
                self,
                request,
                lambda: supply.mismatch_resolve(
                    mismatch_ids=queryset.values_list("pk", flat=True),
                    user=request.user,
                    note=form.cleaned_data["note"],
                ),
            )
            if ok:
                self.message_user(request, _("%(n)d mismatch(es) marked resolved.") % {"n": count}, messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Mark supplier mismatches resolved"),
            "opts": self.model._meta,
            "mismatches": queryset.select_related("reconciliation__connection"),
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/supply/supplymismatch/resolve.html", context)
