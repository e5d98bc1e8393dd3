"""Helpers for the demo data (``seed_demo_sales``, ``seed_demo_aftersales``), never for real sales.

The demo places real orders through the real services, then moves them into the past so the
shop looks like one that has been trading: every timestamp of a sale moves by the same amount,
so an order is never younger than its payment, its reveals or a ticket about it.
"""

import contextlib
from datetime import datetime
from types import SimpleNamespace
from unittest import mock

from django.conf import settings
from django.db.models import F
from django.test.utils import override_settings
from django.utils import timezone

from agents.models import Commission
from marketplace.celery import app as celery_app
from marketplace.logcontext import log_context
from orders.models import CodeReveal, Order, OrderStatusChange

from ..models import Payment


@contextlib.contextmanager
def tasks_inline():
    """Run the tasks the demo's sales queue (delivery, emails, refunds) in place, as the tests do.

    Otherwise each demo order leaves a delivery task in the broker that the demo itself already
    did, and the first run of the worker is spent discarding them.
    """
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, True
    try:
        yield
    finally:
        conf.task_always_eager, conf.task_eager_propagates = saved


@contextlib.contextmanager
def risk_relaxed():
    """Risk control's rules and caps (order bursts, unpaid orders held) off while the demo makes
    weeks of sales in a minute: otherwise the demo buyer's own history would raise alerts and
    refuse the demo's orders, and the first visitor's purchase with them."""
    big = 10**6
    rules = {name: {**rule, "limit": big} for name, rule in settings.RISK_RULES.items()}
    caps = dict.fromkeys(
        ("RISK_HOLD_PRODUCT_ORDERS", "RISK_HOLD_PRODUCT_CODES", "RISK_HOLD_ORDERS", "RISK_HOLD_CODES"), big
    )
    with override_settings(RISK_RULES=rules, **caps):
        yield


@contextlib.contextmanager
def numbered_as_of(when: datetime):
    """Orders placed inside get a number that starts with ``when``'s date and time, as the
    order placed then would have had (numbers begin with the minute they were made).

    The order number ``order_place`` puts on the log lines is the rest of a request's (or
    task's); a seeding command places many in one context, so it is taken back at the block's
    end: the next lines (another order's payment, a ticket, a rights review) must not carry it."""

    def localtime(value=None, *args):
        return timezone.localtime(when if value is None else value, *args)

    with (
        log_context(),
        mock.patch("orders.models.timezone", SimpleNamespace(localtime=localtime, now=timezone.now)),
    ):
        yield


def sale_backdate(*, order_id: int, when: datetime) -> None:
    """Move a delivered demo order, its payment, history, reveals and commissions to ``when``."""
    order = Order.objects.get(pk=order_id)
    delta = order.created_at - when
    moved = {
        f: F(f) - delta
        for f in ("created_at", "expires_at", "paid_at", "delivered_at", "delivery_due_at", "buyer_notified_at")
    }
    Order.objects.filter(pk=order_id).update(**moved)
    OrderStatusChange.objects.filter(order_id=order_id).update(at=F("at") - delta)
    CodeReveal.objects.filter(order_code__order_id=order_id).update(at=F("at") - delta)
    Payment.objects.filter(order_id=order_id).update(created_at=F("created_at") - delta, paid_at=F("paid_at") - delta)
    Commission.objects.filter(order_id=order_id).update(
        created_at=F("created_at") - delta, available_at=F("available_at") - delta
    )
