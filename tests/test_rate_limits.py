"""Rate limits (issue 13, "Rate limits and brute force"): checkout (platform and storefront), code
reveal (member and guest), ticket creation (member and guest), sign-up and password reset.

Each answers 429 with Retry-After and a page in the reader's language (Chinese by default) past
its limit; counts are per subject (a client network, an account, a guest email or order), so
another account or network is unaffected; a limit ends with its window; the API keeps its own
per-key limit only. Small limits here (settings.RATE_LIMITS, ACCOUNT_RATE_LIMITS); time moves
by a patched clock (the locmem cache and allauth read time.time too), never by sleeping.
"""

import re
import uuid
from decimal import Decimal

import pytest
import rest_framework.throttling  # noqa: F401  # before any clock is patched: DRF keeps time.time as its timer
from django.core.cache import cache
from django.test import Client, override_settings

from marketplace.ratelimit import RateLimit, rate_limits_hit
from orders.models import Order
from orders.services import orders as order_services
from tests.api_helpers import issue_key, make_agent, top_up
from tests.builders import chain_of, delivered_order, pay_and_deliver
from tests.factories import ProductFactory, UserFactory, add_stock, storefront_create

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
ATTACKER, OTHER = "203.0.113.66", "198.51.100.7"
WINDOW = 600
LIMITS = {
    "checkout": {"subject": (2, WINDOW), "network": (5, WINDOW)},
    "reveal": {"subject": (2, WINDOW), "network": (5, WINDOW)},
    "ticket": {"subject": (2, WINDOW), "network": (5, WINDOW)},
}
GUEST_EMAIL = "guest.buyer@example.net"
PASSWORD = "cha-xun-2024"


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.RATE_LIMITS = LIMITS
    settings.LANGUAGE_CODE = "zh-hans"


@pytest.fixture
def product(db):
    p = ProductFactory(price=D("50.00"), face_value=D("50.00"), slug="steam-50")
    add_stock(p, 40)
    return p


def member_client(user, ip: str = ATTACKER, language: str = "zh-hans") -> Client:
    client = Client(REMOTE_ADDR=ip, HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


def buy_post(**extra) -> dict:
    return {"quantity": "1", "idempotency_key": uuid.uuid4().hex, **extra}


def guest_post(email: str = GUEST_EMAIL) -> dict:
    return buy_post(guest_email=email, guest_email_confirm=email, query_password=PASSWORD)


def checkout(client, product, data=None, **extra):
    return client.post(f"/orders/checkout/{product.slug}/", data if data is not None else buy_post(), **extra)


def assert_throttled(response, *, retry_after: int = WINDOW, language: str = "zh-hans") -> str:
    """A 429 with Retry-After and the site's page in ``language``; its text."""
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= retry_after
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    body = response.content.decode()
    assert 'data-testid="too-many-requests"' in body
    if language == "zh-hans":
        assert "请求过于频繁" in body and "分钟后重试" in body
        assert "Too many requests" not in body
    else:
        assert "Too many requests" in body and "Please try again in" in body
    return body


# --- checkout ------------------------------------------------------------------------------------


def test_checkout_past_the_account_limit_is_429_in_chinese_and_other_accounts_pass(product):
    buyer = UserFactory()
    client = member_client(buyer)
    assert [checkout(client, product).status_code for _ in range(2)] == [302, 302]
    body = assert_throttled(checkout(client, product), retry_after=WINDOW)
    assert "下单已暂停" in body  # the reason, translated
    assert Order.objects.filter(buyer=buyer).count() == 2  # the refused one placed nothing
    # Another account on the same network is not affected (the network allows 5).
    assert checkout(member_client(UserFactory()), product).status_code == 302
    # A GET of the checkout page is never counted nor refused.
    assert client.get(f"/orders/checkout/{product.slug}/").status_code == 200


def test_checkout_answers_in_english_on_request(product):
    client = member_client(UserFactory(), language="en")
    for _ in range(2):
        checkout(client, product)
    body = assert_throttled(checkout(client, product), language="en")
    assert "checkout is paused for a while" in body


def test_checkout_is_limited_per_network_whatever_the_email(product):
    client = Client(REMOTE_ADDR=ATTACKER)
    statuses = [checkout(client, product, guest_post(f"g{n}@example.net")).status_code for n in range(7)]
    assert statuses == [302] * 5 + [429] * 2
    # Another network is not affected.
    assert checkout(Client(REMOTE_ADDR=OTHER), product, guest_post("fresh@example.net")).status_code == 302


def test_checkout_is_limited_per_guest_email_from_anywhere(product):
    statuses = [
        checkout(Client(REMOTE_ADDR=f"192.0.2.{n}"), product, guest_post(GUEST_EMAIL.upper())).status_code
        for n in range(1, 5)
    ]
    assert statuses == [302, 302, 429, 429]


def test_an_ipv6_client_is_one_network_per_64(product):
    statuses = [
        checkout(Client(REMOTE_ADDR=f"2001:db8:1:2::{n:x}"), product, guest_post(f"v6{n}@example.net")).status_code
        for n in range(1, 8)
    ]
    assert statuses == [302] * 5 + [429] * 2


def test_the_limit_ends_with_its_window(product, clock):
    client = member_client(UserFactory())
    for _ in range(2):
        checkout(client, product)
    clock.advance(100)
    refused = checkout(client, product)
    assert refused.status_code == 429 and int(refused["Retry-After"]) == WINDOW - 100
    clock.advance(WINDOW - 100 + 1)
    assert checkout(client, product).status_code == 302


def test_storefront_buying_counts_as_checkout(product, level):
    agent = chain_of(1, level)[0]
    shop = storefront_create(agent=agent, slug="shop", name="Shop", default_markup_value=D(10))
    client = member_client(UserFactory())
    url = f"/s/{shop.slug}/p/{product.slug}/buy/"
    statuses = [client.post(url, buy_post()).status_code for _ in range(3)]
    assert statuses == [302, 302, 429]
    assert_throttled(client.post(url, buy_post()))
    assert checkout(client, product).status_code == 429  # one limit for every door of a browser


def test_the_api_keeps_its_own_per_key_limit_only(product, settings):
    """The API is not counted by the pages' limits: many orders from one address pass."""
    from tests.api_helpers import set_level_price
    from tests.factories import AgentLevelFactory

    gold = AgentLevelFactory(name="金牌", rank=4)
    agent = make_agent(level_obj=gold)
    set_level_price(gold, product, "45.00")
    top_up(agent.user, "1000")
    shop = issue_key(agent)
    payloads = [{"product_id": product.pk, "quantity": 1, "agent_order_no": f"N-{n}"} for n in range(6)]
    assert [shop.post("/api/v1/orders/", p).status_code for p in payloads] == [201] * 6
    settings.AGENT_API_RATE_PER_MINUTE = 1  # its own limit still holds
    cache.clear()
    assert shop.get("/api/v1/balance/").status_code == 200
    assert shop.get("/api/v1/balance/").status_code == 429


# --- reveal --------------------------------------------------------------------------------------


def reveal_url(order, oc) -> str:
    return f"/orders/{order.number}/codes/{oc.pk}/reveal/"


def test_member_reveals_past_the_limit_and_htmx_gets_a_fragment():
    buyer = UserFactory()
    order = delivered_order(buyer, quantity=4)
    codes = list(order.codes.order_by("pk"))
    client = member_client(buyer)
    assert [client.post(reveal_url(order, oc)).status_code for oc in codes[:2]] == [200, 200]
    # htmx: a fragment (no page around it) that the page swaps in where the code would go.
    answer = client.post(reveal_url(order, codes[2]), HTTP_HX_REQUEST="true")
    body = assert_throttled(answer)
    assert "<html" not in body and "卡密" in body
    # Without htmx: the whole page.
    assert "<html" in assert_throttled(client.post(reveal_url(order, codes[3])))
    # Another account on the same network reveals its own codes.
    other = UserFactory()
    mine = delivered_order(other, quantity=1)
    assert member_client(other).post(reveal_url(mine, mine.codes.get())).status_code == 200


def test_the_page_shows_429_fragments_in_place():
    """site.js swaps a 429 answer in (htmx leaves error answers out by default)."""
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent.joinpath("static/js/site.js").read_text()
    assert re.search(r"htmx:beforeSwap[\s\S]{0,200}status === 429\) event\.detail\.shouldSwap = true", script)


def guest_delivered(product, email=GUEST_EMAIL):
    order = order_services.order_place(
        buyer=None,
        product_id=product.pk,
        quantity=4,
        idempotency_key=uuid.uuid4().hex,
        guest_email=email,
        query_password=PASSWORD,
    )
    return pay_and_deliver(order)


def proved_guest_client(order, ip=ATTACKER) -> Client:
    """A browser that proved the guest order with its query password (the order lookup)."""
    client = Client(REMOTE_ADDR=ip)
    found = client.post("/orders/lookup/", {"query": order.number, "query_password": PASSWORD})
    assert found.status_code == 302
    return client


def test_guest_reveals_are_limited_per_order_from_anywhere(product):
    order = guest_delivered(product)
    codes = list(order.codes.order_by("pk"))
    url = f"/orders/guest/{order.number}/codes/{{}}/reveal/"
    one, two = proved_guest_client(order, "192.0.2.1"), proved_guest_client(order, "192.0.2.2")
    assert one.post(url.format(codes[0].pk)).status_code == 200
    assert two.post(url.format(codes[1].pk)).status_code == 200
    assert_throttled(two.post(url.format(codes[2].pk), HTTP_HX_REQUEST="true"))
    assert_throttled(one.post(url.format(codes[3].pk)))
    # Another guest order is not affected.
    other = guest_delivered(product, "other.guest@example.net")
    other_url = f"/orders/guest/{other.number}/codes/{other.codes.first().pk}/reveal/"
    assert proved_guest_client(other, OTHER).post(other_url).status_code == 200


# --- tickets -------------------------------------------------------------------------------------


def ticket_post(**extra) -> dict:
    return {"kind": "other", "subject": "A question", "body": "Where is my order?", **extra}


def test_member_tickets_past_the_limit(product):
    client = member_client(UserFactory())
    statuses = [client.post("/support/new/", ticket_post()).status_code for _ in range(3)]
    assert statuses[:2] != [429, 429] and statuses[2] == 429
    body = assert_throttled(client.post("/support/new/", ticket_post()))
    assert "工单" in body
    assert client.get("/support/new/").status_code == 200  # the form still shows
    assert member_client(UserFactory()).post("/support/new/", ticket_post()).status_code != 429


def test_guest_tickets_are_limited_per_order(product):
    order = guest_delivered(product)
    url = f"/orders/guest/{order.number}/tickets/new/"
    one, two = proved_guest_client(order, "192.0.2.1"), proved_guest_client(order, "192.0.2.2")
    assert one.post(url, ticket_post()).status_code != 429
    assert two.post(url, ticket_post()).status_code != 429
    assert_throttled(one.post(url, ticket_post()))


# --- allauth: sign-up and password reset ---------------------------------------------------------


def signup(client, n: int):
    email = f"new{n}@example.net"
    return client.post("/accounts/signup/", {"email": email, "password1": "Zh3ng-Quan!x", "password2": "Zh3ng-Quan!x"})


@pytest.fixture
def allauth_limits(settings):
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS,
        "signup": "2/600s/ip",
        "reset_password": "20/600s/ip,2/3600s/key",
    }


def test_signups_past_the_limit_get_the_chinese_429_with_retry_after(allauth_limits, clock):
    client = Client(REMOTE_ADDR=ATTACKER)
    assert [signup(client, n).status_code for n in range(2)] == [302, 302]
    clock.advance(60)
    refused = signup(Client(REMOTE_ADDR=ATTACKER), 3)
    assert_throttled(refused)
    assert int(refused["Retry-After"]) == 600 - 60  # when the oldest sign-up leaves the window
    english = signup(Client(REMOTE_ADDR=ATTACKER, HTTP_ACCEPT_LANGUAGE="en"), 4)
    assert_throttled(english, language="en")
    assert signup(Client(REMOTE_ADDR=OTHER), 5).status_code == 302  # another network
    clock.advance(600)
    assert signup(Client(REMOTE_ADDR=ATTACKER), 6).status_code == 302


def test_password_resets_per_email_past_the_limit(allauth_limits, mailoutbox):
    user = UserFactory(email="owner@example.net")
    post = lambda ip: Client(REMOTE_ADDR=ip).post("/accounts/password/reset/", {"email": user.email})  # noqa: E731
    assert [post(f"192.0.2.{n}").status_code for n in range(1, 3)] == [302, 302]
    refused = post("192.0.2.3")
    assert_throttled(refused, retry_after=3600)
    assert int(refused["Retry-After"]) > 3000
    assert len(mailoutbox) == 2
    other = Client(REMOTE_ADDR=OTHER).post("/accounts/password/reset/", {"email": "someone@example.net"})
    assert other.status_code == 302


def test_allauths_limits_are_set_explicitly_on_the_cache(settings):
    from allauth.account import app_settings

    configured = app_settings.RATE_LIMITS
    for action in ("signup", "reset_password", "reset_password_from_key", "login", "confirm_email", "login_failed"):
        assert action in settings.ACCOUNT_RATE_LIMITS and configured[action]


# --- the counter, on the production cache -------------------------------------------------------


def test_limits_count_in_redis_in_one_round_trip(redis_url, monkeypatch):
    import redis

    from marketplace import ratelimit

    prefix = f"test-rl-{uuid.uuid4().hex}"
    options = {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}
    caches = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url, "OPTIONS": options}}
    subject = f"{prefix}-{ATTACKER}"
    limits = [RateLimit("test.network", subject, 2, 60), RateLimit("test.subject", f"{prefix}-user", 5, 600)]
    conn = redis.Redis.from_url(redis_url)
    conn.script_flush()  # the script is sent again when the server lost it
    executes = []
    real = redis.Redis.execute_command
    monkeypatch.setattr(
        redis.Redis, "execute_command", lambda self, *a, **k: executes.append(a[0]) or real(self, *a, **k)
    )
    try:
        with override_settings(CACHES=caches):
            answers = [rate_limits_hit(limits) for _ in range(3)]
            assert answers[:2] == [None, None]
            assert answers[2].scope == "test.network" and 0 < answers[2].retry_after <= 60
            # Both limits, one round-trip per request (the first one finds the script unknown and loads it).
            assert executes == ["EVALSHA", "SCRIPT LOAD", "EVALSHA", "EVALSHA", "EVALSHA"], executes
            assert ratelimit._HITS_LUA in ratelimit._scripts
            keys = [k for k in conn.scan_iter("*rl:test.*")]
            assert keys and all(0 < conn.ttl(k) <= 600 for k in keys)
            assert not any(subject.encode() in k for k in keys)  # subjects are hashed
    finally:
        for key in conn.scan_iter("*rl:test.*"):
            conn.delete(key)
        cache.close()
    away = {"default": {**caches["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=away):
        assert [rate_limits_hit(limits) for _ in range(4)] == [None] * 4  # Redis away: nothing refused
        cache.close()
