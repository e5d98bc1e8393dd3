"""Minors' limits on game top-ups (国家新闻出版署《关于防止未成年人沉迷网络游戏的通知》2019, 第三条):
under 8 nothing; 8 to under 16 at most ¥50 a payment and ¥200 a calendar month; 16 to under 18
at most ¥100 and ¥400. "不得超过" is "at most": exactly the limit passes. Enforced in order_place,
so the same refusals come through the platform's pages, a storefront, guest checkout and the
agents' API; an unverified buyer is asked to verify."""

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import PriceKind
from agents.services import agents as agent_services
from agents.services import storefronts
from compliance import minors, realname
from compliance.identity import id_check_char
from compliance.minors import MinorLimitError
from compliance.models import MinorLimit, RealNameVerification
from compliance.realname import RealNameRequired, Subject
from orders.models import Order
from orders.services import orders as order_services
from tests.api_helpers import issue_key, make_agent, set_level_price, top_up
from tests.factories import CategoryFactory, ProductFactory, UserFactory, add_stock, verified_operator

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
D = Decimal


def id_for_age(age: int, seq: str = "123") -> str:
    """A valid number of someone exactly ``age`` today in China (born on 1 January)."""
    today = minors.china_today()
    first17 = f"110101{date(today.year - age, 1, 1):%Y%m%d}{seq}"
    return first17 + id_check_char(first17)


def verified(age: int, seq: str = "123"):
    user = UserFactory()
    realname.realname_verify(subject=Subject(user=user), name="张三", id_number=id_for_age(age, seq))
    return user


def topup(price: str, stock: int = 10, **kw):
    product = ProductFactory(price=D(price), face_value=D(price), is_game_topup=True, max_per_order=10, **kw)
    add_stock(product, stock)
    return product


def place(buyer, product, quantity: int = 1, **kw) -> Order:
    return order_services.order_place(
        buyer=buyer, product=product, quantity=quantity, idempotency_key=uuid.uuid4().hex, **kw
    )


def test_the_national_limits_are_seeded():
    rows = list(
        MinorLimit.objects.order_by("age_from").values_list("age_from", "age_to", "allowed", "per_payment", "per_month")
    )
    assert rows == [
        (0, 8, False, None, None),
        (8, 16, True, D("50.00"), D("200.00")),
        (16, 18, True, D("100.00"), D("400.00")),
    ]


def test_a_verified_15_year_old_is_refused_a_60_yuan_top_up():
    buyer = verified(15)
    with pytest.raises(MinorLimitError) as refused:
        place(buyer, topup("60.00"))
    assert str(refused.value) == "Users under 16 may top up at most ¥50.00 per payment (this payment: ¥60.00)."
    assert refused.value.code == "minor_per_payment"
    assert not Order.objects.exists()


def test_a_refusal_is_kept_for_the_monthly_report():
    """The order is rolled back, the refusal is not: the compliance report counts them."""
    from compliance.models import AuditEvent

    buyer = verified(15)
    product = topup("60.00")
    with pytest.raises(MinorLimitError):
        place(buyer, product, ip="203.0.113.9")
    event = AuditEvent.objects.get(action="minors.refused")
    assert event.outcome == AuditEvent.Outcome.DENIED
    assert event.actor == buyer
    assert event.target == f"product:{product.pk}"
    assert str(event.ip) == "203.0.113.9"
    assert "minor_per_payment" in event.detail and "amount=60.00" in event.detail


def test_the_payment_is_the_order_total_not_the_unit_price():
    buyer = verified(15)
    with pytest.raises(MinorLimitError, match=r"this payment: ¥60\.00"):
        place(buyer, topup("30.00"), quantity=2)


def test_four_50_yuan_top_ups_a_month_pass_and_a_fifth_is_refused():
    """不得超过: ¥50 a payment is allowed, and a month reaching exactly ¥200 is allowed."""
    buyer = verified(15)
    product = topup("50.00")
    orders = [place(buyer, product) for _ in range(4)]
    assert all(o.realname_verification.user == buyer for o in orders)
    with pytest.raises(MinorLimitError) as refused:
        place(buyer, product)
    assert str(refused.value) == (
        "Users under 16 may top up at most ¥200.00 per calendar month "
        "(this month so far: ¥200.00, this payment: ¥50.00)."
    )
    # A cancelled order is not spending: its allowance comes back.
    order_services.order_cancel(order_id=orders[0].pk, buyer=buyer)
    place(buyer, product)
    assert Order.objects.filter(buyer=buyer).exclude(status=Order.Status.CANCELLED).count() == 4


def test_last_month_and_expired_orders_do_not_count():
    buyer = verified(15)
    product = topup("50.00")
    old = [place(buyer, product) for _ in range(4)]
    window = minors.month_window()
    Order.objects.filter(pk=old[0].pk).update(created_at=window.start - timedelta(seconds=1))  # last month
    Order.objects.filter(pk=old[1].pk).update(status=Order.Status.EXPIRED)
    Order.objects.filter(pk=old[2].pk).update(expires_at=timezone.now() - timedelta(minutes=1))  # past its deadline
    place(buyer, product)
    place(buyer, product)
    place(buyer, product)
    with pytest.raises(MinorLimitError, match=r"so far: ¥200\.00"):
        place(buyer, product)


def test_the_month_counts_the_person_across_accounts_and_guest_checkout():
    """The same identity number bought as a guest counts against the member's month."""
    number = id_for_age(12)
    product = topup("50.00")
    for i in range(3):
        place(None, product, guest_email=f"kid{i}@example.com", real_name="张三", id_number=number)
    member = UserFactory()
    realname.realname_verify(subject=Subject(user=member), name="张三", id_number=number)
    place(member, product)
    with pytest.raises(MinorLimitError, match="per calendar month"):
        place(member, product)


def test_a_7_year_old_is_refused_anything():
    buyer = verified(7)
    with pytest.raises(MinorLimitError) as refused:
        place(buyer, topup("1.00"))
    assert str(refused.value) == "Game top-ups are not sold to users under 8 (you are 7)."


def test_a_17_year_old_may_pay_100_but_not_101():
    buyer = verified(17)
    place(buyer, topup("100.00"))
    with pytest.raises(
        MinorLimitError, match=r"under 18 may top up at most ¥100.00 per payment \(this payment: ¥101.00\)"
    ):
        place(buyer, topup("101.00"))


def test_adults_and_ordinary_products_have_no_limit():
    adult = verified(30)
    place(adult, topup("500.00"))
    ordinary = ProductFactory(price=D("300.00"))
    add_stock(ordinary, 1)
    assert place(verified(10, seq="456"), ordinary).realname_verification is None


def test_staff_edit_the_table_and_order_place_follows_it():
    MinorLimit.objects.filter(age_from=8).update(per_payment=D("30.00"))
    with pytest.raises(MinorLimitError, match=r"at most ¥30\.00 per payment"):
        place(verified(15), topup("40.00"))


def test_an_unverified_buyer_is_asked_to_verify():
    buyer = UserFactory()
    with pytest.raises(RealNameRequired) as refused:
        place(buyer, topup("10.00"))
    assert "Verify your name and identity number first" in str(refused.value)
    assert not Order.objects.exists()


@pytest.mark.parametrize("where", ["product", "category", "parent"])
def test_real_name_products_and_categories_need_a_verified_buyer(where):
    parent = CategoryFactory(requires_real_name=where == "parent")
    category = CategoryFactory(parent=parent, requires_real_name=where == "category")
    product = ProductFactory(category=category, requires_real_name=where == "product", price=D("300.00"))
    add_stock(product, 2)
    with pytest.raises(RealNameRequired):
        place(UserFactory(), product)
    order = place(verified(15), product)  # not a game top-up: no minors' limit
    assert order.realname_verification is not None


def test_ordinary_products_need_no_real_name():
    product = ProductFactory()
    add_stock(product, 1)
    assert place(UserFactory(), product).realname_verification is None


# --- the same refusals through every door -----------------------------------------------------


def test_the_checkout_page_refuses_and_links_to_the_verify_page(client):
    product = topup("60.00")
    client.force_login(UserFactory())
    url = reverse("orders:checkout", args=[product.slug])
    page = client.get(url).content.decode()
    assert 'data-testid="realname-verify-link"' in page and "/accounts/realname/?next=" in page
    refused = client.post(url, {"quantity": "1", "idempotency_key": uuid.uuid4().hex})
    body = refused.content.decode()
    assert refused.status_code == 400
    assert "requires real-name verification" in body and 'href="/accounts/realname/?next=' in body

    client.force_login(verified(15))
    refused = client.post(url, {"quantity": "1", "idempotency_key": uuid.uuid4().hex})
    body = refused.content.decode()
    assert refused.status_code == 400 and "at most ¥50.00 per payment (this payment: ¥60.00)" in body
    assert 'data-testid="realname-ok"' in body and "张*" in body
    assert not Order.objects.exists()


def shop_selling(product, level, *, cost: str, markup: str):
    agent_services.level_price_set(level=level, product=product, kind=PriceKind.FIXED, value=cost)
    agent = agent_services.agent_create(user=UserFactory(), level=level)
    verified_operator(agent)  # a storefront opens only for a verified operator
    storefronts.storefront_open(
        agent=agent, slug="games", name="Games", default_markup_kind=PriceKind.FIXED, default_markup_value=markup
    )
    return agent


def test_a_storefront_refuses_the_same(client, level):
    product = topup("50.00")
    shop_selling(product, level, cost="50.00", markup="10")  # retail ¥60
    client.force_login(verified(15))
    refused = client.post(f"/s/games/p/{product.slug}/buy/", {"quantity": "1", "idempotency_key": uuid.uuid4().hex})
    assert refused.status_code == 400
    assert "at most ¥50.00 per payment (this payment: ¥60.00)" in refused.content.decode()
    client.force_login(UserFactory())
    page = client.get(f"/s/games/p/{product.slug}/").content.decode()
    assert 'data-testid="realname-verify-link"' in page
    assert not Order.objects.exists()


def guest_post(**extra) -> dict:
    return {
        "quantity": "1",
        "idempotency_key": uuid.uuid4().hex,
        "guest_email": "kid@example.com",
        "guest_email_confirm": "kid@example.com",
        **extra,
    }


def test_guest_checkout_asks_for_the_real_name_and_refuses_the_same(client, level):
    product = topup("60.00")
    url = reverse("orders:checkout", args=[product.slug])
    page = client.get(url).content.decode()
    assert 'data-testid="realname-fields"' in page and 'name="id_number"' in page
    missing = client.post(url, guest_post())
    assert missing.status_code == 400 and "enter your name and identity number" in missing.content.decode()
    bad = client.post(url, guest_post(real_name="张三", id_number="110101200001011234"))
    assert bad.status_code == 400 and "The last character does not match" in bad.content.decode()
    minor = client.post(url, guest_post(real_name="张三", id_number=id_for_age(15)))
    assert minor.status_code == 400 and "at most ¥50.00 per payment (this payment: ¥60.00)" in minor.content.decode()
    assert not Order.objects.exists()
    # The storefront's guest checkout, the same.
    cheap = topup("20.00")
    shop_selling(cheap, level, cost="20.00", markup="40")  # retail ¥60
    page = client.get(f"/s/games/p/{cheap.slug}/").content.decode()
    assert 'data-testid="realname-fields"' in page
    minor = client.post(f"/s/games/p/{cheap.slug}/buy/", guest_post(real_name="张三", id_number=id_for_age(15)))
    assert minor.status_code == 400 and "this payment: ¥60.00" in minor.content.decode()
    # An adult guest buys, and the order carries the guest's verification.
    adult = client.post(url, guest_post(real_name="李四", id_number=id_for_age(30)))
    assert adult.status_code == 302
    order = Order.objects.get()
    assert order.realname_verification.source == RealNameVerification.Source.GUEST
    assert order.realname_verification.email == "kid@example.com"


def test_the_api_carries_the_end_users_verification_and_refuses_the_same(level):
    product = topup("60.00")
    agent = make_agent(level_obj=level)
    set_level_price(level, product, "60.00")
    top_up(agent.user, "500")
    shop = issue_key(agent)
    payload = {"product_id": product.pk, "quantity": 1, "agent_order_no": "G-1"}
    missing = shop.post("/api/v1/orders/", payload)
    assert missing.status_code == 403 and missing.json()["code"] == "real_name_required"
    malformed = shop.post("/api/v1/orders/", {**payload, "real_name": "张三", "id_number": "12345"})
    assert malformed.status_code == 400 and malformed.json()["code"] == "invalid_request"
    assert "id_number" in malformed.json()["details"]
    wrong_check = id_for_age(30)[:17] + ("1" if id_for_age(30)[17] != "1" else "2")
    bad = shop.post("/api/v1/orders/", {**payload, "real_name": "张三", "id_number": wrong_check})
    assert bad.status_code == 422 and bad.json()["code"] == "id_number_invalid"
    minor = shop.post("/api/v1/orders/", {**payload, "real_name": "张三", "id_number": id_for_age(15)})
    assert minor.status_code == 403 and minor.json()["code"] == "minor_per_payment"
    assert "this payment: ¥60.00" in minor.json()["message"]
    mismatch = shop.post("/api/v1/orders/", {**payload, "real_name": "不符", "id_number": id_for_age(30)})
    assert mismatch.status_code == 422 and mismatch.json()["code"] == "real_name_mismatch"
    assert not Order.objects.exists()
    ok = shop.post(
        "/api/v1/orders/", {**payload, "agent_order_no": "G-2", "real_name": "王五", "id_number": id_for_age(30)}
    )
    assert ok.status_code == 201, ok.json()
    order = Order.objects.get()
    assert order.realname_verification.source == RealNameVerification.Source.API
    assert order.realname_verification.user is None  # the end user's, not the agent's
    assert "id_number" not in ok.json() and id_for_age(30) not in ok.content.decode()


def test_the_api_schema_documents_the_fields(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    schema = response.content.decode()
    assert "real_name" in schema and "id_number" in schema and "real_name_required" in schema
