"""Staff's view of supplier connections: state, the balance the supplier reports (refreshed by
an action, "test connection", and hourly by beat) beside what our ledger says we owe or prepaid
the supplier, last error; prepayments recorded with their bank reference; the secret is
write-only (shown as set or not, replaced through an empty password field).

The daily reconciliation's runs and mismatches, and the supplier orders counted per connection,
read our orders: their admin is ``orders.admin_supply`` (a layer above)."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_post_parameters

from marketplace.errors import admin_action_run
from marketplace.money import quantize

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


class PrepaymentForm(forms.Form):
    amount = forms.DecimalField(
        label=_("Amount transferred (yuan)"), min_value=quantize("0.01"), max_digits=12, decimal_places=2
    )
    reference = forms.CharField(
        label=_("Bank transfer reference"),
        max_length=60,
        help_text=_("The same reference recorded twice is booked once."),
    )
    memo = forms.CharField(label=_("Memo"), max_length=200, required=False)


def _ago(when) -> str:
    return timezone.localtime(when).strftime("%m-%d %H:%M") if when else ""


@admin.register(SupplierConnection)
class SupplierConnectionAdmin(admin.ModelAdmin):
    form = SupplierConnectionForm
    list_display = ("name_shown", "state", "balance_shown", "book_shown", "difference_shown", "error_shown")
    list_filter = ("state", "kind")
    list_select_related = ("supplier",)
    search_fields = ("name", "supplier__name", "app_id")
    readonly_fields = (
        "secret_display",
        "state",
        "balance",
        "balance_at",
        "book_shown",
        "difference_shown",
        "last_error",
        "last_error_at",
    )
    actions = ("test_connection", "refresh_balance", "record_prepayment", "enable", "disable")
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
        (
            _("State"),
            {
                "fields": (
                    "timeout_seconds",
                    "state",
                    ("balance", "balance_at"),
                    ("book_shown", "difference_shown"),
                    ("last_error", "last_error_at"),
                )
            },
        ),
    )

    def _book(self, obj) -> object:
        """Our ledger's payable to the connection's supplier, read once per object and request."""
        if obj is None or obj.pk is None:
            return None
        if not hasattr(obj, "_book"):
            obj._book = services.supplier_book_balances([obj.supplier])[obj.supplier_id]
        return obj._book

    @admin.display(description=_("connection"), ordering="name")
    def name_shown(self, obj):
        return format_html("{}<br><small>{} · {}</small>", obj.name, obj.supplier, obj.get_kind_display())

    @admin.display(description=_("balance at the supplier"), ordering="balance")
    def balance_shown(self, obj):
        if obj.balance is None:
            return "—"
        return format_html("{}<br><small>{}</small>", obj.balance, _ago(obj.balance_at))

    @admin.display(description=_("our books"))
    def book_shown(self, obj):
        """The supplier payable in words: owed (we owe the supplier) or prepaid (it holds ours)."""
        book = self._book(obj)
        if book is None:
            return "—"
        if book > 0:
            return _("owed %(amount)s") % {"amount": book}
        if book < 0:
            return _("prepaid %(amount)s") % {"amount": -book}
        return _("settled 0.00")

    @admin.display(description=_("difference"))
    def difference_shown(self, obj):
        """The supplier should hold what our books say we prepaid (−payable): anything else is
        a difference to explain (an order charged there not booked here, a prepayment not
        recorded). Several connections to one supplier share its payable."""
        book = self._book(obj)
        if book is None or obj.balance is None:
            return "—"
        difference = obj.balance + book
        if not difference:
            return "0.00"
        return format_html('<strong style="color:#ba2121">{}</strong>', difference)

    @admin.display(description=_("last error"), ordering="last_error_at")
    def error_shown(self, obj):
        if not obj.last_error:
            return "—"
        return format_html("{}<br><small>{}</small>", obj.last_error, _ago(obj.last_error_at))

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

    @admin.action(description=_("Test the connection (a signed balance call)"))
    def test_connection(self, request, queryset):
        for connection in queryset.order_by("pk"):
            admin_action_run(
                self,
                request,
                lambda c=connection: services.connection_test(connection_id=c.pk),
                label=connection.name,
                done=lambda b, c=connection: (
                    _("%(name)s: connected, balance %(amount)s %(currency)s")
                    % {"name": c.name, "amount": b.amount, "currency": b.currency}
                ),
            )

    def has_prepayment_permission(self, request):
        return request.user.has_perms(services.PREPAYMENT_PERMISSIONS)

    @admin.action(description=_("Record a prepayment (bank transfer to the supplier)…"), permissions=["prepayment"])
    def record_prepayment(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one connection to record a prepayment."), messages.ERROR)
            return None
        connection = queryset.select_related("supplier").get()
        form = PrepaymentForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            data = form.cleaned_data
            admin_action_run(
                self,
                request,
                lambda: services.supplier_prepayment_record(
                    connection=connection,
                    amount=data["amount"],
                    reference=data["reference"],
                    memo=data["memo"],
                    actor=request.user,
                    request=request,
                ),
                label=connection.supplier.name,
                done=_("%(supplier)s: prepayment of %(amount)s recorded (reference %(ref)s).")
                % {"supplier": connection.supplier.name, "amount": data["amount"], "ref": data["reference"]},
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Record a prepayment to %(supplier)s") % {"supplier": connection.supplier.name},
            "opts": self.model._meta,
            "connection": connection,
            "book_text": self.book_shown(connection),
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/supply/supplierconnection/prepayment.html", context)

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
