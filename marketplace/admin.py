import re

from django import forms
from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# An order (or ticket, refund) number as pages show it, in groups of four (``order_no``).
_GROUPED_NUMBER = re.compile(r"[A-Za-z0-9]{1,4}(?: [A-Za-z0-9]{1,4}){2,}")


class NumberSearchMixin:
    """Support can paste a number as the buyer read it out (``2612 0323 10AB …``): the search
    looks for the number without its spaces, not for each group on its own."""

    def get_search_results(self, request, queryset, search_term):
        term = " ".join(search_term.split())
        if _GROUPED_NUMBER.fullmatch(term):
            search_term = term.replace(" ", "")
        return super().get_search_results(request, queryset, search_term)


class ReadOnlyMixin:
    """For a model admin (or an inline) of records changed only by services: staff can look,
    nobody adds, edits or deletes them here.

    ``acted_on = True``: staff change these records through admin actions and the buttons of
    their change page (each a service call). Django lets those through on the change permission
    asked without an object, so that one is the model's; the change form itself never saves.
    """

    acted_on = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return self.acted_on and obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(NumberSearchMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Records of what happened (orders, payments, logs, histories) are changed only by
    services: staff can look, nobody adds, edits or deletes them here."""


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False

    class Media:
        # Django captions each existing row with its str() ("1: ∅ → open"): noise in a read-only log.
        css = {"all": ("css/admin.css",)}


class ResolvedFilter(admin.SimpleListFilter):
    """Findings staff settle with a note (payment bills' and suppliers' reconciliation
    mismatches: ``ResolutionAdminMixin``): those still open, or those settled."""

    title = _("resolved")
    parameter_name = "resolved"

    def lookups(self, request, model_admin):
        return [("no", _("Unresolved")), ("yes", _("Resolved"))]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class ResolveForm(forms.Form):
    """The note of a "mark resolved" action, at most as long as the model keeps it."""

    def __init__(self, *args, max_length: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["note"] = forms.CharField(
            label=_("What was done"),
            max_length=max_length,
            widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
            help_text=_("Kept with each mismatch, with your name and the time."),
        )


class ResolutionAdminMixin:
    """For a model admin of findings staff resolve with a note (``resolved_at``, ``resolved_by``,
    ``resolution_note``): the resolution column, and the form its "mark resolved" action asks."""

    @admin.display(description=_("resolution"))
    def resolution(self, obj):
        if obj.resolved_at is None:
            return "—"
        return f"✔ {obj.resolved_by or ''} {timezone.localtime(obj.resolved_at):%Y-%m-%d %H:%M}: {obj.resolution_note}"

    def resolve_form(self, request) -> ResolveForm:
        """Bound once the action's page is submitted (``apply``), empty when it is first shown."""
        return ResolveForm(
            request.POST if "apply" in request.POST else None,
            max_length=self.model._meta.get_field("resolution_note").max_length,
        )
