"""Tickets in admin: a queue sorted by the first-response deadline, and the whole case on one page.

A ticket changes only through ``aftersales.services.tickets`` services: the change page is read-only and
carries a reply form (plan / internal note / question to the buyer) and the resolve, close and
assign buttons, each a POST to a small admin view that calls one service.
"""

import hashlib

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, F, IntegerField, Q, Value, When
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from catalog.selectors import stock_count
from compliance import selectors as credit
from compliance.admin import credit_panel
from marketplace.admin import NumberSearchMixin, ReadOnlyInline, ReadOnlyMixin
from marketplace.errors import admin_action_run
from orders.models import CodeReveal, Order, OrderCode

from ..models import Kind, ReplyTemplate, SlaEvent, Ticket, TicketStatusChange
from ..services import arbitration, disputes, tickets
from .sla_text import sla_detail_text

TicketStatus = Ticket.Status
CHANGE_PERMISSION = "aftersales.change_ticket"


class SlaFilter(admin.SimpleListFilter):
    title = _("SLA")
    parameter_name = "sla"

    def lookups(self, request, model_admin):
        return [
            ("overdue", _("Overdue")),
            ("at_risk", _("At risk")),
            ("in_time", _("Answered in time")),
            ("late", _("Answered late")),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        waiting = Q(first_responded_at__isnull=True) & ~Q(status=TicketStatus.CLOSED)
        value = self.value()
        if value == "overdue":
            return queryset.filter(waiting, first_response_due_at__lte=now)
        if value == "at_risk":
            return queryset.filter(waiting, warn_at__lte=now, first_response_due_at__gt=now)
        if value == "in_time":
            return queryset.filter(first_responded_at__lte=F("first_response_due_at"))
        if value == "late":
            return queryset.filter(first_responded_at__gt=F("first_response_due_at"))
        return queryset


class StatusHistoryInline(ReadOnlyInline):
    model = TicketStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    verbose_name_plural = _("status history")


class SlaEventInline(ReadOnlyInline):
    model = SlaEvent
    fields = readonly_fields = ("at", "kind", "detail_text")

    @admin.display(description=_("detail"))
    def detail_text(self, obj):
        return sla_detail_text(obj)


def time_left_html(ticket: Ticket, now=None):
    """Time left to the first response: red overdue, amber at risk, green answered."""
    now = now or timezone.now()
    if ticket.first_responded_at:
        late = ticket.first_responded_at > ticket.first_response_due_at
        color, text = ("#b02a37", _("answered late")) if late else ("#146c43", _("answered"))
        return format_html('<span style="color:{};font-weight:600" data-sla="answered">✓ {}</span>', color, text)
    if ticket.status == TicketStatus.CLOSED:
        return format_html('<span style="color:#6c757d" data-sla="closed">{}</span>', _("closed unanswered"))
    seconds = int((ticket.first_response_due_at - now).total_seconds())
    hours, minutes = divmod(abs(seconds) // 60, 60)
    span = {"hours": hours, "minutes": minutes}
    if seconds <= 0:
        return format_html(
            '<span style="color:#fff;background:#b02a37;padding:1px 6px;border-radius:4px;font-weight:600;'
            'white-space:nowrap" data-sla="overdue">{}</span>',
            gettext("overdue by %(hours)d h %(minutes)02d min") % span,
        )
    left = gettext("%(hours)d h %(minutes)02d min left") % span
    if now >= ticket.warn_at:
        return format_html(
            '<span style="color:#664d03;background:#ffe69c;padding:1px 6px;border-radius:4px;font-weight:600;'
            'white-space:nowrap" data-sla="at_risk">{}</span>',
            left,
        )
    return format_html('<span data-sla="running">{}</span>', left)


class ReplyForm(forms.Form):
    body = forms.CharField(max_length=5000, widget=forms.Textarea)
    resolution_plan = forms.BooleanField(required=False)
    internal = forms.BooleanField(required=False)
    request_info = forms.BooleanField(required=False)


# --- The decision panel (disputes and code tickets) ---------------------------------------------

# Tickets about codes get the decision panel too, disputes or not.
DECISION_KINDS = {Kind.NOT_RECEIVED, Kind.INVALID, Kind.WRONG_ITEM, Kind.REFUND}
REASON_FIELD = {"max_length": disputes.REASON_MAX, "widget": forms.Textarea(attrs={"rows": 2})}


def _reason_field():
    return forms.CharField(
        **REASON_FIELD, error_messages={"required": _("Give a reason for this decision.")}, strip=True
    )


class DisputeRefundForm(forms.Form):
    scope = forms.ChoiceField(choices=[("all", "all"), ("codes", "codes")])
    codes = forms.TypedMultipleChoiceField(coerce=int, required=False, choices=())
    reason = _reason_field()
    key = forms.CharField(max_length=80)

    def __init__(self, *args, live_ids=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["codes"].choices = [(pk, pk) for pk in live_ids]
        self.fields["codes"].error_messages["invalid_choice"] = _(
            "A chosen code is no longer on the order (refunded or replaced meanwhile). Reload the page."
        )

    def clean(self):
        data = super().clean()
        if data.get("scope") == "codes" and not data.get("codes"):
            raise forms.ValidationError(_("Tick the codes to refund."))
        return data


class DisputeRejectForm(forms.Form):
    reason = _reason_field()


class DisputeReissueForm(forms.Form):
    order_code = forms.IntegerField(error_messages={"required": _("Choose the code to replace.")})
    reason = _reason_field()

    def clean_order_code(self):
        order_code = OrderCode.objects.filter(pk=self.cleaned_data["order_code"]).first()
        if order_code is None:
            raise forms.ValidationError(_("Choose the code to replace."))
        return order_code


class DisputeInfoForm(forms.Form):
    body = forms.CharField(
        max_length=5000,
        widget=forms.Textarea,
        error_messages={"required": _("Write what the buyer should send or explain.")},
    )


class DisputeEscalateForm(forms.Form):
    reason = _reason_field()


def decision_state_key(ticket: Ticket, live_ids) -> str:
    """The refund key of a decision taken on what the page showed: two staff looking at the
    same codes and clicking "refund" at once make one refund (same key), not two."""
    state = f"{ticket.pk}:{','.join(str(i) for i in sorted(live_ids))}"
    return hashlib.sha256(state.encode()).hexdigest()[:32]


@admin.register(ReplyTemplate)
class ReplyTemplateAdmin(admin.ModelAdmin):
    """Canned replies staff insert on a ticket's page and edit before sending."""

    list_display = ("title", "kind", "is_active", "sort_order", "updated_at")
    list_editable = ("is_active", "sort_order")
    list_filter = ("is_active", "kind")
    search_fields = ("title", "body")
    fields = ("title", "kind", "body", "is_active", "sort_order")

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "body":
            field.help_text = _(
                "Filled in on the ticket: {ticket} its number, {order} the order number, {product} the product, "
                "{buyer} the buyer, {due} the first-response deadline."
            )
        return field


@admin.register(Ticket)
class TicketAdmin(NumberSearchMixin, ReadOnlyMixin, admin.ModelAdmin):
    change_form_template = "admin/aftersales/ticket/change_form.html"
    change_list_template = "admin/aftersales/ticket/change_list.html"
    # The deadline first: a queue staff work from the top.
    list_display = (
        "number",
        "time_left",
        "status",
        "priority",
        "kind",
        "short_subject",
        "buyer",
        "short_order",
        "assignee",
        "created_at",
    )
    list_filter = (
        "status",
        "kind",
        "priority",
        "is_dispute",
        SlaFilter,
        ("assignee", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("number", "user__email", "order__guest_email", "order__number")
    list_select_related = ("user", "order", "assignee")
    list_per_page = 50
    actions = ("assign_to_me",)
    show_full_result_count = False
    date_hierarchy = "created_at"
    inlines = (SlaEventInline, StatusHistoryInline)
    fieldsets = (
        (
            None,
            {"fields": (("number", "status", "priority", "is_dispute"), ("kind", "subject"), ("buyer", "assignee"))},
        ),
        (
            _("SLA"),
            {
                "fields": (
                    ("created_at", "last_activity_at"),
                    ("warn_at", "first_response_due_at", "first_responded_at", "time_left"),
                    ("warned_at", "breached_at"),
                    ("resolution_due_at", "resolved_at", "closed_at", "reopened_count"),
                )
            },
        ),
    )
    readonly_fields = (
        "number",
        "status",
        "priority",
        "is_dispute",
        "kind",
        "subject",
        "buyer",
        "assignee",
        "created_at",
        "last_activity_at",
        "warn_at",
        "first_response_due_at",
        "first_responded_at",
        "time_left",
        "warned_at",
        "breached_at",
        "resolution_due_at",
        "resolved_at",
        "closed_at",
        "reopened_count",
    )

    # Changed only through the services (the buttons on the change page).
    acted_on = True

    @admin.display(description=_("opened by"), ordering="user__email")
    def buyer(self, obj: Ticket) -> str:
        """The member, or "guest <email>" for a guest order's ticket."""
        return tickets.buyer_label(obj)

    def get_queryset(self, request):
        # Unanswered tickets still open come first, the nearest deadline on top.
        waiting = Case(
            When(Q(first_responded_at__isnull=True) & Q(status__in=tickets.OPEN_STATUSES), then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        queryset = self.model._default_manager.get_queryset().annotate(_queue=waiting)
        return queryset.order_by(*self.get_ordering(request))

    def get_ordering(self, request):
        return ("_queue", "first_response_due_at", "-id")

    @admin.action(description=_("Assign the selected tickets to me"), permissions=["change"])
    def assign_to_me(self, request, queryset):
        """Take a batch from the top of the queue (each through the service: locked, emails as usual)."""
        count = 0
        for ticket in queryset.order_by("pk"):
            tickets.ticket_assign(ticket=ticket, assignee=request.user, actor=request.user)
            count += 1
        self.message_user(
            request,
            ngettext("%(n)d ticket is now assigned to you.", "%(n)d tickets are now assigned to you.", count)
            % {"n": count},
            messages.SUCCESS,
        )

    @admin.display(description=_("subject"), ordering="subject")
    def short_subject(self, obj):
        return obj.subject if len(obj.subject) <= 28 else obj.subject[:27] + "…"

    @admin.display(description=_("order"), ordering="order__number")
    def short_order(self, obj):
        if obj.order_id is None:
            return "—"
        number = obj.order.number
        return format_html(
            '<span title="{}" style="font-family:monospace">{}…{}</span>', number, number[:6], number[-4:]
        )

    @admin.display(description=_("time left"), ordering="first_response_due_at")
    def time_left(self, obj):
        return time_left_html(obj)

    # --- the case on one page -----------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        ticket = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if ticket is not None:
            extra.update(self._case(request, ticket))
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def _case(self, request, ticket: Ticket) -> dict:
        order = ticket.order
        codes, reveals, payments, refunds = [], [], [], []
        if order is not None:
            codes = list(
                OrderCode.objects.filter(order=order)
                .select_related("code__batch")
                .annotate(reveal_count=Count("reveals"))
                .order_by("id")
            )
            reveals = list(CodeReveal.objects.filter(order_code__order=order).select_related("user", "order_code"))
            payments = list(order.payments.all())
            refunds = list(order.refund_requests.all())
        user = ticket.user
        email = ""
        if user is not None:
            others = Ticket.objects.filter(user=user)
            orders_count = user.orders.count()
            credit_record = credit.credit_summary(user=user)
        else:  # a guest: their other guest orders and tickets under the same address
            email = tickets.buyer_email(ticket)
            others = Ticket.objects.filter(user__isnull=True, order__guest_email=email)
            orders_count = Order.objects.filter(buyer__isnull=True, guest_email=email).count()
            credit_record = credit.credit_summary(email=email)
        return {
            "can_act": request.user.has_perm(CHANGE_PERMISSION),
            "case_order": order,
            "case_codes": codes,
            "case_reveals": reveals,
            "case_payments": payments,
            "case_refund_requests": refunds,
            "thread": list(tickets.ticket_messages_for(ticket, staff=True)),
            "reply_templates": tickets.reply_templates_for(ticket),
            "time_left": time_left_html(ticket),
            "is_open": ticket.status in tickets.OPEN_STATUSES,
            "staff_users": list(tickets.staff_users()),
            "buyer_tickets": others.exclude(pk=ticket.pk).order_by("-id")[:10],
            "buyer_orders_count": orders_count,
            "buyer_disputes_count": others.filter(is_dispute=True).count(),
            "buyer_credit": credit_record,
            "buyer_credit_panel": credit_panel(user=user, email=email),
            "buyer_email": tickets.buyer_email(ticket),
            "buyer_label": tickets.buyer_label(ticket),
            **self._decision(ticket),
        }

    def _decision(self, ticket: Ticket) -> dict:
        """The decision panel: shown for disputes and tickets about codes of an order."""
        if ticket.order_id is None or not (ticket.is_dispute or ticket.kind in DECISION_KINDS):
            return {"decision": False}
        live = list(disputes.live_codes(ticket.order))
        all_ids = OrderCode.objects.filter(order_id=ticket.order_id).order_by("pk").values_list("pk", flat=True)
        numbers = {pk: i for i, pk in enumerate(all_ids, 1)}  # numbered as the order page numbers them
        for oc in live:
            oc.number = numbers.get(oc.pk)
        return {
            "decision": True,
            "decision_codes": live,
            "decision_key": decision_state_key(ticket, [oc.pk for oc in live]),
            "decision_stock": stock_count(ticket.order.product_id),
            "decision_reissues": list(ticket.order.reissues.select_related("old_code", "new_code", "staff")),
            "decision_can_escalate": not tickets.in_arbitration(ticket),
        }

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(require_POST(view))

        return [
            path("<int:pk>/reply/", wrap(self.reply_view), name="aftersales_ticket_reply"),
            path("<int:pk>/resolve/", wrap(self.resolve_view), name="aftersales_ticket_resolve"),
            path("<int:pk>/close/", wrap(self.close_view), name="aftersales_ticket_close"),
            path("<int:pk>/assign/", wrap(self.assign_view), name="aftersales_ticket_assign"),
            *[
                path(f"<int:pk>/dispute/{verb}/", wrap(view), name=f"aftersales_ticket_dispute_{verb}")
                for verb, view in (
                    ("refund", self.dispute_refund_view),
                    ("reject", self.dispute_reject_view),
                    ("reissue", self.dispute_reissue_view),
                    ("info", self.dispute_info_view),
                    ("escalate", self.dispute_escalate_view),
                )
            ],
            *super().get_urls(),
        ]

    def _ticket(self, request, pk) -> Ticket:
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied
        return get_object_or_404(Ticket, pk=pk)

    def _back(self, ticket):
        return redirect(reverse("admin:aftersales_ticket_change", args=[ticket.pk]))

    def _run(self, request, ticket, fn, done) -> None:
        """Call one service; its refusal (any ServiceError, e.g. an illegal move such as resolving
        a closed ticket) is shown to staff. ``done``: the success message, a text with
        %(number)s or a function of the service's result."""
        admin_action_run(
            self,
            request,
            fn,
            label=ticket.number,
            done=done if callable(done) else done % {"number": ticket.number},
        )

    def reply_view(self, request, pk):
        ticket = self._ticket(request, pk)
        form = ReplyForm(request.POST)
        if not form.is_valid():
            self.message_user(request, _("Write a message first."), messages.ERROR)
            return self._back(ticket)
        data = form.cleaned_data
        done = (
            _("Internal note added to %(number)s.")
            if data["internal"]
            else _("Reply sent on %(number)s; the buyer gets an email.")
        )
        self._run(
            request,
            ticket,
            lambda: tickets.ticket_reply(
                ticket=ticket,
                author=request.user,
                body=data["body"],
                attachments=request.FILES.getlist("attachments"),
                staff=True,
                internal=data["internal"],
                resolution_plan=data["resolution_plan"],
                request_info=data["request_info"],
            ),
            done,
        )
        return self._back(ticket)

    def resolve_view(self, request, pk):
        def resolve(ticket, _data):
            return tickets.ticket_resolve(ticket=ticket, staff=request.user, note=request.POST.get("note", ""))

        return self._decide(request, pk, None, resolve, _("%(number)s resolved; the buyer gets an email."))

    def close_view(self, request, pk):
        def close(ticket, _data):
            return tickets.ticket_close(ticket=ticket, actor=request.user, reason=request.POST.get("reason", ""))

        return self._decide(request, pk, None, close, _("%(number)s closed."))

    def assign_view(self, request, pk):
        ticket = self._ticket(request, pk)
        value = request.POST.get("assignee", "")
        if value == "me":
            assignee = request.user
        elif value.isdigit():
            assignee = get_object_or_404(get_user_model(), pk=int(value))
        else:
            assignee = None
        self._run(
            request,
            ticket,
            lambda: tickets.ticket_assign(ticket=ticket, assignee=assignee, actor=request.user),
            _("%(number)s assigned."),
        )
        return self._back(ticket)

    # --- decisions ----------------------------------------------------------------------------

    def _form_errors(self, request, ticket, form) -> None:
        for errors in form.errors.values():
            for error in errors:
                self.message_user(request, f"{ticket.number}: {error}", messages.ERROR)

    def _decide(self, request, pk, form_class, call, done, *, form_kwargs=None):
        """One button of the ticket's page: the ticket, its form if any (its errors shown on the
        ticket's page), then ``call(ticket, cleaned_data)`` through ``_run``. ``done``: a text
        with %(number)s, or a function of the ticket and the service's result."""
        ticket = self._ticket(request, pk)
        data = {}
        if form_class is not None:
            form = form_class(request.POST, **(form_kwargs(ticket) if form_kwargs else {}))
            if not form.is_valid():
                self._form_errors(request, ticket, form)
                return self._back(ticket)
            data = form.cleaned_data
        self._run(
            request,
            ticket,
            lambda: call(ticket, data),
            (lambda result: done(ticket, result)) if callable(done) else done,
        )
        return self._back(ticket)

    def dispute_refund_view(self, request, pk):
        def live_ids(ticket):
            ids = disputes.live_codes(ticket.order).values_list("pk", flat=True) if ticket.order_id else []
            return {"live_ids": list(ids)}

        def refund(ticket, data):
            ids = data["codes"] if data["scope"] == "codes" else None
            key = f"{data['scope']}:{data['key']}" + (f":{','.join(map(str, sorted(ids)))}" if ids else "")
            return disputes.dispute_refund(
                ticket=ticket, staff=request.user, reason=data["reason"], order_code_ids=ids, key=key
            )

        def done(ticket, refund):
            return ngettext(
                "Refund %(refund)s of %(n)d code (¥%(amount)s) made on %(number)s.",
                "Refund %(refund)s of %(n)d codes (¥%(amount)s) made on %(number)s.",
                refund.quantity,
            ) % {"refund": refund.number, "n": refund.quantity, "amount": refund.amount, "number": ticket.number}

        return self._decide(request, pk, DisputeRefundForm, refund, done, form_kwargs=live_ids)

    def dispute_reject_view(self, request, pk):
        def reject(ticket, data):
            return disputes.dispute_reject(ticket=ticket, staff=request.user, reason=data["reason"])

        done = _("%(number)s rejected; the buyer was told and can ask for arbitration.")
        return self._decide(request, pk, DisputeRejectForm, reject, done)

    def dispute_reissue_view(self, request, pk):
        def reissue(ticket, data):
            return disputes.dispute_reissue(
                ticket=ticket, order_code=data["order_code"], staff=request.user, reason=data["reason"]
            )

        def done(ticket, r):
            return _("Code #%(old)s marked defective; replacement #%(new)s delivered on %(number)s.") % {
                "old": r.old_code.code_id,
                "new": r.new_code.code_id,
                "number": ticket.number,
            }

        return self._decide(request, pk, DisputeReissueForm, reissue, done)

    def dispute_info_view(self, request, pk):
        def ask(ticket, data):
            return disputes.dispute_request_info(ticket=ticket, staff=request.user, body=data["body"])

        return self._decide(
            request, pk, DisputeInfoForm, ask, _("Question sent on %(number)s; the ticket waits for the buyer.")
        )

    def dispute_escalate_view(self, request, pk):
        def escalate(ticket, data):
            return arbitration.arbitration_open(
                ticket=ticket, user=request.user, statement=data["reason"], request=request
            )

        return self._decide(request, pk, DisputeEscalateForm, escalate, _("%(number)s escalated to arbitration."))
