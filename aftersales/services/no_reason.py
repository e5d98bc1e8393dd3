"""The 7-day no-reason refund: a buyer gives back codes they never revealed.

Every code of a delivered order that was never revealed (no ``CodeReveal`` row: nobody has
seen its secret) can be refunded within ``REFUND_WINDOW_DAYS`` of delivery, no reason asked:
approved automatically, refunded to the channel the money came from (``payments.services.refunds``),
the code released from the order and put back on sale (nobody has seen it), its cost given
back to the supplier's account, and a credit event recorded. Anything else (a revealed code,
after the window, a buyer over the no-reason limit) becomes a dispute for staff: the request
is kept under review with a ticket explaining why.

One request per (buyer, idempotency key); requests of one buyer are serialised on the buyer's
row (so the limit holds and a double click or two tabs make one refund), then on the
payment's and the order's rows, in the order ``payments.services.refunds`` locks them.

A guest order's guest asks through the same service with ``user=None`` (the guest views check
the guest's proof): one request per (order, idempotency key), serialised on a lock named after
the guest's email address, and the no-reason limit counts the guest's credit events by that
address. A guest paid through a gateway (a guest has no balance), so the refund goes back there.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, Min, prefetch_related_objects
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from compliance import rating
from compliance.models import CreditEvent
from compliance.selectors import CreditOwnerKeys, credit_events_count
from compliance.services import credit_event_record
from marketplace.errors import ServiceError
from marketplace.prepared import Prepared
from orders.models import Order, OrderCode
from orders.services import orders as order_services
from payments.models import Payment
from payments.services import refunds
from risk import services as risk

from ..models import REFUND_REQUEST_FLOW, Kind, RefundRequest, Ticket
from .tickets import ticket_open

log = logging.getLogger(__name__)
RequestStatus = RefundRequest.Status
# A request still holding its codes: they cannot be asked for again meanwhile.
OPEN_STATUSES = (RequestStatus.APPROVED, RequestStatus.UNDER_REVIEW, RequestStatus.REFUNDED)
REFUND_REASON = "no-reason refund of unrevealed codes"


class RefundRequestError(ServiceError):
    """A request the buyer can fix; the message is shown to them as it is."""

    code = "refund_request_refused"


def topup_refusal() -> str:
    # A direct top-up credited to the buyer's account cannot be given back. 消费者权益保护法
    # 第二十五条 第二款: goods that by their nature are unsuitable for return, confirmed as such by
    # the consumer at purchase (the checkout's box, orders/_topup_fields.html), are not subject
    # to the 7-day no-reason return; 《网络购买商品七日无理由退货暂行办法》 第七条 names goods whose
    # value is largely lost once activated. A failed top-up is refunded in full automatically
    # (orders.services.topup); a problem with a done one is a ticket or a dispute.
    return _(
        "Direct top-ups cannot be refunded without reason (7 days) once the top-up is done. "
        "If the amount did not arrive, report a problem from the order page."
    )


# --- Reads (the form, the order page) -------------------------------------------------------


def refund_window_end(order: Order) -> datetime | None:
    """When the no-reason window of ``order`` closes (None before delivery)."""
    if order.delivered_at is None:
        return None
    return order.delivered_at + timedelta(days=settings.REFUND_WINDOW_DAYS)


def no_reason_limit_reached(user=None, *, email: str = "") -> bool:
    """``user`` (or, with no user, the guest ``email``) has had the most no-reason refunds allowed
    in the last NO_REASON_REFUND_LIMIT_DAYS days."""
    used = credit_events_count(
        user=user, email=email, kind=CreditEvent.Kind.NO_REASON_REFUND, days=settings.NO_REASON_REFUND_LIMIT_DAYS
    )
    return used >= settings.NO_REASON_REFUND_LIMIT


def refund_held(user=None, *, email: str = "", known: "rating.Rating | None" = None) -> bool:
    """Would a no-reason refund of this owner go to staff review rather than be made at once:
    the limit of ``no_reason_limit_reached``, or a credit level whose refunds are reviewed
    (``rating.refund_review_reason``)? One query (the rating's events count the refunds too),
    none when the caller ``known`` the owner's rating."""
    days = settings.NO_REASON_REFUND_LIMIT_DAYS
    if days > settings.CREDIT_HORIZON_DAYS:  # the rating's events would not reach back that far
        return no_reason_limit_reached(user, email=email) or bool(rating.refund_review_reason(user=user, email=email))
    rated = known if known is not None else rating.credit_rating(user=user, email=email)
    if rated.level.refunds_reviewed:
        return True
    since = timezone.now() - timedelta(days=days)
    used = sum(1 for e in rated.events if e.kind == CreditEvent.Kind.NO_REASON_REFUND and e.at >= since)
    return used >= settings.NO_REASON_REFUND_LIMIT


def _credit_owner(*, user, order: Order) -> CreditOwnerKeys:
    """Whose no-reason refunds count: the member, or the guest by the order's email address."""
    return {"user": user, "email": ""} if user is not None else {"user": None, "email": order.guest_email}


@dataclass
class CodeOption:
    order_code: OrderCode
    index: int  # 1-based position on the order, as the order page numbers them
    first_revealed_at: datetime | None
    reveal_count: int
    request: RefundRequest | None = None  # an open request already holding this code

    @property
    def revealed(self) -> bool:
        return self.reveal_count > 0

    @property
    def selectable(self) -> bool:
        return self.request is None


@dataclass
class RefundOptions:
    order: Order
    codes: list[CodeOption]
    window_end: datetime | None
    window_open: bool
    # Whether a refund now would go to review (``refund_held``): asked only by ``automatic``,
    # when some code could be refunded at once (not on every view of an order page).
    limit_check: Callable[[], bool] = field(default=lambda: False, repr=False)
    requests: list[RefundRequest] = field(default_factory=list)

    @cached_property
    def limit_reached(self) -> bool:
        return self.limit_check()

    @property
    def selectable(self) -> list[CodeOption]:
        return [c for c in self.codes if c.selectable]

    @property
    def automatic(self) -> list[CodeOption]:
        """Codes that would be refunded at once if requested now."""
        if not self.window_open:
            return []
        unrevealed = [c for c in self.selectable if not c.revealed]
        if not unrevealed or self.limit_reached:
            return []
        return unrevealed

    @cached_property
    def refundable_ids(self) -> set[int]:
        """The ids of ``automatic`` (kept: an order page asks for them several times; the
        options are not changed once made)."""
        return {c.order_code.pk for c in self.automatic}

    @property
    def can_request(self) -> bool:
        if self.order.product.is_direct_topup:  # no codes to give back (topup_refusal)
            return False
        return self.order.status == Order.Status.DELIVERED and bool(self.selectable)


def refund_options(*, order: Order, user) -> RefundOptions:
    """What ``user`` may ask to refund on ``order`` now, code by code (the caller checked ownership;
    ``user`` None: the guest of the guest order)."""
    # Codes are numbered by their place on the order (refunded ones keep their numbers).
    codes = getattr(order, "all_codes", None)  # fetched so by the order page (orders.selectors)
    if codes is None:
        codes = list(
            OrderCode.objects.filter(order_id=order.pk)
            .annotate(reveal_count=Count("reveals"), first_revealed_at=Min("reveals__at"))
            .order_by("pk")
        )
    # The order page's read says whether the order has any request (``refund_requests_flag``):
    # most have none, and then there is nothing to read.
    none_asked = getattr(order, REQUESTS_FLAG, None) is False
    requests = [] if none_asked else _order_requests.objects(order=order.pk)
    if requests:
        prefetch_related_objects(requests, "codes")
    holding: dict[int, RefundRequest] = {}
    for req in requests:
        if req.status in OPEN_STATUSES:
            for oc in req.codes.all():
                holding.setdefault(oc.pk, req)
    end = refund_window_end(order)
    return RefundOptions(
        order=order,
        codes=[
            CodeOption(
                order_code=oc,
                index=i,
                first_revealed_at=oc.first_revealed_at,
                reveal_count=oc.reveal_count,
                request=holding.get(oc.pk),
            )
            for i, oc in enumerate(codes, start=1)
            if oc.released_at is None
        ],
        window_end=end,
        window_open=order.status == Order.Status.DELIVERED and end is not None and timezone.now() <= end,
        limit_check=lambda: refund_held(**_credit_owner(user=user, order=order), known=_known_rating(user, order)),
        requests=requests,
    )


# Whether the order has a refund request, asked in the order page's read of the order
# (``orders.selectors.orders.order_page_flag``, registered by ``AftersalesConfig.ready``).
REQUESTS_FLAG = "has_refund_requests"


def refund_requests_flag(order_id: str) -> str:
    """``REQUESTS_FLAG``'s SQL: an ``EXISTS`` over the requests' index on their order."""
    q = connection.ops.quote_name
    table, column = q(RefundRequest._meta.db_table), q(RefundRequest._meta.get_field("order").column)
    return f"EXISTS (SELECT 1 FROM {table} WHERE {table}.{column} = {order_id})"  # noqa: S608 (names from the model)


# The order page shows them on every view: compiled once per process (``marketplace.prepared``).
_order_requests = Prepared(
    lambda order: RefundRequest.objects.filter(order_id=order).select_related("refund", "ticket").order_by("-pk"),
    order=987654321,
)


def _known_rating(user, order: Order) -> "rating.Rating | None":
    """The buyer's rating when the order page's read of the order says they have nothing on
    record (``credit_rated`` false: ``orders.selectors.orders``), else None (read when asked)."""
    if user is None or user.pk != order.buyer_id or getattr(order, "credit_rated", None) is not False:
        return None
    return rating.credit_rating_unrated()


# --- The service ----------------------------------------------------------------------------


def _parse_ids(raw) -> list[int]:
    try:
        ids = sorted({int(str(x).strip()) for x in (raw or [])})
    except (TypeError, ValueError):
        raise RefundRequestError(_("Choose the codes to refund from the list.")) from None
    if not ids:
        raise RefundRequestError(_("Choose at least one code to refund."))
    return ids


def _date(value: datetime) -> str:
    return formats.date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT")


def refund_request_create(
    *, user, order: Order, order_code_ids, reason: str = "", idempotency_key: str
) -> RefundRequest:
    """Ask for codes of ``order`` back. Returns the request: refunded at once, or under review.

    ``user`` None: the guest of the guest order ``order`` asks (the caller checked the guest's
    proof). Raises ``Order.DoesNotExist`` when the order is not ``user``'s (not a guest order
    for None), a ``ServiceError`` with a message for the buyer when the request cannot be made
    (``RefundRequestError``, or the refund service's ``RefundError``).
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 64:
        raise RefundRequestError(_("This form has expired: reload the page and try again."))
    if order.buyer_id != getattr(user, "pk", None):
        raise Order.DoesNotExist
    existing = _existing(user=user, order=order, key=key)
    if existing is not None:
        return existing
    if order.product.is_direct_topup:
        raise RefundRequestError(topup_refusal(), code="topup_no_reason_refund")
    ids = _parse_ids(order_code_ids)
    reason = (reason or "").strip()[:500]

    with transaction.atomic():
        # One request of this buyer at a time (double clicks, two tabs, the limit), then the
        # payment and the order, in the order payments.services.refunds locks them.
        _lock_buyer(user=user, order=order)
        existing = _existing(user=user, order=order, key=key)
        if existing is not None:
            return existing
        payment = order.payments.filter(status=Payment.Status.SUCCEEDED).order_by("id").first()
        if payment is not None:
            Payment.objects.select_for_update().filter(pk=payment.pk).first()
        order = Order.objects.select_for_update(of=("self",)).get(pk=order.pk)
        if order.status != Order.Status.DELIVERED or payment is None:
            raise RefundRequestError(_("Only the codes of a delivered, paid order can be refunded."))
        codes = list(
            OrderCode.objects.filter(order_id=order.pk, pk__in=ids, released_at__isnull=True)
            .annotate(reveal_count=Count("reveals"))
            .order_by("pk")
        )
        if len(codes) != len(ids):
            raise RefundRequestError(
                _("Some of the chosen codes are not on this order any more (already refunded?). Reload the page.")
            )
        if RefundRequest.objects.filter(codes__in=ids, status__in=OPEN_STATUSES).exists():
            raise RefundRequestError(
                _("A refund of some of these codes has already been requested. Reload the page to see it.")
            )

        now = timezone.now()
        review = []
        revealed = [c for c in codes if c.reveal_count]
        if revealed:
            review.append(
                ngettext(
                    "%(n)d code was revealed",
                    "%(n)d codes were revealed",
                    len(revealed),
                )
                % {"n": len(revealed)}
            )
        end = refund_window_end(order)
        if end is None or now > end:
            review.append(
                _("requested after the %(days)d-day window (it ended %(date)s)")
                % {"days": settings.REFUND_WINDOW_DAYS, "date": _date(end) if end else "-"}
            )
        if no_reason_limit_reached(**_credit_owner(user=user, order=order)):
            review.append(
                _("more than %(limit)d no-reason refunds in %(days)d days")
                % {"limit": settings.NO_REASON_REFUND_LIMIT, "days": settings.NO_REASON_REFUND_LIMIT_DAYS}
            )
        # A credit level that sends no-reason refunds to staff (e.g. "Watch"): reviewed, not refused.
        credit_reason = rating.refund_review_reason(**_credit_owner(user=user, order=order))
        if credit_reason:
            review.append(credit_reason)
        # Risk control's refund velocity (per buyer, IP and device, counted in Redis): past a
        # threshold the request goes to staff, never refused.
        if risk.velocity_count(
            event="refund_request",
            user=user,
            email=order.guest_email,
            ip=order.buyer_ip,
            device=order.buyer_device,
            reference=order.number,
        ):
            review.append(_("many refund requests in a short time"))

        request = RefundRequest.objects.create(
            order=order,
            user=user,
            quantity=len(codes),
            reason=reason,
            status=RequestStatus.UNDER_REVIEW if review else RequestStatus.APPROVED,
            review_reason="; ".join(review)[:300],
            idempotency_key=key,
        )
        request.codes.set(codes)
        if review:
            request.ticket = _dispute_open(request=request, codes=codes)
            request.save(update_fields=["ticket"])
            log.info("refund request %s of order %s under review: %s", request.pk, order.number, request.review_reason)
            return request

        # The refund service's refusal (a RefundError) reaches the caller as it is. The codes
        # leave the order and, never revealed, go back on sale with their cost.
        refund = refunds.order_refund(
            order=order,
            order_code_ids=[c.pk for c in codes],
            reason=REFUND_REASON,
            requested_by=user,
            key=f"noreason:{request.pk}",
            restock=order_services.Restock(
                key=f"stock_return:refundrequest:{request.pk}",
                memo=f"no-reason refund request {request.pk}: {{n}} code(s) back in stock",
            ),
        )
        credit_event_record(
            **_credit_owner(user=user, order=order),
            kind=CreditEvent.Kind.NO_REASON_REFUND,
            reference=order.number,
            detail=f"{len(codes)} code(s), refund {refund.number}",
        )
        # The refund is decided and on its way: the buyer follows the refund's own status.
        REFUND_REQUEST_FLOW.apply(
            request, RequestStatus.REFUNDED, actor=user, note=refund.number, update={"refund": refund}
        )
    log.info("refund request %s of order %s refunded automatically: %s", request.pk, order.number, refund.number)
    return request


def _existing(*, user, order: Order, key: str) -> RefundRequest | None:
    if user is not None:
        return RefundRequest.objects.filter(user=user, idempotency_key=key).first()
    return RefundRequest.objects.filter(user__isnull=True, order_id=order.pk, idempotency_key=key).first()


def _lock_buyer(*, user, order: Order) -> None:
    """Serialise the requests of one buyer: the member's row; for a guest (no row of their own),
    a transaction lock named after the guest's address (SQLite's immediate transactions are
    serialised anyway)."""
    if user is not None:
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    elif connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"refundrequest:guest:{order.guest_email}"])


def _dispute_open(*, request: RefundRequest, codes: Sequence[OrderCode]) -> Ticket:
    """A refund dispute ticket for staff (SLA clocks, staff emails: ``tickets.ticket_open``),
    with the buyer's request and why it is reviewed as its first message."""
    order = request.order
    lines = [
        ngettext(
            "I would like a refund of %(n)d code of order %(number)s (%(product)s).",
            "I would like a refund of %(n)d codes of order %(number)s (%(product)s).",
            len(codes),
        )
        % {"n": len(codes), "number": order.number, "product": order.product_name},
        _("Reason: %(reason)s") % {"reason": request.reason or _("(none given)")},
        _("For staff review because: %(why)s.") % {"why": request.review_reason},
    ]
    subject = ngettext(
        "Refund of %(n)d code of order %(number)s",
        "Refund of %(n)d codes of order %(number)s",
        len(codes),
    ) % {"n": len(codes), "number": order.number}
    return ticket_open(
        user=request.user,
        kind=Kind.REFUND,
        subject=subject[:120],
        body="\n".join(lines)[:5000],
        order=order,
        order_code=codes[0] if len(codes) == 1 else None,
        is_dispute=True,
    )
