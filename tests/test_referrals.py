"""Referral growth, one level only (issue 15): the invitation recorded at sign-up from the
server's signed cookie, the reward paid once when the invitee's first order is past its refund
window, cancelled by a refund inside it, refused (with a risk alert) for shared devices or IPs,
disposable emails and past the daily cap; never for a second-level invitation."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import signing
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from compliance.models import AuditEvent
from ledger import services as ledger
from ledger.models import Entry, Line
from ledger.selectors import balance_of, problems
from payments.services import refunds
from referrals import services
from referrals.models import REFERRAL_FLOW, InviteCode, Referral, ReferralStatus
from referrals.tasks import rewards_process
from referrals.views import COOKIE, SALT
from risk.models import Alert
from tests.builders import delivered_order, wallet_balance
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english")]
PASSWORD = "a-Long-pass-123"
S = ReferralStatus


def sign_up(client: Client, email: str, ip: str, code: str | None = None):
    if code is not None:
        response = client.get(f"/r/{code}/", REMOTE_ADDR=ip)
        assert response.status_code == 302 and response["Location"].endswith("/accounts/signup/")
    return client.post(
        "/accounts/signup/",
        {"email": email, "password1": PASSWORD, "password2": PASSWORD},
        REMOTE_ADDR=ip,
    )


def invited(inviter, email: str, ip: str = "198.51.100.20"):
    """An invitee signed up through ``inviter``'s link from a browser of its own."""
    code = services.invite_code_get(user=inviter).code
    response = sign_up(Client(HTTP_USER_AGENT=f"phone of {email}"), email, ip, code)
    assert response.status_code == 302, response.content.decode()[:500]
    return Referral.objects.get(invitee__email=email)


def past_window(monkeypatch, order, extra=timedelta(minutes=1)):
    """Frozen time: the moment just after ``order``'s refund window closed."""
    later = order.delivered_at + timedelta(days=7) + extra
    monkeypatch.setattr(timezone, "now", lambda: later)
    return later


# --- sign-up -----------------------------------------------------------------------------------


def test_sign_up_through_the_link_records_the_inviter_once():
    inviter = UserFactory()
    referral = invited(inviter, "friend@example.com", ip="198.51.100.7")
    assert referral.inviter == inviter and referral.status == S.PENDING
    assert str(referral.signup_ip) == "198.51.100.7" and referral.signup_device
    # The new member has a link of their own from the start; codes are unguessable and distinct.
    own = InviteCode.objects.get(user=referral.invitee)
    assert len(own.code) == 16 and own.code != InviteCode.objects.get(user=inviter).code
    # One inviter per invitee: a second invitation for the same member is ignored.
    other = UserFactory()
    code = services.invite_code_get(user=other).code
    assert services.referral_record(invitee=referral.invitee, code=code, ip=None, device="") is None
    assert Referral.objects.get(invitee=referral.invitee).inviter == inviter


@pytest.mark.parametrize("forge", ["plain", "wrong_salt", "tampered"])
def test_a_forged_cookie_is_ignored(forge):
    inviter = UserFactory()
    code = services.invite_code_get(user=inviter).code
    client = Client()
    if forge == "plain":
        client.cookies[COOKIE] = code
    elif forge == "wrong_salt":
        client.cookies[COOKIE] = signing.get_cookie_signer(salt="something else").sign(code)
    else:
        genuine = signing.get_cookie_signer(salt=COOKIE + SALT).sign(code)
        client.cookies[COOKIE] = genuine.replace(code, services._new_code())
    assert sign_up(client, "forged@example.com", "198.51.100.8").status_code == 302
    assert not Referral.objects.exists()


def test_the_server_signed_cookie_is_the_one_that_counts():
    """The control for the forged ones: the cookie the link sets, read back, records the inviter."""
    inviter = UserFactory()
    code = services.invite_code_get(user=inviter).code
    client = Client()
    client.get(f"/r/{code}/")
    assert client.cookies[COOKIE].value != code  # signed, not the bare code
    assert sign_up(client, "real@example.com", "198.51.100.9").status_code == 302
    assert Referral.objects.get().inviter == inviter


def test_an_unknown_code_and_a_member_following_a_link_set_nothing(client):
    assert client.get("/r/nosuchcode/").status_code == 302
    assert COOKIE not in client.cookies
    inviter = UserFactory()
    code = services.invite_code_get(user=inviter).code
    client.force_login(inviter)  # one's own link, signed in
    client.get(f"/r/{code}/")
    assert COOKIE not in client.cookies
    invite = InviteCode.objects.get(user=inviter)
    assert services.referral_record(invitee=inviter, code=invite.code, ip=None, device="") is None  # never self


# --- the reward --------------------------------------------------------------------------------


def test_the_reward_is_booked_once_after_delivery_and_the_refund_window(monkeypatch, settings):
    settings.REFERRAL_REWARD_AMOUNT = Decimal("6.50")
    inviter = UserFactory()
    referral = invited(inviter, "buyer@example.com")
    rewards_process()
    assert Referral.objects.get(pk=referral.pk).status == S.PENDING  # no order yet
    order = delivered_order(referral.invitee, quantity=1)
    rewards_process()
    referral.refresh_from_db()
    assert referral.status == S.QUALIFIED and referral.order == order
    assert referral.window_closes_at == order.delivered_at + timedelta(days=7)
    assert wallet_balance(inviter) == 0
    past_window(monkeypatch, order, extra=-timedelta(minutes=1))  # a minute before it closes
    rewards_process()
    assert Referral.objects.get(pk=referral.pk).status == S.QUALIFIED and wallet_balance(inviter) == 0
    past_window(monkeypatch, order)
    first, second = rewards_process(), rewards_process()  # the task run twice
    assert first[S.REWARDED] == 1 and second[S.REWARDED] == 0
    referral.refresh_from_db()
    assert referral.status == S.REWARDED and referral.reward == Decimal("6.50")
    assert wallet_balance(inviter) == Decimal("6.50")
    assert balance_of(ledger.REFERRAL_REWARDS) == Decimal("6.50")
    entries = Entry.objects.filter(kind="referral_reward")
    assert entries.count() == 1 and entries.get().idempotency_key == f"referral_reward:{referral.pk}"
    # Settling the row again directly changes nothing either.
    assert services.referral_settle(referral_id=referral.pk) is None
    assert problems() == [] and Line.objects.aggregate(s=Sum("amount"))["s"] == 0
    assert list(referral.history.values_list("to_status", flat=True)) == [S.QUALIFIED, S.REWARDED]


def test_a_refund_inside_the_window_cancels_the_reward(monkeypatch, staff):
    inviter = UserFactory()
    referral = invited(inviter, "refunder@example.com")
    order = delivered_order(referral.invitee, quantity=2)
    rewards_process()
    refunds.order_refund(order=order, quantity=1, reason="changed my mind", requested_by=staff)
    result = rewards_process()  # inside the window: cancelled at once
    assert result[S.CANCELLED] == 1
    referral.refresh_from_db()
    assert referral.status == S.CANCELLED and referral.reason == "refunded"
    past_window(monkeypatch, order)
    rewards_process()
    assert Referral.objects.get(pk=referral.pk).status == S.CANCELLED
    assert wallet_balance(inviter) == 0 and not Entry.objects.filter(kind="referral_reward").exists()


def test_an_order_placed_before_the_sign_up_does_not_qualify(monkeypatch):
    inviter, invitee = UserFactory(), UserFactory()
    order = delivered_order(invitee, quantity=1)
    code = services.invite_code_get(user=inviter).code
    past_window(monkeypatch, order)
    referral = services.referral_record(invitee=invitee, code=code, ip="198.51.100.30", device="")
    rewards_process()
    assert Referral.objects.get(pk=referral.pk).status == S.PENDING


# --- abuse -------------------------------------------------------------------------------------


def test_self_referral_through_a_shared_device_gets_no_reward_and_raises_an_alert(monkeypatch):
    client = Client(HTTP_USER_AGENT="the same phone")
    client.get("/")  # the device cookie
    assert sign_up(client, "me@example.com", "198.51.100.40").status_code == 302
    inviter = Referral._meta.get_field("inviter").related_model.objects.get(email="me@example.com")
    code = InviteCode.objects.get(user=inviter).code
    client.post("/accounts/logout/")
    # The same phone, another network (mobile data instead of Wi-Fi).
    assert sign_up(client, "me.too@example.com", "203.0.113.41", code).status_code == 302
    referral = Referral.objects.get(invitee__email="me.too@example.com")
    assert referral.status == S.REFUSED and referral.reason == "shared_device"
    alert = Alert.objects.get(rule=services.ALERT_RULE)
    assert referral.alert == alert and alert.user == inviter and alert.evidence["reason"] == "shared_device"
    assert alert.evidence["referral"] == referral.pk
    order = delivered_order(referral.invitee, quantity=1)
    past_window(monkeypatch, order)
    rewards_process()
    assert Referral.objects.get(pk=referral.pk).status == S.REFUSED and wallet_balance(inviter) == 0


def test_self_referral_through_a_shared_ip_gets_no_reward_and_raises_an_alert():
    assert sign_up(Client(HTTP_USER_AGENT="laptop"), "home@example.com", "198.51.100.50").status_code == 302
    inviter = Referral._meta.get_field("inviter").related_model.objects.get(email="home@example.com")
    referral = invited(inviter, "home.second@example.com", ip="198.51.100.50")
    assert referral.status == S.REFUSED and referral.reason == "shared_ip"
    assert Alert.objects.get(rule=services.ALERT_RULE).evidence["networks"] == ["198.51.100.50"]


def test_a_shared_ip_seen_later_in_orders_refuses_the_reward_at_settlement(monkeypatch):
    inviter = UserFactory()
    referral = invited(inviter, "later@example.com", ip="198.51.100.60")
    order = delivered_order(referral.invitee, quantity=1)
    type(order).objects.filter(pk=order.pk).update(buyer_ip="2001:db8:1:2::99")
    inviters = delivered_order(inviter, quantity=1)
    type(order).objects.filter(pk=inviters.pk).update(buyer_ip="2001:db8:1:2::5")  # the same /64
    rewards_process()
    past_window(monkeypatch, order, extra=timedelta(hours=1))
    rewards_process()
    referral.refresh_from_db()
    assert referral.status == S.REFUSED and referral.reason == "shared_ip" and wallet_balance(inviter) == 0


def test_a_shared_payout_account_refuses_the_reward_at_settlement(monkeypatch):
    """Inviter and invitee both agents withdrawing to one Alipay account (spaces and case aside):
    one person, so no reward, and the risk queue hears of it."""
    import uuid

    from agents.models import Withdrawal
    from agents.services import agents as agent_services
    from marketplace import crypto
    from tests.factories import AgentLevelFactory

    inviter = UserFactory()
    referral = invited(inviter, "payout.twin@example.com", ip="198.51.100.70")
    assert referral.status == S.PENDING
    level = AgentLevelFactory()
    for user, account in ((inviter, "twin@alipay.example"), (referral.invitee, " TWIN@alipay.example ")):
        agent = agent_services.agent_create(user=user, level=level)
        Withdrawal.objects.create(
            number=uuid.uuid4().hex[:20],
            agent=agent,
            amount=Decimal(10),
            net=Decimal(10),
            method=Withdrawal.Method.ALIPAY,
            payee_name="A",
            payee_account=crypto.encrypt(account),
            idempotency_key=uuid.uuid4().hex,
        )
    order = delivered_order(referral.invitee, quantity=1)
    past_window(monkeypatch, order)
    rewards_process()
    referral.refresh_from_db()
    assert referral.status == S.REFUSED and referral.reason == "shared_payout"
    assert wallet_balance(inviter) == 0
    alert = Alert.objects.get(rule=services.ALERT_RULE)
    assert alert.evidence["reason"] == "shared_payout" and alert.user == inviter


def test_a_disposable_email_gets_no_reward(settings):
    settings.RISK_REFUSE_DISPOSABLE_EMAIL = False  # else the sign-up itself is refused
    inviter = UserFactory()
    referral = invited(inviter, "throwaway@mailinator.com")
    assert referral.status == S.REFUSED and referral.reason == "disposable_email"
    assert Alert.objects.get(rule=services.ALERT_RULE).evidence["domain"] == "mailinator.com"


def test_rewards_past_the_daily_cap_are_refused_with_an_alert(monkeypatch, settings):
    settings.REFERRAL_DAILY_CAP = 2
    inviter = UserFactory()
    orders = []
    for n in range(3):
        referral = invited(inviter, f"cap{n}@example.com", ip=f"198.51.100.{70 + n}")
        orders.append(delivered_order(referral.invitee, quantity=1))
    rewards_process()
    past_window(monkeypatch, max(orders, key=lambda o: o.delivered_at))
    result = rewards_process()
    assert result[S.REWARDED] == 2 and result[S.REFUSED] == 1
    refused = Referral.objects.get(status=S.REFUSED)
    assert refused.reason == "daily_cap"
    assert Alert.objects.get(rule=services.ALERT_RULE).evidence["cap"] == 2
    assert wallet_balance(inviter) == 2 * settings.REFERRAL_REWARD_AMOUNT
    assert problems() == [] and Line.objects.aggregate(s=Sum("amount"))["s"] == 0


def test_a_second_level_invitation_never_rewards_the_first_inviter(monkeypatch):
    first = UserFactory()
    middle = invited(first, "middle@example.com", ip="198.51.100.80").invitee
    last = invited(middle, "last@example.com", ip="198.51.100.81").invitee
    order = delivered_order(last, quantity=1)
    rewards_process()
    past_window(monkeypatch, order)
    rewards_process()
    assert Referral.objects.get(invitee=last).status == S.REWARDED
    assert wallet_balance(middle) > 0
    assert wallet_balance(first) == 0  # the middle member never bought: nothing for the first
    assert Referral.objects.get(invitee=middle).status == S.PENDING


# --- staff and the page ------------------------------------------------------------------------


def test_staff_cancel_a_paid_reward_with_a_reason_audited(monkeypatch, staff):
    inviter = UserFactory()
    referral = invited(inviter, "paid@example.com")
    order = delivered_order(referral.invitee, quantity=1)
    rewards_process()
    past_window(monkeypatch, order)
    rewards_process()
    assert wallet_balance(inviter) > 0
    with pytest.raises(services.ReferralError):
        services.referral_cancel(referral_id=referral.pk, by=staff, reason=" ")
    assert services.referral_cancel(referral_id=referral.pk, by=staff, reason="bought for resale")
    assert not services.referral_cancel(referral_id=referral.pk, by=staff, reason="again")
    referral.refresh_from_db()
    assert referral.status == S.CANCELLED and referral.detail == "bought for resale"
    assert wallet_balance(inviter) == 0 and balance_of(ledger.REFERRAL_REWARDS) == 0
    assert AuditEvent.objects.filter(action="referral_cancelled", actor=staff).count() == 1


def test_the_admin_action_asks_for_a_reason(client, staff):
    referral = invited(UserFactory(), "admin@example.com")
    client.force_login(staff)
    url = "/admin/referrals/referral/"
    assert client.get(url).status_code == 200
    page = client.post(url, {"action": "cancel_selected", "_selected_action": [referral.pk]})
    assert page.status_code == 200 and "Reason" in page.content.decode()
    client.post(url, {"action": "cancel_selected", "_selected_action": [referral.pk], "apply": "1", "reason": "test"})
    assert Referral.objects.get(pk=referral.pk).status == S.CANCELLED


def test_the_inviter_sees_their_link_and_invitations_masked(client):
    inviter = UserFactory()
    client.force_login(inviter)
    page = client.get("/accounts/invite/").content.decode()
    assert "Get my invitation link" in page and not InviteCode.objects.filter(user=inviter).exists()
    client.post("/accounts/invite/")
    code = InviteCode.objects.get(user=inviter).code
    invited(inviter, "alice@example.com")
    page = client.get("/accounts/invite/").content.decode()
    assert f"/r/{code}/" in page and "<svg" in page
    assert "a***@example.com" in page and "alice@example.com" not in page
    poster = client.get("/accounts/invite/poster/").content.decode()
    assert f"/r/{code}/" in poster and "<svg" in poster
    svg = client.get("/accounts/invite/poster.svg")
    assert svg["Content-Type"].startswith("image/svg+xml") and f"/r/{code}/".encode() in svg.content


@pytest.mark.parametrize(
    ("src", "dst", "allowed"),
    [
        (S.PENDING, S.QUALIFIED, True),
        (S.PENDING, S.REFUSED, True),
        (S.QUALIFIED, S.REWARDED, True),
        (S.QUALIFIED, S.CANCELLED, True),
        (S.REWARDED, S.CANCELLED, True),
        (S.PENDING, S.REWARDED, False),
        (S.REWARDED, S.REFUSED, False),
        (S.CANCELLED, S.REWARDED, False),
        (S.REFUSED, S.REWARDED, False),
    ],
)
def test_the_referral_transitions_table(src, dst, allowed):
    assert REFERRAL_FLOW.can(src, dst) is allowed
