"""Sales reports: numbers against hand-computed orders, never outside the subtree, CSV, queries."""

import csv
import io
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentLevel, Commission, PriceKind
from agents.services import agents as services
from orders.models import Order
from orders.selectors import reports
from orders.services.orders import order_place
from payments.services import refunds
from payments.services.payments import sandbox_pay
from tests.factories import CategoryFactory, ProductFactory, UserFactory, add_stock, storefront_create

D = Decimal
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english")]


def at(day, hour=12):
    return datetime.combine(day, time(hour), tzinfo=timezone.get_current_timezone())


def deliver(*, buyer, product, quantity, day, storefront=None, key=None):
    """Place, pay (sandbox) and deliver an order, then date its delivery on ``day``."""
    order = order_place(
        buyer=buyer,
        product_id=product.pk,
        quantity=quantity,
        idempotency_key=key or f"{buyer.pk}-{product.pk}-{day}-{quantity}",
        storefront=storefront,
    )
    sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    Order.objects.filter(pk=order.pk).update(delivered_at=at(day))
    return order


@pytest.fixture
def world():
    """A (金牌, top) > B (银牌) > C (普通), and X, a top agent of another tree.

    P: 120.00, 金牌 pays 100.00; A adds 10% for everyone, B adds 2.00. So A 100, B 110, C 112.
    P2 (中文名): 100.00, no level price; A's storefront sells it at +10% = 110.00.
    """
    levels = {
        name: AgentLevel.objects.create(name=name, rank=rank, sort=rank)
        for rank, name in enumerate(["普通", "银牌", "金牌"], start=1)
    }
    cat = CategoryFactory()
    p = ProductFactory(category=cat, price=D("120.00"), name="Steam 120")
    p2 = ProductFactory(category=cat, price=D("100.00"), name="王者荣耀 点券 100")
    add_stock(p, 10)
    add_stock(p2, 5)
    services.level_price_set(level=levels["金牌"], kind=PriceKind.FIXED, value="100.00", product=p)
    a = services.agent_create(user=UserFactory(), level=levels["金牌"])
    b = services.agent_create(user=UserFactory(), level=levels["银牌"], upline=a)
    c = services.agent_create(user=UserFactory(), level=levels["普通"], upline=b)
    x = services.agent_create(user=UserFactory(), level=levels["普通"])
    services.markup_set(agent=a, kind=PriceKind.PERCENT, value="10")
    services.markup_set(agent=b, kind=PriceKind.FIXED, value="2.00")
    shop = storefront_create(
        agent=a, slug="a-shop", name="A shop", default_markup_kind=PriceKind.PERCENT, default_markup_value=D("10")
    )
    today = timezone.localdate()
    orders = {
        "c_buys": deliver(buyer=c.user, product=p, quantity=2, day=today - timedelta(days=1)),  # 224, A+20 B+4
        "b_buys": deliver(buyer=b.user, product=p, quantity=1, day=today - timedelta(days=3)),  # 110, A+10
        "shop": deliver(buyer=UserFactory(), product=p2, quantity=1, day=today, storefront=shop),  # 110, A+10
        "outside": deliver(buyer=x.user, product=p, quantity=1, day=today),  # 120, not A's
        "old": deliver(buyer=c.user, product=p, quantity=1, day=today - timedelta(days=40)),  # 112, A+10 B+2
    }
    # Placed but never paid: not a sale.
    order_place(buyer=c.user, product_id=p.pk, quantity=1, idempotency_key="unpaid")
    return {"a": a, "b": b, "c": c, "x": x, "p": p, "p2": p2, "orders": orders, "today": today}


def test_report_numbers_match_hand_computed_orders(world):
    a, b, c, p, p2, today = (world[k] for k in ("a", "b", "c", "p", "p2", "today"))
    assert world["orders"]["c_buys"].total == D("224.00")  # the chain priced as documented

    report = reports.sales_report(agent=a, period=reports.period_last(30))
    t = report.totals
    assert (t.orders, t.codes, t.revenue, t.earnings) == (3, 4, D("444.00"), D("40.00"))
    assert t.margin == D("9.0")
    daily = {r.day: r for r in report.daily}
    assert len(report.daily) == 30 and report.daily[-1].day == today
    assert (daily[today].orders, daily[today].revenue, daily[today].earnings) == (1, D("110.00"), D("10.00"))
    yesterday = daily[today - timedelta(days=1)]
    assert (yesterday.orders, yesterday.codes, yesterday.revenue, yesterday.earnings) == (1, 2, D("224.00"), D("20.00"))
    assert daily[today - timedelta(days=3)].revenue == D("110.00")
    assert daily[today - timedelta(days=2)].orders == 0

    products = {r.product_id: r for r in report.products}
    assert (products[p.pk].orders, products[p.pk].codes, products[p.pk].revenue, products[p.pk].earnings) == (
        2,
        3,
        D("334.00"),
        D("30.00"),
    )
    assert (products[p2.pk].revenue, products[p2.pk].earnings) == (D("110.00"), D("10.00"))
    assert [r.product_id for r in report.top_products] == [p.pk, p2.pk]

    own, *downline = report.downline
    assert own.agent is None and (own.orders, own.revenue, own.earnings) == (1, D("110.00"), D("10.00"))
    assert [r.agent.pk for r in downline] == [b.pk]  # C is rolled up into B
    assert (downline[0].orders, downline[0].revenue, downline[0].earnings, downline[0].team_size) == (
        2,
        D("334.00"),
        D("30.00"),
        1,
    )
    assert [r.agent.pk for r in report.most_active] == [b.pk]

    # B sees its own subtree and its own earnings only.
    rb = reports.sales_report(agent=b, period=reports.period_last(30))
    assert (rb.totals.orders, rb.totals.revenue, rb.totals.earnings) == (2, D("334.00"), D("4.00"))
    assert [(r.agent.pk if r.agent else None, r.revenue, r.earnings) for r in rb.downline] == [
        (None, D("110.00"), D("0.00")),
        (c.pk, D("224.00"), D("4.00")),
    ]

    # A custom period reaching back 40 days takes in the old order too.
    period, error = reports.period_parse(
        {"start": (today - timedelta(days=45)).isoformat(), "end": today.isoformat()}, today=today
    )
    assert error == "" and period.preset == ""
    r45 = reports.sales_report(agent=a, period=period)
    assert (r45.totals.orders, r45.totals.revenue, r45.totals.earnings) == (4, D("556.00"), D("50.00"))


def test_earnings_are_net_of_refunds(world):
    a, b = world["a"], world["b"]
    staff = UserFactory(is_staff=True, is_superuser=True)
    refunds.order_refund(order=world["orders"]["c_buys"], quantity=1, reason="one code bad", requested_by=staff)
    assert Commission.objects.get(order=world["orders"]["c_buys"], agent=a).reversed_quantity == 1
    report = reports.sales_report(agent=a, period=reports.period_last(30))
    assert report.totals.earnings == D("30.00")  # 40 less A's 10 on the refunded code
    kept = world["orders"]["c_buys"]
    assert report.totals.codes == 3  # 4 less the refunded one
    assert report.totals.revenue == D("444.00") - kept.unit_price  # what the buyers kept paying for
    assert reports.sales_report(agent=b, period=reports.period_last(30)).totals.earnings == D("2.00")
    # Fully refunded: no longer a sale at all.
    refunds.order_refund(order=world["orders"]["b_buys"], quantity=None, reason="all", requested_by=staff)
    report = reports.sales_report(agent=a, period=reports.period_last(30))
    assert (report.totals.orders, report.totals.earnings) == (2, D("20.00"))


def test_reports_never_include_sales_outside_the_subtree(world, client):
    b, c, x = world["b"], world["c"], world["x"]
    outside = world["orders"]["outside"]
    rx = reports.sales_report(agent=x, period=reports.period_last(30))
    assert (rx.totals.orders, rx.totals.revenue) == (1, outside.total)
    rc = reports.sales_report(agent=c, period=reports.period_last(30))
    assert (rc.totals.orders, rc.totals.revenue, rc.totals.earnings) == (1, D("224.00"), D("0.00"))
    # B (middle of the tree) does not see its upline A's storefront sale.
    rb = reports.sales_report(agent=b, period=reports.period_last(30))
    assert world["p2"].pk not in {r.product_id for r in rb.products}
    client.force_login(b.user)
    html = client.get(reverse("agents:reports")).content.decode()
    assert "王者荣耀" not in html and world["a"].user.email not in html and "¥334.00" in html


def test_reports_page_and_periods(world, client):
    a = world["a"]
    client.force_login(a.user)
    r = client.get(reverse("agents:reports"))
    assert r.status_code == 200 and r.context["period"].preset == "30"
    html = r.content.decode()
    for text in ("¥444.00", "¥40.00", "9.0%", "Steam 120", "王者荣耀 点券 100", world["b"].user.email):
        assert text in html, text
    assert "vendor/chartjs/chart.umd.min.js" in html and 'id="chart-days"' in html
    assert client.get(reverse("agents:reports"), {"days": "7"}).context["report"].totals.orders == 3
    r = client.get(reverse("agents:reports"), {"days": "5"})
    assert r.context["period"].preset == "30" and "Choose one of the periods offered" in r.content.decode()
    r = client.get(reverse("agents:reports"), {"start": "2026-13-01"})
    assert "YYYY-MM-DD" in r.content.decode()
    today = world["today"]
    r = client.get(reverse("agents:reports"), {"start": today.isoformat(), "end": (today - timedelta(1)).isoformat()})
    assert "on or before the last day" in r.content.decode()
    r = client.get(reverse("agents:reports"), {"start": today.isoformat(), "end": today.isoformat()})
    assert r.context["report"].totals.revenue == D("110.00")


def test_csv_exports(world, client):
    client.force_login(world["a"].user)
    url = reverse("agents:reports_csv")

    def rows(kind, **params):
        response = client.get(url, {"kind": kind, **params})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert response.content.startswith("\ufeff".encode())
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
        return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))

    products = rows("products")
    assert products[0] == [
        "Product",
        "Orders",
        "Codes",
        "Gross (CNY)",
        "Coupon discount (CNY)",
        "Revenue (CNY)",
        "My earnings (CNY)",
        "Margin (%)",
    ]
    assert products[1:] == [
        ["Steam 120", "2", "3", "334.00", "0.00", "334.00", "30.00", "9.0"],
        ["王者荣耀 点券 100", "1", "1", "110.00", "0.00", "110.00", "10.00", "9.1"],
    ]
    daily = rows("daily", days="7")
    assert len(daily) == 1 + 7 and daily[-1][0] == world["today"].isoformat()
    assert daily[-1][1:7] == ["1", "1", "110.00", "0.00", "110.00", "10.00"]
    downline = rows("downline")
    assert downline[1][0] == "My own sales" and downline[1][3:9] == ["1", "1", "110.00", "0.00", "110.00", "10.00"]
    assert downline[2][:3] == [world["b"].user.email, "银牌", "1"]
    assert downline[2][3:9] == ["2", "3", "334.00", "0.00", "334.00", "30.00"]
    assert client.get(url, {"kind": "secrets"}).status_code == 400


def test_reports_use_a_constant_number_of_queries(world, client):
    a, b, p = world["a"], world["b"], world["p"]
    client.force_login(a.user)

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("agents:reports"), {"days": "90"}).status_code == 200
        return len(ctx.captured_queries)

    count()  # warm: what every page caches (the footer's promises) is read once
    before = count()
    # More days with sales, more products, more downline agents (and deeper ones).
    extra = ProductFactory(price=D("50.00"))
    add_stock(extra, 6)
    add_stock(p, 4)
    level = b.level
    for i in range(4):
        d = services.agent_create(user=UserFactory(), level=level, upline=a if i % 2 else b)
        deliver(buyer=d.user, product=extra if i % 2 else p, quantity=1, day=world["today"] - timedelta(days=i + 5))
    after = count()
    assert after == before
    assert after <= 12, f"{after} queries for the reports page"
