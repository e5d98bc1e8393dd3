"""Risk control (issue 13), anomaly detection: failed-payment and refund velocity per buyer, IP
and device where the event happens; devices, IPs and payout accounts shared by many accounts
(the beat task); and alerts feeding the credit rating (staff block, or rules marked so), with a
dismissal taking it back."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client

from aftersales.models import RefundRequest
from compliance import rating
from compliance.models import AuditEvent, CreditEvent
from orders import tasks as order_tasks
from orders.models import Order
from orders.services import orders as order_services
from orders.services.risk import clusters_scan
from payments.models import PaymentAttempt
from payments.services import reconciliation
from risk import services as risk
from risk.models import Alert, BlockEntry, Signup
from tests.builders import ask, codes_of, delivered_order
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.test_reconciliation import AlipayChannel, expire, start
from tests.test_withdrawals import give, make_agent, request

D = Decimal
pytestmark = pytest.mark.usefixtures("english")
Kind = CreditEvent.Kind


def rule(settings, name, limit, action, window=3600):
    settings.RISK_RULES = {**settings.RISK_RULES, name: {"limit": limit, "window": window, "action": action}}


def place(product, *, buyer=None, email="", ip="203.0.113.7", device="dev-a"):
    return order_services.order_place(
        buyer=buyer,
        guest_email=email,
        product=product,
        quantity=1,
        idempotency_key=uuid.uuid4().hex,
        ip=ip,
        device=device,
    )


# --- failed payments --------------------------------------------------------------------------


@pytest.mark.django_db
def test_trades_closed_unpaid_from_one_device_raise_an_alert_and_block_its_checkout(settings, alipay, fake):
    rule(settings, "payment_failed_device", 2, "block")
    channel = AlipayChannel(fake)
    product = ProductFactory(price=D("10.00"))
    add_stock(product, 10)
    results = []
    for n in range(3):  # three guests on one device: each opens Alipay, never pays, the order lapses
        order = place(product, email=f"g{n}@example.net", ip=f"192.0.2.{n}", device="dev-pay")
        start(channel, order)
        expire(order)
        results.append(reconciliation.attempt_check(attempt_id=PaymentAttempt.objects.get(number=order.number).pk))
    assert results == ["closed"] * 3
    alert = Alert.objects.get(rule="payment_failed_device")
    assert (alert.action, alert.device, alert.email) == ("block", "dev-pay", "g2@example.net")
    assert alert.evidence["count"] == 3 and alert.evidence["limit"] == 2
    assert alert.evidence["event"] == "payment_failed" and alert.evidence["reference"].startswith("alipay:")
    entry = BlockEntry.objects.get(alert=alert)
    assert (entry.kind, entry.value, entry.scope) == ("device", "dev-pay", "checkout")
    assert entry.expires_at is not None  # blocked for RISK_BLOCK_MINUTES, not for ever
    with pytest.raises(risk.RiskRefused) as refused:
        place(product, email="new@example.net", ip="198.51.100.1", device="dev-pay")
    assert refused.value.code == "blacklisted"
    # Staff find it harmless: the block is lifted, the device buys again.
    risk.alert_dismiss(alert_id=alert.pk, by=UserFactory(is_staff=True))
    assert place(product, email="new@example.net", ip="198.51.100.1", device="dev-pay").status == "pending"


@pytest.mark.django_db
def test_a_trade_closed_after_the_order_was_paid_another_way_is_not_a_failure(settings):
    rule(settings, "payment_failed_buyer", 1, "log")
    buyer = UserFactory()
    product = ProductFactory()
    add_stock(product, 3)
    for _ in range(3):
        order = place(product, buyer=buyer, device="")
        Order.objects.filter(pk=order.pk).update(paid_at=order.created_at)
        order.refresh_from_db()
        reconciliation._closed_unpaid(order, PaymentAttempt(gateway="alipay", number=order.number))
    assert not Alert.objects.exists()


# --- refund requests --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_refund_velocity_sends_requests_to_review_and_holds_checkout_until_dismissed(settings, buyer):
    settings.NO_REASON_REFUND_LIMIT = 100
    rule(settings, "refund_velocity_buyer", 2, "hold")
    orders = [delivered_order(buyer, quantity=1, spare=1) for _ in range(3)]
    requests = [ask(buyer, order, codes_of(order), key=f"k{n}") for n, order in enumerate(orders)]
    assert [r.status for r in requests[:2]] == [RefundRequest.Status.REFUNDED] * 2
    third = requests[2]
    third.refresh_from_db()
    assert third.status == RefundRequest.Status.UNDER_REVIEW  # never refused: a person decides
    assert "many refund requests in a short time" in third.review_reason
    alert = Alert.objects.get(rule="refund_velocity_buyer")
    assert alert.user == buyer and alert.evidence["reference"] == orders[2].number
    hold = BlockEntry.objects.get(alert=alert)
    assert (hold.kind, hold.value, hold.scope, hold.expires_at) == ("email", buyer.email.lower(), "checkout", None)
    with pytest.raises(risk.RiskRefused):
        place(orders[0].product, buyer=buyer)
    # No credit event yet: an unreviewed alert does not lower the rating.
    assert not CreditEvent.objects.filter(kind=Kind.ANOMALY).exists()
    assert risk.alert_dismiss(alert_id=alert.pk, by=UserFactory(is_staff=True))
    assert place(orders[0].product, buyer=buyer).status == "pending"


@pytest.mark.django_db(transaction=True)
def test_a_log_only_refund_rule_raises_an_alert_and_changes_nothing(settings, buyer):
    settings.NO_REASON_REFUND_LIMIT = 100
    rule(settings, "refund_velocity_buyer", 1, "log")
    orders = [delivered_order(buyer, quantity=1) for _ in range(2)]
    requests = [ask(buyer, order, codes_of(order), key=f"k{n}") for n, order in enumerate(orders)]
    assert {r.status for r in requests} == {RefundRequest.Status.REFUNDED}
    assert Alert.objects.get(rule="refund_velocity_buyer").action == "log"
    assert not BlockEntry.objects.exists()


# --- clusters ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_device_shared_by_many_accounts_raises_one_alert_per_cluster(settings):
    rule(settings, "shared_device", 2, "log", window=86400)
    product = ProductFactory()
    add_stock(product, 10)
    member = UserFactory()
    risk.signup_record(user=member, ip="192.0.2.1", device="farm")  # an account made there
    place(product, email="a@example.net", device="farm")
    place(product, email="a@example.net", device="farm")  # the same account twice counts once
    place(product, email="b@example.net", device="elsewhere")
    assert clusters_scan() == 0  # two accounts on "farm": not more than the limit
    place(product, email="b@example.net", device="farm")
    assert order_tasks.risk_clusters_scan() == 1
    alert = Alert.objects.get(rule="shared_device")
    assert alert.device == "farm" and alert.evidence["count"] == 3
    assert alert.evidence["members"] == [member.pk]
    assert sorted(alert.evidence["guests"]) == ["a@example.net", "b@example.net"]
    assert clusters_scan() == 0  # not again while it is open
    risk.alert_dismiss(alert_id=alert.pk, by=UserFactory(is_staff=True))
    assert clusters_scan() == 0  # nor after a dismissal, for the same accounts
    place(product, email="c@example.net", device="farm")
    assert clusters_scan() == 1  # it grew: staff look again
    assert Alert.objects.filter(rule="shared_device", status="open").count() == 1


@pytest.mark.django_db
def test_an_ip_cluster_and_orders_outside_the_window(settings):
    rule(settings, "shared_ip", 1, "log", window=3600)
    product = ProductFactory()
    add_stock(product, 10)
    old = place(product, email="old@example.net", ip="198.51.100.20", device="")
    Order.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(hours=2))  # outside the window
    place(product, email="new@example.net", ip="198.51.100.20", device="")
    assert clusters_scan() == 0
    place(product, email="newer@example.net", ip="198.51.100.20", device="")
    assert clusters_scan() == 1
    alert = Alert.objects.get(rule="shared_ip")
    assert alert.ip == "198.51.100.20" and alert.evidence["count"] == 2


@pytest.mark.django_db
def test_agents_sharing_a_payout_account_raise_an_alert_that_shows_it_masked(settings):
    rule(settings, "shared_payout", 1, "log", window=86400)
    first, second, third = make_agent(), make_agent(), make_agent()
    for agent in (first, second, third):
        give(agent, "100.00")
    request(first, account="13800138000")
    request(second, account="138 0013 8000")  # the same account, typed differently
    request(third, account="13900139000")
    assert clusters_scan() == 1
    alert = Alert.objects.get(rule="shared_payout")
    assert sorted(alert.evidence["members"]) == sorted([first.user_id, second.user_id])
    assert "13800138000" not in str(alert.evidence) and alert.evidence["payout"].endswith("8000")
    # Staff block the cluster: both agents' emails are barred, and both get an anomaly event.
    assert risk.alert_block(alert_id=alert.pk, by=UserFactory(is_staff=True), days=7)
    emails = set(BlockEntry.objects.filter(alert=alert).values_list("value", flat=True))
    assert emails == {first.user.email.lower(), second.user.email.lower()}
    events = CreditEvent.objects.filter(kind=Kind.ANOMALY, reference=f"risk-alert:{alert.pk}")
    assert sorted(events.values_list("user_id", flat=True)) == sorted([first.user_id, second.user_id])


@pytest.mark.django_db
def test_a_signup_through_the_page_records_its_ip_and_device(settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "signup": False}
    client = Client(HTTP_USER_AGENT="risk-velocity")
    client.get("/accounts/signup/")  # the device cookie
    response = client.post(
        "/accounts/signup/",
        {"email": "fresh@example.com", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"},
        REMOTE_ADDR="192.0.2.77",
    )
    assert response.status_code == 302
    signup = Signup.objects.get(user__email="fresh@example.com")
    assert signup.ip == "192.0.2.77" and len(signup.device) == 29


# --- the credit rating ------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_block_records_an_anomaly_event_once_and_the_rating_counts_it(buyer):
    alert = risk.alert_raise(rule="order_burst_buyer", action="log", user=buyer, email=buyer.email, evidence={})
    assert not CreditEvent.objects.exists()
    before = rating.credit_rating(user=buyer).score
    assert risk.alert_block(alert_id=alert.pk, by=UserFactory(is_staff=True), days=1)
    event = CreditEvent.objects.get(user=buyer)
    assert (event.kind, event.detail) == (Kind.ANOMALY, "Order burst per buyer")
    assert rating.credit_rating(user=buyer).score == pytest.approx(before + 2.0, abs=0.01)
    assert risk.alert_credit_record(alert=alert) == 0  # once


@pytest.mark.django_db
def test_a_rule_marked_in_settings_counts_at_once_and_a_dismissal_cancels_it(settings):
    settings.RISK_CREDIT_ON_ALERT = frozenset({"refund_velocity_buyer"})
    rule(settings, "refund_velocity_buyer", 1, "log")
    risk.velocity_count(event="refund_request", email="Guest@Example.net", reference="A1")
    assert not CreditEvent.objects.exists()
    risk.velocity_count(event="refund_request", email="guest@example.net", reference="A2")
    event = CreditEvent.objects.get()
    assert (event.user, event.email, event.kind) == (None, "guest@example.net", Kind.ANOMALY)
    assert rating.credit_rating(email="guest@example.net").score > 1.9
    alert = Alert.objects.get()
    assert risk.alert_dismiss(alert_id=alert.pk, by=UserFactory(is_staff=True))
    event.refresh_from_db()
    assert event.weight == 0 and event.detail.startswith("[cancelled]")  # kept, as the record
    assert rating.credit_rating(email="guest@example.net").score == 0
    assert AuditEvent.objects.filter(action="credit_event_cancelled", target=f"risk-alert:{alert.pk}").exists()


@pytest.mark.django_db
def test_velocity_counts_in_one_redis_round_trip(settings, redis_url):
    import redis
    from django.core.cache import cache

    from marketplace.ratelimit import cache_redis
    from risk import counters
    from tests.test_risk_rules import _redis_cache

    settings.CACHES = _redis_cache(redis_url)
    cache.clear()
    cache_redis().script_load(counters._HITS_LUA)  # as after the first count of a process
    rule(settings, "payment_failed_ip", 1, "log")
    trips = []
    original = redis.Redis.execute_command
    redis.Redis.execute_command = lambda self, *a, **k: trips.append(a[:3]) or original(self, *a, **k)
    try:
        risk.velocity_count(event="payment_failed", email="x@example.net", ip="192.0.2.9", device="d")
        risk.velocity_count(event="payment_failed", email="y@example.net", ip="192.0.2.9", device="e")
    finally:
        redis.Redis.execute_command = original
        cache.clear()
    # Email, IP and device counted by one script per event: one round trip with three keys each.
    assert [(t[0], t[2]) for t in trips] == [("EVALSHA", 3), ("EVALSHA", 3)], trips
    assert Alert.objects.get().rule == "payment_failed_ip"


@pytest.mark.django_db
def test_a_payout_cluster_under_a_block_rule_bars_withdrawals_to_that_account_only(settings):
    """A shared payout account whose rule says block: the account itself is blacklisted for
    withdrawals (kept as a keyed digest, shown masked), at once and without staff; another
    account of the same agents is still paid; lifting the entry reverses it."""
    from agents.services.withdrawals import WithdrawalError

    rule(settings, "shared_payout", 1, "block", window=86400)
    first, second = make_agent(), make_agent()
    for agent in (first, second):
        give(agent, "300.00")
    request(first, account="13800138000")
    request(second, account="138 0013 8000")
    assert clusters_scan() == 1
    alert = Alert.objects.get(rule="shared_payout")
    [entry] = BlockEntry.objects.filter(alert=alert)
    assert entry.kind == BlockEntry.Kind.PAYOUT and entry.scope == BlockEntry.Scope.WITHDRAWAL
    assert "13800138000" not in entry.value and entry.value.startswith("hmac:")
    assert entry.shown.endswith("8000") and "13800138000" not in entry.shown
    assert entry.expires_at is not None  # a block lasts RISK_BLOCK_MINUTES, then ends by itself

    with pytest.raises(WithdrawalError) as refused:
        request(first, account="13800138000", key="k2")
    assert refused.value.code == "blacklisted"
    assert "payout account" in str(refused.value)
    request(first, account="13700137000", key="k3")  # another account of the same agent: paid

    assert risk.block_lift(entry_id=entry.pk, by=UserFactory(is_staff=True))
    request(first, account="13800138000", key="k4")


@pytest.mark.django_db
def test_a_payout_account_blacklisted_by_staff_is_kept_as_a_digest_and_still_matches():
    entry = risk.block_add(
        kind=BlockEntry.Kind.PAYOUT, value="Pay@Example.com ", reason="chargebacks", scope=BlockEntry.Scope.WITHDRAWAL
    )
    assert entry.value.startswith("hmac:") and "example" not in entry.value.lower()
    assert entry.shown.endswith(".com") and "pay@" not in entry.shown.lower()
    assert risk.blacklist_match(scope=BlockEntry.Scope.WITHDRAWAL, payout="pay@example.com") == entry
