"""Order lookup for guests (issue 12, "Order lookup"): /orders/lookup/ finds guest orders by
number or email with the query password, or emails a one-time link when there is none; the
browser that placed or proved orders lists them ("my recent orders", a cookie stored only as a
hash). Nothing is disclosed to whoever guesses: one refusal for every miss, one neutral answer
for every link request, rate limits per client, email and order number (429 with Retry-After),
every failure and throttle audited. The issue's abuse test: 200 scripted lookups.
"""

import hashlib
import re
import time
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from catalog.services import code_plaintext
from compliance.models import AuditEvent
from orders.models import CodeReveal, GuestBrowser, GuestLookupLink, Order
from orders.services import guest_lookup as lookup_services
from orders.services import orders as order_services
from tests.builders import pay_and_deliver
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english", "sandbox")]
D = Decimal
LOOKUP = "/orders/lookup/"
EMAIL = "victim.guest@example.net"
PASSWORD = "cha-xun-2024"
ATTACKER = "203.0.113.66"
LINK = re.compile(r"https?://\S+/orders/lookup/link/(\S+?)/")
COOKIE = "guest_orders"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"|"X-CSRFToken": "[^"]+"')


@pytest.fixture
def sandbox(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True


@pytest.fixture
def product(db):
    p = ProductFactory(name="Steam wallet 50", price=D("50.00"), face_value=D("50.00"), slug="steam-50")
    add_stock(p, 12)
    return p


def guest_order(product, *, email=EMAIL, password=PASSWORD, deliver=True) -> Order:
    order = order_services.order_place(
        buyer=None,
        product_id=product.pk,
        quantity=1,
        idempotency_key=uuid.uuid4().hex,
        guest_email=email,
        query_password=password,
    )
    return pay_and_deliver(order) if deliver else order


def secrets_of(order) -> list[str]:
    return [code_plaintext(oc.code)[1] for oc in order.codes.select_related("code")]


def find(client, query, password="", ip="198.51.100.7", **extra):
    return client.post(LOOKUP, {"query": query, "query_password": password, **extra}, REMOTE_ADDR=ip)


def grants(client) -> dict:
    return client.session.get("guest_orders") or {}


def reveal(client, order, index=0):
    oc = order.codes.order_by("id")[index]
    return client.post(f"/orders/guest/{order.number}/codes/{oc.pk}/reveal/")


def same_page(body: str, typed: str) -> str:
    """A page's body without what differs by nature: the CSRF token and the visitor's own input."""
    return CSRF.sub("", body).replace(typed, "<typed>")


def lookup_link(message) -> str:
    return LINK.search(message.body).group(1)


def guessed_number(i: int) -> str:
    return f"2601010000GUESS{i:013d}"


# --- with the query password --------------------------------------------------------------------


def test_number_and_query_password_open_the_order_with_its_codes(client, product):
    order = guest_order(product)
    mail.outbox.clear()
    stranger = Client()
    response = find(stranger, " " + " ".join(re.findall(".{1,4}", order.number)).lower(), PASSWORD)  # as copied
    assert response.status_code == 302 and response["Location"] == f"/orders/guest/{order.number}/"
    assert grants(stranger)[order.number] > time.time()  # view and reveal
    page = stranger.get(response["Location"]).content.decode()
    assert 'data-testid="reveal"' in page
    assert reveal(stranger, order).status_code == 200 and CodeReveal.objects.count() == 1
    # The browser remembers it: a fresh session with only the cookie sees it, without codes.
    assert COOKIE in stranger.cookies
    later = Client()
    later.cookies[COOKIE] = stranger.cookies[COOKIE].value
    assert later.get(f"/orders/guest/{order.number}/").status_code == 200
    assert reveal(later, order).status_code == 403


def test_email_and_query_password_open_every_order_whose_own_password_matches(client, product):
    first, second = guest_order(product), guest_order(product)
    other_password = guest_order(product, password="another-one")
    no_password = guest_order(product, password="")
    someone_else = guest_order(product, email="someone.else@example.net")
    response = find(client, "  Victim.Guest@EXAMPLE.net ", PASSWORD)
    assert response.status_code == 302 and response["Location"] == LOOKUP
    assert set(grants(client)) == {first.number, second.number}
    page = client.get(LOOKUP).content.decode()
    assert "We found 2 orders." in page
    listed = re.findall(r'data-testid="recent-order" data-number="(\w+)"', page)
    assert listed == [second.number, first.number]  # newest first
    for hidden in (other_password, no_password, someone_else):
        assert hidden.number not in page
        assert client.get(f"/orders/guest/{hidden.number}/").status_code == 404
    assert reveal(client, first).status_code == 200 and reveal(client, second).status_code == 200


def test_a_miss_reads_the_same_whatever_exists_and_is_audited(client, product, monkeypatch):
    order = guest_order(product)
    checked = []
    real_check = lookup_services.check_password
    monkeypatch.setattr(lookup_services, "check_password", lambda p, h: checked.append(h) or real_check(p, h))
    attempts = {
        "wrong password": (order.number, "not-the-password"),
        "unknown number": (guessed_number(1), PASSWORD),
        "wrong password by email": (EMAIL, "not-the-password"),
        "unknown email": ("nobody@example.org", PASSWORD),
    }
    bodies, hashes = {}, {}
    for name, (typed, password) in attempts.items():
        checked.clear()
        stranger = Client()
        response = find(stranger, typed, password)
        assert response.status_code == 400, name
        assert not grants(stranger) and COOKIE not in stranger.cookies
        body = response.content.decode()
        assert "We found no order for what you entered." in body
        assert not any(s in body for s in secrets_of(order))
        bodies[name] = same_page(body, typed)
        hashes[name] = len(checked)
    assert len(set(bodies.values())) == 1  # word for word the same page
    # A password hash is checked even when nothing is there (no timing oracle); an email lookup
    # checks at least as many as a small customer's orders.
    assert hashes["unknown number"] == hashes["wrong password"] == 1
    assert hashes["unknown email"] == hashes["wrong password by email"] == lookup_services.MIN_EMAIL_CHECKS
    audited = AuditEvent.objects.filter(action="guest_lookup.password", outcome="denied")
    assert audited.count() == 4
    assert set(audited.values_list("target", flat=True)) >= {order.number, guessed_number(1)}
    # Emails are audited masked and hashed, never as typed.
    assert not audited.filter(target__icontains="victim.guest").exists()
    assert audited.filter(target__startswith="vi***@example.net#").exists()


def test_bad_input_gets_a_clear_message_and_no_500(client):
    for typed in ("", "x", "not@an@email", "@", "🙂" * 300, "1" * 200):
        response = find(client, typed, "pw")
        assert response.status_code == 400, typed
        assert 'data-testid="lookup-error"' in response.content.decode()
    assert find(client, "2601010000ABCDEF", "p" * 65).status_code == 400
    assert client.get("/orders/lookup/link/" + "x" * 500 + "/").status_code == 404


# --- without a password: the one-time link --------------------------------------------------------


def test_a_number_alone_emails_a_one_time_link_with_the_same_answer_either_way(client, product):
    order = guest_order(product)
    mail.outbox.clear()
    answers = []
    for typed in (order.number, guessed_number(2), "nobody@example.org", EMAIL):
        stranger = Client()
        response = find(stranger, typed)
        assert response.status_code == 302 and response["Location"] == LOOKUP
        page = stranger.get(LOOKUP).content.decode()
        assert "If there are orders for what you entered, we have sent a one-time link" in page
        answers.append(CSRF.sub("", page))
        assert not grants(stranger)
    assert len(set(answers)) == 1
    # Sent for the real number (to the order's address) and the real email, nowhere else.
    assert [m.to for m in mail.outbox] == [[EMAIL], [EMAIL]]
    assert not any(s in m.body for m in mail.outbox for s in secrets_of(order))
    token = lookup_link(mail.outbox[0])
    link = GuestLookupLink.objects.get(token_hash=hashlib.sha256(token.encode()).hexdigest())
    assert list(link.orders.all()) == [order] and link.email == EMAIL
    # Only the hash is stored.
    assert not GuestLookupLink.objects.filter(token_hash=token).exists()
    assert token not in str(list(GuestLookupLink.objects.values_list()))


def test_the_link_asks_on_get_works_once_on_post_and_expires(client, product, settings):
    first, second = guest_order(product), guest_order(product)
    mail.outbox.clear()
    find(client, EMAIL, send_link="1")
    url = f"/orders/lookup/link/{lookup_link(mail.outbox[-1])}/"
    # A mail scanner's GETs show a confirm button and use nothing.
    scanner = Client()
    for _ in range(3):
        page = scanner.get(url)
        assert page.status_code == 200 and 'data-testid="lookup-link-confirm"' in page.content.decode()
    assert not grants(scanner) and GuestLookupLink.objects.get().used_at is None
    # The POST uses it: both orders, with their codes, in this browser, and remembered.
    guest = Client()
    response = guest.post(url)
    assert response.status_code == 302 and response["Location"] == LOOKUP
    assert set(grants(guest)) == {first.number, second.number}
    assert reveal(guest, first).status_code == 200
    listed = guest.get(LOOKUP).content.decode()
    assert first.number in listed and second.number in listed
    # Once.
    again = Client()
    assert again.post(url).status_code == 404 and again.get(url).status_code == 404
    assert not grants(again)
    # Expired: refused (audited), even unused.
    find(client, first.number)
    url = f"/orders/lookup/link/{lookup_link(mail.outbox[-1])}/"
    GuestLookupLink.objects.filter(used_at__isnull=True).update(expires_at=timezone.now())
    late = Client()
    assert late.get(url).status_code == 404
    assert late.post(url).status_code == 404 and not grants(late)
    assert AuditEvent.objects.filter(action="guest_lookup.link", outcome="denied").count() == 2


def test_links_to_one_address_are_capped_silently(client, product, settings):
    settings.GUEST_LOOKUP_LINKS_PER_HOUR = 2
    guest_order(product)
    mail.outbox.clear()
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):
        response = find(Client(), EMAIL, ip=ip)
        assert response.status_code == 302 and response["Location"] == LOOKUP  # the same answer
    assert len(mail.outbox) == 2 and GuestLookupLink.objects.count() == 2
    assert AuditEvent.objects.filter(action="guest_lookup.link", detail__startswith="not sent").count() == 2


# --- this browser's orders ----------------------------------------------------------------------


def test_placing_an_order_remembers_it_in_a_cookie_stored_only_as_a_hash(client, product, settings):
    settings.SESSION_COOKIE_SECURE = True  # as in production
    response = client.post(
        f"/orders/checkout/{product.slug}/",
        {
            "quantity": "1",
            "idempotency_key": uuid.uuid4().hex,
            "guest_email": EMAIL,
            "guest_email_confirm": EMAIL,
            "query_password": "",
        },
    )
    assert response.status_code == 302
    order = Order.objects.get()
    cookie = response.cookies[COOKIE]
    token = cookie.value
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == settings.GUEST_BROWSER_COOKIE_DAYS * 24 * 3600
    browser = GuestBrowser.objects.get()
    assert browser.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert list(browser.orders.all()) == [order]
    with connection.cursor() as cursor:  # the raw token is nowhere in the browser tables
        cursor.execute("SELECT * FROM orders_guestbrowser")
        assert token not in str(cursor.fetchall())
    # A second order in the same browser: the same cookie, both listed, newest first.
    second = guest_order(product, deliver=False)
    client.post(f"/orders/guest/{second.number}/unlock/")  # not its browser: 404, nothing remembered
    assert GuestBrowser.objects.get().orders.count() == 1
    page = client.get(LOOKUP).content.decode()
    assert re.findall(r'data-testid="recent-order" data-number="(\w+)"', page) == [order.number]
    assert "¥50.00" in page and "Steam wallet 50" in page and "Awaiting payment" in page


def test_the_recent_list_is_capped_and_forgotten_on_request(client, product, settings):
    settings.GUEST_BROWSER_MAX_ORDERS = 3
    orders = [guest_order(product, deliver=False) for _ in range(5)]
    find(client, EMAIL, PASSWORD)
    page = client.get(LOOKUP).content.decode()
    listed = re.findall(r'data-testid="recent-order" data-number="(\w+)"', page)
    assert listed == [o.number for o in reversed(orders)][:3]
    # A forged or foreign cookie lists nothing.
    forged = Client()
    forged.cookies[COOKIE] = "x" * 43
    assert 'data-testid="recent-order"' not in forged.get(LOOKUP).content.decode()
    # Forget: the cookie and the row go, the grants too.
    response = client.post("/orders/lookup/forget/")
    assert response.status_code == 302 and response.cookies[COOKIE].value == ""
    assert not GuestBrowser.objects.exists() and not grants(client)
    assert client.get(f"/orders/guest/{orders[0].number}/").status_code == 404


def test_anonymous_pages_link_to_the_lookup(client, product):
    home = client.get("/").content.decode()
    assert 'data-testid="nav-lookup"' in home and 'data-testid="footer-lookup"' in home
    member = Client()
    member.force_login(UserFactory())
    assert 'data-testid="nav-lookup"' not in member.get("/").content.decode()
    order = guest_order(product)
    find(client, order.number, PASSWORD)
    assert 'data-testid="guest-lookup-link"' in client.get(f"/orders/guest/{order.number}/").content.decode()


# --- rate limits: the abuse test --------------------------------------------------------


def assert_nothing_disclosed(responses, client, orders):
    """No order number or code in any answer (beyond what the visitor typed, which the form
    shows again), no grant and no remembering cookie in the visitor's browser."""
    numbers = [o.number for o in orders]
    codes = [s for o in orders for s in secrets_of(o)]
    for typed, response in responses:
        body = response.content.decode().replace(f'value="{typed}"', "")
        assert not any(n in body for n in numbers), "an order number was disclosed"
        assert not any(c in body for c in codes), "a code was disclosed"
    assert not grants(client) and COOKIE not in client.cookies


def test_200_scripted_lookups_from_one_ip_disclose_nothing_and_are_throttled(client, product, settings):
    orders = [guest_order(product), guest_order(product, password="")]
    mail.outbox.clear()
    attacker = Client()
    responses = []
    for i in range(200):
        # Wrong passwords for the victim's order number and email, and guessed numbers.
        typed = (orders[0].number, EMAIL, guessed_number(i))[i % 3]
        responses.append((typed, find(attacker, typed, f"guess-{i:04d}", ip=ATTACKER)))
    statuses = [r.status_code for _typed, r in responses]
    limit = settings.GUEST_LOOKUP_IP_LIMIT
    assert statuses[:limit] == [400] * limit
    assert statuses[limit:] == [429] * (200 - limit)
    # Retry-After: the longest limit that refuses (an hour for the number and the email, the
    # IP's 15 minutes for guessed numbers).
    hour, quarter = 60 * 60, settings.GUEST_LOOKUP_IP_WINDOW_MINUTES * 60
    for i, (_typed, response) in enumerate(responses[limit:], start=limit):
        assert 0 < int(response["Retry-After"]) <= (quarter if i % 3 == 2 else hour)
        assert "no-store" in response["Cache-Control"]
    assert_nothing_disclosed(responses, attacker, orders)
    assert not mail.outbox
    assert AuditEvent.objects.filter(action="guest_lookup.password").count() == limit
    throttled = AuditEvent.objects.filter(action="guest_lookup.throttled")
    assert throttled.count() == 200 - limit and set(throttled.values_list("ip", flat=True)) == {ATTACKER}
    # Each refusal names the limit that lasts longest: the number's and the email's hour, else the IP's.
    scopes = ("number", "email", "ip")
    by_scope = {scope: throttled.filter(detail__startswith=f"guest_lookup.{scope} limit").count() for scope in scopes}
    assert by_scope == {scope: sum(1 for i in range(limit, 200) if i % 3 == k) for k, scope in enumerate(scopes)}
    # The order number and the email were tried too often from anywhere: paused for everyone for
    # the window (their owner has the signed link in the delivery email) ...
    assert find(Client(), orders[0].number, PASSWORD, ip="198.51.100.20").status_code == 429
    # ... the guessed numbers paused nothing else.
    other = guest_order(product, email="other.guest@example.net")
    assert find(Client(), other.number, PASSWORD, ip="198.51.100.20").status_code == 302


def test_200_lookups_for_one_email_from_20_ips_are_throttled_per_email(client, product, settings):
    orders = [guest_order(product), guest_order(product)]
    mail.outbox.clear()
    responses, clients = [], []
    for i in range(200):
        attacker = Client()
        clients.append(attacker)
        responses.append((EMAIL, find(attacker, EMAIL, f"guess-{i:04d}", ip=f"203.0.113.{i % 20 + 1}")))
    statuses = [r.status_code for _typed, r in responses]
    limit = settings.GUEST_LOOKUP_EMAIL_LIMIT
    assert statuses == [400] * limit + [429] * (200 - limit)
    window = settings.GUEST_LOOKUP_EMAIL_WINDOW_MINUTES * 60
    assert all(0 < int(r["Retry-After"]) <= window for _typed, r in responses[limit:])
    for attacker in clients:
        assert_nothing_disclosed([], attacker, orders)
    assert_nothing_disclosed(responses, Client(), orders)
    assert AuditEvent.objects.filter(action="guest_lookup.password").count() == limit
    throttled = AuditEvent.objects.filter(action="guest_lookup.throttled")
    assert throttled.count() == 200 - limit
    assert throttled.filter(detail__startswith="guest_lookup.email limit").count() == 200 - limit
    assert len(set(throttled.values_list("ip", flat=True))) == 20
    # The email is paused for everyone (its owner has the link in their delivery email) ...
    assert find(Client(), EMAIL, PASSWORD, ip="198.51.100.30").status_code == 429
    # ... an order number, the owner's other way, is not.
    assert find(Client(), orders[0].number, PASSWORD, ip="198.51.100.30").status_code == 302


def test_one_order_number_is_throttled_from_anywhere_and_the_window_ends(client, product, settings, monkeypatch):
    settings.GUEST_LOOKUP_NUMBER_LIMIT = 3
    order = guest_order(product)
    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])  # the limits' clock (and locmem's)
    statuses = [find(Client(), order.number, "guess", ip=f"192.0.2.{i}").status_code for i in range(1, 6)]
    assert statuses == [400, 400, 400, 429, 429]
    right = find(Client(), order.number, PASSWORD, ip="192.0.2.99")
    assert right.status_code == 429  # throttled before any password is checked
    assert int(right["Retry-After"]) == settings.GUEST_LOOKUP_NUMBER_WINDOW_MINUTES * 60
    now[0] += 600
    window = settings.GUEST_LOOKUP_NUMBER_WINDOW_MINUTES * 60
    assert int(find(Client(), order.number, PASSWORD)["Retry-After"]) == window - 600
    now[0] += settings.GUEST_LOOKUP_NUMBER_WINDOW_MINUTES * 60
    assert find(Client(), order.number, PASSWORD, ip="192.0.2.99").status_code == 302


def test_link_requests_count_too(client, product, settings):
    settings.GUEST_LOOKUP_EMAIL_LIMIT = 2
    guest_order(product)
    mail.outbox.clear()
    statuses = [find(Client(), EMAIL, ip=f"192.0.2.{i}").status_code for i in range(1, 5)]
    assert statuses == [302, 302, 429, 429]
    assert len(mail.outbox) == 2


def test_the_429_page_speaks_chinese(product, settings):
    from tests.test_pages_display import english_fragments, visible_text

    settings.GUEST_LOOKUP_IP_LIMIT = 1
    settings.LANGUAGE_CODE = "zh-hans"
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    pages = [client.get(LOOKUP), find(client, "nobody@example.org", "pw")]
    throttled = find(client, "nobody@example.org", "pw")
    assert throttled.status_code == 429 and throttled["Retry-After"]
    pages.append(throttled)
    text = visible_text(throttled.content.decode())
    assert "请求过于频繁" in text and "分钟后重试" in text
    fragments = english_fragments()
    english = [f for page in pages for f in fragments if f in visible_text(page.content.decode())]
    assert english == []


def test_the_limits_hold_in_redis_and_fail_open_without_it(client, product, settings, redis_url):
    """Against the production cache (django-redis, shared by all workers); with Redis away the
    lookups still answer (no 500), unthrottled: the limits are the cache's, errors are misses."""
    import redis

    settings.GUEST_LOOKUP_IP_LIMIT = 3
    prefix = f"test-lookup-{uuid.uuid4().hex}"
    options = {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}
    caches = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url, "OPTIONS": options}}
    caches["default"]["KEY_PREFIX"] = prefix
    try:
        with override_settings(CACHES=caches):
            statuses = [find(Client(), f"x{i}@example.org", "pw", ip=ATTACKER).status_code for i in range(5)]
            assert statuses == [400, 400, 400, 429, 429]
            keys = redis.Redis.from_url(redis_url).keys(f"{prefix}:*rl:guest_lookup.ip:*")
            assert keys and all(0 < redis.Redis.from_url(redis_url).ttl(k) <= 15 * 60 for k in keys)
            assert not any(ATTACKER.encode() in k for k in keys)  # subjects are hashed
    finally:
        connection_ = redis.Redis.from_url(redis_url)
        for key in connection_.scan_iter(f"{prefix}:*"):
            connection_.delete(key)
        cache.close()
    away = {"default": {**caches["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=away):
        statuses = [find(Client(), f"y{i}@example.org", "pw", ip=ATTACKER).status_code for i in range(5)]
        assert statuses == [400] * 5
        cache.close()


def test_the_email_link_path_is_only_a_path(client, product):
    """The link's token is in the path of SITE_URL, not in a query string a referrer could leak."""
    guest_order(product)
    mail.outbox.clear()
    find(client, EMAIL)
    url = LINK.search(mail.outbox[0].body).group(0)
    assert urlsplit(url).query == ""
