"""The risk queue and the blacklist in admin.

Alerts are records (read-only); staff decide them with actions, each one service call,
audited: dismiss (a false alarm: the rule's hold or block is lifted) or block the alert's
email, IP and device for a day, a week or a month. Blacklist entries are added and edited here
(the value normalised: a CIDR range, a lower-case email or domain); lifting one ends it now.
"""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from compliance.services import audit_record
from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline
from marketplace.errors import admin_action_run

from . import services
from .models import Alert, AlertStatusChange, BlockEntry, Signup, block_value_normalise, block_value_shown


class AlertHistoryInline(ReadOnlyInline):
    model = AlertStatusChange
    fields = ("at", "from_status", "to_status", "actor", "note")


class EntryInline(ReadOnlyInline):
    model = BlockEntry
    fk_name = "alert"
    fields = ("kind", "value", "scope", "expires_at", "reason")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    acted_on = True
    list_display = ("created_at", "rule", "action", "status", "who", "ip", "device_short", "count")
    list_filter = ("status", "rule", "action")
    search_fields = ("email", "user__email", "ip", "device")
    date_hierarchy = "created_at"
    inlines = (EntryInline, AlertHistoryInline)
    actions = ("dismiss", "block_day", "block_week", "block_month")

    @admin.display(description=_("user or guest"))
    def who(self, obj):
        return obj.user or obj.email or "—"

    @admin.display(description=_("device"))
    def device_short(self, obj):
        return format_html("<code>{}</code>", obj.device[:12]) if obj.device else "—"

    @admin.display(description=_("count"))
    def count(self, obj):
        evidence = obj.evidence or {}
        if "count" in evidence and "limit" in evidence:
            return f"{evidence['count']} > {evidence['limit']}"
        if "held" in evidence:
            return f"{evidence['held']} + {evidence.get('adding', 0)} > {evidence.get('cap')}"
        return "—"

    def _each(self, request, queryset, fn, done):
        n = 0
        for alert in queryset.filter(status=Alert.Status.OPEN).order_by("pk"):
            ok, moved = admin_action_run(self, request, lambda a=alert: fn(a), label=str(alert))
            n += bool(ok and moved)
        self.message_user(request, done(n), messages.SUCCESS if n else messages.WARNING)

    @admin.action(description=_("Dismiss (false alarm: lift what the rule did)"), permissions=["change"])
    def dismiss(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda a: services.alert_dismiss(alert_id=a.pk, by=request.user, request=request),
            lambda n: ngettext("%(n)d alert dismissed.", "%(n)d alerts dismissed.", n) % {"n": n},
        )

    def _block(self, request, queryset, days):
        self._each(
            request,
            queryset,
            lambda a: services.alert_block(alert_id=a.pk, by=request.user, days=days, request=request),
            lambda n: (
                ngettext(
                    "%(n)d alert actioned: its subjects are blocked.",
                    "%(n)d alerts actioned: their subjects are blocked.",
                    n,
                )
                % {"n": n}
            ),
        )

    @admin.action(description=_("Block email, IP and device for 1 day"), permissions=["change"])
    def block_day(self, request, queryset):
        self._block(request, queryset, 1)

    @admin.action(description=_("Block email, IP and device for 7 days"), permissions=["change"])
    def block_week(self, request, queryset):
        self._block(request, queryset, 7)

    @admin.action(description=_("Block email, IP and device for 30 days"), permissions=["change"])
    def block_month(self, request, queryset):
        self._block(request, queryset, 30)


class BlockEntryForm(forms.ModelForm):
    class Meta:
        model = BlockEntry
        fields = ("kind", "value", "scope", "reason", "expires_at")

    def clean(self):
        data = super().clean()
        if data.get("kind") and data.get("value"):
            try:
                raw = data["value"]
                data["value"] = block_value_normalise(data["kind"], raw)
                if data["value"] != self.instance.value or data["kind"] != self.instance.kind:
                    self.instance.shown = block_value_shown(data["kind"], raw)
            except ValueError:
                self.add_error("value", _("This is not a valid value for that kind of entry."))
        return data


class ActiveFilter(admin.SimpleListFilter):
    title = _("active")
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return (("yes", _("Active")), ("no", _("Ended")))

    def queryset(self, request, queryset):
        from .models import active_entries

        if self.value() == "yes":
            return queryset.filter(active_entries())
        if self.value() == "no":
            return queryset.exclude(active_entries())
        return queryset


@admin.register(BlockEntry)
class BlockEntryAdmin(admin.ModelAdmin):
    form = BlockEntryForm
    list_display = ("kind", "entry_value", "scope", "reason", "expires_at", "is_active", "created_by", "alert")
    list_filter = (ActiveFilter, "kind", "scope")
    search_fields = ("value", "reason")
    readonly_fields = ("shown", "created_at", "created_by", "alert")
    actions = ("lift",)

    @admin.display(description=_("value"), ordering="value")
    def entry_value(self, obj):
        return obj.shown or obj.value

    def get_search_results(self, request, queryset, search_term):
        """A payout account typed in clear finds its entry (kept as a keyed digest)."""
        results, duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            digest = block_value_normalise(BlockEntry.Kind.PAYOUT, search_term)
            results = results | queryset.filter(kind=BlockEntry.Kind.PAYOUT, value=digest)
        return results, duplicates

    @admin.display(description=_("active"), boolean=True)
    def is_active(self, obj):
        return obj.active

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        audit_record(
            action="risk_block_changed" if change else "risk_block_added",
            outcome="allowed",
            request=request,
            target=f"blacklist #{obj.pk}",
            detail=f"{obj.kind} {obj.shown or obj.value} until {obj.expires_at or '-'}: {obj.reason}",
        )

    def has_delete_permission(self, request, obj=None):
        return False  # lift instead: the entry stays as the record

    @admin.action(description=_("Lift now"), permissions=["change"])
    def lift(self, request, queryset):
        n = sum(
            services.block_lift(entry_id=pk, by=request.user, request=request)
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, ngettext("%(n)d entry lifted.", "%(n)d entries lifted.", n) % {"n": n})


@admin.register(Signup)
class SignupAdmin(ReadOnlyAdmin):
    """Where each account was made (IP, device): what the shared-device scan reads besides
    orders. Read-only: recorded by the sign-up adapter."""

    list_display = ("created_at", "user", "ip", "device")
    search_fields = ("user__email", "ip", "device")
    date_hierarchy = "created_at"
