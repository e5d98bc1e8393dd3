"""Staff's view of supplier connections: state, balance (with a refresh), last error; the
secret is write-only (shown as set or not, replaced through an empty password field)."""

from django import forms
from django.contrib import admin, messages
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_post_parameters

from marketplace.errors import admin_action_run

from . import services
from .models import SupplierConnection


class SupplierConnectionForm(forms.ModelForm):
    base_url = forms.URLField(label=_("base URL"), max_length=300, assume_scheme="https")
    new_secret = forms.CharField(
        label=_("new secret"),
        required=False,
        max_length=services.MAX_SECRET_LENGTH,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Leave empty to keep the current secret. It is stored encrypted and never shown again."),
    )

    class Meta:
        model = SupplierConnection
        fields = (
            "supplier",
            "name",
            "kind",
            "base_url",
            "app_id",
            "sign_algorithm",
            "sign_key_placement",
            "sign_uppercase",
            "sign_field",
            "body_format",
            "success_code",
            "not_found_code",
            "field_map",
            "status_map",
            "paths",
            "timeout_seconds",
        )


@admin.register(SupplierConnection)
class SupplierConnectionAdmin(admin.ModelAdmin):
    form = SupplierConnectionForm
    list_display = ("name", "supplier", "kind", "state", "balance", "balance_at", "last_error", "last_error_at")
    list_filter = ("state", "kind")
    search_fields = ("name", "supplier__name", "app_id")
    readonly_fields = ("secret_display", "state", "balance", "balance_at", "last_error", "last_error_at")
    actions = ("refresh_balance", "enable", "disable")
    fieldsets = (
        (None, {"fields": ("supplier", "name", "kind", "base_url", "app_id", "secret_display", "new_secret")}),
        (
            _("Signature (generic adapter)"),
            {
                "fields": (
                    "sign_algorithm",
                    "sign_key_placement",
                    "sign_uppercase",
                    "sign_field",
                    "body_format",
                    "success_code",
                    "not_found_code",
                    "field_map",
                    "status_map",
                    "paths",
                )
            },
        ),
        (_("State"), {"fields": ("timeout_seconds", "state", "balance", "balance_at", "last_error", "last_error_at")}),
    )

    @admin.display(description=_("API secret"))
    def secret_display(self, obj):
        if obj is None or not obj.secret_encrypted:
            return _("Not set")
        return _("Set ••••")

    @method_decorator(sensitive_post_parameters("new_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        secret = form.cleaned_data.get("new_secret")
        if secret:
            services.connection_secret_set(connection=obj, secret=secret, actor=request.user, request=request)

    @admin.action(description=_("Refresh the balance from the supplier"))
    def refresh_balance(self, request, queryset):
        for connection in queryset.order_by("pk"):
            admin_action_run(
                self,
                request,
                lambda c=connection: services.connection_balance_refresh(connection_id=c.pk),
                label=connection.name,
                done=lambda b, c=connection: (
                    _("%(name)s: balance %(amount)s %(currency)s")
                    % {"name": c.name, "amount": b.amount, "currency": b.currency}
                ),
            )

    def _set_state(self, request, queryset, enabled: bool):
        done = 0
        for connection in queryset.order_by("pk"):
            ok, _result = admin_action_run(
                self,
                request,
                lambda c=connection: services.connection_state_set(
                    connection=c, enabled=enabled, actor=request.user, request=request
                ),
                label=connection.name,
            )
            done += ok
        if done:
            self.message_user(
                request,
                ngettext("%(n)d connection updated.", "%(n)d connections updated.", done) % {"n": done},
                messages.SUCCESS,
            )

    @admin.action(description=_("Enable"))
    def enable(self, request, queryset):
        self._set_state(request, queryset, True)

    @admin.action(description=_("Disable"))
    def disable(self, request, queryset):
        self._set_state(request, queryset, False)
