from allauth.mfa.models import Authenticator
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from marketplace.admin import ReadOnlyAdmin

from .models import AuditEvent, CreditEvent
from .services import mfa_reset_by_staff


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

# Two-factor authenticators (allauth.mfa): staff see who has which and when it was last used,
# never the secrets; the one change is a reset of an account's two-factor (audited), for a
# colleague who lost their phone and recovery codes. Needs the "delete authenticator" permission.
admin.site.unregister(Authenticator)


@admin.register(Authenticator)
class AuthenticatorAdmin(admin.ModelAdmin):
    list_display = ("user", "type", "created_at", "last_used_at")
    list_filter = ("type",)
    search_fields = ("user__email",)
    fields = ("user", "type", "created_at", "last_used_at")
    readonly_fields = fields
    actions = ("reset_two_factor",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_reset_permission(self, request) -> bool:
        return request.user.has_perm("mfa.delete_authenticator")

    @admin.action(description=_("Reset two-factor authentication of these accounts"), permissions=["reset"])
    def reset_two_factor(self, request, queryset):
        users = {a.user for a in queryset.select_related("user")}
        for user in sorted(users, key=lambda u: u.pk):
            mfa_reset_by_staff(user=user, by=request.user, request=request)
        self.message_user(
            request,
            ngettext(
                "Two-factor authentication reset for %(count)d account: it must set it up again.",
                "Two-factor authentication reset for %(count)d accounts: each must set it up again.",
                len(users),
            )
            % {"count": len(users)},
            messages.SUCCESS,
        )
