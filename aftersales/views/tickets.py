"""Buyer pages of after-sales: my tickets, open a ticket, the thread. Staff work in admin.

The form and the thread are rendered by ``ticket_new_page`` and ``ticket_page`` for a member
(``user``) and, from ``aftersales.views.guest``, for a guest order's guest (``user`` None,
``guest_number`` the order: the addresses are the guest's, ``aftersales_urls``)."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from compliance.services import audit_denied
from orders.models import Order

from ..models import Kind, Ticket
from ..services import tickets
from .limits import ticket_limited

KIND_HELP = {
    Kind.NOT_RECEIVED: gettext_lazy("You paid, but the order shows no codes or is still delivering."),
    Kind.INVALID: gettext_lazy("The code is rejected where you redeem it, or says it was already used."),
    Kind.WRONG_ITEM: gettext_lazy("You received a different product, value or region than you ordered."),
    Kind.REFUND: gettext_lazy("You want your money back for codes of an order."),
    Kind.CREDIT_APPEAL: gettext_lazy("You think your credit level limits you wrongly: tell us why."),
    Kind.OTHER: gettext_lazy("Anything else about your account, a payment or our service."),
}
KIND_ICONS = {
    Kind.NOT_RECEIVED: "bi-hourglass-split",
    Kind.INVALID: "bi-x-octagon",
    Kind.WRONG_ITEM: "bi-arrow-left-right",
    Kind.REFUND: "bi-arrow-counterclockwise",
    Kind.CREDIT_APPEAL: "bi-shield-exclamation",
    Kind.OTHER: "bi-chat-dots",
}


class MultipleImageInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class ImagesField(forms.FileField):
    widget = MultipleImageInput(attrs={"accept": "image/png,image/jpeg,image/webp"})

    def clean(self, data, initial=None):
        if not data:
            return []
        if not isinstance(data, (list, tuple)):
            data = [data]
        return [super(ImagesField, self).clean(d, initial) for d in data if d]


class ReplyForm(forms.Form):
    body = forms.CharField(
        label=gettext_lazy("Your message"), max_length=5000, widget=forms.Textarea(attrs={"rows": 4})
    )
    attachments = ImagesField(label=gettext_lazy("Images (optional)"), required=False)


class TicketForm(ReplyForm):
    kind = forms.ChoiceField(label=gettext_lazy("What is the problem?"), choices=Kind.choices, widget=forms.RadioSelect)
    subject = forms.CharField(label=gettext_lazy("Subject"), max_length=120)
    order = forms.CharField(required=False, widget=forms.HiddenInput)
    code = forms.IntegerField(required=False, widget=forms.HiddenInput)

    field_order = ("kind", "subject", "body", "attachments", "order", "code")


def _order_for(request, number: str | None) -> Order | None:
    """The buyer's own order for the form, or 404 (and an audit entry when it is someone else's)."""
    if not number:
        return None
    order = Order.objects.select_related("product").filter(number=number).first()
    if order is None:
        raise Http404
    if order.buyer_id != request.user.pk:
        audit_denied(action="ticket.open", request=request, target=number, detail="not the user's order")
        raise Http404
    return order


@login_required
def ticket_list(request):
    page = Paginator(tickets.tickets_for_user(request.user), 20).get_page(request.GET.get("page"))
    return render(request, "aftersales/ticket_list.html", {"page": page})


def ticket_url(ticket: Ticket, guest_number: str | None = None) -> str:
    """The buyer's page of ``ticket``: the member's, or the guest's under their order."""
    if guest_number:
        return reverse("aftersales_guest:ticket", args=[guest_number, ticket.number])
    return reverse("aftersales:ticket", args=[ticket.number])


@login_required
@ticket_limited
def ticket_new(request):
    order = _order_for(request, request.POST.get("order") or request.GET.get("order"))
    return ticket_new_page(request, user=request.user, order=order)


def ticket_new_page(request, *, user, order: Order | None, guest_number: str | None = None):
    """Open a ticket, on ``order`` (or one of its codes, ``?code=``) when given."""
    code_id = request.POST.get("code") or request.GET.get("code")
    code = None
    if order is not None and code_id:
        try:
            code = next((c for c in order.codes.filter(released_at__isnull=True) if c.pk == int(code_id)), None)
        except ValueError:
            code = None
        if code is None:
            raise Http404
    initial = {"order": order.number if order else "", "code": code.pk if code else None}
    if request.GET.get("kind") in Kind.values:
        initial["kind"] = request.GET["kind"]
    form = TicketForm(request.POST or None, request.FILES or None, initial=initial)
    error = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            ticket = tickets.ticket_open(
                user=user,
                kind=data["kind"],
                subject=data["subject"],
                body=data["body"],
                order=order,
                order_code=code,
                attachments=data["attachments"],
                request=request,
            )
        except PermissionDenied:
            raise Http404 from None
        except tickets.TicketError as exc:
            error = str(exc)
        else:
            messages.success(
                request, _("Your ticket %(number)s is open. We will answer here.") % {"number": ticket.number}
            )
            return redirect(ticket_url(ticket, guest_number))
    recent_orders = [] if order or user is None else list(Order.objects.filter(buyer=user).order_by("-id")[:10])
    kinds = [(value, label, KIND_HELP[value], KIND_ICONS[value]) for value, label in Kind.choices]
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "aftersales/ticket_new.html",
        {
            "form": form,
            "order": order,
            "code": code,
            "code_index": (
                list(order.codes.filter(released_at__isnull=True).values_list("pk", flat=True)).index(code.pk) + 1
            )
            if code
            else None,
            "kinds": kinds,
            "recent_orders": recent_orders,
            "error": error,
            "max_attachments": tickets.MAX_ATTACHMENTS,
            "max_mb": settings.TICKET_ATTACHMENT_MAX_BYTES // (1024 * 1024),
            "guest_number": guest_number,
        },
        status=status,
    )


@login_required
@never_cache
def ticket_detail(request, number):
    ticket = tickets.ticket_for_user(user=request.user, number=number, request=request)
    if not tickets.is_buyer(ticket, request.user):  # staff work on tickets in admin
        return redirect("admin:aftersales_ticket_change", ticket.pk)
    return ticket_page(request, ticket, user=request.user)


def ticket_page(request, ticket: Ticket, *, user, guest_number: str | None = None):
    """The thread of the buyer's ``ticket``, and (POST) the buyer's reply."""
    form = ReplyForm(request.POST or None, request.FILES or None)
    error = None
    if request.method == "POST" and form.is_valid():
        try:
            tickets.ticket_reply(
                ticket=ticket,
                author=user,
                body=form.cleaned_data["body"],
                attachments=form.cleaned_data["attachments"],
            )
        except tickets.TicketError as exc:
            error = str(exc)
        else:
            messages.success(request, _("Your message was sent."))
            return redirect(ticket_url(ticket, guest_number))
    thread = list(tickets.ticket_messages_for(ticket, staff=False))
    can_reopen = tickets.can_reopen(ticket)
    return render(
        request,
        "aftersales/ticket_detail.html",
        {
            "ticket": ticket,
            "thread": thread,
            "form": form,
            "error": error,
            "can_reply": ticket.status != Ticket.Status.CLOSED
            and (ticket.status != Ticket.Status.RESOLVED or can_reopen),
            "can_reopen": can_reopen,
            "in_arbitration": tickets.in_arbitration(ticket),
            "reopen_until": tickets.reopen_until(ticket),
            "sla_hours": round((ticket.first_response_due_at - ticket.created_at).total_seconds() / 3600),
            "max_attachments": tickets.MAX_ATTACHMENTS,
            "max_mb": settings.TICKET_ATTACHMENT_MAX_BYTES // (1024 * 1024),
            "guest_number": guest_number,
        },
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def ticket_reopen(request, number):
    ticket = tickets.ticket_for_user(user=request.user, number=number, request=request)
    if not tickets.is_buyer(ticket, request.user):
        raise Http404
    return ticket_reopen_answer(request, ticket, user=request.user)


def ticket_reopen_answer(request, ticket: Ticket, *, user, guest_number: str | None = None):
    try:
        tickets.ticket_reopen(ticket=ticket, user=user, body=request.POST.get("body", ""))
    except tickets.TicketError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Ticket reopened. We will get back to you."))
    return redirect(ticket_url(ticket, guest_number))


@login_required
@require_POST
def ticket_close(request, number):
    ticket = tickets.ticket_for_user(user=request.user, number=number, request=request)
    if not tickets.is_buyer(ticket, request.user):
        raise Http404
    return ticket_close_answer(request, ticket, user=request.user)


def ticket_close_answer(request, ticket: Ticket, *, user, guest_number: str | None = None):
    tickets.ticket_close(ticket=ticket, actor=user)
    messages.success(request, _("Ticket closed. Thank you for letting us know."))
    return redirect(ticket_url(ticket, guest_number))


@login_required
@never_cache
def attachment(request, public_id):
    item = tickets.attachment_for_user(user=request.user, public_id=public_id, request=request)
    return attachment_response(item)


def attachment_response(item):
    """The image itself, never cached, never sniffed, never run."""
    path = tickets.attachment_path(item)
    try:
        handle = open(path, "rb")  # noqa: SIM115 (FileResponse closes it)
    except FileNotFoundError:
        raise Http404 from None
    # Django writes the (already sanitised) name safely, RFC 5987 encoded when not ASCII.
    response = FileResponse(handle, content_type=item.content_type, as_attachment=False, filename=item.original_name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
