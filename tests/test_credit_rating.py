"""The credit rating (compliance.rating): score arithmetic with decay at a frozen time, the
levels it maps to, staff overrides with expiry (audited), and every restricted action refused
in the service, through the platform checkout, the storefront buy and the signed API, with the
reason shown; a clean buyer's order costs one statement more, no more."""

from datetime import datetime, timedelta
from decimal import Decimal
from importlib import import_module
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.services import storefronts
from compliance import rating
from compliance.models import AuditEvent, CreditEvent, CreditLevel, CreditOverride
from compliance.rating import CreditRestricted
from compliance.services import credit_event_record
from orders.models import Order
from orders.services import orders as order_services
from tests.api_helpers import issue_key, make_agent, top_up
from tests.factories import ProductFactory, add_stock, verified_operator

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
Kind = CreditEvent.Kind
NOW = timezone.make_aware(datetime(2026, 6, 1, 12, 0))


@pytest.fixture(autouse=True)
def seeded_levels(db):
    """The levels the migration seeds (a transactional test elsewhere may have flushed them)."""
    for values in import_module("compliance.migrations.0006_credit_rating").LEVELS:
        CreditLevel.objects.get_or_create(name=values["name"], defaults=values)
    rating.credit_levels_forget()


def event(owner=None, kind=Kind.NO_REASON_REFUND, *, days_ago=0.0, email="", reference="", weight=None):
    """A credit event dated ``days_ago`` days before NOW (``at`` is auto_now_add: set after)."""
    e = credit_event_record(user=owner, email=email, kind=kind, reference=reference, weight=weight)
    CreditEvent.objects.filter(pk=e.pk).update(at=NOW - timedelta(days=days_ago))
    return e


def level(name) -> CreditLevel:
    return CreditLevel.objects.get(name=name)


def frozen():
    """NOW as the rating's clock (and the orders', for the daily cap)."""
    return mock.patch("django.utils.timezone.now", return_value=NOW)


@pytest.fixture
def rules(settings):
    settings.CREDIT_RULES = {
        **settings.CREDIT_RULES,
        "no_reason_refund": {"weight": 2.0, "half_life_days": 90},
        "dispute_lost": {"weight": 4.0, "half_life_days": 30},
        "arbitration_won": {"weight": 0.0, "half_life_days": 30},
        "staff_adjustment": {"weight": 0.0, "half_life_days": 10},
    }


# --- arithmetic -------------------------------------------------------------------------------


def test_a_clean_user_scores_zero_and_is_good(buyer):
    r = rating.credit_rating(user=buyer, now=NOW)
    assert r.score == 0 and r.level.name == "Good" and r.level.limits == []


def test_each_event_halves_every_half_life(buyer, rules):
    event(buyer, days_ago=0)  # 2.0
    event(buyer, days_ago=90)  # 1.0
    event(buyer, days_ago=180)  # 0.5
    event(buyer, Kind.DISPUTE_LOST, days_ago=60, reference="T1")  # 4 * 0.25 = 1.0
    r = rating.credit_rating(user=buyer, now=NOW)
    assert r.score == pytest.approx(4.5)
    assert sorted(round(e.now_weight, 4) for e in r.events) == [0.5, 1.0, 1.0, 2.0]
    # Half a half-life later, every weight is divided by sqrt(2).
    later = rating.credit_rating(user=buyer, now=NOW + timedelta(days=45))
    assert later.score == pytest.approx(2.0 * 0.5**0.5 + 1.0 * 0.5**0.5 + 0.5 * 0.5**0.5 + 4.0 * 0.5**3.5)


def test_arbitration_that_overturns_a_lost_dispute_cancels_it(buyer, rules):
    event(buyer, Kind.DISPUTE_LOST, days_ago=1, reference="T1")
    event(buyer, Kind.DISPUTE_LOST, days_ago=1, reference="T2")
    event(buyer, Kind.ARBITRATION_WON, days_ago=0, reference="T1")
    r = rating.credit_rating(user=buyer, now=NOW)
    assert r.score == pytest.approx(4.0 * 0.5 ** (1 / 30))
    assert [e.reference for e in r.events if e.cancelled] == ["T1"]


def test_a_staff_adjustment_carries_its_own_weight_and_may_lift_the_score(buyer, staff, rules):
    event(buyer, days_ago=0)
    event(buyer, days_ago=0)
    with frozen():
        rating.credit_adjust(by=staff, user=buyer, weight="-1.5", reason="refunds were our fault")
    assert rating.credit_rating(user=buyer, now=NOW).score == pytest.approx(2.5)
    assert AuditEvent.objects.filter(action="credit_adjust", actor=staff, detail__contains="-1.50").exists()
    with pytest.raises(rating.ServiceError):
        rating.credit_adjust(by=staff, user=buyer, weight="2", reason=" ")
    with pytest.raises(rating.ServiceError):
        rating.credit_adjust(by=staff, user=buyer, weight="lots", reason="x")


def test_guests_are_rated_by_their_normalised_email(rules):
    event(email="Guest@Example.com ", days_ago=0)
    assert rating.credit_rating(email="  GUEST@example.COM", now=NOW).score == pytest.approx(2.0)
    assert rating.credit_rating(email="other@example.com", now=NOW).score == 0


# --- levels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "name"),
    [
        (0, "Good"),
        (2.99, "Good"),
        (3, "Watch"),
        (5.99, "Watch"),
        (6, "Restricted"),
        (9.99, "Restricted"),
        (10, "Blocked"),
    ],
)
def test_thresholds_map_scores_to_levels(db, score, name):
    assert rating.level_for_score(score).name == name


def test_the_level_follows_the_score_as_it_decays(buyer, rules):
    for _ in range(3):
        event(buyer, days_ago=0)  # 6.0: Restricted
    assert rating.credit_rating(user=buyer, now=NOW).level.name == "Restricted"
    assert rating.credit_rating(user=buyer, now=NOW + timedelta(days=90)).level.name == "Watch"  # 3.0
    assert rating.credit_rating(user=buyer, now=NOW + timedelta(days=180)).level.name == "Good"  # 1.5


def test_staff_edits_to_the_levels_apply_at_once(buyer, rules):
    event(buyer, days_ago=0)  # 2.0
    assert rating.credit_rating(user=buyer, now=NOW).level.name == "Good"
    CreditLevel.objects.filter(name="Watch").update(min_score=2)
    rating.credit_levels_forget()
    assert rating.credit_rating(user=buyer, now=NOW).level.name == "Watch"


# --- overrides --------------------------------------------------------------------------------


def test_an_override_applies_until_it_expires_and_is_audited(buyer, staff):
    with frozen():
        rating.credit_override_set(
            by=staff,
            user=buyer,
            level=level("Blocked"),
            reason="stolen card report",
            expires_at=NOW + timedelta(days=7),
        )
    r = rating.credit_rating(user=buyer, now=NOW + timedelta(days=6))
    assert (r.level.name, r.computed_level.name, r.is_overridden) == ("Blocked", "Good", True)
    assert "stolen card report" in r.reasons()
    assert rating.credit_rating(user=buyer, now=NOW + timedelta(days=7, seconds=1)).level.name == "Good"
    audit = AuditEvent.objects.get(action="credit_override")
    assert audit.actor == staff and "Blocked" in audit.detail and "stolen card report" in audit.detail


def test_a_new_override_replaces_the_old_and_a_revoked_one_stops(buyer, staff):
    with frozen():
        first = rating.credit_override_set(
            by=staff, user=buyer, level=level("Blocked"), reason="a", expires_at=NOW + timedelta(days=30)
        )
        second = rating.credit_override_set(
            by=staff, user=buyer, level=level("Watch"), reason="b", expires_at=NOW + timedelta(days=1)
        )
    first.refresh_from_db()
    assert first.revoked_at is not None
    assert rating.credit_rating(user=buyer, now=NOW).level.name == "Watch"
    rating.credit_override_revoke(by=staff, override=second)
    assert rating.credit_rating(user=buyer, now=NOW).level.name == "Good"
    assert AuditEvent.objects.filter(action="credit_override_revoke").count() == 1


def test_an_override_needs_a_reason_and_a_future_end(buyer, staff):
    with pytest.raises(rating.ServiceError):
        rating.credit_override_set(by=staff, user=buyer, level=level("Blocked"), reason="", expires_at=NOW)
    with pytest.raises(rating.ServiceError):
        rating.credit_override_set(
            by=staff, user=buyer, level=level("Blocked"), reason="x", expires_at=timezone.now() - timedelta(seconds=1)
        )
    assert not CreditOverride.objects.exists()


# --- enforcement in the services --------------------------------------------------------------


def force(owner, name, *, email=""):
    CreditOverride.objects.create(
        user=owner, email=email, level=level(name), reason="test", expires_at=timezone.now() + timedelta(days=1)
    )


@pytest.fixture
def product(db):
    p = ProductFactory(price=Decimal("10.00"))
    add_stock(p, 8)
    return p


def place(buyer, product, quantity=1, key="k1", **kw):
    return order_services.order_place(buyer=buyer, product=product, quantity=quantity, idempotency_key=key, **kw)


def test_blocked_may_not_buy_and_is_told_why(buyer, product):
    for _ in range(4):
        credit_event_record(user=buyer, kind=Kind.ARBITRATION_LOST, reference="T")
    assert rating.credit_rating(user=buyer).level.name == "Blocked"  # 4 x 3 points, not yet decayed
    with pytest.raises(CreditRestricted) as refused:
        place(buyer, product)
    assert (refused.value.code, refused.value.status) == ("risk_restricted", 403)
    message = str(refused.value)
    assert "“Blocked”" in message and "no purchases" in message and "Arbitration decided against the user ×4" in message
    assert not Order.objects.exists()
    assert AuditEvent.objects.filter(action="credit_purchase", outcome="denied").exists()


def test_restricted_caps_codes_per_order_and_per_day_and_high_risk_goods(buyer, product):
    force(buyer, "Restricted")
    with pytest.raises(CreditRestricted, match="at most 1 code per order"):
        place(buyer, product, quantity=2)
    place(buyer, product, key="a")
    place(buyer, product, key="b")
    place(buyer, product, key="c")
    with pytest.raises(CreditRestricted, match=r"at most 3 codes per day \(3 today\)"):
        place(buyer, product, key="d")
    risky = ProductFactory(is_high_risk=True)
    add_stock(risky, 2)
    force(buyer, "Restricted")
    with pytest.raises(CreditRestricted, match="no high-risk goods"):
        place(buyer, risky, key="e")
    assert Order.objects.count() == 3


def test_restricted_pays_from_the_balance_only(buyer, product):
    from payments.gateways import Device
    from payments.services import payments

    force(buyer, "Restricted")
    order = place(buyer, product)
    with pytest.raises(CreditRestricted, match="pay with the account balance only"):
        payments.payment_start(gateway_code="sandbox", payable=order, device=Device.DESKTOP, client_ip="", subject="x")
    top_up(buyer, "10")  # a recharge through a gateway stays allowed
    payments.balance_pay(order_number=order.number, buyer=buyer)


def test_a_restricted_guest_cannot_buy_for_want_of_a_balance(product):
    force(None, "Restricted", email="g@example.com")
    with pytest.raises(CreditRestricted, match="pay with the account balance only"):
        place(None, product, guest_email="G@example.com")
    assert not Order.objects.exists()


def test_blocked_agents_may_not_withdraw(db):
    from agents.services import withdrawals

    agent = make_agent()
    force(agent.user, "Blocked")
    with pytest.raises(CreditRestricted, match="no commission withdrawals"):
        withdrawals.withdrawal_request(
            agent=agent,
            amount="100",
            method="alipay",
            payee_name="张三",
            payee_account="13800138000",
            idempotency_key="w1",
        )


def test_an_expired_order_is_a_credit_event(buyer, product):
    order = place(buyer, product)
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert order_services.order_expire(order_id=order.pk)
    assert CreditEvent.objects.get(user=buyer).kind == Kind.ORDER_EXPIRED
    assert not order_services.order_expire(order_id=order.pk)  # once
    assert CreditEvent.objects.count() == 1


def test_a_clean_buyer_costs_no_statement_of_its_own(buyer, product, settings):
    # A clean buyer's rating is known from a probe inside the risk screen's one statement
    # (orders.services.risk._screen_read): no query of the rating's own.
    place(buyer, product, key="warm")  # caches the levels, as a running site has them
    with CaptureQueriesContext(connection) as clean:
        place(buyer, product, key="x1")
    with mock.patch.object(rating, "purchase_check"), CaptureQueriesContext(connection) as without:
        place(buyer, product, key="x2")
    assert len(clean.captured_queries) == len(without.captured_queries)
    sql = [q["sql"] for q in clean.captured_queries if "compliance_creditevent" in q["sql"]]
    assert len(sql) == 1 and "UNION ALL" not in sql[0] and "EXISTS" in sql[0]
    # A buyer with an event on record: the rating itself is read (one statement more).
    event(buyer, Kind.STAFF_ADJUSTMENT, weight=Decimal("0.5"))
    with CaptureQueriesContext(connection) as rated:
        place(buyer, product, key="x3")
    assert len(rated.captured_queries) == len(clean.captured_queries) + 1
    assert [q for q in rated.captured_queries if "UNION ALL" in q["sql"]]


# --- through every door -----------------------------------------------------------------------


def test_the_checkout_page_shows_the_refusal(client, buyer, product):
    force(buyer, "Blocked")
    client.force_login(buyer)
    response = client.post(f"/orders/checkout/{product.slug}/", {"quantity": "1", "idempotency_key": "c" * 32})
    assert response.status_code == 400
    assert "Your account&#x27;s credit level is “Blocked”: no purchases." in response.content.decode()
    assert not Order.objects.exists()


def test_the_guest_checkout_shows_the_refusal(client, product):
    force(None, "Blocked", email="g@example.com")
    data = {
        "quantity": "1",
        "idempotency_key": "g" * 32,
        "guest_email": "g@example.com",
        "guest_email_confirm": "g@example.com",
        "query_password": "",
    }
    response = client.post(f"/orders/checkout/{product.slug}/", data)
    assert response.status_code == 400 and "no purchases" in response.content.decode()
    assert not Order.objects.exists()


def test_the_storefront_buy_shows_the_refusal(client, buyer, product):
    agent = make_agent()
    verified_operator(agent)
    storefronts.storefront_open(agent=agent, slug="lucky", name="Lucky")
    force(buyer, "Restricted")
    client.force_login(buyer)
    response = client.post(f"/s/lucky/p/{product.slug}/buy/", {"quantity": 2, "idempotency_key": "s" * 32})
    assert response.status_code == 400
    assert "at most 1 code per order" in response.content.decode()
    assert not Order.objects.exists()


def test_the_signed_api_answers_403_risk_restricted(db, product):
    agent = make_agent()
    top_up(agent.user, "100")
    shop = issue_key(agent)
    force(agent.user, "Blocked")
    response = shop.post("/api/v1/orders/", {"product_id": product.pk, "quantity": 1, "agent_order_no": "R-1"})
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["code"] == "risk_restricted" and "no purchases" in body["message"] and body["level"] == "Blocked"
    assert not Order.objects.exists()


def test_the_refusal_is_in_chinese_for_a_chinese_buyer(client, buyer, product, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    force(buyer, "Restricted")
    client.force_login(buyer)
    response = client.post(
        f"/orders/checkout/{product.slug}/",
        {"quantity": "2", "idempotency_key": "z" * 32},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    text = response.content.decode()
    assert "您的账户信用等级为“受限”：每单最多 1 件" in text, text[:3000]


# --- refunds, profile, staff ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # fulfilment runs after the commit
def test_watch_sends_no_reason_refunds_to_staff_review(buyer):
    from aftersales.models import RefundRequest
    from tests.builders import ask, codes_of, delivered_order

    order = delivered_order(buyer, quantity=1)
    force(buyer, "Watch")
    request = ask(buyer, order, codes_of(order))
    assert request.status == RefundRequest.Status.UNDER_REVIEW and request.ticket.is_dispute
    assert "your credit level is “Watch”" in request.review_reason


def test_the_profile_shows_the_level_its_limits_the_events_and_an_appeal_link(client, buyer):
    credit_event_record(user=buyer, kind=Kind.NO_REASON_REFUND, reference="O-1")
    force(buyer, "Restricted")
    client.force_login(buyer)
    text = client.get("/accounts/profile/").content.decode()
    assert "Restricted" in text and "at most 1 code per order" in text and "pay with the account balance only" in text
    assert "No-reason refund" in text and "O-1" in text and "1.00" in text
    assert "/support/new/?kind=credit_appeal" in text


def test_a_clean_profile_says_nothing_is_limited(client, buyer):
    client.force_login(buyer)
    text = client.get("/accounts/profile/").content.decode()
    assert "Nothing is limited" in text and "Appeal this level" not in text


def test_staff_see_the_panel_and_override_from_the_user_admin(client, staff, buyer):
    credit_event_record(user=buyer, kind=Kind.DISPUTE_LOST, reference="T-9")
    client.force_login(staff)
    page = client.get(f"/admin/accounts/user/{buyer.pk}/change/").content.decode()
    assert "Dispute decided against the user" in page and "T-9" in page
    url = f"/admin/accounts/user/{buyer.pk}/credit/"
    assert client.get(url).status_code == 200
    until = (timezone.localtime() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M")
    response = client.post(
        url, {"do": "override", "level": level("Blocked").pk, "expires_at": until, "reason": "chargeback"}
    )
    assert response.status_code == 302
    assert rating.credit_rating(user=buyer).level.name == "Blocked"
    assert AuditEvent.objects.filter(action="credit_override", actor=staff, detail__contains="chargeback").exists()
    response = client.post(url, {"do": "adjust", "weight": "-2", "reason": "goodwill"})
    assert response.status_code == 302 and CreditEvent.objects.filter(kind=Kind.STAFF_ADJUSTMENT).exists()
    # Without a reason: the form is shown again, nothing set.
    response = client.post(url, {"do": "override", "level": level("Good").pk, "expires_at": until, "reason": ""})
    assert response.status_code == 200 and CreditOverride.objects.count() == 1


def test_the_order_admin_shows_the_buyers_rating(client, staff, buyer, product):
    order = place(buyer, product)
    credit_event_record(user=buyer, kind=Kind.REISSUE, reference=order.number)
    client.force_login(staff)
    page = client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert "Code reissued" in page


def test_editing_a_level_in_admin_applies_at_once(client, staff, buyer, product):
    client.force_login(staff)
    good = level("Good")
    response = client.post(
        f"/admin/compliance/creditlevel/{good.pk}/change/",
        {
            "name": "Good",
            "min_score": "0",
            "may_purchase": "on",
            "max_codes_per_order": "1",
            "max_codes_per_day": "",
            "may_buy_high_risk": "on",
            "may_withdraw": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with pytest.raises(CreditRestricted, match="at most 1 code per order"):
        place(buyer, product, quantity=2)
    assert AuditEvent.objects.filter(action="credit_level_save").exists()


def test_a_rating_with_events_and_an_override_on_sqlite(tmp_path):
    """The development default (SQLite) reads the same rating: the rows' statement is portable
    SQL (it once used PostgreSQL's ``::`` casts and a parenthesised UNION, a 503 there)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = """
import django
django.setup()
from datetime import timedelta
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
call_command("migrate", verbosity=0)
assert connection.vendor == "sqlite"
from accounts.models import User
from compliance import rating
from compliance.models import CreditLevel, CreditOverride
from compliance.services import credit_event_record
u = User.objects.create(username="a", email="a@example.com")
assert rating.credit_rating(user=u).score == 0
credit_event_record(user=u, kind="no_reason_refund", reference="K1")
credit_event_record(email="Guest@Example.com", kind="no_reason_refund", reference="K2")
member = rating.credit_rating(user=u)
assert member.score > 0 and len(member.events) == 1 and member.override is None, member
assert round(rating.credit_rating(email="guest@example.com").score, 3) == round(member.score, 3)
level = CreditLevel.objects.order_by("min_score").last()
until = timezone.now() + timedelta(days=1)
CreditOverride.objects.create(user=u, level=level, reason="checked by hand", expires_at=until)
overridden = rating.credit_rating(user=u)
assert overridden.override is not None and overridden.level.pk == level.pk, overridden
print("sqlite ok")
"""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
    }
    base = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=base, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sqlite ok" in result.stdout
