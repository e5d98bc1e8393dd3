"""Buyer pages of the 7-day no-reason refund: choose codes of an order, follow a request.

``refund_new_page`` and ``refund_detail_page`` serve a member (``user``) and, from
``aftersales.views.guest``, a guest order's guest (``user`` None, ``guest_number``)."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from compliance.services import audit_denied
from marketplace.errors import PASS_THROUGH, ServiceError
from orders.models import Order
from payments.models import Payment

from ..models import RefundRequest
from ..services import no_reason
from .tickets import ticket_url


def _own_order(request, number: str) -> Order:
    order = Order.objects.select_related("product").filter(number=number).first()
    if order is None:
        raise Http404
    if order.buyer_id != request.user.pk:
        audit_denied(action="refund.order", request=request, target=number, detail="not the buyer of this order")
        raise Http404
    return order


def _paid_with(order: Order) -> Payment | None:
    return order.payments.filter(status=Payment.Status.SUCCEEDED).order_by("id").first()


@login_required
@never_cache
def refund_new(request, number):
    return refund_new_page(request, _own_order(request, number), user=request.user)


def refund_detail_url(refund_request: RefundRequest, guest_number: str | None = None) -> str:
    if guest_number:
        return reverse("aftersales_guest:refund_detail", args=[guest_number, refund_request.public_id])
    return reverse("aftersales:refund_detail", args=[refund_request.public_id])


def refund_new_page(request, order: Order, *, user, guest_number: str | None = None):
    """Choose codes of ``order`` and ask for them back (POST)."""
    error = None
    token = request.POST.get("idempotency_key") or uuid.uuid4().hex
    chosen = None
    reason = ""
    if request.method == "POST":
        chosen = request.POST.getlist("codes")
        reason = request.POST.get("reason", "")
        try:
            refund_request = no_reason.refund_request_create(
                user=user, order=order, order_code_ids=chosen, reason=reason, idempotency_key=token
            )
        except PASS_THROUGH:
            raise
        except ServiceError as exc:  # RefundRequestError, or the refund service's
            error = str(exc)
            token = uuid.uuid4().hex  # a corrected form is a new attempt
        else:
            if refund_request.status == RefundRequest.Status.UNDER_REVIEW:
                messages.info(request, _("Your request was sent to our staff for review."))
            else:
                messages.success(request, _("Refund approved: the money is on its way back."))
            return redirect(refund_detail_url(refund_request, guest_number))
    options = no_reason.refund_options(order=order, user=user)
    if error is None and order.product.is_direct_topup:
        error = no_reason.topup_refusal()  # said before the buyer tries
    selected = {str(x) for x in chosen} if chosen is not None else {str(pk) for pk in options.refundable_ids}
    return render(
        request,
        "aftersales/refund_new.html",
        {
            "order": order,
            "options": options,
            "selected": selected,
            "reason": reason,
            "idempotency_key": token,
            "error": error,
            "payment": _paid_with(order),
            "guest_number": guest_number,
        },
        status=400 if error else 200,
    )


@login_required
@never_cache
def refund_detail(request, public_id):
    refund_request = (
        RefundRequest.objects.select_related("order", "order__product", "refund", "refund__payment", "ticket")
        .prefetch_related("codes")
        .filter(public_id=public_id)
        .first()
    )
    if refund_request is None:
        raise Http404
    if refund_request.user_id != request.user.pk:
        audit_denied(
            action="refund.request", request=request, target=f"refund request {public_id}", detail="not the buyer"
        )
        raise Http404
    return refund_detail_page(request, refund_request)


def refund_detail_page(request, refund_request: RefundRequest, *, guest_number: str | None = None):
    order = refund_request.order
    return render(
        request,
        "aftersales/refund_detail.html",
        {
            "req": refund_request,
            "order": order,
            "refund": refund_request.refund,
            "payment": refund_request.refund.payment if refund_request.refund else _paid_with(order),
            "ticket_url": ticket_url(refund_request.ticket, guest_number) if refund_request.ticket else "",
            "code_numbers": _code_numbers(refund_request),
            "guest_number": guest_number,
        },
    )


def _code_numbers(refund_request: RefundRequest) -> list[int]:
    """The positions (1, 2, 3 ...) of the request's codes on their order, as the order page numbers them."""
    all_ids = list(refund_request.order.codes.order_by("pk").values_list("pk", flat=True))
    mine = {oc.pk for oc in refund_request.codes.all()}
    return [i for i, pk in enumerate(all_ids, start=1) if pk in mine]
