"""The captcha a risk rule asks for (issue 13, risk/captcha.py): an ALTCHA proof-of-work, never
on a clean buyer's first purchase; past a rule's threshold the checkout shows the challenge and
refuses without a solution; a real solution (solved here in Python) passes, once."""

import base64
import json
import time
import uuid
from decimal import Decimal

import altcha
import pytest
from django.test import Client

from agents.models import PriceKind
from agents.services import agents as agent_services
from agents.services import storefronts
from compliance.models import AuditEvent
from orders.models import Order
from orders.services import orders as order_services
from risk import captcha
from risk.models import Alert
from tests.factories import ProductFactory, UserFactory, add_stock, verified_operator

D = Decimal
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english", "risk_limits", "cheap_captcha")]
UA = "Mozilla/5.0 (iPhone) captcha-test"


@pytest.fixture
def cheap_captcha(settings):
    settings.RISK_CAPTCHA_COST = 50  # the same work, less of it: the tests solve many


@pytest.fixture
def product(db):
    p = ProductFactory(price=D("10.00"), face_value=D("10.00"), max_per_order=10)
    add_stock(p, 40)
    return p


@pytest.fixture
def device_rule(settings):
    """Orders per device: past 2 in 10 minutes, a captcha."""
    rule = {"limit": 2, "window": 600, "action": "captcha"}
    settings.RISK_RULES = {**settings.RISK_RULES, "order_burst_device": rule}


def solved(challenge: dict | None = None) -> str:
    """The form's field after solving a challenge from the page's address, as the widget does."""
    data = challenge or Client().get("/risk/captcha/challenge/").json()
    found = altcha.solve_challenge(altcha.Challenge.from_dict(data))
    assert found is not None
    return altcha.Payload(altcha.Challenge.from_dict(data), found).to_base64()


def checkout(client, product, n, **extra):
    email = f"c{n}@example.net"
    data = {"quantity": "1", "idempotency_key": uuid.uuid4().hex, "guest_email": email, "guest_email_confirm": email}
    return client.post(f"/orders/checkout/{product.slug}/", {**data, **extra}, REMOTE_ADDR=f"198.51.100.{n}")


def browser():
    client = Client(HTTP_USER_AGENT=UA)
    client.get("/")  # the device cookie
    assert client.cookies.get("mk_device")
    return client


def test_a_clean_buyers_first_purchase_has_no_captcha(device_rule, product):
    client = browser()
    page = client.get(f"/orders/checkout/{product.slug}/").content.decode()
    assert "altcha-widget" not in page and 'data-testid="captcha"' not in page
    assert checkout(client, product, 1).status_code == 302


def test_past_the_threshold_the_form_shows_the_challenge_and_a_solution_passes_once(device_rule, product):
    client = browser()
    assert [checkout(client, product, n).status_code for n in (1, 2)] == [302, 302]
    refused = checkout(client, product, 3)
    page = refused.content.decode()
    assert refused.status_code == 400 and "complete the verification" in page
    assert 'data-testid="captcha"' in page and 'name="altcha"' in page and "/risk/captcha/challenge/" in page
    assert Order.objects.count() == 2
    alert = Alert.objects.get(rule="order_burst_device")
    assert alert.action == "captcha" and alert.evidence["count"] == 3
    assert AuditEvent.objects.filter(action="risk_captcha_required").exists()

    payload = solved()
    assert checkout(client, product, 4, altcha=payload).status_code == 302
    assert Order.objects.count() == 3
    replay = checkout(client, product, 5, altcha=payload)
    assert replay.status_code == 400 and "did not succeed" in replay.content.decode()
    assert 'data-testid="captcha"' in replay.content.decode()
    assert Order.objects.count() == 3 and AuditEvent.objects.filter(action="risk_captcha_invalid").exists()
    # Another browser is not affected: the rule counts this device.
    assert checkout(browser(), product, 6).status_code == 302


def test_the_storefront_form_shows_it_too(device_rule, product, level):
    agent_services.level_price_set(level=level, product=product, kind=PriceKind.FIXED, value="8.00")
    agent = agent_services.agent_create(user=UserFactory(), level=level)
    verified_operator(agent)
    storefronts.storefront_open(
        agent=agent, slug="lucky", name="Lucky", default_markup_kind=PriceKind.FIXED, default_markup_value="1"
    )
    client = browser()

    def buy(n, **extra):
        email = f"f{n}@example.net"
        data = {"quantity": "1", "idempotency_key": uuid.uuid4().hex, "guest_email": email}
        data["guest_email_confirm"] = email
        return client.post(f"/s/lucky/p/{product.slug}/buy/", {**data, **extra}, REMOTE_ADDR=f"198.51.100.{n}")

    assert "altcha-widget" not in client.get(f"/s/lucky/p/{product.slug}/").content.decode()
    assert [buy(1).status_code, buy(2).status_code] == [302, 302]
    refused = buy(3)
    assert refused.status_code == 400 and 'data-testid="captcha"' in refused.content.decode()
    assert buy(4, altcha=solved()).status_code == 302
    assert Order.objects.filter(channel=Order.Channel.STOREFRONT).count() == 3


@pytest.mark.parametrize(
    "tamper",
    ["", "not base64!", "x" * 5000, "cost", "expired", "wrong-counter", "unsigned", "other-key"],
)
def test_what_is_not_a_solution_is_refused(settings, tamper):
    data = captcha.challenge_create()
    payload = solved(data)
    decoded = json.loads(base64.b64decode(payload))
    if tamper in ("", "not base64!", "x" * 5000):
        payload = tamper
    elif tamper == "cost":
        decoded["challenge"]["parameters"]["cost"] = 1
    elif tamper == "wrong-counter":
        decoded["solution"]["counter"] += 1
    elif tamper == "unsigned":
        decoded["challenge"].pop("signature")
    if tamper in ("cost", "wrong-counter", "unsigned"):
        payload = base64.b64encode(json.dumps(decoded).encode()).decode()
    if tamper == "expired":
        settings.RISK_CAPTCHA_EXPIRES_SECONDS = 1
        payload = solved(captcha.challenge_create())
        time.sleep(2.1)
    if tamper == "other-key":
        settings.RISK_CAPTCHA_HMAC_KEY = "another key"
    with pytest.raises(captcha.CaptchaRequired) as refused:
        captcha.captcha_check(payload=payload)
    assert refused.value.code == ("captcha_required" if tamper == "" else "captcha_invalid")
    assert refused.value.status == 429


def test_a_real_solution_passes_the_service_once(device_rule, product):
    def place(n, payload=""):
        return order_services.order_place(
            buyer=None,
            guest_email=f"s{n}@example.net",
            product=product,
            quantity=1,
            idempotency_key=uuid.uuid4().hex,
            ip=f"192.0.2.{n}",
            device="dev-captcha",
            captcha=payload,
        )

    place(1), place(2)
    with pytest.raises(captcha.CaptchaRequired):
        place(3)
    payload = solved(captcha.challenge_create())
    assert place(4, payload).pk
    with pytest.raises(captcha.CaptchaRequired):
        place(5, payload)


def test_a_refusing_rule_wins_over_a_captcha(settings, product):
    settings.RISK_RULES = {
        **settings.RISK_RULES,
        "order_burst_device": {"limit": 1, "window": 600, "action": "captcha"},
        "order_burst_buyer": {"limit": 1, "window": 600, "action": "refuse"},
    }
    from risk.services import RiskRefused

    args = dict(buyer=None, guest_email="r@example.net", product=product, quantity=1, ip="192.0.2.1", device="d")
    order_services.order_place(idempotency_key=uuid.uuid4().hex, **args)
    with pytest.raises(RiskRefused) as refused:
        order_services.order_place(idempotency_key=uuid.uuid4().hex, captcha=solved(), **args)
    assert refused.value.code == "too_many"


def test_the_challenge_address_answers_a_fresh_signed_challenge(settings):
    first = Client().get("/risk/captcha/challenge/")
    assert first.status_code == 200 and "max-age=0" in first["Cache-Control"]
    data = first.json()
    params = data["parameters"]
    assert params["algorithm"] == "PBKDF2/SHA-256" and params["cost"] == settings.RISK_CAPTCHA_COST
    assert params["expiresAt"] - time.time() == pytest.approx(settings.RISK_CAPTCHA_EXPIRES_SECONDS, abs=5)
    assert data["signature"] and Client().get("/risk/captcha/challenge/").json()["signature"] != data["signature"]
    assert Client().post("/risk/captcha/challenge/").status_code == 405


def test_the_key_is_derived_from_the_secret_key_unless_set(settings):
    settings.RISK_CAPTCHA_HMAC_KEY = ""
    derived = captcha.hmac_key()
    assert derived and settings.SECRET_KEY.encode() not in derived
    settings.RISK_CAPTCHA_HMAC_KEY = "configured"
    assert captcha.hmac_key() == b"configured"


def test_a_signup_past_the_threshold_shows_the_challenge_and_a_solution_passes(settings):
    from accounts.models import User

    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "signup": False}
    settings.RISK_RULES = {**settings.RISK_RULES, "signup_ip": {"limit": 1, "window": 600, "action": "captcha"}}

    def signup(n, **extra):
        data = {"email": f"new{n}@example.com", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"}
        client = Client(HTTP_USER_AGENT=f"{UA} {n}")
        return client.post("/accounts/signup/", {**data, **extra}, REMOTE_ADDR="203.0.113.9")

    assert "altcha-widget" not in Client().get("/accounts/signup/").content.decode()
    assert signup(1).status_code == 302
    refused = signup(2)
    page = refused.content.decode()
    assert refused.status_code == 400 and "complete the verification" in page
    assert 'data-testid="captcha"' in page and 'value="new2@example.com"' in page
    assert not User.objects.filter(email="new2@example.com").exists()
    assert signup(2, altcha=solved()).status_code == 302
    assert User.objects.filter(email="new2@example.com").exists()
