"""Coupons through the agents' API: a platform coupon's discount comes off what the balance pays,
the order shows subtotal, discount and total, refusals are 422 with the coupon's code, storefront
coupons are refused, and the coupon is part of the idempotent request."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from marketing.models import Coupon, CouponUse
from marketing.services import coupons
from orders.models import Order
from tests.api_helpers import issue_key, level, make_agent, set_level_price, top_up
from tests.builders import wallet_balance
from tests.factories import ProductFactory, add_stock, storefront_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
D = Decimal


def _coupon(**fields) -> Coupon:
    defaults = dict(name="Promo", kind=Coupon.Kind.FIXED, amount=D("10.00"), ends_at=timezone.now() + timedelta(days=1))
    return coupons.coupon_create(**{**defaults, **fields})


@pytest.fixture
def world():
    gold = level("金牌", 4)
    product = ProductFactory(price=D("97.00"))
    add_stock(product, 6)
    agent = make_agent(level_obj=gold)
    set_level_price(gold, product, "92.00")
    top_up(agent.user, "500")
    return agent, product, issue_key(agent)


def _payload(product, no, **extra):
    return {"product_id": product.pk, "quantity": 2, "agent_order_no": no, **extra}


def test_a_platform_coupon_takes_its_discount_off_what_the_balance_pays(world):
    agent, product, api = world
    _coupon(public_code="APITEN", per_user_limit=None)
    response = api.post("/api/v1/orders/", _payload(product, "C-1", coupon_code="apiten"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["subtotal"], body["discount"], body["total"], body["coupon_code"]) == (
        "184.00",
        "10.00",
        "174.00",
        "APITEN",
    )
    assert wallet_balance(agent.user) == D("326.00")
    order = Order.objects.get()
    assert order.source == "coupon:APITEN" and CouponUse.objects.get().order == order
    # The same number again is the same order; with another coupon (or none) it is a conflict.
    again = api.post("/api/v1/orders/", _payload(product, "C-1", coupon_code="APITEN"))
    assert again.status_code == 200 and again.json()["order_number"] == body["order_number"]
    conflict = api.post("/api/v1/orders/", _payload(product, "C-1"))
    assert conflict.status_code == 409 and conflict.json()["code"] == "agent_order_no_conflict"
    assert wallet_balance(agent.user) == D("326.00") and Order.objects.count() == 1
    read = api.get("/api/v1/orders/C-1/").json()
    assert (read["discount"], read["total"], read["coupon_code"]) == ("10.00", "174.00", "APITEN")
    plain = api.post("/api/v1/orders/", _payload(product, "C-2")).json()
    assert (plain["discount"], plain["total"], plain["coupon_code"]) == ("0.00", "184.00", "")


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("unknown", "coupon_unknown"),
        ("expired", "coupon_expired"),
        ("used_up", "coupon_used_up"),
        ("min_spend", "coupon_min_spend"),
        ("other_product", "coupon_out_of_scope"),
        ("storefront", "coupon_out_of_scope"),
    ],
)
def test_refused_coupons_are_422_with_their_code_and_place_nothing(world, setup, code):
    agent, product, api = world
    typed = "BADONE"
    if setup == "expired":
        c = _coupon(public_code=typed)
        Coupon.objects.filter(pk=c.pk).update(
            starts_at=timezone.now() - timedelta(days=2), ends_at=timezone.now() - timedelta(days=1)
        )
    elif setup == "used_up":
        Coupon.objects.filter(pk=_coupon(public_code=typed, total_limit=1).pk).update(used=1)
    elif setup == "min_spend":
        _coupon(public_code=typed, min_spend=D("500"))
    elif setup == "other_product":
        _coupon(public_code=typed, scope=Coupon.Scope.PRODUCTS, products=[ProductFactory()])
    elif setup == "storefront":  # another agent's shop coupon
        other = make_agent(level_obj=level("普通", 1))
        storefront_create(agent=other, slug="other", name="Other", default_markup_value=D(50))
        _coupon(public_code=typed, agent=other, amount=D("1.00"))
    response = api.post("/api/v1/orders/", _payload(product, "R-1", coupon_code=typed))
    assert response.status_code == 422, response.content
    assert response.json()["code"] == code
    assert not Order.objects.exists() and wallet_balance(agent.user) == D("500.00")


def test_the_agents_own_storefront_coupon_is_refused_with_the_reason(world):
    agent, product, api = world
    storefront_create(agent=agent, slug="mine", name="Mine", default_markup_value=D(50))
    _coupon(public_code="MINE5", agent=agent, amount=D("5.00"))
    response = api.post("/api/v1/orders/", _payload(product, "M-1", coupon_code="mine5"))
    assert response.status_code == 422 and response.json()["code"] == "coupon_refused"
    assert "platform coupons only" in response.json()["message"]
    assert not Order.objects.exists()


def test_the_schema_documents_the_coupon(client):
    schema = client.get("/api/v1/schema/").content.decode()
    assert "coupon_code" in schema and "discount" in schema and "subtotal" in schema


def test_a_hostile_coupon_field_is_a_field_error(world):
    _agent, product, api = world
    response = api.post("/api/v1/orders/", _payload(product, "H-1", coupon_code="A\u0000" + "Z" * 39))
    assert response.status_code == 400 and "coupon_code" in response.json()["details"]
    assert not Order.objects.exists()
