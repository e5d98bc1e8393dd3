import uuid
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline
from orders.models import Order

from . import refunds
from .models import Notification, Payment, Refund


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = readonly_fields = ("received_at", "outcome", "reason", "remote_addr")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "gateway", "trade_no", "order", "amount", "status")
    list_filter = ("gateway", "status")
    search_fields = ("trade_no", "order__number")
    readonly_fields = (
        "order",
        "gateway",
        "trade_no",
        "amount",
        "currency",
        "status",
        "paid_at",
        "created_at",
    )
    inlines = (NotificationInline,)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "gateway", "outcome", "reason", "order_number", "trade_no", "remote_addr")
    list_filter = ("gateway", "outcome")
    search_fields = ("order_number", "trade_no")
    readonly_fields = (
        "received_at",
        "gateway",
        "outcome",
        "reason",
        "order_number",
        "trade_no",
        "payment",
        "remote_addr",
        "body",
    )


class RefundStateFilter(admin.SimpleListFilter):
    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("late", _("Not refunded after a day")), ("failed", _("Failed"))]

    def queryset(self, request, queryset):
        if self.value() == "late":
            return queryset.filter(
                status__in=[Refund.Status.REQUESTED, Refund.Status.PROCESSING],
                created_at__lte=timezone.now() - timedelta(days=1),
            )
        if self.value() == "failed":
            return queryset.filter(status=Refund.Status.FAILED)
        return queryset


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("number", "created_at", "order", "amount", "quantity", "status", "attempts", "last_error")
    list_filter = (RefundStateFilter, "status", "payment__gateway")
    search_fields = ("number", "order__number", "payment__trade_no", "gateway_refund_id")
    list_select_related = ("order", "payment")
    readonly_fields = (
        "number",
        "payment",
        "order",
        "amount",
        "quantity",
        "reason",
        "requested_by",
        "status",
        "gateway_refund_id",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "succeeded_at",
    )
    actions = ("retry_failed",)

    def get_urls(self):
        view = self.admin_site.admin_view(refund_order_view)
        return [path("order/<str:number>/", view, name="payments_refund_order"), *super().get_urls()]

    @admin.action(description=_("Send failed refunds to their gateway again"))
    def retry_failed(self, request, queryset):
        count = sum(refunds.refund_retry(refund_id=r.pk, staff=request.user) for r in queryset)
        self.message_user(request, _("%(n)d refund(s) sent again.") % {"n": count})


class RefundForm(forms.Form):
    quantity = forms.IntegerField(
        label=_("Codes to refund"), required=False, min_value=1, help_text=_("Leave empty to refund the whole order.")
    )
    reason = forms.CharField(label=_("Reason (shown to the buyer, kept for audit)"), max_length=300)
    token = forms.CharField(widget=forms.HiddenInput)


def refund_order_view(request, number):
    """Staff refund a delivered order, in full or by code count."""
    if not request.user.has_perm("payments.add_refund"):
        raise PermissionDenied
    order = get_object_or_404(Order, number=number)
    form = RefundForm(request.POST or None, initial={"token": uuid.uuid4().hex})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            refund = refunds.order_refund(
                order=order,
                quantity=data["quantity"],
                reason=data["reason"],
                requested_by=request.user,
                key=f"staff:{order.number}:{data['token']}",  # a double click is one refund
            )
        except refunds.RefundError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Refund %(number)s requested.") % {"number": refund.number})
            return redirect(reverse("admin:orders_order_change", args=[order.pk]))
    context = {
        **admin.site.each_context(request),
        "title": _("Refund order %(number)s") % {"number": order.number},
        "order": order,
        "form": form,
        "payments": order.payments.all(),
        "refunds": order.refunds.all(),
        "opts": Refund._meta,
    }
    return TemplateResponse(request, "admin/payments/refund/order_refund.html", context)
