import uuid
from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline, ResolutionAdminMixin, ResolvedFilter
from marketplace.errors import PASS_THROUGH, ServiceError
from orders.models import Order

from .. import selectors
from ..gateways import GATEWAY_CLASSES
from ..models import Mismatch, Notification, Payment, PaymentAttempt, ReconciliationRun, Refund, RefundStatusChange
from ..services import reconciliation, refunds


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = readonly_fields = ("received_at", "outcome", "reason", "remote_addr")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    change_list_template = "admin/payments/payment/change_list.html"
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

    def get_urls(self):
        view = self.admin_site.admin_view(channels_view)
        return [path("channels/", view, name="payments_channels"), *super().get_urls()]


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
        return [("late", _("Not back after one business day")), ("failed", _("Failed"))]

    def queryset(self, request, queryset):
        if self.value() == "late":
            return queryset.filter(pk__in=selectors.refunds_overdue().values("pk"))
        if self.value() == "failed":
            return queryset.filter(status=Refund.Status.FAILED)
        return queryset


class RefundHistoryInline(ReadOnlyInline):
    model = RefundStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    verbose_name_plural = _("status history")


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
    inlines = (RefundHistoryInline,)

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
        except PASS_THROUGH:
            raise
        except ServiceError as exc:  # RefundError, or a refusal further down (an illegal move)
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


# --- reconciliation --------------------------------------------------------------------------


class AttemptStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("open", _("Still queried")),
            ("closed", _("Closed at the gateway")),
            ("error", _("With an error")),
        ]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(next_query_at__isnull=False)
        if self.value() == "closed":
            return queryset.filter(closed_at__isnull=False)
        if self.value() == "error":
            return queryset.exclude(last_error="")
        return queryset


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "gateway",
        "created_at",
        "queries",
        "next_query_at",
        "last_state",
        "closed_at",
        "last_error",
    )
    list_filter = ("gateway", AttemptStateFilter)
    search_fields = ("number",)
    fields = readonly_fields = (
        "number",
        "gateway",
        "created_at",
        "queries",
        "next_query_at",
        "last_state",
        "last_error",
        "closed_at",
        "finished_at",
    )


def _report_url(day: date) -> str:
    return reverse("admin:payments_reconciliation_report", args=[day.isoformat()])


def _mismatches_url(**query) -> str:
    return reverse("admin:payments_mismatch_changelist") + "?" + "&".join(f"{k}={v}" for k, v in query.items())


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "day_report",
        "gateway",
        "status",
        "bill_lines",
        "our_records",
        "matched",
        "missing_here",
        "missing_there",
        "amount_differs",
        "unresolved_link",
        "finished_at",
    )
    list_filter = ("gateway", "status")
    date_hierarchy = "day"
    readonly_fields = (
        "gateway",
        "day",
        "status",
        "started_at",
        "finished_at",
        "error",
        "links",
        "bill_lines",
        "our_records",
        "matched",
        "missing_here",
        "missing_there",
        "amount_differs",
        "bill_payments_total",
        "our_payments_total",
        "bill_refunds_total",
        "our_refunds_total",
    )
    fieldsets = (
        (None, {"fields": ("gateway", "day", "status", "started_at", "finished_at", "error", "links")}),
        (
            _("The bill against our records"),
            {
                "fields": (
                    ("bill_lines", "our_records", "matched"),
                    ("missing_here", "missing_there", "amount_differs"),
                    ("bill_payments_total", "our_payments_total"),
                    ("bill_refunds_total", "our_refunds_total"),
                )
            },
        ),
    )

    def get_queryset(self, request):
        unresolved = Count("mismatches", filter=Q(mismatches__resolved_at__isnull=True))
        return super().get_queryset(request).annotate(unresolved=unresolved)

    @admin.display(description=_("day"), ordering="day")
    def day_report(self, obj):
        return format_html('<a href="{}">{}</a>', _report_url(obj.day), obj.day.isoformat())

    @admin.display(description=_("unresolved"), ordering="unresolved")
    def unresolved_link(self, obj):
        if not obj.unresolved:
            return "0"
        return format_html('<a href="{}">{}</a>', _mismatches_url(run__id__exact=obj.pk, resolved="no"), obj.unresolved)

    @admin.display(description=_("mismatches"))
    def links(self, obj):
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a>',
            _report_url(obj.day),
            _("the day's report"),
            _mismatches_url(run__id__exact=obj.pk),
            _("list, to resolve"),
        )

    def get_urls(self):
        view = self.admin_site.admin_view(self.report_view)
        return [path("report/<str:day>/", view, name="payments_reconciliation_report"), *super().get_urls()]

    def report_view(self, request, day):
        """One day, every gateway: the bill against our records, and each mismatch."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            day = date.fromisoformat(day)
        except ValueError:
            raise Http404("not a day") from None
        mismatches = Mismatch.objects.select_related("resolved_by").order_by("kind", "id")
        runs = (
            self.get_queryset(request)
            .filter(day=day)
            .order_by("gateway")
            .prefetch_related(Prefetch("mismatches", queryset=mismatches))
        )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Reconciliation of %(day)s") % {"day": day.isoformat()},
            "opts": self.model._meta,
            "day": day,
            "runs": runs,
            "previous_url": _report_url(day - timedelta(days=1)),
            "next_url": _report_url(day + timedelta(days=1)),
            "mismatches_url": reverse("admin:payments_mismatch_changelist"),
        }
        return TemplateResponse(request, "admin/payments/reconciliationrun/report.html", context)


@admin.register(Mismatch)
class MismatchAdmin(ResolutionAdminMixin, ReadOnlyAdmin):
    list_display = (
        "day",
        "gateway",
        "kind",
        "order_number",
        "trade_no",
        "refund_no",
        "ours",
        "theirs",
        "note",
        "resolution",
    )
    list_filter = (ResolvedFilter, "kind", "run__gateway")
    search_fields = ("order_number", "trade_no", "refund_no")
    list_select_related = ("run", "resolved_by")
    readonly_fields = (
        "run",
        "kind",
        "order_number",
        "trade_no",
        "refund_no",
        "ours",
        "theirs",
        "note",
        "created_at",
        "resolved_at",
        "resolved_by",
        "resolution_note",
    )
    actions = ("mark_resolved",)

    @admin.display(description=_("day"), ordering="run__day")
    def day(self, obj):
        return format_html('<a href="{}">{}</a>', _report_url(obj.run.day), obj.run.day.isoformat())

    @admin.display(description=_("gateway"), ordering="run__gateway")
    def gateway(self, obj):
        return obj.run.gateway

    def has_resolve_permission(self, request):
        return request.user.has_perm("payments.resolve_mismatch")

    @admin.action(description=_("Mark resolved (with a note)…"), permissions=["resolve"])
    def mark_resolved(self, request, queryset):
        form = self.resolve_form(request)
        if form.is_valid():
            count = reconciliation.mismatch_resolve(
                mismatch_ids=queryset.values_list("pk", flat=True), user=request.user, note=form.cleaned_data["note"]
            )
            self.message_user(request, _("%(n)d mismatch(es) marked resolved.") % {"n": count}, messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Mark mismatches resolved"),
            "opts": self.model._meta,
            "mismatches": queryset.select_related("run"),
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/payments/mismatch/resolve.html", context)


CHANNEL_SETTINGS = {
    "sandbox": ["PAYMENTS_SANDBOX_ENABLED"],
    "alipay": ["ALIPAY_APP_ID", "ALIPAY_SELLER_ID", "ALIPAY_APP_PRIVATE_KEY", "ALIPAY_PUBLIC_KEY"],
    "wechat": [
        "WECHATPAY_MCHID",
        "WECHATPAY_APPID",
        "WECHATPAY_PRIVATE_KEY",
        "WECHATPAY_CERT_SERIAL_NO",
        "WECHATPAY_APIV3_KEY",
        "WECHATPAY_PUBLIC_KEY",
        "WECHATPAY_PUBLIC_KEY_ID",
    ],
}


def channels_view(request):
    """Each channel: live or hidden, which settings are missing (never their values), and
    what it did lately."""
    since = timezone.now() - timedelta(days=1)
    rows = []
    for cls in GATEWAY_CLASSES:
        names = CHANNEL_SETTINGS.get(cls.code, [])
        last = Notification.objects.filter(gateway=cls.code).order_by("-id").first()
        rows.append(
            {
                "code": cls.code,
                "name": cls.name,
                "enabled": cls.is_enabled(),
                "missing": [n for n in names if not getattr(settings, n, None)],
                "last_notification": last,
                "payments_24h": Payment.objects.filter(gateway=cls.code, created_at__gte=since).count(),
                "rejected_24h": Notification.objects.filter(
                    gateway=cls.code, outcome=Notification.Outcome.REJECTED, received_at__gte=since
                ).count(),
                "refunds_open": Refund.objects.filter(
                    payment__gateway=cls.code, status__in=[Refund.Status.REQUESTED, Refund.Status.PROCESSING]
                ).count(),
            }
        )
    context = {**admin.site.each_context(request), "title": _("Payment channels"), "rows": rows, "opts": Payment._meta}
    return TemplateResponse(request, "admin/payments/channels.html", context)
