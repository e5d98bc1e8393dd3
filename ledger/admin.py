from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline

from . import selectors
from .models import Account, Entry, Line
from .names import account_name


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "name_shown", "kind", "owner", "allow_negative", "current_balance")
    list_filter = ("kind", "allow_negative")
    search_fields = ("code", "name", "owner__email")

    @admin.display(description=_("name"), ordering="name")
    def name_shown(self, obj):
        return account_name(obj)

    @admin.display(description=_("balance"))
    def current_balance(self, obj):
        return selectors.balance_of(obj)


class LineInline(ReadOnlyInline):
    model = Line
    fields = readonly_fields = ("account", "amount")


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "reference", "memo", "reverses")
    list_filter = ("kind",)
    search_fields = ("reference", "memo", "idempotency_key")
    date_hierarchy = "created_at"
    inlines = (LineInline,)
    fields = readonly_fields = ("id", "kind", "reference", "memo", "idempotency_key", "reverses", "created_at")
    change_list_template = "admin/ledger/entry/change_list.html"

    def get_urls(self):
        return [
            path("trial-balance/", self.admin_site.admin_view(self.trial_balance_view), name="ledger_trial_balance"),
            *super().get_urls(),
        ]

    def trial_balance_view(self, request):
        rows = selectors.trial_balance()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Trial balance"),
            "opts": self.model._meta,
            "rows": rows,
            "total_debits": sum(r.debits for r in rows),
            "total_credits": sum(r.credits for r in rows),
            "problems": selectors.problems(),
            "funds": selectors.funds_isolation(),
        }
        return TemplateResponse(request, "admin/ledger/entry/trial_balance.html", context)
