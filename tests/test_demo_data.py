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


@pytest.mark.django_db
def test_demo_data_loads_agents_and_sales_and_runs_again_without_change(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    load()
    chain = Agent.objects.order_by("depth")
    assert [a.depth for a in chain] == [1, 2, 3]
    assert Storefront.objects.get(slug="jinpai").agent == chain[0]
    delivered = Order.objects.filter(status=Order.Status.DELIVERED)
    assert delivered.filter(channel=Order.Channel.STOREFRONT).count() >= 10
    assert Commission.objects.filter(status=Commission.Status.AVAILABLE).exists()
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
