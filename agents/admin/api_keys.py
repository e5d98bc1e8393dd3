"""Admin for the integration API (imported by agents.admin): staff see agents' keys (never a
secret) and can revoke them. Their callbacks are in orders.admin (orders.services.callbacks)."""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import ApiKey
from ..services import api_keys


class KeyState(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("active", _("Active")), ("revoked", _("Revoked")))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("key_id", "name", "agent", "state", "has_allowlist", "callback_url", "last_used_at", "created_at")
    list_filter = (KeyState,)
    list_select_related = ("agent__user",)
    search_fields = ("key_id", "name", "agent__user__username", "agent__user__email", "callback_url")
    date_hierarchy = "created_at"
    actions = ("revoke_keys",)
    # The secrets never appear: not on the list, not on the form.
    fields = (
        "agent",
        "name",
        "key_id",
        "ip_allowlist",
        "callback_url",
        "created_at",
        "rotated_at",
        "previous_valid_until",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # keys are issued by their agent (the secret is shown to it once)

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the key stays for the record of its orders and callbacks

    @admin.display(description=_("state"))
    def state(self, obj):
        if obj.revoked_at:
            return _("Revoked")
        if obj.previous_valid_until and obj.previous_valid_until > timezone.now():
            return _("Active (rotated)")
        return _("Active")

    @admin.display(description=_("IP allow-list"), boolean=True)
    def has_allowlist(self, obj):
        return bool(obj.ip_allowlist)

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke_keys(self, request, queryset):
        done = sum(api_keys.apikey_revoke_by_staff(key=key) for key in queryset.select_related("agent"))
        self.message_user(
            request,
            ngettext("%(n)d key revoked.", "%(n)d keys revoked.", done) % {"n": done},
            messages.SUCCESS,
        )
