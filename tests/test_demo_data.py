"""The demo data `dev.py up` loads: catalogue, agents with a storefront, backdated sales."""

import pytest
from django.core.management import call_command

from agents.models import Agent, Commission, Storefront
from orders.models import Order


def load():
    call_command("seed_demo", "--quiet")
    call_command("seed_demo_agents", "--quiet")
    call_command("seed_demo_sales")


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
    counts = (Agent.objects.count(), Order.objects.count(), Commission.objects.count())
    load()
    assert (Agent.objects.count(), Order.objects.count(), Commission.objects.count()) == counts
