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


class ReadOnlyAdmin(NumberSearchMixin, admin.ModelAdmin):
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
