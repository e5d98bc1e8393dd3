"""Coupons' staff admin (create through coupon_create, generate codes, CSV, figures, the
marketing permissions) and the agent centre's coupon pages (create for its own storefront,
refused over its cost, figures, codes, CSV; another agent's coupon is a 404)."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from agents.services import agents as agent_services
from marketing.models import Coupon, CouponCode
from marketing.selectors import coupon_figures
from marketing.services import coupons
from orders.services import orders as order_services
from payments.services import refunds
from tests.builders import pay_and_deliver
from tests.factories import ProductFactory, UserFactory, add_stock, storefront_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
D = Decimal


def _coupon(**fields) -> Coupon:
    defaults = dict(name="Promo", kind=Coupon.Kind.FIXED, amount=D("10.00"), ends_at=timezone.now() + timedelta(days=1))
    return coupons.coupon_create(**{**defaults, **fields})


@pytest.fixture
def product():
    p = ProductFactory(price=D("30.00"), max_per_order=10)
    add_stock(p, 8)
    return p


@pytest.mark.django_db(transaction=True)
def test_coupon_figures_count_uses_buyers_revenue_cost_and_returns(buyer, other_buyer, staff, product, client):
    coupon = _coupon(public_code="FIG10", per_user_limit=None)
    one = pay_and_deliver(
        order_services.order_place(buyer=buyer, product=product, quantity=2, idempotency_key="a", coupon_code="fig10")
    )
    pay_and_deliver(
        order_services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="b", coupon_code="fig10")
    )
    lapsed = order_services.order_place(
        buyer=other_buyer, product=product, quantity=1, idempotency_key="c", coupon_code="fig10"
    )
    order_services.order_cancel(order_id=lapsed.pk, buyer=other_buyer)
    refunded = pay_and_deliver(
        order_services.order_place(
            buyer=other_buyer, product=product, quantity=1, idempotency_key="d", coupon_code="fig10"
        )
    )
    refunds.order_refund(order=refunded, quantity=1, reason="all", requested_by=staff)
    client.force_login(staff)
    page = client.get("/admin/marketing/coupon/").content.decode()
    row = coupon_figures().get(pk=coupon.pk)
    # Live uses: a, b (the cancelled one and the full refund while valid came back).
    assert (row.uses_live, row.uses_released, row.members + row.guests) == (2, 2, 1)
    assert (row.sales, row.revenue, row.cost) == (2, one.total + D("20.00"), D("20.00"))
    assert f"¥{row.revenue}" in page and f"¥{row.cost}" in page


def _marketing_staff(*codenames):
    user = UserFactory(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="marketing", codename__in=codenames))
    return user


def test_staff_create_a_coupon_through_the_admin_with_codes(client, product):
    client.force_login(_marketing_staff("add_coupon", "view_coupon", "change_coupon"))
    ends = (timezone.localtime() + timedelta(days=7)).strftime("%Y-%m-%d")
    response = client.post(
        "/admin/marketing/coupon/add/",
        {
            "name": "Launch",
            "kind": "percent",
            "amount": "0",
            "percent": "15",
            "cap": "20",
            "min_spend": "50",
            "scope": "all",
            "starts_at_0": timezone.localtime().strftime("%Y-%m-%d"),
            "starts_at_1": "00:00:00",
            "ends_at_0": ends,
            "ends_at_1": "23:59:00",
            "per_user_limit": "1",
            "public_code": "launch15",
            "generate": "25",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    coupon = Coupon.objects.get()
    assert (coupon.kind, coupon.percent, coupon.cap, coupon.min_spend) == ("percent", D("15"), D("20.00"), D("50.00"))
    assert coupon.codes.filter(code="LAUNCH15", max_uses=None).exists()
    assert coupon.codes.filter(max_uses=1).count() == 25
    # A refusal of coupon_create is the form's error; nothing is kept.
    response = client.post(
        "/admin/marketing/coupon/add/",
        {
            "name": "Bad",
            "kind": "percent",
            "percent": "150",
            "amount": "0",
            "min_spend": "0",
            "scope": "all",
            "starts_at_0": timezone.localtime().strftime("%Y-%m-%d"),
            "starts_at_1": "00:00:00",
            "ends_at_0": ends,
            "ends_at_1": "23:59:00",
            "public_code": "BADONE",
        },
    )
    assert response.status_code == 200 and Coupon.objects.count() == 1


def test_staff_generate_and_export_codes_with_the_marketing_permissions(client):
    coupon = _coupon(public_code="PUB1")
    viewer = _marketing_staff("view_coupon")
    client.force_login(viewer)
    assert client.get("/admin/marketing/coupon/").status_code == 200
    action = {"action": "generate_codes", "_selected_action": [coupon.pk], "count": "5"}
    client.post("/admin/marketing/coupon/", action)
    assert coupon.codes.count() == 1  # view only: no generating
    exported = client.post("/admin/marketing/coupon/", {"action": "export_codes", "_selected_action": [coupon.pk]})
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert rows[0] == ["coupon_id", "coupon", "code", "max_uses", "used"] and rows[1][2] == "PUB1"
    client.force_login(_marketing_staff("view_coupon", "add_coupon"))
    client.post("/admin/marketing/coupon/", action)
    assert coupon.codes.filter(max_uses=1).count() == 5
    assert len({c.code for c in CouponCode.objects.all()}) == 6
    client.force_login(UserFactory(is_staff=True))  # staff without the marketing permissions
    assert client.get("/admin/marketing/coupon/").status_code == 403


@pytest.fixture
def agent_shop(level, product):
    user = UserFactory()
    agent = agent_services.agent_create(user=user, level=level)
    agent_services.level_price_set(level=level, product=product, kind="fixed", value="20.00")
    shop = storefront_create(agent=agent, slug="mine", name="Mine", default_markup_value=D(50))  # retail 30.00
    return agent, shop


def _form(**fields):
    ends = (timezone.localdate() + timedelta(days=10)).isoformat()
    return {"name": "Spring", "kind": "fixed", "amount": "5", "ends_on": ends, "per_user_limit": "1", **fields}


def test_agent_creates_lists_generates_and_exports_its_coupons(client, agent_shop, level):
    agent, _shop = agent_shop
    client.force_login(agent.user)
    page = client.get("/agent/storefront/coupons/")
    assert page.status_code == 200 and 'data-testid="coupon-form"' in page.content.decode()
    response = client.post("/agent/storefront/coupons/", _form(public_code="spring5", generate="3"))
    coupon = Coupon.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/agent/storefront/coupons/{coupon.pk}/"
    assert coupon.agent == agent and coupon.amount == D("5.00") and coupon.codes.count() == 4
    detail = client.get(response["Location"]).content.decode()
    assert "SPRING5" in detail and 'data-testid="coupon-figures"' in detail
    client.post(f"/agent/storefront/coupons/{coupon.pk}/generate/", {"count": "7"})
    assert coupon.codes.filter(max_uses=1).count() == 10
    exported = client.get(f"/agent/storefront/coupons/{coupon.pk}/codes.csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert exported["Content-Type"].startswith("text/csv") and len(rows) == 12  # header, the public code, 10 single-use
    # Over the cost: retail 30.00, cost 20.00: 15 off is refused with the reason, nothing made.
    refused = client.post("/agent/storefront/coupons/", _form(name="Too much", amount="15", public_code="TOOMUCH"))
    assert refused.status_code == 400
    assert "below your cost" in refused.content.decode() and Coupon.objects.count() == 1
    client.post(f"/agent/storefront/coupons/{coupon.pk}/active/", {"active": "0"})
    coupon.refresh_from_db()
    assert not coupon.is_active
    # Another agent sees none of it.
    other = agent_services.agent_create(user=UserFactory(), level=level)
    client.force_login(other.user)
    assert client.get(f"/agent/storefront/coupons/{coupon.pk}/").status_code == 404
    assert client.get(f"/agent/storefront/coupons/{coupon.pk}/codes.csv").status_code == 404
    assert client.post(f"/agent/storefront/coupons/{coupon.pk}/generate/", {"count": "1"}).status_code == 404
    assert "Spring" not in client.get("/agent/storefront/coupons/").content.decode()
