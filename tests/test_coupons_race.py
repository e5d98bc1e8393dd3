"""Coupon uses under concurrency: the total limit and a buyer's own limit hold (real threads on
Postgres), and the buyers refused get a clear message."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from marketing.models import Coupon, CouponUse
from marketing.services import coupons
from orders.models import Order
from orders.services import orders as services
from tests.builders import run_concurrently
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = pytest.mark.usefixtures("english")


def _coupon(**fields) -> Coupon:
    defaults = dict(
        name="Spring sale",
        kind=Coupon.Kind.FIXED,
        amount=Decimal("5.00"),
        ends_at=timezone.now() + timedelta(days=1),
        public_code="SPRING",
    )
    return coupons.coupon_create(**{**defaults, **fields})


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_hundred_orders_against_ten_uses_make_ten_discounted_orders():
    staff = UserFactory(is_staff=True, is_superuser=True)
    product = ProductFactory(price=Decimal("30.00"))
    add_stock(product, 100, user=staff)
    coupon = _coupon(total_limit=10)
    buyers = [UserFactory() for _ in range(100)]

    def four_orders(t: int) -> list:
        # 25 threads (a connection each: the server's connection limit is shared) x 4 orders.
        out: list = []
        for k in range(4):
            i = t * 4 + k
            try:
                out.append(
                    services.order_place(
                        buyer=buyers[i],
                        product_id=product.pk,
                        quantity=1,
                        idempotency_key=f"c{i}",
                        coupon_code="spring",
                    )
                )
            except Exception as exc:
                out.append(exc)
        return out

    results = [r for batch in run_concurrently(25, four_orders) for r in batch]
    assert len(results) == 100

    placed = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if not isinstance(r, Order)]
    assert len(placed) == 10, refused[:3]
    assert len(refused) == 90
    for exc in refused:
        assert isinstance(exc, coupons.CouponError), repr(exc)
        assert exc.code == "coupon_used_up" and str(exc) == "This coupon has been used up."
    assert all(o.discount == Decimal("5.00") and o.total == Decimal("25.00") for o in placed)
    coupon.refresh_from_db()
    assert coupon.used == 10
    assert CouponUse.objects.filter(coupon=coupon, released_at__isnull=True).count() == 10
    # The refused orders left nothing behind: no order, no reserved code.
    assert Order.objects.filter(product=product).count() == 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_per_user_limit_holds_under_concurrency():
    staff = UserFactory(is_staff=True, is_superuser=True)
    product = ProductFactory(price=Decimal("30.00"))
    add_stock(product, 40, user=staff)
    _coupon(per_user_limit=2, total_limit=None)
    buyer = UserFactory()

    results = run_concurrently(
        20,
        lambda i: services.order_place(
            buyer=buyer, product_id=product.pk, quantity=1, idempotency_key=f"u{i}", coupon_code="SPRING"
        ),
    )
    placed = [r for r in results if isinstance(r, Order)]
    assert len(placed) == 2
    assert all(getattr(r, "code", "") == "coupon_per_user" for r in results if not isinstance(r, Order))

    # Guests: per email, normalised.
    results = run_concurrently(
        10,
        lambda i: services.order_place(
            buyer=None,
            guest_email=" Guest@Example.com " if i % 2 else "guest@example.com",
            product_id=product.pk,
            quantity=1,
            idempotency_key=f"g{i}",
            coupon_code="spring",
        ),
    )
    assert len([r for r in results if isinstance(r, Order)]) == 2
