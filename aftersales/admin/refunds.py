"""Admin for refund requests (read-only): where each buyer's refund stands, and the ones whose
money is not back after one business day (the target), with links to their ticket and refund.

Requests are decided by their services (automatic approval, or staff through the dispute
actions); this page only shows them.
"""

from datetime import datetime, timedelta

from django.contrib import admin
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline
from payments.models import Refund

from ..models import RefundRequest, RefundRequestStatusChange

RequestStatus = RefundRequest.Status


def business_day_ago(now: datetime) -> datetime:
    """The same time one business day (Monday to Friday) before ``now``."""
    then = timezone.localtime(now) - timedelta(days=1)
    while then.weekday() >= 5:  # Saturday, Sunday
        then -= timedelta(days=1)
    return then


def money_not_back_q(now: datetime | None = None) -> Q:
    """Requests older than one business day whose money is not back with the buyer (rejected ones aside)."""
    cutoff = business_day_ago(now or timezone.now())
    return Q(created_at__lt=cutoff) & ~Q(status=RequestStatus.REJECTED) & ~Q(refund__status=Refund.Status.SUCCEEDED)


class MoneyBackOverdueFilter(admin.SimpleListFilter):
    title = _("money back")
    parameter_name = "money_back"

    def lookups(self, request, model_admin):
        return (("overdue", _("Older than 1 business day, not refunded")),)

    def queryset(self, request, queryset):
        if self.value() == "overdue":
            return queryset.filter(money_not_back_q())
        return queryset


def _admin_link(obj, label) -> str:
    if obj is None:
        return "—"
    try:
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(label)
    return format_html('<a href="{}">{}</a>', url, label)


class HistoryInline(ReadOnlyInline):
    model = RefundRequestStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    verbose_name_plural = _("status history")


@admin.register(RefundRequest)
class RefundRequestAdmin(ReadOnlyAdmin):
    class Media:
        css = {"all": ("css/admin.css",)}

    @admin.display(description=_("buyer"), ordering="user__email")
    def buyer(self, obj: RefundRequest):
        """The member, or "guest <email>" for a guest order's request."""
        if obj.user_id is not None:
            return obj.user
        return gettext("guest %(email)s") % {"email": obj.order.guest_email}

    # What staff act on first (where the money stands, how old) before who and which order.
    list_display = (
        "id",
        "status",
        "refund_status",
        "age",
        "quantity",
        "buyer",
        "order_link",
        "ticket_link",
        "refund_link",
    )
    list_filter = ("status", MoneyBackOverdueFilter, ("created_at", admin.DateFieldListFilter))
    list_select_related = ("order", "user", "refund", "ticket")
    search_fields = (
        "order__number",
        "user__username",
        "user__email",
        "order__guest_email",
        "refund__number",
        "ticket__number",
    )
    date_hierarchy = "created_at"
    ordering = ("-id",)
    inlines = (HistoryInline,)
    fields = readonly_fields = (
        "order_link",
        "buyer",
        "quantity",
        "codes_list",
        "reason",
        "status",
        "review_reason",
        "ticket_link",
        "refund_link",
        "refund_status",
        "created_at",
        "decided_at",
        "decided_by",
    )

    @admin.display(description=_("order"), ordering="order__number")
    def order_link(self, obj):
        return _admin_link(obj.order, obj.order.number)

    @admin.display(description=_("refund"))
    def refund_link(self, obj):
        return _admin_link(obj.refund, obj.refund.number) if obj.refund_id else "—"

    @admin.display(description=_("money"), ordering="refund__status")
    def refund_status(self, obj):
        if not obj.refund_id:
            return "—"
        return obj.refund.get_status_display()

    @admin.display(description=_("ticket"))
    def ticket_link(self, obj):
        return _admin_link(obj.ticket, obj.ticket.number) if obj.ticket_id else "—"

    @admin.display(description=pgettext_lazy("list of card codes", "codes"))
    def codes_list(self, obj):
        label = gettext("#%(id)s (card code %(code)s)")
        return ", ".join(label % {"id": oc.pk, "code": oc.code_id} for oc in obj.codes.all()) or "—"

    @admin.display(description=_("age"), ordering="created_at")
    def age(self, obj):
        hours = int((timezone.now() - obj.created_at).total_seconds() // 3600)
        if hours >= 24:
            text = gettext("%(days)dd %(hours)dh") % {"days": hours // 24, "hours": hours % 24}
        else:
            text = gettext("%(hours)dh") % {"hours": hours}
        done = obj.status == RequestStatus.REJECTED or (obj.refund_id and obj.refund.status == Refund.Status.SUCCEEDED)
        if not done and obj.created_at < business_day_ago(timezone.now()):
            return format_html('<strong style="color:#b02a37">{}</strong>', text)
        return text
