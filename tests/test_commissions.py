"""agents.services.commissions: every level of the chain earns its margin, to the fen; pending until the
refund window closes; a refund reverses exactly the refunded codes' share."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from agents.models import Commission, PriceKind
from agents.services import agents as services
from agents.services import commissions
from ledger import services as ledger
from ledger.models import Entry
from marketplace.money import quantize
from orders.models import Order, OrderShare
from orders.services.orders import order_place
from payments.services import refunds
from tests.builders import balance_of, chain_of, pay_and_deliver, storefront_order
from tests.factories import ProductFactory, add_stock, storefront_create

D = Decimal
FIXED, PERCENT = PriceKind.FIXED, PriceKind.PERCENT
STOCK_COST = D("90.00")  # what tests.factories.add_stock pays per code


def hand_costs(top_price, markups):
    """What each agent of the chain pays, computed here step by step."""
    costs = [top_price]
    for kind, value in markups:
        base = costs[-1]
        step = value if kind == FIXED else quantize(base * value / 100)
        costs.append(quantize(base + step))
    return costs


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", [FIXED, PERCENT])
@pytest.mark.django_db(transaction=True)
def test_storefront_sale_pays_each_level_its_margin_and_the_sum_is_exact(depth, kind, level, buyer):
    product = ProductFactory(price=D("97.00"))
    add_stock(product, 3)
    services.level_price_set(level=level, product=product, kind=PERCENT, value="95.17")  # 92.31 (rounded)
    chain = chain_of(depth, level)
    value = D("1.07") if kind == FIXED else D("3.333")
    for upline in chain[:-1]:
        services.markup_set(agent=upline, kind=kind, value=value)
    shop = storefront_create(
        agent=chain[-1],
        slug=f"shop-{depth}-{kind}",
        name="Shop",
        default_markup_kind=PERCENT,
        default_markup_value=D("12.5"),
    )

    order = order_place(buyer=buyer, product=product, quantity=3, idempotency_key="k", storefront=shop)
    costs = hand_costs(D("92.31"), [(kind, value)] * (depth - 1))
    retail = quantize(costs[-1] * D("1.125"))
    assert (order.channel, order.agent_id, order.unit_price, order.total) == (
        Order.Channel.STOREFRONT,
        chain[-1].pk,
        retail,
        retail * 3,
    )
    pay_and_deliver(order)

    earned = {c.agent_id: c.amount for c in Commission.objects.filter(order=order)}
    expected = {a.pk: (costs[i + 1] - costs[i]) * 3 for i, a in enumerate(chain[:-1])}
    expected[chain[-1].pk] = (retail - costs[-1]) * 3
    assert earned == {pk: amount for pk, amount in expected.items() if amount}
    platform = (costs[0] - STOCK_COST) * 3
    assert sum(earned.values()) + platform == order.total - STOCK_COST * 3  # to the fen
    # Booked: the platform's commission expense, each agent's pending account.
    assert balance_of(ledger.COMMISSIONS) == sum(earned.values())
    for agent in chain:
        assert balance_of(ledger.commission_pending(agent.user)) == earned.get(agent.pk, 0)
        assert balance_of(ledger.commission_available(agent.user)) == 0
    assert balance_of(ledger.SALES) - balance_of(ledger.COMMISSIONS) - balance_of(ledger.COST_OF_SALES) == platform


@pytest.mark.django_db(transaction=True)
def test_an_agent_buying_for_itself_pays_its_cost_and_only_its_uplines_earn(level):
    product = ProductFactory(price=D("50.00"))
    add_stock(product, 2)
    a, b, c = chain_of(3, level)
    services.markup_set(agent=a, kind=FIXED, value="2.00")
    services.markup_set(agent=b, kind=PERCENT, value="10")
    order = order_place(buyer=c.user, product=product, quantity=2, idempotency_key="self")
    assert order.agent_id == c.pk and order.unit_price == D("57.20")  # (50 + 2) × 1.1
    shares = {s.agent_id: s.unit_earning for s in OrderShare.objects.filter(order=order)}
    assert shares == {a.pk: D("2.00"), b.pk: D("5.20"), c.pk: D("0.00")}
    pay_and_deliver(order)
    assert {x.agent_id: x.amount for x in Commission.objects.filter(order=order)} == {a.pk: D("4.00"), b.pk: D("10.40")}


@pytest.mark.django_db(transaction=True)
def test_a_plain_buyer_on_the_site_earns_nobody_anything(buyer):
    product = ProductFactory(price=D("20.00"))
    add_stock(product, 1)
    order = pay_and_deliver(order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k"))
    assert order.agent_id is None and not order.shares.exists() and not Commission.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_markup_changed_after_the_order_was_placed_changes_nothing_for_it(level):
    product = ProductFactory(price=D("50.00"))
    add_stock(product, 1)
    a, b = chain_of(2, level)
    services.markup_set(agent=a, kind=FIXED, value="3.00")
    order = order_place(buyer=b.user, product=product, quantity=1, idempotency_key="k")
    services.markup_set(agent=a, kind=FIXED, value="9.00")
    pay_and_deliver(order)
    order.refresh_from_db()
    assert order.total == D("53.00")
    assert Commission.objects.get(order=order, agent=a).amount == D("3.00")


@pytest.mark.django_db(transaction=True)
def test_a_full_refund_inside_the_window_reverses_every_commission_exactly(level, buyer, staff):
    chain, order = storefront_order(level, buyer)
    assert balance_of(ledger.COMMISSIONS) > 0
    refunds.order_refund(order=order, quantity=None, reason="not wanted", requested_by=staff)
    assert set(Commission.objects.values_list("status", flat=True)) == {Commission.Status.REVERSED}
    assert balance_of(ledger.COMMISSIONS) == 0
    for agent in chain:
        assert balance_of(ledger.commission_pending(agent.user)) == 0
    booked = Entry.objects.get(reference=order.number, kind="commission")
    assert booked.reversed_by.kind == "reversal:commission"  # its mirror image, no edits


@pytest.mark.django_db(transaction=True)
def test_a_partial_refund_reverses_the_refunded_codes_share_and_nothing_more(level, buyer, staff):
    _chain, order = storefront_order(level, buyer)
    before = {c.agent_id: c.amount for c in Commission.objects.filter(order=order)}
    refunds.order_refund(order=order, quantity=1, reason="one code failed", requested_by=staff)
    refunds.order_refund(order=order, quantity=1, reason="one code failed", requested_by=staff, key="same-click")
    refunds.order_refund(order=order, quantity=1, reason="one code failed", requested_by=staff, key="same-click")
    for c in Commission.objects.filter(order=order):
        assert c.reversed_quantity == 2 and c.status == Commission.Status.PENDING
        assert c.net_amount == before[c.agent_id] / 3
        assert balance_of(ledger.commission_pending(c.agent.user)) == c.net_amount
    assert balance_of(ledger.COMMISSIONS) == sum(before.values()) / 3


@pytest.mark.django_db(transaction=True)
def test_commissions_become_available_when_the_window_closes(level, buyer):
    _chain, order = storefront_order(level, buyer)
    assert commissions.commissions_settle_due() == 0  # the window is still open
    rows = list(Commission.objects.filter(order=order))
    assert all(r.available_at >= order.delivered_at + timedelta(days=7) - timedelta(seconds=1) for r in rows)
    Commission.objects.update(available_at=timezone.now() - timedelta(seconds=1))
    assert commissions.commissions_settle_due() == len(rows)
    assert commissions.commissions_settle_due() == 0  # a second run changes nothing
    for r in rows:
        assert balance_of(ledger.commission_pending(r.agent.user)) == 0
        assert balance_of(ledger.commission_available(r.agent.user)) == r.amount


@pytest.mark.django_db(transaction=True)
def test_a_refund_after_the_window_takes_it_back_and_books_what_was_withdrawn_as_owed(level, buyer, staff):
    chain, order = storefront_order(level, buyer, depth=2, quantity=2)
    Commission.objects.update(available_at=timezone.now())
    commissions.commissions_settle_due()
    seller = Commission.objects.get(order=order, agent=chain[-1])
    available = ledger.commission_available(seller.agent.user)
    with transaction.atomic():  # the seller withdraws all it has
        ledger.transfer(
            debit=available, credit=ledger.WITHDRAWALS_PAYABLE, amount=seller.amount, kind="test_withdrawal"
        )
    refunds.order_refund(order=order, quantity=None, reason="defective", requested_by=staff)
    assert balance_of(available) == 0
    assert balance_of(ledger.agent_receivable(seller.agent.user)) == seller.amount
    upline = Commission.objects.get(order=order, agent=chain[0])
    assert balance_of(ledger.commission_available(upline.agent.user)) == 0  # taken back from its balance
    assert balance_of(ledger.COMMISSIONS) == 0


@pytest.mark.django_db(transaction=True)
def test_staff_see_the_price_chain_and_each_commission_on_the_order(level, buyer, staff, client, settings):
    settings.LANGUAGE_CODE = "en"
    _chain, order = storefront_order(level, buyer)
    client.force_login(staff)
    page = client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert "price chain" in page.lower()
    for c in Commission.objects.filter(order=order):
        assert f"¥{c.amount}" in page
    assert client.get("/admin/orders/order/?channel=storefront").status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_chains_shares_ride_the_orders_statement_as_the_orm_writes_them(level):
    """On PostgreSQL the price chain's rows are written in the order's own statement; the rows
    equal what ``bulk_create`` writes when ``OrderShare`` is not plain (a receiver connected)."""
    from django.db import connection
    from django.db.models.signals import post_save
    from django.test.utils import CaptureQueriesContext

    product = ProductFactory(price=D("50.00"))
    add_stock(product, 2)
    a, b, c = chain_of(3, level)
    services.markup_set(agent=a, kind=FIXED, value="2.00")
    services.markup_set(agent=b, kind=PERCENT, value="10")

    def shares_of(order):
        rows = OrderShare.objects.filter(order=order).values_list("agent_id", "depth", "unit_cost", "unit_earning")
        return sorted(rows)

    def share_inserts(ctx):
        return [q["sql"] for q in ctx.captured_queries if '"orders_ordershare"' in q["sql"]]

    with CaptureQueriesContext(connection) as folded:
        fast = order_place(buyer=c.user, product=product, quantity=1, idempotency_key="folded")
    [statement] = share_inserts(folded)
    assert statement.startswith('WITH o AS (INSERT INTO "orders_order"')

    def receiver(**kwargs):
        pass

    post_save.connect(receiver, sender=OrderShare)
    try:
        with CaptureQueriesContext(connection) as own:
            orm = order_place(buyer=c.user, product=product, quantity=1, idempotency_key="orm")
    finally:
        post_save.disconnect(receiver, sender=OrderShare)
    [statement] = share_inserts(own)
    assert statement.startswith('INSERT INTO "orders_ordershare"')

    assert len(shares_of(fast)) == 3
    assert [row[1:] for row in shares_of(fast)] == [row[1:] for row in shares_of(orm)]
    assert [row[0] for row in shares_of(fast)] == [a.pk, b.pk, c.pk]
    assert shares_of(fast)[1][1:] == (2, D("52.00"), D("5.20"))
