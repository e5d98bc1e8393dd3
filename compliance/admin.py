from django.contrib import admin

from marketplace.admin import ReadOnlyAdmin

from .models import AuditEvent, CreditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "outcome", "actor", "target", "ip", "path")
    list_filter = ("outcome", "action")
    search_fields = ("target", "path", "actor__email", "ip")
    date_hierarchy = "at"


@admin.register(CreditEvent)
class CreditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "user", "kind", "reference", "detail")
    list_filter = ("kind",)
    search_fields = ("user__email", "reference")
    date_hierarchy = "at"
