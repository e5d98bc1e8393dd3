"""Money with coupons stays exact: splits to the fen, refunds of discounted codes, the ledger's
contra-revenue, and every agent's commission along chains of depth 1 to 5."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from agents.models import Commission, PriceKind
from agents.services import agents as agent_services
from agents.services import commissions
from ledger import services as ledger
from marketing.models import Coupon, CouponUse
from marketing.services import coupons
from marketplace.money import split
from orders.models import Order
from orders.services import orders as services
from payments.services import refunds
from tests.builders import balance_of, chain_of, pay_and_deliver
from tests.factories import ProductFactory, add_stock, storefront_create

pytestmark = pytest.mark.usefixtures("english")
D = Decimal


def _coupon(**fields) -> Coupon:
    defaults = dict(name="Promo", kind=Coupon.Kind.FIXED, amount=D("10.00"), ends_at=timezone.now() + timedelta(days=1))
    return coupons.coupon_create(**{**defaults, **fields})


@pytest.mark.parametrize("parts", range(1, 8))
@pytest.mark.parametrize("amount", ["10.00", "0.01", "9.99", "100.07", "33.33"])
def test_split_to_the_fen_with_the_remainder_on_the_last(parts, amount):
    shares = split(D(amount), parts)
    assert len(shares) == parts
    assert sum(shares) == D(amount)
    assert all(s == s.quantize(D("0.01")) for s in shares)
    assert len(set(shares[:-1])) <= 1 and shares[-1] >= shares[0]
    assert shares[-1] - shares[0] < D("0.01") * parts


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("quantity", range(1, 8))
def test_partial_refunds_of_a_discounted_order_pay_back_what_was_paid(buyer, staff, quantity):
    product = ProductFactory(price=D("30.00"), max_per_order=10)
    add_stock(product, quantity)
    _coupon(amount=D("10.00"), public_code="TENOFF")
    order = services.order_place(
        buyer=buyer, product=product, quantity=quantity, idempotency_key="k", coupon_code="tenoff"
    )
    assert (order.subtotal, order.discount, order.total) == (D(30 * quantity), D("10.00"), D(30 * quantity) - 10)
    pay_and_deliver(order)
    paid = []
    for _ in range(quantity):  # one code at a time
        paid.append(refunds.order_refund(order=order, quantity=1, reason="one code", requested_by=staff).amount)
    shares = split(D("10.00"), quantity)
    assert paid == [D("30.00") - s for s in shares]
    assert sum(paid) == order.total
    # The ledger took the gross sale back whole: sales and the contra-revenue are back at zero.
    assert balance_of(ledger.SALES) == 0
    assert balance_of(ledger.COUPON_DISCOUNTS) == 0
    assert balance_of(ledger.REFUNDS_DUE) + balance_of(ledger.HELD) >= 0


@pytest.mark.django_db(transaction=True)
def test_platform_coupon_is_the_platforms_contra_revenue(buyer):
    product = ProductFactory(price=D("30.00"))
    add_stock(product, 3)
    _coupon(kind=Coupon.Kind.PERCENT, amount=0, percent=D("15"), cap=D("12.00"), public_code="PCT15")
    order = pay_and_deliver(
        services.order_place(buyer=buyer, product=product, quantity=3, idempotency_key="k", coupon_code="pct15")
    )
    assert order.discount == D("12.00")  # 15% of 90.00 is 13.50, capped at 12.00
    assert balance_of(ledger.SALES) == D("90.00")
    assert balance_of(ledger.COUPON_DISCOUNTS) == D("-12.00")  # a debit on a revenue account


def _shop_chain(level, depth: int):
    product = ProductFactory(price=D("40.00"), max_per_order=10)
    add_stock(product, 7)
    chain = chain_of(depth, level)
    for upline in chain[:-1]:
        agent_services.markup_set(agent=upline, kind=PriceKind.PERCENT, value="7.5")
    shop = storefront_create(agent=chain[-1], slug="shop", name="Shop", default_markup_value=D(20))
    return product, chain, shop


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["fixed", "percent"])
@pytest.mark.parametrize("issuer", ["agent", "platform"])
def test_commissions_with_coupons_stay_exact_for_chains_of_depth_1_to_5(level, buyer, staff, depth, kind, issuer):
    product, chain, shop = _shop_chain(level, depth)
    seller = chain[-1]
    fields = (
        dict(kind=Coupon.Kind.FIXED, amount=D("7.77"))
        if kind == "fixed"
        else dict(kind=Coupon.Kind.PERCENT, amount=0, percent=D("3.3"))
    )
    _coupon(agent=seller if issuer == "agent" else None, public_code="SHOP1", **fields)
    order = services.order_place(
        buyer=None,
        guest_email="g@example.com",
        product=product,
        quantity=7,
        idempotency_key="k",
        storefront=shop,
        coupon_code="shop1",
    )
    assert order.discount > 0 and order.total == order.subtotal - order.discount
    gross = {s.agent_id: s.unit_earning * 7 for s in order.shares.all()}
    pay_and_deliver(order)
    rows = {c.agent_id: c for c in Commission.objects.filter(order=order)}
    funded = order.discount if issuer == "agent" else 0
    for agent in chain:
        expected = gross[agent.pk] - (funded if agent.pk == seller.pk else 0)
        assert rows[agent.pk].amount == expected
        assert balance_of(ledger.commission_pending(agent.user)) == expected
    # The sale: buyer paid the total; the platform's revenue is the gross less the discount.
    assert balance_of(ledger.SALES) == order.subtotal
    discount_account = ledger.AGENT_COUPON_DISCOUNTS if issuer == "agent" else ledger.COUPON_DISCOUNTS
    assert balance_of(discount_account) == (0 if issuer == "agent" else -order.discount)
    # Refund three codes, then the rest: every agent gives back exactly what it earned.
    refunds.order_refund(order=order, quantity=3, reason="three", requested_by=staff)
    refunds.order_refund(order=order, quantity=None, reason="the rest", requested_by=staff)
    for agent in chain:
        assert balance_of(ledger.commission_pending(agent.user)) == 0
    assert balance_of(ledger.SALES) == 0
    assert balance_of(ledger.AGENT_COUPON_DISCOUNTS) == 0 and balance_of(ledger.COUPON_DISCOUNTS) == 0
    assert balance_of(ledger.COMMISSIONS) == 0


@pytest.mark.django_db(transaction=True)
def test_agent_commission_settles_net_of_its_coupon(level, buyer, staff):
    product, chain, shop = _shop_chain(level, 2)
    _coupon(agent=chain[-1], amount=D("1.00"), public_code="ONEOFF")
    order = pay_and_deliver(
        services.order_place(
            buyer=buyer, product=product, quantity=3, idempotency_key="k", storefront=shop, coupon_code="oneoff"
        )
    )
    refunds.order_refund(order=order, quantity=1, reason="one", requested_by=staff)
    Commission.objects.filter(order=order).update(available_at=timezone.now())
    assert commissions.commissions_settle_due() == 2
    seller_share = order.shares.get(agent=chain[-1]).unit_earning
    assert (
        balance_of(ledger.commission_available(chain[-1].user))
        == seller_share * 2 - split(D("1.00"), 3)[1] - split(D("1.00"), 3)[2]
    )
    assert balance_of(ledger.commission_pending(chain[-1].user)) == 0


@pytest.mark.django_db(transaction=True)
def test_an_agent_coupon_that_would_cross_the_agents_cost_is_refused(level):
    _product, chain, _shop = _shop_chain(level, 1)
    # Cost 40.00 at the platform price of the level; retail +20% = 48.00: margin 8.00 a code.
    with pytest.raises(coupons.CouponError) as refused:
        _coupon(agent=chain[-1], amount=D("8.01"), public_code="TOOMUCH")
    assert refused.value.code == "coupon_below_cost" and "below your cost" in str(refused.value)
    assert not Coupon.objects.filter(agent=chain[-1]).exists()
    # A minimum spend of two codes makes room for it; a percentage above the margin is refused.
    assert _coupon(agent=chain[-1], amount=D("8.01"), min_spend=D("96.00"), public_code="TWOCODES")
    with pytest.raises(coupons.CouponError):
        _coupon(agent=chain[-1], kind=Coupon.Kind.PERCENT, amount=0, percent=D("20"), public_code="PCT20")
    assert _coupon(
        agent=chain[-1], kind=Coupon.Kind.PERCENT, amount=0, percent=D("20"), cap=D("8.00"), public_code="PCT20CAP"
    )


@pytest.mark.django_db(transaction=True)
def test_at_redemption_an_agent_coupon_never_crosses_the_cost(level, buyer):
    product, chain, shop = _shop_chain(level, 1)
    _coupon(agent=chain[-1], amount=D("8.00"), public_code="EIGHT")
    # The agent lowers its retail price after creating the coupon: its margin is gone.
    from agents.models import RetailPrice

    RetailPrice.objects.create(storefront=shop, product=product, price=D("44.00"))
    with pytest.raises(coupons.CouponError) as refused:
        services.order_place(
            buyer=buyer, product=product, quantity=1, idempotency_key="k", storefront=shop, coupon_code="eight"
        )
    assert refused.value.code == "coupon_below_cost"
    assert not Order.objects.filter(buyer=buyer).exists()


@pytest.mark.django_db(transaction=True)
def test_expiry_and_cancel_return_uses_and_a_full_refund_only_while_valid(buyer, staff):
    product = ProductFactory(price=D("30.00"))
    add_stock(product, 5)
    coupon = _coupon(total_limit=1, per_user_limit=None, public_code="ONCE")
    order = services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="a", coupon_code="once")
    with pytest.raises(coupons.CouponError, match="used up"):
        services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="b", coupon_code="once")
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert services.order_expire(order_id=order.pk)
    coupon.refresh_from_db()
    assert coupon.used == 0
    assert CouponUse.objects.get(order=order).release_reason == "expired"
    second = services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="c", coupon_code="once")
    assert services.order_cancel(order_id=second.pk, buyer=buyer)
    coupon.refresh_from_db()
    assert coupon.used == 0
    third = pay_and_deliver(
        services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="d", coupon_code="once")
    )
    Coupon.objects.filter(pk=coupon.pk).update(
        ends_at=timezone.now() - timedelta(seconds=1), starts_at=timezone.now() - timedelta(days=2)
    )
    refunds.order_refund(order=third, quantity=None, reason="all", requested_by=staff)
    coupon.refresh_from_db()
    assert coupon.used == 1  # expired meanwhile: the refund does not bring the use back


@pytest.mark.parametrize(("price", "off"), [("10.10", "0.30"), ("0.30", "0.10"), ("173.25", "7.77")])
def test_the_total_check_accepts_exact_amounts_and_refuses_any_other_on_every_database(buyer, price, off):
    """SQLite keeps decimals as binary floats (10.10 - 0.30 is 9.799999999999999 there): the check
    rounds to the fen, so an exact total is accepted on either database and an off one refused."""
    product = ProductFactory(price=D(price))
    add_stock(product, 1)
    _coupon(amount=D(off), public_code="ODDCENTS")
    order = services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k", coupon_code="oddcents")
    order.refresh_from_db()
    assert (order.subtotal, order.discount, order.total) == (D(price), D(off), D(price) - D(off))
    for wrong in (D("0.01"), D("-0.01")):
        with pytest.raises(IntegrityError), transaction.atomic():
            Order.objects.filter(pk=order.pk).update(total=F("total") + wrong)
