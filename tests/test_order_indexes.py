"""orders_order's indexes (orders migration 0016, h-place4): each lookup column still leads an
index after the redundant ones (buyer_id's, agent_id's, source's) went, the foreign keys and
unique rules are all still there, and the buyer's and the agent's lookups are planned on the
indexes that now serve them."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from agents.services.agents import agent_create
from orders.models import Order
from tests.factories import AgentLevelFactory, ProductFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _indexes() -> dict[str, str]:
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orders_order'")
        return dict(cur.fetchall())


def _leading(definition: str) -> str:
    """The first column of an index definition: ``... USING btree (buyer_id, ...)`` -> buyer_id."""
    return definition.split(" USING btree (", 1)[1].split(")")[0].split(",")[0].split()[0].strip('"')


def _order(product, key: str, **fields) -> Order:
    one = Decimal("1.00")
    return Order(
        product=product,
        product_name="p",
        quantity=1,
        unit_price=one,
        subtotal=one,
        total=one,
        idempotency_key=key,
        expires_at=timezone.now() + timedelta(minutes=15),
        **fields,
    )


def test_every_lookup_column_leads_an_index():
    full = {
        _leading(d): name for name, d in _indexes().items() if " WHERE " not in d
    }  # partial indexes serve only their own predicate
    for column in ("id", "number", "buyer_id", "agent_id", "product_id", "status", "guest_email"):
        assert column in full, (column, sorted(full))
    # buyer_id and agent_id are served by the composite indexes that lead with them.
    assert full["buyer_id"] == "order_idempotent_per_buyer"
    assert full["agent_id"] == "order_agent_time_idx"


def test_the_redundant_indexes_are_gone_and_the_rules_stay():
    indexes = _indexes()
    single = {
        _leading(d) for d in indexes.values() if " WHERE " not in d and "," not in d.split(" USING btree (", 1)[1]
    }
    assert not {"buyer_id", "agent_id", "source"} & single, sorted(single)
    # source is not indexed at all (nothing filters on it), its LIKE twin included.
    assert not [d for d in indexes.values() if _leading(d) == "source"]
    for rule in (
        "orders_order_number_key",
        "order_idempotent_per_buyer",
        "order_idempotent_per_guest",
        "order_once_per_agent_order_no",
    ):
        assert "UNIQUE" in indexes[rule], rule
    with connection.cursor() as cur:
        cur.execute(
            "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid"
            " AND a.attnum = c.conkey[1] WHERE c.conrelid = 'orders_order'::regclass AND c.contype = 'f'"
        )
        foreign = {row[0] for row in cur.fetchall()}
    assert {"buyer_id", "agent_id", "product_id", "realname_verification_id", "discount_funder_id"} <= foreign


def test_buyer_and_agent_lookups_use_an_index():
    product = ProductFactory()
    buyers = [UserFactory() for _ in range(3)]
    agent = agent_create(user=UserFactory(), level=AgentLevelFactory())
    Order.objects.bulk_create(
        _order(
            product,
            f"k{i}",
            buyer=buyers[i % 3] if i % 50 else None,
            guest_email="" if i % 50 else f"g{i}@example.test",
            status=Order.Status.DELIVERED,
            agent=agent if i % 100 == 0 else None,
        )
        for i in range(1, 4001)
    )
    # One buyer with a handful of orders among thousands: the plan must not read them all.
    lone = UserFactory()
    Order.objects.bulk_create(_order(product, f"lone{i}", buyer=lone) for i in range(3))
    with connection.cursor() as cur:
        cur.execute("ANALYZE orders_order")
    buyer_plan = Order.objects.filter(buyer=lone).order_by("-id")[:20].explain()
    assert "order_idempotent_per_buyer" in buyer_plan, buyer_plan
    assert list(Order.objects.filter(buyer=lone).values_list("idempotency_key", flat=True)) == [
        "lone2",
        "lone1",
        "lone0",
    ]
    agent_plan = Order.objects.filter(agent=agent, created_at__gte=timezone.now() - timedelta(days=1)).explain()
    assert "order_agent_time_idx" in agent_plan, agent_plan
    assert Order.objects.filter(agent=agent).count() == 40
