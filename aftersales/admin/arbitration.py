"""Arbitration cases in admin: the list (status, outcome, third party, dates) and a change page
whose buttons record the submission, record the decision and download the dossier ZIP. Each is a
POST to a small admin view calling one service in ``aftersales.services.arbitration``; the change
permission on arbitration cases is required for all of them.
"""

from datetime import datetime, time

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from marketplace.admin import ReadOnlyInline, ReadOnlyMixin
from marketplace.errors import admin_action_run

from ..models import ArbitrationCase, ArbitrationCaseStatusChange
from ..services import arbitration, tickets

CHANGE_PERMISSION = "aftersales.change_arbitrationcase"


class SubmitForm(forms.Form):
    third_party = forms.CharField(max_length=120)
    case_number = forms.CharField(max_length=60)
    submitted_on = forms.DateField(required=False)


class DecideForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[(v, label) for v, label in ArbitrationCase.Outcome.choices if v != ArbitrationCase.Outcome.PENDING]
    )
    note = forms.CharField(max_length=5000)
    refund_quantity = forms.IntegerField(min_value=0, required=False)


class HistoryInline(ReadOnlyInline):
    model = ArbitrationCaseStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    verbose_name_plural = _("status history")


@admin.register(ArbitrationCase)
class ArbitrationCaseAdmin(ReadOnlyMixin, admin.ModelAdmin):
    change_form_template = "admin/aftersales/arbitrationcase/change_form.html"
    list_display = (
        "ticket_link",
        "status",
        "outcome",
        "third_party",
        "case_number",
        "created_at",
        "submitted_at",
        "decided_at",
        "dossier_exported_at",
    )
    list_filter = ("status", "outcome", "third_party", ("created_at", admin.DateFieldListFilter))
    search_fields = (
        "ticket__number",
        "case_number",
        "third_party",
        "ticket__user__email",
        "ticket__order__guest_email",
        "ticket__order__number",
    )
    list_select_related = ("ticket",)
    list_per_page = 50
    date_hierarchy = "created_at"
    inlines = (HistoryInline,)
    fields = readonly_fields = (
        "ticket_link",
        "order_link",
        "requested_by_label",
        "status",
        "outcome",
        "third_party",
        "case_number",
        "buyer_statement",
        "outcome_note",
        "refund_quantity",
        "refund_link",
        "created_at",
        "submitted_at",
        "decided_at",
        "dossier_exported_at",
    )

    # Cases are opened by the buyer or from a dispute, changed only through the services.
    acted_on = True

    @admin.display(description=_("requested by"))
    def requested_by_label(self, obj):
        """The staff member or member who escalated; "guest <email>" for a guest order's guest."""
        if obj.requested_by_id is not None:
            return obj.requested_by
        return tickets.buyer_label(obj.ticket)

    @admin.display(description=_("ticket"), ordering="ticket__number")
    def ticket_link(self, obj):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:aftersales_ticket_change", args=[obj.ticket_id]), obj.ticket.number
        )

    @admin.display(description=_("order"))
    def order_link(self, obj):
        order = obj.ticket.order
        if order is None:
            return "—"
        return format_html('<span style="font-family:monospace">{}</span> · {}', order.number, order.product_name)

    @admin.display(description=_("refund"))
    def refund_link(self, obj):
        if obj.refund_id is None:
            return "—"
        refund = obj.refund
        return format_html(
            '<a href="{}">{}</a> · ¥{} · {}',
            reverse("admin:payments_refund_change", args=[refund.pk]),
            refund.number,
            refund.amount,
            refund.get_status_display(),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        case = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if case is not None:
            order = case.ticket.order
            extra.update(
                {
                    "can_act": request.user.has_perm(CHANGE_PERMISSION),
                    "outcomes": DecideForm.base_fields["outcome"].choices,
                    "codes_left": arbitration.codes_left(order) if order else 0,
                    "today": timezone.localdate().isoformat(),
                }
            )
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(require_POST(view))

        return [
            path("<int:pk>/submit/", wrap(self.submit_view), name="aftersales_arbitrationcase_submit"),
            path("<int:pk>/decide/", wrap(self.decide_view), name="aftersales_arbitrationcase_decide"),
            path("<int:pk>/dossier/", wrap(self.dossier_view), name="aftersales_arbitrationcase_dossier"),
            *super().get_urls(),
        ]

    def _case(self, request, pk) -> ArbitrationCase:
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied
        return get_object_or_404(ArbitrationCase.objects.select_related("ticket"), pk=pk)

    def _back(self, case):
        return redirect(reverse("admin:aftersales_arbitrationcase_change", args=[case.pk]))

    def _run(self, request, case, fn, done):
        # Refused (the dispute or refund service too): shown to staff, nothing half-done (one transaction).
        admin_action_run(self, request, fn, label=case.ticket.number, done=done % {"number": case.ticket.number})

    def submit_view(self, request, pk):
        case = self._case(request, pk)
        form = SubmitForm(request.POST)
        if not form.is_valid():
            self.message_user(request, _("Give the third party, their case number and a valid date."), messages.ERROR)
            return self._back(case)
        data = form.cleaned_data
        when = None
        if data["submitted_on"]:
            day = data["submitted_on"]
            when = (
                timezone.now()
                if day == timezone.localdate()
                else timezone.make_aware(datetime.combine(day, time(12, 0)))
            )
        self._run(
            request,
            case,
            lambda: arbitration.arbitration_submit(
                case=case,
                staff=request.user,
                third_party=data["third_party"],
                case_number=data["case_number"],
                submitted_at=when,
            ),
            _("%(number)s: submission recorded; the buyer is told."),
        )
        return self._back(case)

    def decide_view(self, request, pk):
        case = self._case(request, pk)
        form = DecideForm(request.POST)
        if not form.is_valid():
            self.message_user(request, _("Choose the outcome and write down the decision."), messages.ERROR)
            return self._back(case)
        data = form.cleaned_data
        self._run(
            request,
            case,
            lambda: arbitration.arbitration_decide(
                case=case,
                staff=request.user,
                outcome=data["outcome"],
                note=data["note"],
                refund_quantity=data["refund_quantity"] or 0,
            ),
            _("%(number)s: decision recorded and carried out; the buyer is told."),
        )
        return self._back(case)

    def dossier_view(self, request, pk):
        case = self._case(request, pk)
        data = arbitration.arbitration_dossier(case=case, staff=request.user)
        response = HttpResponse(data, content_type="application/zip")
        name = f"arbitration-{case.ticket.number}-{timezone.localdate():%Y%m%d}.zip"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "private, no-store"
        return response
