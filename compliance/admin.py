from django.contrib import admin
from django.utils.translation import gettext as _

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
    list_display = ("at", "owner", "kind", "reference", "detail")
    list_filter = ("kind",)
    search_fields = ("user__email", "email", "reference")
    date_hierarchy = "at"

    @admin.display(description=_("user"), ordering="user__email")
    def owner(self, obj):
        """The member, or "guest <email>" for a guest's event."""
        return obj.user if obj.user_id else _("guest %(email)s") % {"email": obj.email}
