"""Coupons at the checkout: the "apply" preview on the platform's checkout and a storefront's buy
page (members and guests), the refusals next to the field, the order placed with its discount,
the cashier's discount line, and the sale's source."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agents.services import agents as agent_services
from marketing.models import Coupon, CouponUse
from marketing.services import coupons
from orders.models import Order
from orders.services import orders as order_services
from tests.factories import ProductFactory, UserFactory, add_stock, storefront_create, verified_operator

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
D = Decimal


def _coupon(**fields) -> Coupon:
    defaults = dict(name="Promo", kind=Coupon.Kind.FIXED, amount=D("10.00"), ends_at=timezone.now() + timedelta(days=1))
    return coupons.coupon_create(**{**defaults, **fields})


@pytest.fixture
def product():
    p = ProductFactory(price=D("30.00"), slug="card-30", max_per_order=10)
    add_stock(p, 6)
    return p


def _token(page: str) -> str:
    return re.search(r'name="idempotency_key" value="(\w+)"', page).group(1)


def _apply(client, url, code, quantity=2, **extra):
    return client.post(
        url, {"quantity": quantity, "idempotency_key": "k", "coupon_code": code, "apply_coupon": "1", **extra}
    )


def test_member_applies_a_coupon_sees_the_discount_then_pays_the_discounted_total(client, buyer, product):
    _coupon(public_code="TENOFF")
    client.force_login(buyer)
    url = f"/orders/checkout/{product.slug}/"
    page = client.get(url).content.decode()
    assert 'data-testid="coupon-code"' in page and "Apply coupon" in page
    response = _apply(client, url, " tenoff ")
    page = response.content.decode()
    assert response.status_code == 200
    assert not Order.objects.exists()  # applying places nothing
    assert re.search(r'data-testid="coupon-subtotal">¥60\.00<', page)
    assert re.search(r'data-testid="coupon-discount">−¥10\.00<', page)
    assert re.search(r'data-testid="estimated-total">¥50\.00<', page)
    assert 'value="TENOFF"' in page and "Coupon TENOFF applied" in page
    response = client.post(url, {"quantity": 2, "idempotency_key": _token(page), "coupon_code": "TENOFF"})
    order = Order.objects.get()
    assert response.status_code == 302
    assert (order.subtotal, order.discount, order.total) == (D("60.00"), D("10.00"), D("50.00"))
    assert order.source == "coupon:TENOFF"  # no other source: the coupon brought the sale
    assert CouponUse.objects.get().order == order
    cashier = client.get(f"/pay/{order.number}/").content.decode()
    assert 'data-testid="order-discount"' in cashier and "−¥10.00" in cashier
    assert re.search(r'data-testid="amount-due">¥50\.00<', cashier)
    detail = client.get(order.get_absolute_url()).content.decode()
    assert "Discount" in detail and "−¥10.00" in detail


def _refused(client, url, code, message, quantity=2, **extra):
    response = _apply(client, url, code, quantity=quantity, **extra)
    page = response.content.decode()
    assert response.status_code == 400
    error = re.search(r'data-testid="coupon-error">([^<]*)<', page)
    assert error is not None and error.group(1) == message, page
    assert 'data-testid="coupon-totals"' not in page
    return page


def test_bad_codes_give_their_clear_messages_next_to_the_field(client, buyer, product):
    client.force_login(buyer)
    url = f"/orders/checkout/{product.slug}/"
    _refused(client, url, "NOSUCH", "This coupon code does not exist.")
    old = _coupon(public_code="OLDONE")
    Coupon.objects.filter(pk=old.pk).update(
        starts_at=timezone.now() - timedelta(days=3), ends_at=timezone.now() - timedelta(days=1)
    )
    _refused(client, url, "oldone", "This coupon has expired.")
    gone = _coupon(public_code="GONE1", total_limit=1)
    Coupon.objects.filter(pk=gone.pk).update(used=1)
    _refused(client, url, "GONE1", "This coupon has been used up.")
    _coupon(public_code="BIGSPEND", min_spend=D("100"))
    _refused(client, url, "bigspend", "This coupon needs a minimum spend of ¥100.00.")
    other = ProductFactory(price=D("5.00"))
    _coupon(public_code="OTHERONLY", scope=Coupon.Scope.PRODUCTS, products=[other])
    _refused(client, url, "OtherOnly", "This coupon is not valid for this product or shop.")
    # Per buyer: one use each; the second order with the code is refused at the field.
    _coupon(public_code="ONCE", per_user_limit=1)
    order_services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="first", coupon_code="once")
    _refused(client, url, "once", "You have already used this coupon as often as allowed.")
    # Placing with it (without applying first) is refused the same way, and places nothing.
    response = client.post(url, {"quantity": 1, "idempotency_key": "second", "coupon_code": "ONCE"})
    assert response.status_code == 400
    assert "You have already used this coupon as often as allowed." in response.content.decode()
    assert Order.objects.count() == 1


def test_guest_per_email_limit_and_case_insensitive_codes(client, product):
    _coupon(public_code="GUESTTEN", per_user_limit=1)
    url = f"/orders/checkout/{product.slug}/"
    guest = {"guest_email": "Guest@Example.com", "guest_email_confirm": "guest@example.com"}
    # A guest may apply before typing the email: the guest fields are not flagged.
    response = _apply(client, url, "guestten")
    page = response.content.decode()
    assert response.status_code == 200 and "Coupon GUESTTEN applied" in page
    assert "is-invalid" not in page
    response = client.post(url, {"quantity": 1, "idempotency_key": "g1", "coupon_code": "gUeStTeN", **guest})
    assert response.status_code == 302
    order = Order.objects.get()
    assert (order.total, order.discount, order.guest_email) == (D("20.00"), D("10.00"), "guest@example.com")
    # The same email (any case) has used its one use; another email has not.
    _refused(client, url, "guestten", "You have already used this coupon as often as allowed.", **guest)
    response = _apply(client, url, "GUESTTEN", guest_email="other@example.com")
    assert response.status_code == 200 and "Coupon GUESTTEN applied" in response.content.decode()


def test_storefront_buy_page_applies_the_agents_coupon(client, level, product):
    agent = agent_services.agent_create(user=UserFactory(), level=level)
    verified_operator(agent)
    agent_services.level_price_set(level=level, product=product, kind="fixed", value="20.00")
    shop = storefront_create(agent=agent, slug="lucky", name="Lucky", default_markup_value=D(50))
    _coupon(agent=agent, public_code="LUCKY5", amount=D("5.00"))
    url = f"/s/lucky/p/{product.slug}/buy/"
    page = client.get(f"/s/lucky/p/{product.slug}/").content.decode()
    assert 'data-testid="coupon-code"' in page
    response = _apply(client, url, "lucky5", quantity=1)
    page = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'data-testid="coupon-discount">−¥5\.00<', page)
    guest = {"guest_email": "g@example.com", "guest_email_confirm": "g@example.com"}
    response = client.post(url, {"quantity": 1, "idempotency_key": _token(page), "coupon_code": "LUCKY5", **guest})
    assert response.status_code == 302
    order = Order.objects.get()
    assert (
        order.agent == shop.agent
        and order.channel == Order.Channel.STOREFRONT
        and order.discount == D("5.00")
        and order.total == order.subtotal - D("5.00")
    )
    assert order.discount_funder == agent and order.source == "coupon:LUCKY5"
    # The agent's coupon is for its own shop: not on the platform's checkout.
    _refused(
        client,
        f"/orders/checkout/{product.slug}/",
        "LUCKY5",
        "This coupon is not valid for this product or shop.",
        quantity=1,
    )


def test_a_poster_source_stays_the_source_of_a_coupon_sale(buyer, product):
    _coupon(public_code="TENOFF")
    order = order_services.order_place(
        buyer=buyer, product=product, quantity=1, idempotency_key="k", coupon_code="tenoff", source="poster:storefront"
    )
    assert order.source == "poster:storefront" and order.discount == D("10.00")


@pytest.mark.parametrize("typed", ["A\u0000B", "x" * 5000, "优惠券", "<script>", "TEN-OFF"])
def test_hostile_codes_are_unknown_codes(client, buyer, product, typed):
    client.force_login(buyer)
    _refused(client, f"/orders/checkout/{product.slug}/", typed, "This coupon code does not exist.")
