"""The users' admin with the action to close accounts (``aftersales.services.accounts``): staff
close an account on the holder's request; the records stay, the person is anonymised. It
extends compliance's user admin (with the credit panel) here, where orders and tickets may be read."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from compliance.admin import CreditUserAdmin
from marketplace.errors import admin_action_run

from ..services.accounts import account_close

User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class ClosableUserAdmin(CreditUserAdmin):
    actions = (*(CreditUserAdmin.actions or ()), "close_accounts")

    def has_delete_permission(self, request, obj=None):
        return False  # an account is closed (anonymised), never deleted: its records are kept

    @admin.action(description=_("Close these accounts (anonymise, keep the records)"), permissions=["change"])
    def close_accounts(self, request, queryset):
        done = 0
        for user in queryset.order_by("pk"):
            ok, _result = admin_action_run(
                self,
                request,
                lambda u=user: account_close(user=u, by=request.user, request=request),
                label=str(user),
            )
            done += ok
        if done:
            self.message_user(
                request, ngettext("%d account closed.", "%d accounts closed.", done) % done, messages.SUCCESS
            )
