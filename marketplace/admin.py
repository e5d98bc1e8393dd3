import re

from django.contrib import admin

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
