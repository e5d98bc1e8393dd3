from django.contrib import admin

from marketplace.admin import ReadOnlyAdmin

from .models import Notification, Payment


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
        "notification",
    )


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "gateway", "outcome", "reason", "order_number", "trade_no", "remote_addr")
    list_filter = ("gateway", "outcome")
    search_fields = ("order_number", "trade_no")
    readonly_fields = ("received_at", "gateway", "outcome", "reason", "order_number", "trade_no", "remote_addr", "body")
