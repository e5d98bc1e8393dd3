"""Admin for the SLA: policies per ticket kind (editable), the clocks that fired (read-only),
and the SLA report page (/admin/aftersales/slaevent/report/)."""

from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin

from ..models import SlaEvent, SlaPolicy
from ..services import sla
from .sla_text import sla_detail_text

REPORT_PERIODS = (4, 12)


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    list_display = ("kind", "first_response_hours", "warn_after_hours", "resolution_hours")
    list_editable = ("first_response_hours", "warn_after_hours", "resolution_hours")
    list_display_links = ("kind",)
    change_list_template = "admin/aftersales/slapolicy/change_list.html"


@admin.register(SlaEvent)
class SlaEventAdmin(ReadOnlyAdmin):  # written only by the SLA sweep
    list_display = ("at", "ticket", "kind", "detail_text")
    list_filter = ("kind", ("at", admin.DateFieldListFilter))
    list_select_related = ("ticket",)
    search_fields = ("ticket__number",)
    date_hierarchy = "at"
    fields = readonly_fields = ("ticket", "kind", "at", "detail_text")
    change_list_template = "admin/aftersales/slaevent/change_list.html"

    @admin.display(description=_("detail"))
    def detail_text(self, obj):
        return sla_detail_text(obj)

    def get_urls(self):
        return [
            path("report/", self.admin_site.admin_view(self.report_view), name="aftersales_sla_report"),
            *super().get_urls(),
        ]

    def report_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            weeks = int(request.GET.get("weeks", REPORT_PERIODS[0]))
        except ValueError:
            weeks = REPORT_PERIODS[0]
        if weeks not in REPORT_PERIODS:
            weeks = REPORT_PERIODS[0]
        report = sla.sla_report(weeks=weeks)
        try:
            overdue_url = reverse("admin:aftersales_ticket_changelist") + "?sla=overdue"
        except NoReverseMatch:  # the Ticket admin is not registered
            overdue_url = ""
        context = {
            **self.admin_site.each_context(request),
            "title": _("SLA report"),
            "opts": self.model._meta,
            "report": report,
            "weeks": weeks,
            "periods": REPORT_PERIODS,
            "overdue_url": overdue_url,
            "now": timezone.now(),
            "end_shown": report.end - timedelta(seconds=1),
        }
        return TemplateResponse(request, "admin/aftersales/sla_report.html", context)
