from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from marketplace.admin import ReadOnlyAdmin
from marketplace.errors import admin_action_run

from . import services
from .models import AgreementAcceptance, AgreementVersion


@admin.register(AgreementVersion)
class AgreementVersionAdmin(admin.ModelAdmin):
    """Drafts are written and changed here, then published (the action). A published version is
    read-only and never deleted: a change is a new version, published at least 7 days before it
    takes effect (电子商务法 第三十四条, ``legal.services.agreement_version_publish``)."""

    list_display = ("kind", "version", "title", "published_at", "effective_at", "created_by")
    list_filter = ("kind", ("published_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "version")
    fields = ("kind", "version", "title", "body", "effective_at", "published_at", "created_by")
    actions = ("publish",)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.is_published:
            return self.fields
        return ("published_at", "created_by")

    def has_delete_permission(self, request, obj=None):
        return obj is not None and not obj.is_published and super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request, obj, form, change):
        if obj.is_published:  # the form is read-only; a forged post changes nothing
            return
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description=_("Publish these versions"), permissions=["change"])
    def publish(self, request, queryset):
        done = 0
        for version in queryset.order_by("effective_at", "pk"):
            ok, _row = admin_action_run(
                self,
                request,
                lambda v=version: services.agreement_version_publish(version=v, by=request.user),
                label=str(version),
            )
            done += ok
        if done:
            self.message_user(request, ngettext("%d version published.", "%d versions published.", done) % done)


@admin.register(AgreementAcceptance)
class AgreementAcceptanceAdmin(ReadOnlyAdmin):
    list_display = ("accepted_at", "version", "user", "email", "order", "ip")
    list_filter = ("version__kind",)
    search_fields = ("user__email", "email", "order__number", "ip")
    date_hierarchy = "accepted_at"
