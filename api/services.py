"""What the integration API does for an agent: place and pay an order, read it with its codes,
read balances. The API sits on top of the layers: it calls orders, payments and agents."""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.utils.translation import gettext as _

from agents.models import Agent, ApiKey
from catalog.topup import CONFIRM_SUFFIX
from ledger import services as ledger
from ledger.selectors import balance_of, balances_of
from marketing.models import Coupon, CouponUse
from marketing.services import coupons
from marketplace.celery import app as celery_app
from marketplace.errors import ServiceError
from orders.models import Order
from orders.services import callbacks, orders
from payments.services import payments

log = logging.getLogger(__name__)
OrderStatus = Order.Status


class ApiError(ServiceError):
    """A request the API refuses after authentication: HTTP status, machine code, message."""

    code = "api_refused"

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.extra = status, code, str(message), extra


def idempotency_key(agent_order_no: str) -> str:
    return f"api:{agent_order_no}"


def _same_request(
    order: Order, product_id: int, quantity: int, callback_url: str, coupon_code: str = "", topup: dict | None = None
) -> bool:
    """A repeat of the request that placed ``order``: the callback URL, the coupon and a top-up's
    account are part of it (a retry that names another would otherwise see it silently dropped)."""
    return (
        order.product_id == product_id
        and order.quantity == quantity
        and order.callback_url == callback_url
        and order_coupon_code(order) == coupons.code_normalise(coupon_code)
        and all(str((topup or {}).get(k, "")).strip() == v for k, v in order.topup_values.items())
    )


def order_coupon_code(order: Order) -> str:
    """The coupon code ``order`` was placed with, or "". An order without a discount has none
    (a coupon that takes nothing off is refused, ``coupon_nothing_off``): no query for it."""
    if not order.discount:
        return ""
    use = CouponUse.objects.filter(order_id=order.pk).select_related("code").first()
    return use.code.code if use is not None else ""


def _coupon_for_api(*, agent: Agent, coupon_code: str) -> None:
    """API orders take platform coupons only (valid for everything, chosen products or
    categories; not one storefront's). An API order is bought at the agent's own cost, so an
    agent's coupon, its own included, has no margin to be paid from, and it is meant for its
    shop's buyers: the agent's own is refused here with that reason, another's by the coupon's
    scope check (``marketing.services.coupons``) like any code not valid here."""
    normal = coupons.code_normalise(coupon_code)
    if normal and Coupon.objects.filter(agent=agent, codes__code=normal).exists():
        raise ApiError(
            422,
            "coupon_refused",
            _(
                "Your storefront's coupons are for your shop's buyers: API orders are at your cost and take "
                "platform coupons only."
            ),
        )


def _order_of(agent: Agent, agent_order_no: str) -> Order | None:
    """The agent's order with this number, if any. Almost always none (a new order): asked with
    one plain indexed statement (the ORM's query building costs more than the query), the order
    read only when there is one."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Order._meta.db_table} WHERE agent_id = %s AND agent_order_no = %s",  # noqa: S608
            [agent.pk, agent_order_no],
        )
        row = cursor.fetchone()
    return Order.objects.filter(pk=row[0]).first() if row is not None else None


def api_order_place(
    *,
    key: ApiKey,
    product_id: int,
    quantity: int,
    agent_order_no: str,
    callback_url: str = "",
    ip: str | None = None,
    real_name: str = "",
    id_number: str = "",
    coupon_code: str = "",
    topup: dict | None = None,
) -> tuple[Order, bool]:
    """Place an order for the key's agent and pay it from the agent's balance.

    Returns ``(order, paid_now)``: ``paid_now`` is true for the one request that paid it.
    The agent's order number makes it idempotent: the same number again (even 50 requests at
    once) returns the same order, placed once and charged once. The database decides: the
    order's unique (buyer, idempotency key) and (agent, agent order number) constraints, the
    order row lock taken by ``balance_pay`` and its ledger entry's idempotency key.

    Not enough balance: the order is cancelled at once (its codes go back to stock) and
    ``ApiError(402, "insufficient_balance")`` raised; the number stays used, so a retry after
    topping up needs a new number.

    ``coupon_code``: a platform coupon (``_coupon_for_api``), checked and its use taken by
    ``order_place``; a refusal is 422 with the coupon's own code (``coupon_expired``, ...).
    """
    agent = key.agent
    buyer = agent.user
    refused: payments.PaymentError | None = None
    # One transaction places the order and pays it: one commit (and one WAL flush) instead of
    # two, and the order is never seen unpaid by anyone else when the balance covers it. A
    # refused payment leaves the order placed: it is committed, then cancelled below.
    with transaction.atomic():
        order = _order_of(agent, agent_order_no)
        placed = False  # by this request, in this transaction (not yet seen by any other)
        if order is None:
            _coupon_for_api(agent=agent, coupon_code=coupon_code)
            try:
                # A refusal (OrderError 422 "order_refused", OutOfStock 409 "out_of_stock") reaches
                # the API's error handler as it is.
                order = orders.order_place(
                    buyer=buyer,
                    product_id=product_id,
                    quantity=quantity,
                    idempotency_key=idempotency_key(agent_order_no),
                    ip=ip,
                    channel=Order.Channel.API,
                    agent_order_no=agent_order_no,
                    callback_url=callback_url,
                    # The end user's real name, for products that need one (compliance.realname).
                    real_name=real_name,
                    id_number=id_number,
                    coupon_code=coupon_code,
                    # A direct top-up's fields, each sent once: the agent's system confirmed them
                    # with its buyer, so each is its own confirmation (catalog.topup checks the rest).
                    topup={**(topup or {}), **{f"{k}{CONFIRM_SUFFIX}": v for k, v in (topup or {}).items()}},
                    return_existing=False,
                )
                placed = True
            except orders.OrderExists as exists:  # a concurrent request's, committed meanwhile
                order = exists.order
        if order.agent_id != agent.pk or order.buyer_id != buyer.pk:  # pragma: no cover - constraints forbid it
            raise ApiError(409, "agent_order_no_conflict", _("This order number belongs to another order."))
        if not _same_request(order, product_id, quantity, callback_url, coupon_code, topup):
            raise ApiError(
                409,
                "agent_order_no_conflict",
                _("agent_order_no %(no)s was already used for a different product, quantity, callback URL or coupon.")
                % {"no": agent_order_no},
                order_number=order.number,
            )
        callbacks.callback_prepare(order=order, key=key)
        if order.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
            raise ApiError(
                409,
                "order_closed",
                _(
                    "The order under this agent_order_no was closed unpaid (%(status)s): "
                    "place it again with a new number."
                )
                % {"status": order.get_status_display()},
                order_number=order.number,
                order_status=order.status,
            )
        if order.status != OrderStatus.PENDING:
            return order, False
        try:
            payment = payments.balance_pay(order_number=order.number, buyer=buyer, order=order, placed=placed)
        except payments.PaymentError as exc:
            refused = exc
    if refused is not None:
        return _payment_refused(order=order, buyer=buyer, refused=refused)
    # The row as ``balance_pay`` locked and updated it in the committed transaction, so not read
    # again; unless the delivery ran right here at the commit (eager Celery: tests, a demo),
    # which moved it on.
    order = payment.order
    assert order is not None  # an order's payment
    if celery_app.conf.task_always_eager:
        order.refresh_from_db()
    return order, True


def _payment_refused(*, order: Order, buyer, refused: Exception) -> tuple[Order, bool]:
    """After ``balance_pay`` refused (its transaction committed the order, unpaid): another
    request with the same number paid it meanwhile (that order), or the balance is short (the
    order cancelled, 402), or the order can no longer be paid (409)."""
    order.refresh_from_db()
    if order.status not in (OrderStatus.PENDING, OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        return order, False  # a concurrent request with the same number paid it
    balance = balance_of(ledger.wallet(buyer))
    if order.status == OrderStatus.PENDING and balance < order.total:
        orders.order_cancel(order_id=order.pk, buyer=buyer)
        callbacks.callback_discard(order=order)
        raise ApiError(
            402,
            "insufficient_balance",
            _(
                "Your balance ¥%(balance)s is less than the order total ¥%(total)s: the order was cancelled. "
                "Top up, then place it again with a new agent_order_no."
            )
            % {"balance": balance, "total": order.total},
            order_number=order.number,
            balance=str(balance),
            total=str(order.total),
        ) from None
    raise ApiError(409, "order_not_payable", str(refused), order_number=order.number) from None


def api_order_find(*, agent: Agent, agent_order_no: str | None = None, number: str | None = None) -> Order | None:
    rows = Order.objects.filter(agent=agent, buyer_id=agent.user_id).select_related("product")
    if number is not None:
        return rows.filter(number=number).first()
    return rows.filter(agent_order_no=agent_order_no).first()


def api_order_elsewhere(*, agent: Agent, agent_order_no: str | None = None, number: str | None = None) -> bool:
    """Whether the number names an order the agent does not own (an attempt worth logging)."""
    rows = Order.objects.exclude(buyer_id=agent.user_id)
    if number is not None:
        return rows.filter(number=number).exists()
    return rows.filter(agent_order_no=agent_order_no).exists()


@dataclass(frozen=True)
class RevealedCode:
    card_number: str
    secret: str


def api_order_codes(*, key: ApiKey, order: Order, ip: str | None) -> list[RevealedCode] | None:
    """The codes of a delivered order, each read logged (``CodeReveal``, user agent
    ``api:<key_id>``) through the same service the buyer's order page uses. None until
    the order is delivered (or after it was refunded)."""
    if order.status != OrderStatus.DELIVERED:
        return None
    out = []
    for order_code_id in order.codes.filter(released_at__isnull=True).order_by("id").values_list("id", flat=True):
        number, secret = orders.order_code_reveal(
            buyer=key.agent.user,
            order_number=order.number,
            order_code_id=order_code_id,
            ip=ip,
            user_agent=f"api:{key.key_id}",
        )
        out.append(RevealedCode(card_number=number, secret=secret))
    return out


@dataclass(frozen=True)
class Balances:
    balance: Decimal
    commission_pending: Decimal
    commission_available: Decimal


def api_balances(*, agent: Agent) -> Balances:
    user = agent.user
    wallet, pending, available = ledger.wallet(user), ledger.commission_pending(user), ledger.commission_available(user)
    balances = balances_of(wallet, pending, available)
    return Balances(
        balance=balances[wallet.code],
        commission_pending=balances[pending.code],
        commission_available=balances[available.code],
    )
