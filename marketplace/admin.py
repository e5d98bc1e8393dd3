from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened (orders, payments, logs, histories) are changed only by
    services: staff can look, nobody adds, edits or deletes them here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    class Media:
        # Django captions each existing row with its str() ("1: ∅ → open"): noise in a read-only log.
        css = {"all": ("css/admin.css",)}

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
