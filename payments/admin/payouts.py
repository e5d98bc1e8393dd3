"""Staff review agents' withdrawals and pay them out.

A withdrawal is changed only by services (agents.services.withdrawals through payments.services.payouts): the
change page is read-only and carries the buttons of what may happen next: approve, reject with
a reason (an intermediate page, also as a list action), retry or check an Alipay payout, and
record a manual bank transfer with its bank reference. Accounts show masked; staff holding
``agents.reveal_payee_account`` see the full account on the bank transfer page, and each such
look is written to the audit log.
"""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from agents.models import Withdrawal, WithdrawalStatusChange
from agents.services import withdrawals
from compliance.models import AuditEvent
from compliance.services import audit_record
from marketplace.admin import ReadOnlyInline, ReadOnlyMixin
from marketplace.errors import admin_action_run

from ..services import payouts

WithdrawalStatus = Withdrawal.Status
REVEAL_PERMISSION = "agents.reveal_payee_account"
CHANGE_PERMISSION = "agents.change_withdrawal"


class HistoryInline(ReadOnlyInline):
    model = WithdrawalStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    ordering = ("at", "id")


class AmountFilter(admin.SimpleListFilter):
    title = _("amount")
    parameter_name = "amount"
    RANGES = {
        "lt100": (None, Decimal("100")),
        "100-1000": (Decimal("100"), Decimal("1000")),
        "1000-10000": (Decimal("1000"), Decimal("10000")),
        "gte10000": (Decimal("10000"), None),
    }

    def lookups(self, request, model_admin):
        return [
            ("lt100", _("Under ¥100")),
            ("100-1000", _("¥100 – ¥1,000")),
            ("1000-10000", _("¥1,000 – ¥10,000")),
            ("gte10000", _("¥10,000 and more")),
        ]

    def queryset(self, request, queryset):
        bounds = self.RANGES.get(self.value() or "")
        if bounds is None:
            return queryset
        low, high = bounds
        condition = Q()
        if low is not None:
            condition &= Q(amount__gte=low)
        if high is not None:
            condition &= Q(amount__lt=high)
        return queryset.filter(condition)


class AttentionFilter(admin.SimpleListFilter):
    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [
            ("review", _("Awaiting review")),
            ("bank", _("Bank transfer to make")),
            ("unknown", _("Alipay outcome unknown")),
            ("failed", _("Payout failed")),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "review":
            return queryset.filter(status=WithdrawalStatus.REQUESTED)
        if value == "bank":
            return queryset.filter(status=WithdrawalStatus.APPROVED, method=Withdrawal.Method.BANK)
        if value == "unknown":
            return queryset.filter(status=WithdrawalStatus.APPROVED, method=Withdrawal.Method.ALIPAY).exclude(
                payout_error=""
            )
        if value == "failed":
            return queryset.filter(status=WithdrawalStatus.FAILED)
        return queryset


class RejectForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (the agent sees it)"), max_length=300, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )


class BankTransferForm(forms.Form):
    reference = forms.CharField(label=_("Bank reference of the transfer"), max_length=64)
    note = forms.CharField(label=_("Note (optional)"), max_length=200, required=False)


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyMixin, admin.ModelAdmin):
    change_form_template = "admin/agents/withdrawal/change_form.html"
    list_display = ("number", "status", "amount", "pay_to", "agent_user", "created_at")
    list_filter = ("status", "method", AttentionFilter, AmountFilter, ("agent", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("agent__user",)
    search_fields = ("number", "agent__user__username", "agent__user__email", "payee_name", "payout_reference")
    date_hierarchy = "created_at"
    readonly_fields = (
        "number",
        "agent",
        "status",
        "amount",
        "fee",
        "net",
        "method",
        "payee_name",
        "account_masked",
        "bank_name",
        "created_at",
        "reviewed_by",
        "reviewed_at",
        "reject_reason",
        "payout_reference",
        "payout_error",
        "paid_at",
    )
    fields = readonly_fields
    inlines = (HistoryInline,)
    actions = ("approve_selected", "reject_selected", "retry_failed")

    # Changed only through the services: the change page is for looking; actions and the
    # buttons on it need the change permission (checked for the list, not for one object).
    acted_on = True

    @admin.display(description=_("agent"), ordering="agent__user__username")
    def agent_user(self, obj):
        return obj.agent.user

    @admin.display(description=_("account"))
    def account_masked(self, obj):
        return withdrawals.payee_account_masked(obj)

    @admin.display(description=_("pay to"), ordering="method")
    def pay_to(self, obj):
        return f"{obj.get_method_display()} {withdrawals.payee_account_masked(obj)} · ¥{obj.net}"

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(view)

        return [
            path("<int:pk>/approve/", wrap(self.approve_view), name="agents_withdrawal_approve"),
            path("<int:pk>/reject/", wrap(self.reject_view), name="agents_withdrawal_reject"),
            path("<int:pk>/retry/", wrap(self.retry_view), name="agents_withdrawal_retry"),
            path("<int:pk>/check/", wrap(self.check_view), name="agents_withdrawal_check"),
            path("<int:pk>/bank-transfer/", wrap(self.bank_transfer_view), name="agents_withdrawal_bank"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"can_act": request.user.has_perm(CHANGE_PERMISSION), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=extra)

    # --- list actions -----------------------------------------------------------------------

    def _require_change(self, request):
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied

    def _run(self, request, fn, withdrawal, done_message) -> bool:
        ok, _result = admin_action_run(
            self, request, fn, label=withdrawal.number, done=done_message % {"number": withdrawal.number}
        )
        return ok

    @admin.action(description=_("Approve selected (Alipay ones are paid out at once)"), permissions=["change"])
    def approve_selected(self, request, queryset):
        for withdrawal in queryset.filter(status=WithdrawalStatus.REQUESTED).order_by("pk"):
            self._run(
                request,
                lambda w=withdrawal: payouts.payout_approve(withdrawal_id=w.pk, staff=request.user),
                withdrawal,
                _("%(number)s approved."),
            )
        skipped = queryset.exclude(status=WithdrawalStatus.REQUESTED).count()
        if skipped:
            self.message_user(
                request, _("%(n)d withdrawal(s) were not awaiting review and were left as they are.") % {"n": skipped}
            )

    @admin.action(description=_("Reject selected withdrawals (asks for a reason)…"), permissions=["change"])
    def reject_selected(self, request, queryset):
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for withdrawal in queryset.order_by("pk"):
                self._run(
                    request,
                    lambda w=withdrawal: payouts.payout_reject(
                        withdrawal_id=w.pk, staff=request.user, reason=form.cleaned_data["reason"]
                    ),
                    withdrawal,
                    _("%(number)s rejected; the amount is back in the agent's available commission."),
                )
            return None
        return self._reject_page(request, list(queryset.select_related("agent__user")), form, action=True)

    @admin.action(description=_("Retry failed Alipay payouts"), permissions=["change"])
    def retry_failed(self, request, queryset):
        for withdrawal in queryset.filter(status=WithdrawalStatus.FAILED).order_by("pk"):
            self._run(
                request,
                lambda w=withdrawal: payouts.payout_retry(withdrawal_id=w.pk, staff=request.user),
                withdrawal,
                _("%(number)s sent to Alipay again."),
            )

    # --- one withdrawal's pages ---------------------------------------------------------------

    def _change_url(self, withdrawal):
        return reverse("admin:agents_withdrawal_change", args=[withdrawal.pk])

    def _reject_page(self, request, items, form, *, action: bool):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Reject withdrawals"),
            "items": [(w, withdrawals.payee_account_masked(w)) for w in items],
            "form": form,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/agents/withdrawal/reject.html", context)

    def approve_view(self, request, pk):
        return require_POST(self._approve)(request, pk)

    def _approve(self, request, pk):
        self._require_change(request)
        withdrawal = get_object_or_404(Withdrawal, pk=pk)
        self._run(
            request,
            lambda: payouts.payout_approve(withdrawal_id=withdrawal.pk, staff=request.user),
            withdrawal,
            _("%(number)s approved."),
        )
        return redirect(self._change_url(withdrawal))

    def reject_view(self, request, pk):
        self._require_change(request)
        withdrawal = get_object_or_404(Withdrawal.objects.select_related("agent__user"), pk=pk)
        form = RejectForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            done = self._run(
                request,
                lambda: payouts.payout_reject(
                    withdrawal_id=withdrawal.pk, staff=request.user, reason=form.cleaned_data["reason"]
                ),
                withdrawal,
                _("%(number)s rejected; the amount is back in the agent's available commission."),
            )
            if done:
                return redirect(self._change_url(withdrawal))
        return self._reject_page(request, [withdrawal], form, action=False)

    def retry_view(self, request, pk):
        return require_POST(self._retry)(request, pk)

    def _retry(self, request, pk):
        self._require_change(request)
        withdrawal = get_object_or_404(Withdrawal, pk=pk)
        self._run(
            request,
            lambda: payouts.payout_retry(withdrawal_id=withdrawal.pk, staff=request.user),
            withdrawal,
            _("%(number)s sent to Alipay again."),
        )
        return redirect(self._change_url(withdrawal))

    def check_view(self, request, pk):
        return require_POST(self._check)(request, pk)

    def _check(self, request, pk):
        self._require_change(request)
        withdrawal = get_object_or_404(Withdrawal, pk=pk)
        self._run(
            request,
            lambda: payouts.payout_check(withdrawal_id=withdrawal.pk),
            withdrawal,
            _("Asked Alipay about %(number)s."),
        )
        return redirect(self._change_url(withdrawal))

    def bank_transfer_view(self, request, pk):
        self._require_change(request)
        withdrawal = get_object_or_404(Withdrawal.objects.select_related("agent__user"), pk=pk)
        if withdrawal.method != Withdrawal.Method.BANK:
            messages.error(request, _("%(number)s is paid by Alipay.") % {"number": withdrawal.number})
            return redirect(self._change_url(withdrawal))
        form = BankTransferForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            done = self._run(
                request,
                lambda: payouts.payout_record_bank(
                    withdrawal_id=withdrawal.pk,
                    staff=request.user,
                    reference=form.cleaned_data["reference"],
                    note=form.cleaned_data["note"],
                ),
                withdrawal,
                _("Bank transfer of %(number)s recorded: paid."),
            )
            if done:
                return redirect(self._change_url(withdrawal))
        reveal = request.user.has_perm(REVEAL_PERMISSION) and withdrawal.status in (
            WithdrawalStatus.REQUESTED,
            WithdrawalStatus.APPROVED,
        )
        if reveal:
            account = withdrawals.payee_account(withdrawal)
            audit_record(
                action="withdrawal.reveal_account",
                outcome=AuditEvent.Outcome.ALLOWED,
                request=request,
                target=withdrawal.number,
                detail="full payee account shown to record a bank transfer",
            )
        else:
            account = withdrawals.payee_account_masked(withdrawal)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Record the bank transfer of %(number)s") % {"number": withdrawal.number},
            "original": withdrawal,
            "account": account,
            "revealed": reveal,
            "form": form,
        }
        return TemplateResponse(request, "admin/agents/withdrawal/bank_transfer.html", context)
