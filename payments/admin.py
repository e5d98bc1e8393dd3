from django.contrib import admin

from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import Notification, Payment


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = readonly_fields = ("received_at", "outcome", "reason", "remote_addr")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "gateway", "trade_no", "order", "amount", "status")
    list_filter = ("gateway", "status")
    search_fields = ("trade_no", "order__number")
    readonly_fields = (
        "order",
        "gateway",
        "trade_no",
        "amount",
        "currency",
        "status",
        "paid_at",
        "created_at",
    )
    inlines = (NotificationInline,)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "gateway", "outcome", "reason", "order_number", "trade_no", "remote_addr")
    list_filter = ("gateway", "outcome")
    search_fields = ("order_number", "trade_no")
    readonly_fields = (
        "received_at",
        "gateway",
        "outcome",
        "reason",
        "order_number",
        "trade_no",
        "payment",
        "remote_addr",
        "body",
    )
