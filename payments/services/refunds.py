"""Refunds: one service for every way money goes back to a buyer.

A refund is requested (by staff, by the buyer's after-sales request, or automatically for a
payment the order could not use), booked, then executed: to the channel the money came from
(balance payments go back to the balance). Requests are idempotent on their key, serialised on
the payment's row, and never exceed what was paid. Execution is claimed by one worker at a
time; the gateway refunds once per refund number however often it is asked, so a retry after
a timeout or a killed worker cannot refund twice. Unfinished refunds are retried with backoff
and, after the last attempt, wait for staff as FAILED.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Sum
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from ledger import services as ledger
from marketplace.celery import publish
from marketplace.errors import ServiceError
from marketplace.money import quantize
from orders.models import ORDER_FLOW, Order
from orders.services import guest
from orders.services import orders as order_services

from ..gateways import GatewayError, RemoteGateway, enabled_gateways
from ..models import BALANCE, REFUND_FLOW, Payment, Refund

log = logging.getLogger(__name__)
RefundStatus = Refund.Status
MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=2)  # a worker that claimed a refund and died is replaced after this


class RefundError(ServiceError):
    """A refund that cannot be made; the message says why (shown to staff or the buyer)."""

    code = "refund_refused"


def _open_total(payment: Payment) -> Decimal:
    """What is refunded or on its way back for this payment (failed attempts excluded)."""
    total = payment.refunds.exclude(status=RefundStatus.FAILED).aggregate(s=Sum("amount"))["s"]
    return total or Decimal(0)


def refund_request(
    *,
    payment: Payment,
    amount: Decimal,
    reason: str,
    idempotency_key: str,
    quantity: int = 0,
    requested_by=None,
    book_revenue: bool = True,
) -> Refund:
    """Record a refund of ``amount`` of ``payment`` and queue its execution.

    ``book_revenue``: the money was counted as a sale (a delivered order), so the refund
    reverses revenue into "refunds due"; for a payment the order never used, the money was
    booked as due back from the start.
    """
    reason = (reason or "").strip()
    if not reason:
        raise RefundError(_("Give a reason for the refund."))
    amount = quantize(amount)
    if amount <= 0:
        raise RefundError(_("A refund must be more than zero."))
    if payment.gateway == BALANCE and payment.order is not None and payment.order.buyer_id is None:
        # Money goes back where it came from; a guest has no balance, so a guest's payment is
        # never one (the cashier offers guests the gateways only): refuse rather than guess.
        raise RefundError(_("A guest order paid from a balance cannot be refunded here."))
    from ..tasks import refund_execute

    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)  # one request at a time
        existing = Refund.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        if _open_total(payment) + amount > payment.amount:
            raise RefundError(
                _("Refunds would exceed what was paid (¥%(paid)s, already refunded or refunding ¥%(done)s).")
                % {"paid": payment.amount, "done": _open_total(payment)}
            )
        refund = Refund.objects.create(
            payment=payment,
            order_id=payment.order_id,
            amount=amount,
            quantity=quantity,
            reason=reason[:300],
            idempotency_key=idempotency_key[:120],
            requested_by=requested_by,
            next_attempt_at=timezone.now(),
        )
        if book_revenue:
            ledger.transfer(
                debit=ledger.SALES,
                credit=ledger.REFUNDS_DUE,
                amount=amount,
                kind="refund_decided",
                reference=refund.number,
                memo=reason[:200],
                idempotency_key=f"refund_decided:{refund.number}",
            )
        transaction.on_commit(lambda: publish(refund_execute, refund.pk))
    log.info("refund %s requested: %s of payment %s", refund.number, amount, payment.pk)
    return refund


def order_refund(
    *,
    order: Order,
    quantity: int | None = None,
    reason: str,
    requested_by=None,
    key: str = "",
    order_code_ids=None,
    restock: order_services.Restock | None = None,
) -> Refund:
    """Refund a delivered order in full, by code count, or the codes ``order_code_ids`` names,
    to where its money came from. The one way codes are refunded: no-reason refunds, disputes,
    arbitration and staff all come here.

    In one transaction: the refund (``refund_request``: revenue to "refunds due", execution
    queued), then the order's side (``orders.services.order_codes_refund``: commissions taken
    back, the codes counted refunded; named codes leave the order, unrevealed ones back on sale
    with their cost taken back from the supplier, recorded as ``restock`` says).

    Serialised on the payment's row: a second click with the same ``key`` waits for the first
    and gets its refund back, whatever the first has done to the order meanwhile.
    """
    if order_code_ids is not None:
        order_code_ids = sorted({int(pk) for pk in order_code_ids})
        if quantity is not None and quantity != len(order_code_ids):
            raise ValueError(f"quantity {quantity} for {len(order_code_ids)} named code(s)")
        quantity = len(order_code_ids)
    payment = order.payments.filter(status=Payment.Status.SUCCEEDED).order_by("id").first()
    if payment is None:
        raise RefundError(_("Only a delivered, paid order can be refunded here."))
    with transaction.atomic():
        Payment.objects.select_for_update().filter(pk=payment.pk).first()
        if key and (existing := Refund.objects.filter(idempotency_key=key).first()) is not None:
            return existing  # the same decision made again (a double click): its refund
        order = Order.objects.get(pk=order.pk)
        if order.status not in (Order.Status.DELIVERED, Order.Status.REFUNDED):
            raise RefundError(_("Only a delivered, paid order can be refunded here."))
        refunded = order.refunds.exclude(status=RefundStatus.FAILED).aggregate(q=Sum("quantity"))["q"] or 0
        left = order.quantity - refunded
        quantity = left if quantity is None else int(quantity)
        if not 1 <= quantity <= left:
            raise RefundError(_("%(left)d of this order's codes can still be refunded.") % {"left": left})
        # What was paid for these codes: their price less their share of a coupon's discount
        # (Order.paid_for: split to the fen, the remainder on the last code); the last refund
        # of an order pays back exactly what is left of its total.
        if quantity == left:
            paid_back = order.refunds.exclude(status=RefundStatus.FAILED).aggregate(s=Sum("amount"))["s"]
            amount = order.total - (paid_back or 0)
        else:
            amount = order.paid_for(refunded, quantity)
        key = key or f"order:{order.number}:{refunded}+{quantity}"
        if (existing := Refund.objects.filter(idempotency_key=key).first()) is not None:
            return existing
        refund = refund_request(
            payment=payment,
            amount=amount,
            quantity=quantity,
            reason=reason,
            idempotency_key=key,
            requested_by=requested_by,
        )
        order_services.order_codes_refund(
            order=order,
            quantity=quantity,
            refund_number=refund.number,
            order_code_ids=order_code_ids,
            restock=restock,
        )
        return refund


def payment_refund_unused(*, payment: Payment, reason: str) -> Refund:
    """A payment the order could not use (paid twice, or after the stock was gone): all of it back."""
    return refund_request(
        payment=payment,
        amount=payment.amount,
        reason=reason,
        idempotency_key=f"unused:{payment.gateway}:{payment.trade_no}",
        book_revenue=False,
    )


# --- Execution ----------------------------------------------------------------------------


def _claim(refund_id: int) -> Refund | None:
    """Take the refund for this worker, or None when it is done, or another worker has it.

    One guarded UPDATE: a requested refund moves to processing; a processing one whose lease
    ran out (its worker died) is taken over in place."""
    now = timezone.now()
    refund = Refund.objects.filter(pk=refund_id)
    claimed = REFUND_FLOW.move_all(
        refund, RefundStatus.REQUESTED, RefundStatus.PROCESSING, note="claimed", next_attempt_at=now + LEASE
    )
    if not claimed:
        claimed = refund.filter(status=RefundStatus.PROCESSING, next_attempt_at__lte=now).update(
            next_attempt_at=now + LEASE
        )
    return (
        Refund.objects.select_related("payment", "payment__order", "payment__recharge").get(pk=refund_id)
        if claimed
        else None
    )


def refund_execute(*, refund_id: int) -> str:
    """Send the refund to its channel, or check on it there. Safe to run any number of times."""
    refund = _claim(refund_id)
    if refund is None:
        return "not due"
    payment = refund.payment
    gateway = enabled_gateways().get(payment.gateway)
    if payment.gateway != BALANCE and gateway is None:
        return _retry_later(refund, f"channel {payment.gateway} is not configured")
    if not isinstance(gateway, RemoteGateway):  # the balance, and the demo sandbox: at once
        refund_succeeded(refund_id=refund.pk, gateway_refund_id="")
        return "succeeded"
    number = payment.number
    Refund.objects.filter(pk=refund.pk).update(attempts=refund.attempts + 1)
    try:
        if refund.attempts == 0:
            result = gateway.refund(
                order_number=number,
                refund_no=refund.number,
                amount=refund.amount,
                total=payment.amount,
                reason=refund.reason[:80],
                notify_url=settings.SITE_URL + reverse("payments-notify-refund", args=[payment.gateway]),
            )
        else:  # asked before: see where it stands, ask again only if the gateway never saw it
            result = gateway.refund_query(order_number=number, refund_no=refund.number)
            if result.state == "NOT_FOUND" or (not result.done and result.amount == 0):
                result = gateway.refund(
                    order_number=number,
                    refund_no=refund.number,
                    amount=refund.amount,
                    total=payment.amount,
                    reason=refund.reason[:80],
                    notify_url=settings.SITE_URL + reverse("payments-notify-refund", args=[payment.gateway]),
                )
    except GatewayError as exc:
        return _retry_later(refund, str(exc))
    if result.done:
        refund_succeeded(refund_id=refund.pk, gateway_refund_id=result.gateway_refund_id)
        return "succeeded"
    return _retry_later(
        refund, f"gateway state {result.state or 'processing'}", gateway_refund_id=result.gateway_refund_id
    )


def _retry_later(refund: Refund, error: str, gateway_refund_id: str = "") -> str:
    attempts = refund.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        REFUND_FLOW.move_all(
            Refund.objects.filter(pk=refund.pk),
            RefundStatus.PROCESSING,
            RefundStatus.FAILED,
            note=f"after {attempts} attempts",
            last_error=error[:300],
            next_attempt_at=None,
        )
        log.error("refund %s failed after %d attempts: %s", refund.number, attempts, error)
        return "failed"
    delay = timedelta(minutes=min(2**attempts, 120))
    fields = {"last_error": error[:300], "next_attempt_at": timezone.now() + delay}
    if gateway_refund_id:
        fields["gateway_refund_id"] = gateway_refund_id[:64]
    Refund.objects.filter(pk=refund.pk, status=RefundStatus.PROCESSING).update(**fields)
    log.warning("refund %s not finished (%s); next check in %s", refund.number, error, delay)
    return "retry"


def refund_succeeded(*, refund_id: int, gateway_refund_id: str = "") -> bool:
    """The money is back with the buyer (the gateway said so, or the balance was credited)."""
    from ..tasks import refund_notify

    with transaction.atomic():
        refund = Refund.objects.select_for_update().select_related("payment").get(pk=refund_id)
        if refund.status == RefundStatus.SUCCEEDED:
            return False
        payment = refund.payment
        balance = payment.gateway == BALANCE
        target = ledger.wallet(payment.payer) if balance else ledger.clearing(payment.gateway)
        ledger.transfer(
            debit=ledger.REFUNDS_DUE,
            credit=target,
            amount=refund.amount,
            kind="refund_paid",
            reference=refund.number,
            memo=f"{payment.gateway} {gateway_refund_id}".strip(),
            idempotency_key=f"refund_paid:{refund.number}",
        )
        REFUND_FLOW.apply(
            refund,
            RefundStatus.SUCCEEDED,
            note=f"{payment.gateway} {gateway_refund_id}".strip(),
            update={"next_attempt_at": None, "gateway_refund_id": gateway_refund_id[:64] or refund.gateway_refund_id},
        )
        if refund.order_id:
            _close_order_if_fully_refunded(refund.order_id)
        transaction.on_commit(lambda: publish(refund_notify, refund.pk))
    log.info("refund %s succeeded", refund.number)
    return True


def _close_order_if_fully_refunded(order_id: int) -> None:
    order = Order.objects.select_for_update().get(pk=order_id)
    paid = order.payments.aggregate(s=Sum("amount"))["s"] or Decimal(0)
    back = order.refunds.filter(status=RefundStatus.SUCCEEDED).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    if back >= paid and ORDER_FLOW.can(order.status, Order.Status.REFUNDED):
        ORDER_FLOW.apply(order, Order.Status.REFUNDED, note="refunded in full")


def refund_confirmed_by_gateway(*, gateway_code: str, refund_no: str) -> str:
    """A refund notification (signature verified by the pipeline). Gateways word these
    differently (Alipay: a cumulative refund_fee, TRADE_CLOSED for a full refund), so the
    notification only makes the refund due now: its execution asks the gateway's refund query
    and settles it once."""
    from ..tasks import refund_execute

    refund = Refund.objects.filter(number=refund_no, payment__gateway=gateway_code).first()
    if refund is None:
        return "unknown refund"
    if refund.status == RefundStatus.SUCCEEDED:
        return "already refunded"
    Refund.objects.filter(pk=refund.pk, status__in=[RefundStatus.REQUESTED, RefundStatus.PROCESSING]).update(
        next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: publish(refund_execute, refund.pk))
    return "checking with the gateway"


def refund_retry(*, refund_id: int, staff) -> bool:
    """Staff send a FAILED refund back to its gateway (after fixing what made it fail)."""
    from ..tasks import refund_execute

    with transaction.atomic():
        updated = REFUND_FLOW.move_all(
            Refund.objects.filter(pk=refund_id),
            RefundStatus.FAILED,
            RefundStatus.PROCESSING,
            actor=staff,
            note="retried by staff",
            attempts=1,
            next_attempt_at=timezone.now(),
            last_error=f"retried by {staff}"[:300],
        )
        if updated:
            transaction.on_commit(lambda: publish(refund_execute, refund_id))
    return bool(updated)


def refunds_undeliverable_run(*, limit: int = 100) -> int:
    """Orders that will not be delivered (``orders.services.undeliverable``: the supplier failed,
    a manual top-up failed, nothing came in time): each refunded in full to where its money came
    from, once (the refund's key is the order's). Their money is already owed back in the ledger
    (orders held → refunds due), so the refund books no revenue. Orders refunded another way
    (a late payment's automatic refund) already have a refund and are not taken. Beat, every
    30 seconds. Returns how many refunds were requested."""
    due = list(
        Order.objects.filter(status=Order.Status.REFUND_PENDING)
        .exclude(pk__in=Refund.objects.filter(order__isnull=False).values("order_id"))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    made = 0
    for order_id in due:
        payment = Payment.objects.filter(order_id=order_id, status=Payment.Status.SUCCEEDED).order_by("pk").first()
        if payment is None:  # a free order (nothing was paid): nothing to refund, so it is closed
            with transaction.atomic():
                order = Order.objects.select_for_update().get(pk=order_id)
                if order.total == 0 and ORDER_FLOW.can(order.status, Order.Status.REFUNDED):
                    ORDER_FLOW.apply(order, Order.Status.REFUNDED, note="not delivered; nothing was paid")
                else:
                    log.error("order %s is to be refunded but has no succeeded payment", order.number)
            continue
        try:
            refund_request(
                payment=payment,
                amount=payment.amount,
                reason=_("Automatic refund: the order could not be delivered."),
                idempotency_key=f"undeliverable:{payment.order_id}",
                book_revenue=False,
            )
            made += 1
        except RefundError:
            log.exception("order %s: the automatic refund was refused", order_id)
    return made


def refunds_due(*, limit: int = 200) -> list[int]:
    now = timezone.now()
    return list(
        Refund.objects.filter(status__in=[RefundStatus.REQUESTED, RefundStatus.PROCESSING], next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def refund_notify(*, refund_id: int) -> None:
    refund = Refund.objects.select_related("payment__order__buyer", "payment__recharge__user").get(pk=refund_id)
    payment = refund.payment
    # A guest order's payment has no payer: its refund notice goes to the guest address.
    if payment.order is not None:
        email = payment.order.buyer_email
    else:
        assert payment.recharge is not None  # a payment is for an order or a recharge (constraint)
        email = payment.recharge.user.email
    with translation.override(settings.LANGUAGE_CODE):
        # A guest's order page is reached through its signed link (no account to log in to).
        guest_url = guest.guest_link_url(order=payment.order) if payment.order and payment.order.is_guest else ""
        body = render_to_string(
            "payments/email/refunded.txt",
            {"refund": refund, "payment": payment, "site": settings.SITE_URL, "guest_url": guest_url},
        )
        subject = _("Refund %(number)s: ¥%(amount)s is on its way back") % {
            "number": refund.number,
            "amount": refund.amount,
        }
        send_mail(subject, body, None, [email])
