"""Sales reports with coupons: gross, discount and net (also after a partial refund), in the
pages and the CSV; the promotion report (推广效果) names the coupon that brought a sale."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.services import agents as agent_services
from marketing.models import Coupon
from marketing.services import coupons
from orders.selectors import reports
from orders.services import orders as order_services
from payments.services import refunds
from tests.builders import pay_and_deliver
from tests.factories import ProductFactory, UserFactory, add_stock, storefront_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english")]
D = Decimal


@pytest.fixture
def sale(level, buyer, staff):
    product = ProductFactory(price=D("30.00"), max_per_order=10, name="Card 30")
    add_stock(product, 6)
    agent = agent_services.agent_create(user=UserFactory(), level=level)
    agent_services.level_price_set(level=level, product=product, kind="fixed", value="20.00")
    shop = storefront_create(agent=agent, slug="mine", name="Mine", default_markup_value=D(50))  # retail 30.00
    coupons.coupon_create(
        name="Spring",
        kind=Coupon.Kind.FIXED,
        amount=D("10.00"),
        ends_at=timezone.now() + timedelta(days=1),
        agent=agent,
        public_code="SPRING10",
    )
    order = order_services.order_place(
        buyer=buyer, product=product, quantity=3, idempotency_key="k", storefront=shop, coupon_code="spring10"
    )
    pay_and_deliver(order)
    plain = order_services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="p", storefront=shop)
    pay_and_deliver(plain)
    return agent, order, plain, staff


def test_gross_discount_and_net_in_the_report_and_after_a_partial_refund(sale, client):
    agent, order, plain, staff = sale
    assert (order.subtotal, order.discount, order.total) == (D("90.00"), D("10.00"), D("80.00"))
    totals = reports.sales_report(agent=agent, period=reports.period_last(7)).totals
    assert (totals.gross, totals.discount, totals.revenue) == (D("120.00"), D("10.00"), D("110.00"))
    # The agent's own coupon comes out of its earnings: 4 codes × 10.00 margin, less 10.00.
    assert totals.earnings == D("30.00")
    # One code refunded: it paid 30.00 − 3.33; the two kept codes carry 6.67 of the discount.
    paid_back = refunds.order_refund(order=order, quantity=1, reason="one", requested_by=staff).amount
    assert paid_back == D("26.67")
    totals = reports.sales_report(agent=agent, period=reports.period_last(7)).totals
    assert (totals.gross, totals.discount, totals.revenue) == (D("90.00"), D("6.67"), D("83.33"))
    assert totals.revenue == order.total + plain.total - paid_back
    assert totals.earnings == D("23.33")  # 3 codes kept × 10.00, less their 6.67 of the coupon
    client.force_login(agent.user)
    page = client.get(reverse("agents:reports") + "?days=7").content.decode()
    assert "Gross ¥90.00 − coupons ¥6.67" in page and 'data-testid="total-revenue">¥83.33<' in page
    rows = list(
        csv.reader(
            io.StringIO(client.get(reverse("agents:reports_csv") + "?kind=daily&days=7").content.decode("utf-8-sig"))
        )
    )
    assert rows[0][3:6] == ["Gross (CNY)", "Coupon discount (CNY)", "Revenue (CNY)"]
    assert rows[-1][3:6] == ["90.00", "6.67", "83.33"]


def test_the_promotion_report_names_the_coupon_that_brought_the_sale(sale, client):
    agent, order, plain, _staff = sale
    assert order.source == "coupon:SPRING10" and plain.source == ""
    by = {r.source: r for r in reports.report_sources(agent=agent, period=reports.period_last(7))}
    row = by["coupon:SPRING10"]
    assert (row.kind, row.label, row.orders, row.gross, row.discount, row.revenue) == (
        "coupon",
        "Coupon SPRING10 · Spring",
        1,
        D("90.00"),
        D("10.00"),
        D("80.00"),
    )
    client.force_login(agent.user)
    page = client.get(reverse("agents:reports_sources") + "?days=7").content.decode()
    assert "Coupon SPRING10 · Spring" in page and 'data-testid="source-discount">−¥10.00<' in page
