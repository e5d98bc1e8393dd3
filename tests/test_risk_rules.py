"""Risk control (issue 13): the stock-hogging cap, the device identifier, the registration and
order-burst rules with their alerts, and the blacklists, each where the event happens."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from catalog.models import CardCode
from orders.models import Order
from orders.services import orders as order_services
from orders.services.risk import StockHogging
from risk import services as risk
from risk.models import Alert, BlockEntry
from tests.factories import ProductFactory, UserFactory, add_stock

D = Decimal
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english", "risk_limits")]
UA = "Mozilla/5.0 (iPhone) risk-test"


@pytest.fixture
def caps(settings):
    settings.RISK_HOLD_PRODUCT_ORDERS = 3
    settings.RISK_HOLD_PRODUCT_CODES = 20
    settings.RISK_HOLD_ORDERS = 5
    settings.RISK_HOLD_CODES = 50
    settings.RISK_HOLD_IP_FACTOR = 3


@pytest.fixture
def product(db):
    p = ProductFactory(price=D("10.00"), face_value=D("10.00"), max_per_order=10)
    add_stock(p, 40)
    return p


def place(product, quantity, *, buyer=None, email="", ip="203.0.113.7", device="dev-a"):
    return order_services.order_place(
        buyer=buyer,
        guest_email=email,
        product=product,
        quantity=quantity,
        idempotency_key=uuid.uuid4().hex,
        ip=ip,
        device=device,
    )


def available(product) -> int:
    return CardCode.objects.filter(product=product, status=CardCode.Status.AVAILABLE).count()


def try_to_hog(product, **who) -> int:
    """Reserve 10 at a time until refused; how many codes were reserved."""
    reserved = 0
    with pytest.raises(StockHogging) as refused:
        for _ in range(10):
            reserved += place(product, 10, **who).quantity
    assert refused.value.status == 409 and refused.value.code == "unpaid_orders_held"
    return reserved


# --- stock hogging ----------------------------------------------------------------------------


def test_a_member_cannot_reserve_a_products_whole_stock(caps, product, buyer, other_buyer):
    assert try_to_hog(product, buyer=buyer, device="") == 20  # RISK_HOLD_PRODUCT_CODES
    assert available(product) == 20
    # The rest stays buyable by others.
    assert place(product, 10, buyer=other_buyer, ip="198.51.100.9", device="dev-b").status == Order.Status.PENDING
    alert = Alert.objects.get(rule="stock_hogging")
    assert alert.user == buyer and alert.evidence["cap"] == 20


def test_a_guest_cannot_either_and_paying_or_cancelling_frees_the_cap(caps, product):
    orders = []
    with pytest.raises(StockHogging):
        for i in range(10):  # a new IP and device each time: the email is the client
            orders.append(place(product, 10, email="hog@example.net", ip=f"203.0.113.{i}", device=f"d{i}"))
    assert sum(o.quantity for o in orders) == 20 and available(product) == 20
    order_services.order_cancel(order_id=orders[0].pk, buyer=None)
    assert place(product, 10, email="hog@example.net", ip="203.0.113.99", device="dz").quantity == 10


def test_several_ips_and_emails_from_one_device_hit_the_device_cap(caps, product):
    with pytest.raises(StockHogging):
        for i in range(10):
            place(product, 10, email=f"guest{i}@example.net", ip=f"198.51.100.{i}", device="one-phone")
    assert available(product) == 20
    assert place(product, 10, email="someone@example.org", ip="192.0.2.1", device="another").quantity == 10


def test_one_ip_may_hold_more_but_not_everything(caps, product):
    # Many guests behind one carrier NAT address: three times the per-client cap (per product: 60 codes).
    add_stock(product, 60)
    reserved = 0
    with pytest.raises(StockHogging):
        for i in range(20):
            reserved += place(product, 10, email=f"g{i}@example.net", ip="100.64.0.1", device=f"d{i}").quantity
    assert reserved == 60 and available(product) == 40


def test_a_repeated_submission_returns_its_order_even_at_the_cap(caps, product, buyer):
    key = uuid.uuid4().hex
    for _ in range(2):
        place(product, 1, buyer=buyer)  # with the next one, 3 orders: RISK_HOLD_PRODUCT_ORDERS
    first = order_services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key=key, ip="203.0.113.7")
    again = order_services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key=key, ip="203.0.113.7")
    assert again.pk == first.pk


def test_the_cap_holds_through_the_checkout_page_across_ips(caps, product):
    """One browser (its device cookie), a new IP and a new guest email for every order."""
    settings_ip = "REMOTE_ADDR"
    client = Client(HTTP_USER_AGENT=UA)
    client.get(f"/orders/checkout/{product.slug}/")  # the device cookie is set on the first visit
    assert client.cookies.get("mk_device")
    placed = 0
    for i in range(5):
        email = f"p{i}@example.net"
        response = client.post(
            f"/orders/checkout/{product.slug}/",
            {"quantity": "10", "idempotency_key": uuid.uuid4().hex, "guest_email": email, "guest_email_confirm": email},
            **{settings_ip: f"198.51.100.{i + 1}"},
        )
        if response.status_code == 302:
            placed += 1
        else:
            assert "unpaid orders" in response.content.decode()
    assert placed == 2 and available(product) == 20
    assert set(Order.objects.values_list("buyer_device", flat=True)) != {""}


# --- order bursts -----------------------------------------------------------------------------


def test_an_order_burst_from_one_device_is_refused_with_an_alert(settings, product):
    settings.RISK_RULES = {**settings.RISK_RULES, "order_burst_device": {"limit": 3, "window": 600, "action": "refuse"}}
    for i in range(3):
        order_services.order_cancel(
            order_id=place(product, 1, email=f"b{i}@example.net", ip=f"192.0.2.{i}", device="burst").pk, buyer=None
        )
    with pytest.raises(risk.RiskRefused) as refused:
        place(product, 1, email="b9@example.net", ip="192.0.2.9", device="burst")
    assert refused.value.status == 429 and refused.value.code == "too_many"
    alert = Alert.objects.get(rule="order_burst_device")
    assert alert.evidence["count"] == 4 and alert.device == "burst"


# --- sign-ups ---------------------------------------------------------------------------------


def signup(client, n, ip="203.0.113.50"):
    email = f"new{n}@example.com"
    return client.post(
        "/accounts/signup/",
        {"email": email, "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"},
        REMOTE_ADDR=ip,
    )


def test_fifty_signups_from_one_ip_in_a_minute_are_held_with_an_alert(settings):
    from accounts.models import User

    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "signup": False}  # our rule, not allauth's
    statuses = []
    for n in range(50):
        client = Client(HTTP_USER_AGENT=f"{UA} {n}")  # a fresh browser each time: no device in common
        statuses.append(signup(client, n).status_code)
    limit = settings.RISK_RULES["signup_ip"]["limit"]
    assert User.objects.filter(email__startswith="new").count() == limit
    assert statuses[: limit + 1] == [302] * limit + [429]
    assert set(statuses[limit + 1 :]) == {200}  # held: the form refuses, saying why
    alert = Alert.objects.get(rule="signup_ip")
    assert alert.ip == "203.0.113.50" and alert.action == "hold" and alert.evidence["count"] == limit + 1
    hold = BlockEntry.objects.get(alert=alert)
    assert hold.kind == "network" and hold.value == "203.0.113.50/32" and hold.expires_at is None
    # Staff dismiss the alert (a school's network, say): the hold is lifted, sign-ups open again.
    staff = UserFactory(is_staff=True)
    risk.alert_dismiss(alert_id=alert.pk, by=staff)
    assert signup(Client(HTTP_USER_AGENT="after"), 99).status_code == 302


def test_signups_from_one_device_are_counted_across_ips(settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "signup": False}
    client = Client(HTTP_USER_AGENT=UA)
    client.get("/accounts/signup/")
    device_cookie = client.cookies["mk_device"].value
    limit = settings.RISK_RULES["signup_device"]["limit"]
    codes = []
    for n in range(limit + 2):
        client.logout()  # forgets every cookie: the device's is put back (the browser keeps it)
        client.cookies["mk_device"] = device_cookie
        codes.append(signup(client, n, ip=f"198.51.100.{n}").status_code)
    assert codes[: limit + 1] == [302] * limit + [429]
    assert codes[-1] == 200  # held: the form says so (the device is barred from signing up)
    assert Alert.objects.filter(rule="signup_device").count() == 1


def test_the_429_page_is_chinese_with_retry_after(settings):
    settings.RISK_RULES = {**settings.RISK_RULES, "signup_ip": {"limit": 1, "window": 60, "action": "refuse"}}
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "signup": False}
    signup(Client(), 1)
    response = Client(HTTP_ACCEPT_LANGUAGE="zh-hans").post(
        "/accounts/signup/",
        {"email": "x2@example.com", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"},
        REMOTE_ADDR="203.0.113.50",
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert response.status_code == 429 and int(response["Retry-After"]) <= 60
    assert "请求过多" in response.content.decode() or "注册" in response.content.decode()


# --- blacklists -------------------------------------------------------------------------------


def test_blacklisted_network_email_domain_and_device_refuse_checkout(product, buyer):
    risk.block_add(kind="network", value="192.0.2.0/24", reason="card testing")
    with pytest.raises(risk.RiskRefused) as refused:
        place(product, 1, buyer=buyer, ip="192.0.2.77")
    assert refused.value.code == "blacklisted" and "network" in str(refused.value)
    place(product, 1, buyer=buyer, ip="192.0.3.1")  # outside the range
    risk.block_add(
        kind="domain", value="bad.example", reason="fraud ring", expires_at=timezone.now() + timedelta(days=1)
    )
    with pytest.raises(risk.RiskRefused):
        place(product, 1, email="a@mail.bad.example", ip="198.51.100.1", device="x")
    risk.block_add(kind="device", value="stolen-phone", reason="chargebacks")
    with pytest.raises(risk.RiskRefused):
        place(product, 1, email="c@example.org", ip="198.51.100.2", device="stolen-phone")
    # IPv6 ranges too; an expired entry no longer bars.
    risk.block_add(kind="network", value="2001:db8:1::/48", reason="abuse")
    with pytest.raises(risk.RiskRefused):
        place(product, 1, buyer=buyer, ip="2001:db8:1:2::5")
    entry = risk.block_add(
        kind="email", value="Old@Example.com", reason="x", expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert entry.value == "old@example.com"
    place(product, 1, email="old@example.com", ip="198.51.100.3", device="y")


def test_signup_refuses_disposable_and_blacklisted_emails(settings):
    response = Client().post(
        "/accounts/signup/",
        {"email": "me@mailinator.com", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"},
    )
    assert response.status_code == 200 and "disposable" in response.content.decode()
    risk.block_add(kind="email", value="spam@example.com", reason="spam", scope="signup")
    response = Client().post(
        "/accounts/signup/",
        {"email": "spam@example.com", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"},
    )
    assert response.status_code == 200 and "paused" in response.content.decode()


def test_staff_block_from_an_alert_bars_every_subject_and_is_audited(product):
    from compliance.models import AuditEvent

    alert = risk.alert_raise(
        rule="order_burst_ip", action="log", email="z@example.net", ip="192.0.2.5", device="dz", evidence={"count": 31}
    )
    staff = UserFactory(is_staff=True)
    assert risk.alert_block(alert_id=alert.pk, by=staff, days=7)
    assert BlockEntry.objects.filter(alert=alert).count() == 3
    with pytest.raises(risk.RiskRefused):
        place(product, 1, email="other@example.net", ip="192.0.2.5", device="fresh")
    assert AuditEvent.objects.filter(action="risk_alert_blocked").exists()
    alert.refresh_from_db()
    assert alert.status == "actioned" and alert.history.count() == 1


# --- counting in Redis ------------------------------------------------------------------------


def _redis_cache(url):
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }


def test_a_checkout_adds_one_redis_round_trip_and_counts_there(settings, redis_url, product, buyer):
    import redis
    from django.core.cache import cache

    from marketplace.ratelimit import cache_redis
    from risk import counters

    settings.CACHES = _redis_cache(redis_url)
    cache.clear()
    cache_redis().script_load(counters._HITS_LUA)  # as after the first checkout of a process
    settings.RISK_RULES = {**settings.RISK_RULES, "order_burst_buyer": {"limit": 2, "window": 600, "action": "refuse"}}
    trips = []
    original = redis.Redis.execute_command
    redis.Redis.execute_command = lambda self, *a, **k: trips.append(a[:3]) or original(self, *a, **k)
    try:
        place(product, 1, buyer=buyer)
    finally:
        redis.Redis.execute_command = original
    # SET NX + INCR for buyer, IP and device, in one script: one round-trip with three keys.
    assert [(t[0], t[2]) for t in trips if t[0] == "EVALSHA"] == [("EVALSHA", 3)], trips
    place(product, 1, buyer=buyer)
    with pytest.raises(risk.RiskRefused):
        place(product, 1, buyer=buyer)
    cache.clear()


def test_with_redis_away_nothing_is_counted_and_checkout_works(settings, product, buyer):
    settings.CACHES = _redis_cache("redis://127.0.0.1:1/0")  # nobody listens
    settings.RISK_RULES = {**settings.RISK_RULES, "order_burst_buyer": {"limit": 1, "window": 600, "action": "refuse"}}
    for _ in range(3):
        assert place(product, 1, buyer=buyer).status == Order.Status.PENDING
