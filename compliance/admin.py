from django.contrib import admin

from marketplace.admin import ReadOnlyAdmin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "outcome", "actor", "target", "ip", "path")
    list_filter = ("outcome", "action")
    search_fields = ("target", "path", "actor__email", "ip")
    date_hierarchy = "at"
