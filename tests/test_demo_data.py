"""The demo data `dev.py up` loads: catalogue, agents with a storefront, backdated sales, a support queue."""

import pytest
from django.core.management import call_command
from django.utils import timezone

from aftersales.models import ArbitrationCase, RefundRequest, Ticket
from aftersales.services import sla
from agents.models import Agent, Commission, Storefront
from orders.models import Order


def load():
    call_command("seed_demo", "--quiet")
    call_command("seed_demo_agents", "--quiet")
    call_command("seed_demo_sales")
    call_command("seed_demo_aftersales")
    call_command("seed_demo_compliance", verbosity=0)
    call_command("seed_demo_rights", verbosity=0)
    call_command("seed_demo_legal", verbosity=0)


@pytest.mark.django_db
def test_demo_data_loads_agents_and_sales_and_runs_again_without_change(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    load()
    # Issue 14's parts: every demo product on sale has an approved authorisation, the four
    # agreements are in force (a new user agreement announced ahead), storefronts' operators
    # are verified.
    from catalog.models import Product
    from legal.models import AgreementVersion

    on_sale = Product.objects.filter(is_active=True)
    assert on_sale.exists() and not on_sale.filter(sale_authorised_until__isnull=True).exists()
    assert AgreementVersion.objects.filter(published_at__isnull=False).values("kind").distinct().count() == 4
    assert Storefront.objects.get(slug="jinpai").agent.operator_identity.status == "verified"
    # Direct top-ups (issue 16): topped up by staff by hand, on sale with their fields declared.
    topups = on_sale.filter(kind=Product.Kind.DIRECT_TOPUP, supply_mode=Product.SupplyMode.MANUAL)
    assert topups.count() == 2 and all(p.topup_fields and p.supply_cost for p in topups)
    chain = Agent.objects.order_by("depth")
    assert [a.depth for a in chain] == [1, 2, 3]
    assert Storefront.objects.get(slug="jinpai").agent == chain[0]
    delivered = Order.objects.filter(status=Order.Status.DELIVERED)
    assert delivered.filter(channel=Order.Channel.STOREFRONT).count() >= 10
    assert Commission.objects.filter(status=Commission.Status.AVAILABLE).exists()
    # A guest of the demo (no account): two orders, found at the lookup with the printed password.
    guest = Order.objects.filter(buyer__isnull=True, guest_email="guest@demo.local", status="delivered")
    assert guest.count() == 2 and guest.filter(channel=Order.Channel.STOREFRONT).count() == 1
    # The support queue: one ticket at risk, one overdue, a dispute under review, one in arbitration.
    assert Ticket.objects.count() == 5
    assert RefundRequest.objects.filter(status=RefundRequest.Status.REFUNDED).count() == 1
    assert RefundRequest.objects.filter(status=RefundRequest.Status.UNDER_REVIEW).count() == 1
    assert ArbitrationCase.objects.filter(status=ArbitrationCase.Status.SUBMITTED).count() == 1
    assert sla.sla_overdue_now() == 1
    assert list(sla.sla_warn_due(now=timezone.now())) and list(sla.sla_breach_due(now=timezone.now()))
    counts = (Agent.objects.count(), Order.objects.count(), Commission.objects.count(), Ticket.objects.count())
    load()
    assert (Agent.objects.count(), Order.objects.count(), Commission.objects.count(), Ticket.objects.count()) == counts


@pytest.mark.django_db
def test_demo_data_looks_like_a_shop_that_has_been_trading(settings, risk_limits):
    """Issue 12: no placeholder links or example names, dates that agree with each other, lists
    in date order, and nothing left in the broker for the worker's first run."""
    from unittest import mock

    from catalog.models import Product, Supplier
    from marketplace.celery import app as celery_app
    from orders.models import CodeReveal
    from payments.models import Payment

    settings.PAYMENTS_SANDBOX_ENABLED = True
    celery_app.conf.task_always_eager = False  # as under `dev.py up`: a publish would go to the broker
    try:
        with mock.patch.object(type(celery_app), "send_task") as sent:
            load()
    finally:
        celery_app.conf.task_always_eager = True
    assert sent.call_count == 0  # every delivery, email and refund ran while the demo was made
    assert celery_app.conf.task_always_eager is True

    assert not Supplier.objects.filter(authorisation_lookup_url__icontains="example.com").exists()
    assert not Product.objects.filter(name__contains="示例").exists()
    assert not Order.objects.exclude(status=Order.Status.DELIVERED).exists()
    # With risk control as configured: the demo's weeks of sales in a minute raise no alert.
    from risk.models import Alert, BlockEntry

    assert not Alert.objects.exists() and not BlockEntry.objects.exists()

    orders = list(Order.objects.order_by("-id"))
    dates = [o.created_at for o in orders]
    assert dates == sorted(dates, reverse=True)  # the lists (newest id first) are in date order
    for order in orders:
        assert order.number.startswith(timezone.localtime(order.created_at).strftime("%y%m%d%H%M"))
        assert order.created_at <= order.paid_at <= order.delivered_at <= timezone.now()
        for payment in Payment.objects.filter(order=order):
            assert payment.created_at >= order.created_at
    for ticket in Ticket.objects.select_related("order"):
        assert ticket.order.created_at < ticket.created_at, ticket.subject
    for reveal in CodeReveal.objects.select_related("order_code__order"):
        assert reveal.order_code.order.delivered_at <= reveal.at


@pytest.mark.django_db
def test_demo_log_lines_carry_no_order_they_are_not_about(settings):
    """``order_place`` puts its order's number on the rest of a request's log lines; the seeding
    commands place dozens in one context, and used to label every later line (a rights review,
    another order's refund) with the last order placed."""
    import logging

    from marketplace import logcontext

    settings.PAYMENTS_SANDBOX_ENABLED = True
    seen = []

    class Grab(logging.Handler):
        def emit(self, record):
            seen.append((record.getMessage(), logcontext.order_var.get()))

    grab = Grab(level=logging.INFO)
    loggers = [logging.getLogger(name) for name in ("marketplace.security", "aftersales", "orders", "payments")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(grab)
        lg.setLevel(logging.INFO)
    try:
        load()
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(grab)
            lg.setLevel(level)
    reviews = [order for message, order in seen if "rights.review" in message]
    assert reviews and reviews == [""] * len(reviews)
    placed = [(message, order) for message, order in seen if " placed: product " in message]
    assert placed and all(message.split()[1] == order for message, order in placed)
    assert logcontext.order_var.get() == ""
