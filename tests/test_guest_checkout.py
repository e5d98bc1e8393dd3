"""Guest checkout (issue 12, first part): a visitor without an account buys on the platform and
on a storefront through the same checkout, pays through the sandbox gateway (real RSA2
signatures, the notification pipeline, fulfilment), gets the delivery email with a signed,
expiring link, and reveals codes only after proving the order (query password, or a one-time
code emailed to the guest address). Nobody else reaches the order: 404, like an unknown number.
"""

import re
import time
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.hashers import check_password
from django.core import mail, signing
from django.test import Client
from django.utils import timezone

from agents.models import PriceKind
from agents.services import agents as agent_services
from agents.services import storefronts
from catalog.services import code_plaintext
from compliance.models import AuditEvent
from orders.models import CodeReveal, GuestAccessCode, Order
from orders.services import guest as guest_services
from orders.services import orders as order_services
from payments.models import Payment, Refund
from payments.services import refunds
from tests.builders import run_concurrently
from tests.factories import ProductFactory, UserFactory, add_stock, verified_operator

D = Decimal
# Transactional: payment, fulfilment and the emails run after their commits, as in production.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english", "sandbox")]
EMAIL = "Guest.Buyer@Example.net "  # as typed: normalised to guest.buyer@example.net
STORED = "guest.buyer@example.net"
LINK = re.compile(r"https?://[^\s]+/orders/g/[^\s/]+/")


@pytest.fixture
def sandbox(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    settings.GUEST_CODE_MAX_ATTEMPTS = 3


@pytest.fixture
def product(db):
    p = ProductFactory(price=D("50.00"), face_value=D("50.00"), slug="steam-50")
    add_stock(p, 6)
    return p


def guest_post(password: str = "", **extra) -> dict:
    return {
        "quantity": "2",
        "idempotency_key": uuid.uuid4().hex,
        "guest_email": EMAIL,
        "guest_email_confirm": EMAIL.strip().upper(),
        "query_password": password,
        **extra,
    }


def pay_in_sandbox(client: Client, number: str):
    """The choose page, the sandbox gateway's start, its cashier's pay button: the signed
    notification goes through payments.services.payments.notification_receive."""
    choose = client.get(f"/pay/{number}/")
    assert choose.status_code == 200
    page = choose.content.decode()
    assert 'data-testid="gateway-sandbox"' in page and 'data-testid="pay-balance"' not in page  # no balance for guests
    started = client.post(f"/pay/{number}/start/sandbox/")
    assert started.status_code == 302
    cashier = started["Location"]
    assert client.get(cashier).status_code == 200
    return client.post(cashier)


def buy_as_guest(client: Client, product, password: str = "secret-pw") -> Order:
    response = client.post(f"/orders/checkout/{product.slug}/", guest_post(password))
    assert response.status_code == 302, response.content.decode()[:2000]
    order = Order.objects.get()
    assert response["Location"] == f"/pay/{order.number}/"
    paid = pay_in_sandbox(client, order.number)
    assert paid.status_code == 302 and paid["Location"] == f"/orders/guest/{order.number}/"
    order.refresh_from_db()
    return order


def link_in(message) -> str:
    return LINK.search(message.body).group(0)


def secrets_of(order) -> list[str]:
    return [code_plaintext(oc.code)[1] for oc in order.codes.select_related("code")]


def reveal(client: Client, order: Order, index: int = 0):
    oc = order.codes.order_by("id")[index]
    return client.post(f"/orders/guest/{order.number}/codes/{oc.pk}/reveal/")


# --- buying ---------------------------------------------------------------------------------


def test_guest_checkout_checks_the_email_twice_and_places_nothing_when_wrong(client, product):
    page = client.get(f"/orders/checkout/{product.slug}/")
    assert page.status_code == 200 and 'data-testid="guest-email"' in page.content.decode()
    mismatch = client.post(
        f"/orders/checkout/{product.slug}/", guest_post(guest_email_confirm="someone.else@example.net")
    )
    assert mismatch.status_code == 400 and "The two email addresses do not match." in mismatch.content.decode()
    invalid = client.post(f"/orders/checkout/{product.slug}/", guest_post(guest_email="x", guest_email_confirm="x"))
    assert invalid.status_code == 400
    short = client.post(f"/orders/checkout/{product.slug}/", guest_post(password="123"))
    assert short.status_code == 400
    assert not Order.objects.exists()


def test_a_likely_misspelt_provider_is_pointed_out_and_can_be_kept(client, product):
    """Typed twice alike is no proof (copied, or the same slip twice) and the order's link goes to
    this address only: qq.con is pointed out with the likely address; the same address submitted
    again (the form sends back which one was pointed out) is taken as typed."""
    typo = "zhang.san@qq.con"
    pointed = client.post(f"/orders/checkout/{product.slug}/", guest_post(guest_email=typo, guest_email_confirm=typo))
    assert pointed.status_code == 400 and not Order.objects.exists()
    page = pointed.content.decode()
    assert "Did you mean zhang.san@qq.com?" in page
    assert 'data-fill-email="zhang.san@qq.com"' in page
    assert '<input type="hidden" name="guest_email_checked" value="zhang.san@qq.con">' in page
    # Corrected: placed with the right address.
    right = "zhang.san@qq.com"
    placed = client.post(f"/orders/checkout/{product.slug}/", guest_post(guest_email=right, guest_email_confirm=right))
    assert placed.status_code == 302 and Order.objects.get().guest_email == right
    # Kept as typed: the second submission of the address that was pointed out.
    kept = client.post(
        f"/orders/checkout/{product.slug}/",
        guest_post(guest_email=typo, guest_email_confirm=typo, guest_email_checked=typo.upper()),
    )
    assert kept.status_code == 302
    assert sorted(Order.objects.values_list("guest_email", flat=True)) == [right, typo]
    # Another address than the one pointed out is checked afresh.
    other = "li.si@163.cm"
    again = client.post(
        f"/orders/checkout/{product.slug}/",
        guest_post(guest_email=other, guest_email_confirm=other, guest_email_checked=typo),
    )
    assert again.status_code == 400 and "Did you mean li.si@163.com?" in again.content.decode()


def test_a_guest_buys_on_the_platform_pays_in_the_sandbox_and_gets_the_signed_link(client, product):
    order = buy_as_guest(client, product, password="secret-pw")
    assert order.status == Order.Status.DELIVERED
    assert order.buyer is None and order.guest_email == STORED
    assert (order.unit_price, order.total, order.channel) == (D("50.00"), D("100.00"), Order.Channel.WEB)
    # The query password is kept only as a Django hash.
    assert order.query_password != "secret-pw" and check_password("secret-pw", order.query_password)
    payment = Payment.objects.get(order=order)
    assert payment.gateway == "sandbox" and payment.amount == D("100.00")
    # The delivery email: to the guest address, with a signed link and never a code.
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [STORED] and order.number in message.subject
    assert not any(s in message.body for s in secrets_of(order))
    token = link_in(message).rstrip("/").rsplit("/", 1)[1]
    assert guest_services.guest_link_number(token=token) == order.number
    # The browser that bought sees the order, but no code without a proof.
    page = client.get(f"/orders/guest/{order.number}/").content.decode()
    assert "Delivered" in page and "¥100.00" in page and 'data-testid="guest-proof"' in page
    assert 'data-testid="reveal"' not in page
    assert not any(s in page for s in secrets_of(order))
    refused = reveal(client, order)
    assert refused.status_code == 403
    assert not CodeReveal.objects.exists()
    assert AuditEvent.objects.filter(action="guest_order.reveal", target=order.number).exists()


def test_a_guest_buys_on_a_storefront_at_its_retail_price(client, product, level):
    agent_services.level_price_set(level=level, product=product, kind=PriceKind.FIXED, value="40.00")
    agent = agent_services.agent_create(user=UserFactory(), level=level)
    verified_operator(agent)
    storefronts.storefront_open(
        agent=agent, slug="lucky", name="Lucky", default_markup_kind=PriceKind.FIXED, default_markup_value="5"
    )
    page = client.get(f"/s/lucky/p/{product.slug}/").content.decode()
    assert 'data-testid="guest-email"' in page and "¥45.00" in page
    response = client.post(f"/s/lucky/p/{product.slug}/buy/", guest_post())
    assert response.status_code == 302
    order = Order.objects.get()
    assert (order.buyer, order.guest_email, order.channel) == (None, STORED, Order.Channel.STOREFRONT)
    assert (order.agent, order.unit_price, order.total) == (agent, D("45.00"), D("90.00"))
    paid = pay_in_sandbox(client, order.number)
    assert paid["Location"] == f"/orders/guest/{order.number}/"
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [STORED]


def test_the_gateway_notification_url_pays_a_guest_order(client, product):
    from tests.test_payment_pipeline import notify, signed

    order = order_services.order_place(buyer=None, guest_email=EMAIL, product=product, quantity=1, idempotency_key="k1")
    assert notify(Client(), signed(order)).content == b"success"
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED and mail.outbox[0].to == [STORED]


def test_a_guest_refund_goes_back_to_the_original_channel_and_the_guest_address(client, product, staff):
    order = buy_as_guest(client, product)
    mail.outbox.clear()
    refund = refunds.order_refund(order=order, quantity=None, reason="test", requested_by=staff)
    refund.refresh_from_db()
    order.refresh_from_db()
    assert (refund.amount, refund.status, refund.payment.gateway) == (D("100.00"), Refund.Status.SUCCEEDED, "sandbox")
    assert order.status == Order.Status.REFUNDED
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [STORED]
    assert LINK.search(mail.outbox[0].body)  # the signed link: a guest has no account to log in to


@pytest.mark.postgres
def test_a_concurrent_double_submit_makes_one_order(product):
    key = uuid.uuid4().hex

    def submit(i):
        return order_services.order_place(
            buyer=None, guest_email=EMAIL, product_id=product.pk, quantity=2, idempotency_key=key
        )

    results = run_concurrently(4, submit)
    assert all(isinstance(r, Order) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert Order.objects.count() == 1
    # Another guest's address with the same key is another order (keys are per guest).
    other = order_services.order_place(
        buyer=None, guest_email="b@example.net", product_id=product.pk, quantity=1, idempotency_key=key
    )
    assert other.pk != results[0].pk


# --- the link and the proofs ----------------------------------------------------------------


def test_the_link_shows_the_order_and_the_query_password_reveals_codes_one_by_one(client, product):
    order = buy_as_guest(client, product, password="secret-pw")
    url = link_in(mail.outbox[0])
    other = Client()  # another browser: the email's link
    opened = other.get(urlsplit(url).path)
    assert opened.status_code == 302 and opened["Location"] == f"/orders/guest/{order.number}/"
    page = other.get(opened["Location"]).content.decode()
    assert order.product_name in page and "¥100.00" in page and 'data-testid="reveal"' not in page
    assert not any(s in page for s in secrets_of(order))
    # A wrong password: refused, audited, nothing shown.
    other.post(f"/orders/guest/{order.number}/unlock/", {"query_password": "wrong-pw"})
    assert AuditEvent.objects.filter(action="guest_order.password", target=order.number).count() == 1
    assert reveal(other, order).status_code == 403
    # The right one: this browser may reveal, one code at a time, logged with the IP.
    unlocked = other.post(f"/orders/guest/{order.number}/unlock/", {"query_password": "secret-pw"})
    assert unlocked.status_code == 302
    assert 'data-testid="reveal"' in other.get(f"/orders/guest/{order.number}/").content.decode()
    first, second = secrets_of(order)
    shown = reveal(other, order, 0).content.decode()
    assert first in shown and second not in shown
    log = CodeReveal.objects.get()
    assert log.user is None and log.ip == "127.0.0.1" and log.order_code.order == order
    # The buying browser (no proof) still sees no code.
    assert reveal(client, order, 1).status_code == 403
    assert first not in client.get(f"/orders/guest/{order.number}/").content.decode()


def test_an_emailed_one_time_code_unlocks_once_within_its_attempts_and_time(client, product, settings):
    order = buy_as_guest(client, product, password="")
    assert order.query_password == ""
    page = client.get(f"/orders/guest/{order.number}/").content.decode()
    assert 'data-testid="password-form"' not in page and 'data-testid="send-code"' in page
    assert "gu***@example.net" in page and STORED not in page  # the address, hinted only
    send = f"/orders/guest/{order.number}/code/send/"
    check = f"/orders/guest/{order.number}/code/check/"

    def emailed_code() -> str:
        message = mail.outbox[-1]
        assert message.to == [STORED]
        return re.search(r"\b(\d{6})\b", message.body).group(1)

    # Wrong codes are refused and counted; past the limit even the right code is refused.
    client.post(send)
    code = emailed_code()
    assert GuestAccessCode.objects.get().code_hash != code  # stored hashed
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(settings.GUEST_CODE_MAX_ATTEMPTS):
        client.post(check, {"code": wrong})
    client.post(check, {"code": code})
    assert reveal(client, order).status_code == 403
    assert AuditEvent.objects.filter(action="guest_order.code", target=order.number).count() == 4
    # An expired code is refused.
    client.post(send)
    code = emailed_code()
    GuestAccessCode.objects.filter(used_at__isnull=True).update(expires_at=timezone.now())
    client.post(check, {"code": code})
    assert reveal(client, order).status_code == 403
    # A fresh code works once.
    client.post(send)
    code = emailed_code()
    assert client.post(check, {"code": code}).status_code == 302
    assert reveal(client, order).status_code == 200
    other = Client()
    other.get(f"/orders/g/{guest_services.guest_link_token(number=order.number)}/")
    other.post(check, {"code": code})  # used up: another browser cannot reuse it
    assert reveal(other, order, 1).status_code == 403
    # Codes sent per hour are limited.
    for _ in range(settings.GUEST_CODES_PER_HOUR):
        client.post(send)
    assert GuestAccessCode.objects.filter(order=order).count() == settings.GUEST_CODES_PER_HOUR


def test_a_tampered_or_expired_link_is_refused(client, product, monkeypatch):
    order = buy_as_guest(client, product)
    stranger = Client()
    token = guest_services.guest_link_token(number=order.number)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert stranger.get(f"/orders/g/{tampered}/").status_code == 404
    # A link for another number, signed by someone else's key.
    forged = signing.TimestampSigner(key="not-our-secret", salt=guest_services.LINK_SALT).sign(order.number)
    assert stranger.get(f"/orders/g/{forged}/").status_code == 404
    # A link older than GUEST_LINK_MAX_AGE_DAYS.
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now - 31 * 86400)
    old = guest_services.guest_link_token(number=order.number)
    monkeypatch.undo()
    assert stranger.get(f"/orders/g/{old}/").status_code == 404
    assert stranger.get(f"/orders/guest/{order.number}/").status_code == 404


# --- nobody else ----------------------------------------------------------------------------


def test_nobody_else_reaches_a_guest_order_and_numbers_cannot_be_probed(client, product, buyer):
    order = buy_as_guest(client, product)
    member = Client()
    member.force_login(buyer)
    stranger = Client()
    for c in (member, stranger):
        for url in (f"/orders/guest/{order.number}/", f"/orders/guest/{order.number}/status/"):
            assert c.get(url).status_code == 404, url
        assert c.post(f"/orders/guest/{order.number}/unlock/", {"query_password": "secret-pw"}).status_code == 404
        assert c.post(f"/orders/guest/{order.number}/code/send/").status_code == 404
        assert reveal(c, order).status_code == 404
    # A member's own pages: the number is not theirs. Paying it: 404 for the member; a
    # stranger goes to the login page, as for any number.
    assert member.get(f"/orders/{order.number}/").status_code == 404
    assert member.get(f"/pay/{order.number}/").status_code == 404
    assert member.post(f"/pay/{order.number}/start/sandbox/").status_code == 404
    assert stranger.get(f"/pay/{order.number}/")["Location"].startswith("/accounts/login/")
    assert stranger.get(f"/pay/ZZ{order.number[2:]}/")["Location"].startswith("/accounts/login/")
    assert order.number not in member.get("/orders/").content.decode()
    # A guessed number answers exactly like a real one.
    guessed = order.number[:-4] + "ZZZZ"
    assert stranger.get(f"/orders/guest/{guessed}/").status_code == 404
    assert len(mail.outbox) == 1  # no code was sent to the guest by anyone else


def test_the_guest_pages_speak_chinese_to_a_chinese_reader(product, settings):
    from tests.test_pages_display import english_fragments, visible_text

    settings.LANGUAGE_CODE = "zh-hans"  # the emails' language
    fragments = english_fragments()
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    pages = [client.get(f"/orders/checkout/{product.slug}/")]
    pages.append(client.post(f"/orders/checkout/{product.slug}/", guest_post(guest_email_confirm="x@example.net")))
    order = buy_as_guest(client, product, password="secret-pw")
    pages.append(client.get(f"/pay/{Order.objects.get().number}/"))
    pages.append(client.get(f"/orders/guest/{order.number}/"))
    client.post(f"/orders/guest/{order.number}/unlock/", {"query_password": "secret-pw"})
    pages.append(client.get(f"/orders/guest/{order.number}/"))
    english = []
    for response in pages:
        text = visible_text(response.content.decode())
        english += [f for f in fragments if f in text]
    assert "免注册购买" in visible_text(pages[0].content.decode())
    assert english == []
    assert "链接" in mail.outbox[0].body and "天内有效" in mail.outbox[0].body  # the email too


def test_wrong_query_passwords_are_limited_per_order(client, product, settings):
    settings.GUEST_PASSWORD_MAX_FAILURES = 3
    order = buy_as_guest(client, product, password="secret-pw")
    unlock = f"/orders/guest/{order.number}/unlock/"
    for _ in range(3):
        client.post(unlock, {"query_password": "guess-123"})
    client.post(unlock, {"query_password": "secret-pw"})  # right, but too late this hour
    assert reveal(client, order).status_code == 403
    denied = AuditEvent.objects.filter(action="guest_order.password", target=order.number)
    assert denied.count() == 4 and denied.filter(detail="throttled").count() == 1


def test_a_rotated_secret_key_keeps_emailed_links_and_sessions_working_with_its_fallback(client, product, settings):
    """DJANGO_SECRET_KEY rotated with the old one in DJANGO_SECRET_KEY_FALLBACKS: the link in a
    guest's email still opens the order, a member stays signed in (and the session is moved to
    the new key on its next request); without the fallback, neither."""
    order = buy_as_guest(client, product)
    link = f"/orders/g/{guest_services.guest_link_token(number=order.number)}/"
    signed_in, away = Client(), Client()
    signed_in.force_login(UserFactory())
    away.force_login(UserFactory())
    assert signed_in.get("/orders/").status_code == away.get("/orders/").status_code == 200
    old = settings.SECRET_KEY

    def opens(link: str) -> bool:  # to the guest's order page; an invalid link is a 404
        response = Client().get(link)
        assert response.status_code in (302, 404)
        return response.status_code == 302 and response.url == f"/orders/guest/{order.number}/"

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-secret-" + "x" * 40, [old]
    assert opens(link)
    assert signed_in.get("/orders/").status_code == 200
    new_link = f"/orders/g/{guest_services.guest_link_token(number=order.number)}/"
    assert new_link != link and opens(new_link)  # signed with the new key

    settings.SECRET_KEY_FALLBACKS = []
    assert not opens(link)
    assert opens(new_link)
    assert signed_in.get("/orders/").status_code == 200  # its session was moved to the new key
    assert away.get("/orders/").status_code == 302  # not seen while the fallback was there: signed out
