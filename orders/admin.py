from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from compliance.admin import credit_panel
from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import (
    ApiCallback,
    ApiCallbackStatusChange,
    CodeReveal,
    Order,
    OrderCode,
    OrderShare,
    OrderStatusChange,
    UpstreamOrder,
    UpstreamOrderStatusChange,
)
from .services import callbacks


class StatusChangeInline(ReadOnlyInline):
    model = OrderStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")


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
    inlines = (OrderCodeInline, OrderShareInline, StatusChangeInline)
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
        "buyer_credit",
    )
    fields = readonly_fields

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
