from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from catalog import topup as catalog_topup
from compliance.admin import credit_panel
from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline
from marketplace.errors import admin_action_run

from .models import (
    ApiCallback,
    ApiCallbackStatusChange,
    CodeReveal,
    EmailRefusal,
    ManualTopup,
    ManualTopupStatusChange,
    Order,
    OrderCode,
    OrderShare,
    OrderStatusChange,
    UpstreamOrder,
    UpstreamOrderStatusChange,
)
from .services import callbacks
from .services import topup as manual_topups


class StatusChangeInline(ReadOnlyInline):
    model = OrderStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")


EMAIL_REFUSAL_FIELDS = ("address", "code", "reply", "permanent", "attempts", "first_at", "last_at", "retry_at")


class EmailRefusalInline(ReadOnlyInline):
    """The mail server refused the buyer's address (``orders.services.orders.email_refusal_record``)."""

    model = EmailRefusal
    fields = readonly_fields = EMAIL_REFUSAL_FIELDS


class OrderCodeInline(ReadOnlyInline):
    model = OrderCode
    fields = readonly_fields = ("code", "code_status", "reserved_at", "released_at", "reveal_count")

    @admin.display(description=_("code status"))
    def code_status(self, obj):
        return obj.code.get_status_display()

    @admin.display(description=_("reveals"))
    def reveal_count(self, obj):
        return obj.reveals.count()

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("code")


class OrderShareInline(ReadOnlyInline):
    """The price chain snapshotted when the order was placed, and what each agent earned of it."""

    model = OrderShare
    verbose_name_plural = _("price chain (snapshot at ordering)")
    fields = readonly_fields = ("depth", "agent", "unit_cost", "unit_earning", "commission")

    @admin.display(description=_("commission"))
    def commission(self, obj):
        row = next((c for c in obj.order.commissions.all() if c.agent_id == obj.agent_id), None)
        if row is None:
            return "—"
        return f"¥{row.net_amount} · {row.get_status_display()}"

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("agent__user", "order")
        return queryset.prefetch_related("order__commissions")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    """Orders are changed only by services: money and status are read-only here."""

    list_display = (
        "number",
        "buyer",
        "product_name",
        "quantity",
        "total",
        "status",
        "channel",
        "agent",
        "created_at",
        "paid_at",
    )
    list_filter = ("status", "channel", "created_at")
    search_fields = ("number", "buyer__email", "guest_email", "product_name", "agent_order_no", "agent__user__email")
    list_select_related = ("buyer", "agent__user", "agent__level")
    date_hierarchy = "created_at"
    inlines = (OrderCodeInline, OrderShareInline, StatusChangeInline, EmailRefusalInline)
    readonly_fields = (
        "number",
        "buyer",
        "guest_email",
        "product",
        "product_name",
        "quantity",
        "unit_price",
        "subtotal",
        "discount",
        "total",
        "currency",
        "status",
        "created_at",
        "expires_at",
        "paid_at",
        "delivered_at",
        "buyer_notified_at",
        "buyer_ip",
        "channel",
        "agent",
        "agent_order_no",
        "callback_url",
        "refunded_quantity",
        "fulfilment",
        "topup_details",
        "buyer_credit",
    )
    fields = readonly_fields

    @admin.display(description=_("top-up details"))
    def topup_details(self, obj):
        return _topup_values_html(obj)

    @admin.display(description=_("buyer's credit rating"))
    def buyer_credit(self, obj):
        return credit_panel(user=obj.buyer, email=obj.guest_email)


@admin.register(OrderStatusChange)
class OrderStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "order", "from_status", "to_status", "actor", "note")
    list_filter = ("to_status",)
    search_fields = ("order__number",)
    readonly_fields = ("at", "order", "from_status", "to_status", "actor", "note")


@admin.register(CodeReveal)
class CodeRevealAdmin(ReadOnlyAdmin):
    list_display = ("at", "user", "order_number", "order_code", "ip", "user_agent")
    search_fields = ("order_code__order__number", "user__email", "ip")
    readonly_fields = ("at", "user", "order_code", "ip", "user_agent")
    list_select_related = ("user", "order_code__order")

    @admin.display(description=_("order"))
    def order_number(self, obj):
        return obj.order_code.order.number


@admin.register(EmailRefusal)
class EmailRefusalAdmin(ReadOnlyAdmin):
    """Buyers' addresses the mail server refused (``orders.services.orders.email_refusal_record``):
    refused for good (never offered again) or held for their next attempt. Many held at once is
    the sender's problem, not the buyers' (docs/runbook.md, EmailsHeldByRefusals)."""

    list_display = ("last_at", "order_number", "address", "code", "reply", "permanent", "attempts", "retry_at")
    list_filter = ("permanent", "code")
    search_fields = ("order__number", "address")
    list_select_related = ("order",)
    ordering = ("-last_at",)
    readonly_fields = ("order", *EMAIL_REFUSAL_FIELDS)

    @admin.display(description=_("order"), ordering="order__number")
    def order_number(self, obj):
        return obj.order.number


class CallbackHistoryInline(ReadOnlyInline):
    model = ApiCallbackStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    verbose_name_plural = _("status history")


# Signed callbacks to agents' shops (orders.services.callbacks): read-only, with a "send again" action.
@admin.register(ApiCallback)
class ApiCallbackAdmin(ReadOnlyAdmin):  # a record of what was sent: view only
    list_display = (
        "id",
        "event",
        "order",
        "agent",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event")
    list_select_related = ("order", "agent__user")
    search_fields = ("order__number", "order__agent_order_no", "url", "agent__user__username")
    date_hierarchy = "created_at"
    actions = ("send_again",)
    inlines = (CallbackHistoryInline,)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_resend_permission(self, request):
        return request.user.has_perm("orders.change_apicallback")

    @admin.action(description=_("Send again (a new round of attempts)"), permissions=["resend"])
    def send_again(self, request, queryset):
        ids = list(queryset.exclude(payload="").values_list("pk", flat=True))
        for callback_id in ids:
            callbacks.callback_resend(callback_id=callback_id)
        self.message_user(
            request,
            ngettext("%(n)d callback queued.", "%(n)d callbacks queued.", len(ids)) % {"n": len(ids)},
            messages.SUCCESS,
        )


def _topup_values_html(order: Order):
    """The account details the buyer gave for a direct top-up (in full: staff top it up)."""
    if not order.topup_values:
        return "—"
    rows = []
    for name, label, _shown in catalog_topup.values_display(order.product, order.topup_values):
        rows.append((label, str(order.topup_values.get(name, ""))))
    return format_html_join("", '<div><span style="color:#666">{}</span>: <code data-topup-value>{}</code></div>', rows)


class ManualTopupHistoryInline(ReadOnlyInline):
    model = ManualTopupStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")


class TopupStateFilter(admin.SimpleListFilter):
    """The queue by default: what waits for staff, most urgent first."""

    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("all", _("All")), *ManualTopup.State.choices]

    def choices(self, changelist):
        value = self.value() or ManualTopup.State.QUEUED
        for key, label in self.lookup_choices:
            yield {
                "selected": value == key,
                "query_string": changelist.get_query_string({self.parameter_name: key}),
                "display": label,
            }

    def queryset(self, request, queryset):
        value = self.value() or ManualTopup.State.QUEUED
        return queryset if value == "all" else queryset.filter(state=value)


MANUAL_TOPUP_PERMISSION = "orders.change_manualtopup"


@admin.register(ManualTopup)
class ManualTopupAdmin(ReadOnlyAdmin):
    """人工代充: the queue of direct top-ups staff carry out by hand (queued first, the most
    urgent on top, overdue in red). Staff with the change permission mark each done (the order
    is delivered) or failed with a note (the order is refunded), on its page."""

    list_display = ("order_number", "due", "topup_values", "product", "quantity", "amount", "state", "handled_by")
    list_filter = (TopupStateFilter, "order__product")
    search_fields = ("order__number", "order__buyer__email", "order__guest_email", "order__product_name")
    list_select_related = ("order__product", "handled_by")
    ordering = ("due_at", "id")
    inlines = (ManualTopupHistoryInline,)
    readonly_fields = (
        "order_link",
        "state",
        "due",
        "product",
        "quantity",
        "amount",
        "topup_values",
        "warned_at",
        "breached_at",
        "handled_by",
        "note",
        "created_at",
        "finished_at",
    )
    fields = readonly_fields
    acted_on = True

    @admin.display(description=_("order"), ordering="order__number")
    def order_number(self, obj):
        return obj.order.number

    @admin.display(description=_("order"))
    def order_link(self, obj):
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a> · {}', url, obj.order.number, obj.order.get_status_display())

    @admin.display(description=_("due"), ordering="due_at")
    def due(self, obj):
        when = timezone.localtime(obj.due_at).strftime("%Y-%m-%d %H:%M")
        if obj.state == ManualTopup.State.QUEUED and obj.due_at <= timezone.now():
            return format_html('<strong style="color:#b02a37" data-overdue="1">{} · {}</strong>', when, _("overdue"))
        return when

    @admin.display(description=_("product"))
    def product(self, obj):
        return obj.order.product_name

    @admin.display(description=_("quantity"))
    def quantity(self, obj):
        return obj.order.quantity

    @admin.display(description=_("amount"))
    def amount(self, obj):
        return f"¥{obj.order.total}"

    @admin.display(description=_("top-up details"))
    def topup_values(self, obj):
        return _topup_values_html(obj.order)

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(require_POST(view))

        return [
            path("<int:pk>/done/", wrap(self.done_view), name="orders_manualtopup_done"),
            path("<int:pk>/fail/", wrap(self.fail_view), name="orders_manualtopup_fail"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"can_act": request.user.has_perm(MANUAL_TOPUP_PERMISSION), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def _decide(self, request, pk, service, done):
        if not request.user.has_perm(MANUAL_TOPUP_PERMISSION):
            raise PermissionDenied
        topup = get_object_or_404(ManualTopup.objects.select_related("order"), pk=pk)
        note = request.POST.get("note", "")
        ok, changed = admin_action_run(
            self,
            request,
            lambda: service(topup_id=topup.pk, actor=request.user, note=note),
            label=topup.order.number,
        )
        if ok:
            level = messages.SUCCESS if changed else messages.WARNING
            text = done if changed else _("Nothing changed: it was already marked so.")
            self.message_user(request, f"{topup.order.number}: {text}", level)
            return redirect("admin:orders_manualtopup_changelist")
        return redirect("admin:orders_manualtopup_change", topup.pk)

    def done_view(self, request, pk):
        return self._decide(
            request, pk, manual_topups.manual_topup_done, _("marked topped up; the order is delivered.")
        )

    def fail_view(self, request, pk):
        return self._decide(
            request, pk, manual_topups.manual_topup_fail, _("marked failed; the buyer is refunded in full.")
        )


class UpstreamHistoryInline(ReadOnlyInline):
    model = UpstreamOrderStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    verbose_name_plural = _("status history")


# Supplier orders (issue 16, orders.services.upstream): what we bought from which supplier for
# which order, its state, the calls made, when it is asked again, and the last error. View only:
# beat and the suppliers' callbacks move them.
@admin.register(UpstreamOrder)
class UpstreamOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "order",
        "connection",
        "supplier_ref",
        "quantity",
        "state",
        "cost",
        "attempts",
        "next_check_at",
        "give_up_at",
        "last_error",
        "created_at",
    )
    list_filter = ("state", "connection")
    list_select_related = ("order", "connection")
    search_fields = ("order__number", "supplier_order_no")
    date_hierarchy = "created_at"
    inlines = (UpstreamHistoryInline,)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


# Supplier connections with their orders, and the supplier reconciliation (reads orders and supply).
from . import admin_supply  # noqa: E402, F401
