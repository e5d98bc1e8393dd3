"""Withdrawals: the fee rule, holds in the ledger, staff decisions, payouts through a fake Alipay
with real signatures (success, refusal, unknown outcome), manual bank transfers, the agent's
page, the admin, and 30 concurrent requests that together exceed the balance."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from agents.models import AgentLevel, Withdrawal, WithdrawalStatusChange
from agents.services import withdrawals
from agents.services.agents import agent_create
from agents.services.withdrawals import WITHDRAWAL_FLOW, WithdrawalError
from compliance.models import AuditEvent
from ledger import services as ledger
from ledger.models import Balance
from marketplace import crypto
from marketplace.transitions import IllegalTransition
from payments.services import payouts
from tests.api_helpers import commission_credit
from tests.builders import balance_of, run_concurrently
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("english")

D = Decimal
WithdrawalStatus = Withdrawal.Status
TRANSFER = "alipay.fund.trans.uni.transfer"
QUERY = "alipay.fund.trans.common.query"


@pytest.fixture(autouse=True)
def _rules(settings):
    settings.WITHDRAWAL_MIN_AMOUNT = "10.00"
    settings.WITHDRAWAL_FEE_PERCENT = "0.5"
    settings.WITHDRAWAL_FEE_MIN = "1.00"


def make_agent(level=None):
    level = level or AgentLevel.objects.get_or_create(rank=1, defaults={"name": "Gold"})[0]
    return agent_create(user=UserFactory(), level=level)


@pytest.fixture
def agent(db):
    return make_agent()


def give(agent, amount) -> None:
    """Available commission for ``agent`` (as if a sale's refund window had closed)."""
    commission_credit(agent, amount, reference="test")


def available(agent) -> Decimal:
    return balance_of(ledger.commission_available(agent.user))


def request(agent, amount="100.00", *, key="k1", method="alipay", account="13800138000", **kwargs) -> Withdrawal:
    return withdrawals.withdrawal_request(
        agent=agent,
        amount=amount,
        method=method,
        payee_name=kwargs.pop("payee_name", "张三"),
        payee_account=account,
        idempotency_key=key,
        **kwargs,
    )


# --- the fee rule and what may be asked ----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "fee", "net"),
    [
        ("10", "1.00", "9.00"),  # the minimum amount pays the minimum fee
        ("200", "1.00", "199.00"),  # 0.5% = 1.00 exactly
        ("201", "1.01", "199.99"),  # 1.005 rounds half up
        ("1000", "5.00", "995.00"),
        ("1234.56", "6.17", "1228.39"),  # 6.1728
    ],
)
def test_fee_is_the_larger_of_the_minimum_and_the_percentage(amount, fee, net):
    assert withdrawals.amount_check(withdrawals.parse_amount(amount)) == (D(fee), D(net))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9.99", "minimum withdrawal is ¥10.00"),
        ("0", "minimum withdrawal"),
        ("-50", "minimum withdrawal"),
        ("abc", "Enter the amount in yuan"),
        ("", "Enter the amount in yuan"),
        ("NaN", "Enter the amount in yuan"),
        ("100.001", "at most two decimal places"),
        (100.5, "not a float"),
    ],
)
def test_amounts_that_cannot_be_withdrawn_get_a_clear_message(value, message):
    with pytest.raises(WithdrawalError, match=message):
        withdrawals.amount_check(withdrawals.parse_amount(value))


def test_a_fee_that_would_take_everything_is_refused(settings):
    settings.WITHDRAWAL_FEE_MIN = "10.00"
    with pytest.raises(WithdrawalError, match="would take all"):
        withdrawals.amount_check(D("10.00"))
    assert withdrawals.amount_check(D("10.01")) == (D("10.00"), D("0.01"))


@pytest.mark.django_db
def test_a_request_holds_the_amount_and_a_double_click_is_one_withdrawal(agent):
    give(agent, "500.00")
    first = request(agent, "100", key="click")
    again = request(agent, "100", key="click")  # the same form submitted twice
    assert again.pk == first.pk and Withdrawal.objects.count() == 1
    assert (first.amount, first.fee, first.net, first.status) == (
        D("100.00"),
        D("1.00"),
        D("99.00"),
        WithdrawalStatus.REQUESTED,
    )
    assert first.number.startswith("W") and len(first.number) <= 32
    assert available(agent) == D("400.00")
    assert balance_of(ledger.WITHDRAWALS_PAYABLE) == D("100.00")
    # The account is encrypted at rest and shown masked.
    assert "13800138000" not in first.payee_account
    assert crypto.decrypt(first.payee_account) == "13800138000"
    assert withdrawals.payee_account_masked(first) == "•••••••8000"
    history = list(first.history.values_list("from_status", "to_status", "actor"))
    assert history == [("", WithdrawalStatus.REQUESTED, agent.user.pk)]
    second = request(agent, "100", key="another click")
    assert second.pk != first.pk and available(agent) == D("300.00")


@pytest.mark.django_db
def test_more_than_available_is_refused_and_writes_nothing(agent):
    give(agent, "50.00")
    with pytest.raises(WithdrawalError, match=r"Not enough available commission.*¥50\.01.*¥50\.00 is available"):
        request(agent, "50.01")
    assert Withdrawal.objects.count() == 0
    assert available(agent) == D("50.00")
    assert request(agent, "50.00").amount == D("50.00")
    assert available(agent) == 0


@pytest.mark.django_db
def test_an_agent_without_any_commission_is_refused(agent):
    with pytest.raises(WithdrawalError, match="Not enough available commission"):
        request(agent, "10")
    assert Withdrawal.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "wechat"}, "Alipay or bank transfer"),
        ({"payee_name": " "}, "real name"),
        ({"account": ""}, "account to pay to"),
        ({"account": "not-an-account"}, "phone number or email"),
        ({"account": "1234"}, "phone number or email"),
        ({"method": "bank", "account": "6222 0212 3456 7890", "bank_name": ""}, "bank"),
        ({"method": "bank", "account": "62220x123456789", "bank_name": "ICBC"}, "12 to 30 digits"),
        ({"key": ""}, "form expired"),
    ],
)
def test_bad_payee_details_are_refused(agent, kwargs, message):
    give(agent, "100")
    with pytest.raises(WithdrawalError, match=message):
        request(agent, "20", **kwargs)
    assert Withdrawal.objects.count() == 0


@pytest.mark.django_db
def test_a_blacklisted_payout_account_or_network_is_refused_and_writes_nothing(agent):
    from risk import services as risk

    give(agent, "500.00")
    risk.block_add(kind="payout", value="13800000000", reason="mule account", scope="withdrawal")
    with pytest.raises(WithdrawalError, match="payout account") as refused:
        request(agent, account="138 0000 0000")
    assert refused.value.code == "blacklisted"
    risk.block_add(kind="network", value="192.0.2.0/24", reason="abuse")
    with pytest.raises(WithdrawalError, match="network"):
        withdrawals.withdrawal_request(
            agent=agent,
            amount="100.00",
            method="alipay",
            payee_name="张三",
            payee_account="13900000000",
            idempotency_key="k9",
            ip="192.0.2.8",
        )
    assert not Withdrawal.objects.exists() and available(agent) == D("500.00")
    assert request(agent, account="13900000000").status == Withdrawal.Status.REQUESTED


def test_alipay_email_and_spaced_bank_numbers_are_accepted(agent):
    give(agent, "100")
    assert request(agent, "20", key="a", account=" agent@example.com ").method == "alipay"
    bank = request(agent, "20", key="b", method="bank", account="6222 0212 3456 7890", bank_name=" ICBC  Shenzhen ")
    assert crypto.decrypt(bank.payee_account) == "6222021234567890" and bank.bank_name == "ICBC Shenzhen"


# --- the state machine --------------------------------------------------------------------------

ALLOWED = {
    (WithdrawalStatus.REQUESTED, WithdrawalStatus.APPROVED),
    (WithdrawalStatus.REQUESTED, WithdrawalStatus.REJECTED),
    (WithdrawalStatus.APPROVED, WithdrawalStatus.PAID),
    (WithdrawalStatus.APPROVED, WithdrawalStatus.FAILED),
    (WithdrawalStatus.APPROVED, WithdrawalStatus.REJECTED),
    (WithdrawalStatus.FAILED, WithdrawalStatus.APPROVED),
    (WithdrawalStatus.FAILED, WithdrawalStatus.REJECTED),
}


@pytest.mark.django_db
@pytest.mark.parametrize("src", WithdrawalStatus.values)
@pytest.mark.parametrize("dst", WithdrawalStatus.values)
def test_withdrawal_flow_allows_exactly_its_moves(agent, src, dst):
    give(agent, "100")
    w = request(agent, "20")
    Withdrawal.objects.filter(pk=w.pk).update(status=src)
    with transaction.atomic():
        w = Withdrawal.objects.select_for_update().get(pk=w.pk)
        if src == dst:
            assert WITHDRAWAL_FLOW.apply(w, dst) is False  # a repeat changes nothing
        elif (src, dst) in ALLOWED:
            assert WITHDRAWAL_FLOW.apply(w, dst, note="t") is True
            assert WithdrawalStatusChange.objects.filter(withdrawal=w, from_status=src, to_status=dst).exists()
        else:
            with pytest.raises(IllegalTransition):
                WITHDRAWAL_FLOW.apply(w, dst)


# --- staff: reject -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reject_returns_the_money_and_the_agent_sees_why(agent, staff):
    give(agent, "300")
    w = request(agent, "120")
    assert available(agent) == D("180.00")
    with pytest.raises(WithdrawalError, match="reason"):
        payouts.payout_reject(withdrawal_id=w.pk, staff=staff, reason="  ")
    payouts.payout_reject(withdrawal_id=w.pk, staff=staff, reason="Name does not match the account")
    w.refresh_from_db()
    assert (w.status, w.reject_reason, w.reviewed_by) == (
        WithdrawalStatus.REJECTED,
        "Name does not match the account",
        staff,
    )
    assert available(agent) == D("300.00")
    assert balance_of(ledger.WITHDRAWALS_PAYABLE) == 0
    payouts.payout_reject(withdrawal_id=w.pk, staff=staff, reason="twice")  # a repeat is a no-op
    assert available(agent) == D("300.00")
    with pytest.raises(WithdrawalError, match="cannot become"):
        payouts.payout_approve(withdrawal_id=w.pk, staff=staff)
    last = w.history.last()
    assert (last.to_status, last.actor, last.note) == (
        WithdrawalStatus.REJECTED,
        staff,
        "Name does not match the account",
    )


# --- Alipay payouts through the fake gateway -----------------------------------------------------


def approved_alipay(agent, staff, amount="200.00", **kwargs) -> Withdrawal:
    give(agent, "1000.00")
    w = request(agent, amount, **kwargs)
    payouts.payout_approve(withdrawal_id=w.pk, staff=staff)  # the payout task runs on commit
    w.refresh_from_db()
    return w


@pytest.mark.django_db(transaction=True)
def test_approve_pays_by_alipay_transfer_once_and_books_it(alipay, fake, agent, staff):
    w = approved_alipay(agent, staff, "200.00")
    assert w.status == WithdrawalStatus.PAID, w.payout_error
    assert fake.transfers_executed == 1
    transfer = fake.transfers[w.number]  # out_biz_no is the withdrawal's number
    assert (transfer.amount, transfer.payee, transfer.name) == (D("199.00"), "13800138000", "张三")
    assert w.payout_reference == transfer.order_id and w.paid_at is not None
    # The gateway checked our RSA2 signature on every call (a bad one is refused, see below).
    params = dict(fake.calls[-1][1])
    assert params["method"] == TRANSFER and params["sign_type"] == "RSA2"
    # Ledger: the hold is paid out: net from Alipay's clearing account, the fee is revenue.
    assert available(agent) == D("800.00")
    assert balance_of(ledger.WITHDRAWALS_PAYABLE) == 0
    assert balance_of(ledger.clearing("alipay")) == D("-199.00")
    assert balance_of(ledger.WITHDRAWAL_FEES) == D("1.00")
    assert list(w.history.values_list("to_status", flat=True)) == [
        WithdrawalStatus.REQUESTED,
        WithdrawalStatus.APPROVED,
        WithdrawalStatus.PAID,
    ]
    assert w.history.get(to_status=WithdrawalStatus.APPROVED).actor == staff
    # A retried task, the beat, a second approval: nothing more reaches Alipay.
    assert payouts.payout_execute(withdrawal_id=w.pk) == "not due"
    with pytest.raises(WithdrawalError):
        payouts.payout_approve(withdrawal_id=w.pk, staff=staff)
    assert fake.methods().count(TRANSFER) == 1 and fake.transfers_executed == 1


@pytest.mark.django_db(transaction=True)
def test_a_refused_transfer_fails_then_reject_returns_the_money(alipay, fake, agent, staff):
    fake.transfer_error = ("PAYEE_NOT_EXIST", "收款账号不存在")
    w = approved_alipay(agent, staff, "100.00")
    assert w.status == WithdrawalStatus.FAILED
    assert "PAYEE_NOT_EXIST" in w.payout_error
    assert fake.transfers_executed == 0
    assert available(agent) == D("900.00")  # still held while staff decide
    payouts.payout_reject(withdrawal_id=w.pk, staff=staff, reason="The Alipay account does not exist")
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.REJECTED
    assert available(agent) == D("1000.00")
    assert balance_of(ledger.WITHDRAWALS_PAYABLE) == 0 and balance_of(ledger.clearing("alipay")) == 0
    assert [h.to_status for h in w.history.all()] == [
        WithdrawalStatus.REQUESTED,
        WithdrawalStatus.APPROVED,
        WithdrawalStatus.FAILED,
        WithdrawalStatus.REJECTED,
    ]


@pytest.mark.django_db(transaction=True)
def test_a_failed_payout_can_be_retried_and_pays_once(alipay, fake, agent, staff):
    fake.transfer_error = ("PAYER_BALANCE_NOT_ENOUGH", "付款方余额不足")
    w = approved_alipay(agent, staff, "100.00")
    assert w.status == WithdrawalStatus.FAILED
    fake.transfer_error = None  # the platform topped up its Alipay balance
    payouts.payout_retry(withdrawal_id=w.pk, staff=staff)
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PAID and fake.transfers_executed == 1
    with pytest.raises(WithdrawalError, match="Only a failed payout"):
        payouts.payout_retry(withdrawal_id=w.pk, staff=staff)


@pytest.mark.django_db(transaction=True)
def test_a_timeout_leaves_it_approved_and_the_next_run_queries_before_paying(settings, alipay, fake, agent, staff):
    settings.PAYMENTS_GATEWAY_TIMEOUT = 1
    fake.stall[TRANSFER] = 2.5  # Alipay makes the transfer, its answer never arrives in time
    w = approved_alipay(agent, staff, "300.00")
    assert w.status == WithdrawalStatus.APPROVED
    assert "unknown" in w.payout_error.lower()
    assert fake.transfers_executed == 1
    # Money may have moved: it cannot be rejected (and returned to the agent) meanwhile.
    with pytest.raises(WithdrawalError, match="being paid out"):
        payouts.payout_reject(withdrawal_id=w.pk, staff=staff, reason="changed my mind")
    fake.stall.clear()
    calls_before = len(fake.calls)
    assert payouts.payout_execute(withdrawal_id=w.pk) == "paid"
    assert fake.methods()[calls_before:] == [QUERY]  # asked first, and not sent again
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PAID and w.payout_reference == fake.transfers[w.number].order_id
    assert fake.transfers_executed == 1 and fake.methods().count(TRANSFER) == 1
    assert balance_of(ledger.clearing("alipay")) == D("-298.50")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("processed", [True, False], ids=["moved", "not-moved"])
def test_a_system_error_is_an_unknown_outcome_resolved_by_the_query(alipay, fake, agent, staff, processed):
    fake.transfer_error = ("SYSTEM_ERROR", "系统繁忙")
    fake.transfer_error_processed = processed
    w = approved_alipay(agent, staff, "50.00")
    assert w.status == WithdrawalStatus.APPROVED and "SYSTEM_ERROR" in w.payout_error
    fake.transfer_error = None
    assert payouts.payouts_due() == []  # the beat waits a little after the approval ...
    Withdrawal.objects.filter(pk=w.pk).update(reviewed_at=w.reviewed_at - timedelta(minutes=5))
    assert payouts.payouts_due() == [w.pk]  # ... then asks again
    from payments.tasks import payouts_check_due

    assert payouts_check_due() == 1  # what beat runs (the task, in-process)
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PAID
    assert fake.transfers_executed == 1  # whether or not the first call had moved the money
    assert fake.methods().count(TRANSFER) == (1 if processed else 2)
    assert fake.methods().index(QUERY) < len(fake.methods()) - 1


@pytest.mark.django_db(transaction=True)
def test_a_reply_with_a_forged_signature_pays_nothing_and_stays_unknown(alipay, fake, agent, staff, app_key):
    fake.reply_key = app_key  # not Alipay's key
    w = approved_alipay(agent, staff, "50.00")
    assert w.status == WithdrawalStatus.APPROVED and "signature" in w.payout_error
    assert fake.transfers_executed == 0  # the query was answered (forged): nothing was sent
    fake.reply_key = None
    assert payouts.payout_execute(withdrawal_id=w.pk) == "paid"
    assert fake.transfers_executed == 1


@pytest.mark.django_db
def test_approving_an_alipay_payout_needs_alipay_configured(agent, staff, settings):
    settings.ALIPAY_APP_ID = ""
    give(agent, "100")
    w = request(agent, "20")
    with pytest.raises(WithdrawalError, match="Alipay is not configured"):
        payouts.payout_approve(withdrawal_id=w.pk, staff=staff)
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.REQUESTED


# --- bank transfers recorded by staff --------------------------------------------------------


@pytest.mark.django_db
def test_a_bank_transfer_recorded_by_staff_pays_it(agent, staff):
    give(agent, "1000")
    w = request(agent, "500", method="bank", account="6222021234567890", bank_name="ICBC")
    payouts.payout_approve(withdrawal_id=w.pk, staff=staff)
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.APPROVED  # waits for staff to make the transfer
    with pytest.raises(WithdrawalError, match="reference"):
        payouts.payout_record_bank(withdrawal_id=w.pk, staff=staff, reference=" ")
    payouts.payout_record_bank(withdrawal_id=w.pk, staff=staff, reference="ICBC20261124001", note="by hand")
    payouts.payout_record_bank(withdrawal_id=w.pk, staff=staff, reference="ICBC20261124001")  # double click
    with pytest.raises(WithdrawalError, match="already recorded"):
        payouts.payout_record_bank(withdrawal_id=w.pk, staff=staff, reference="ANOTHER")
    w.refresh_from_db()
    assert (w.status, w.payout_reference) == (WithdrawalStatus.PAID, "ICBC20261124001")
    assert balance_of(ledger.BANK) == D("-497.50")
    assert balance_of(ledger.WITHDRAWAL_FEES) == D("2.50")
    assert balance_of(ledger.WITHDRAWALS_PAYABLE) == 0 and available(agent) == D("500.00")
    paid = w.history.get(to_status=WithdrawalStatus.PAID)
    assert paid.actor == staff and "ICBC20261124001" in paid.note and "by hand" in paid.note


@pytest.mark.django_db
def test_alipay_withdrawals_are_not_recorded_as_bank_transfers(agent, staff):
    give(agent, "100")
    w = request(agent, "20")
    with pytest.raises(WithdrawalError, match="paid by Alipay"):
        payouts.payout_record_bank(withdrawal_id=w.pk, staff=staff, reference="X1")


# --- races ---------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_30_concurrent_withdrawals_never_exceed_the_available_balance():
    agent = make_agent()
    give(agent, "1000.00")
    results = run_concurrently(30, lambda i: request(agent, "70.00", key=f"race-{i}"))
    unexpected = [r for r in results if not isinstance(r, Withdrawal | WithdrawalError)]
    assert not unexpected, unexpected
    accepted = [r for r in results if isinstance(r, Withdrawal)]
    refused = [r for r in results if isinstance(r, WithdrawalError)]
    assert len(accepted) == 14 and len(refused) == 16  # 14 × 70 = 980 of 1,000
    for exc in refused:
        assert "Not enough available commission" in str(exc), str(exc)
    assert sum(w.amount for w in accepted) <= D("1000.00")
    assert Withdrawal.objects.count() == 14
    assert available(agent) == D("20.00")
    assert not Balance.objects.filter(balance__lt=0).exists()
    assert balance_of(ledger.WITHDRAWALS_PAYABLE) == D("980.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_20_concurrent_clicks_of_one_form_make_one_withdrawal():
    agent = make_agent()
    give(agent, "1000.00")
    results = run_concurrently(20, lambda i: request(agent, "100.00", key="one-form"))
    assert all(isinstance(r, Withdrawal) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert Withdrawal.objects.count() == 1 and available(agent) == D("900.00")


# --- the agent's page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_page_is_for_agents_only(client):
    assert client.get("/agent/withdrawals/").status_code == 302  # log in first
    client.force_login(UserFactory())
    assert client.get("/agent/withdrawals/").status_code == 404
    assert client.get("/agent/withdrawals/fee/?amount=100").status_code == 404


@pytest.mark.django_db
def test_the_agent_sees_balances_requests_and_reasons(client, agent, staff):
    give(agent, "500.00")
    client.force_login(agent.user)
    page = client.get("/agent/withdrawals/")
    html = page.content.decode()
    assert page.status_code == 200
    assert (
        'data-testid="available">¥500.00' in html and "Minimum ¥10.00. Fee 0.5% of the amount, at least ¥1.00." in html
    )
    token = page.context["token"]
    form = {
        "amount": "150",
        "method": "alipay",
        "payee_name": "李四",
        "payee_account": "li@example.com",
        "token": token,
    }
    response = client.post("/agent/withdrawals/", form)
    w = Withdrawal.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/agent/withdrawals/{w.number}/"
    assert client.post("/agent/withdrawals/", form).status_code == 302  # a double submit
    assert Withdrawal.objects.count() == 1
    detail = client.get(response["Location"]).content.decode()
    assert w.number in detail and "li@example.com" not in detail and "•••••••.com" in detail
    payouts.payout_reject(withdrawal_id=w.pk, staff=staff, reason="Please use your own account")
    html = client.get("/agent/withdrawals/").content.decode()
    assert "Please use your own account" in html and 'data-testid="available">¥500.00' in html
    assert "Please use your own account" in client.get(response["Location"]).content.decode()


@pytest.mark.django_db
def test_a_bad_request_on_the_page_says_why(client, agent):
    give(agent, "50.00")
    client.force_login(agent.user)
    token = client.get("/agent/withdrawals/").context["token"]
    form = {"amount": "80", "method": "alipay", "payee_name": "王五", "payee_account": "13900139000", "token": token}
    response = client.post("/agent/withdrawals/", form)
    assert response.status_code == 400
    assert "Not enough available commission" in response.content.decode()
    assert response.context["token"] == token  # corrected and resent: still one request
    assert Withdrawal.objects.count() == 0


@pytest.mark.django_db
def test_the_fee_preview(client, agent):
    client.force_login(agent.user)
    assert (
        'you receive <strong class="text-success">¥995.00'
        in client.get("/agent/withdrawals/fee/?amount=1000").content.decode()
    )
    assert "minimum withdrawal is ¥10.00" in client.get("/agent/withdrawals/fee/?amount=5").content.decode()


@pytest.mark.django_db
def test_another_agents_withdrawal_is_404_and_logged(client, agent):
    give(agent, "100")
    mine = request(agent, "20")
    intruder = make_agent()
    client.force_login(intruder.user)
    assert client.get(f"/agent/withdrawals/{mine.number}/").status_code == 404
    event = AuditEvent.objects.get(action="withdrawal.view")
    assert (event.outcome, event.actor, event.target) == (AuditEvent.Outcome.DENIED, intruder.user, mine.number)
    assert mine.number not in client.get("/agent/withdrawals/").content.decode()
    client.force_login(agent.user)
    assert client.get(f"/agent/withdrawals/{mine.number}/").status_code == 200


# --- admin -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_lists_filters_and_shows_masked_accounts(client, agent, staff):
    give(agent, "1000")
    w = request(agent, "100", account="13800138000")
    client.force_login(staff)
    listing = client.get("/admin/agents/withdrawal/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert w.number in html and "•••••••8000" in html and "13800138000" not in html
    for query in (
        "status__exact=requested",
        "method__exact=bank",
        "amount=100-1000",
        "attention=review",
        f"agent__id__exact={agent.pk}",
    ):
        assert client.get(f"/admin/agents/withdrawal/?{query}").status_code == 200, query
    assert w.number not in client.get("/admin/agents/withdrawal/?method__exact=bank").content.decode()
    change = client.get(f"/admin/agents/withdrawal/{w.pk}/change/").content.decode()
    assert "13800138000" not in change and 'data-testid="approve"' in change and 'data-testid="reject"' in change


@pytest.mark.django_db(transaction=True)
def test_admin_approve_button_pays_by_alipay(client, alipay, fake, agent, staff):
    give(agent, "1000")
    w = request(agent, "100")
    client.force_login(staff)
    response = client.post(f"/admin/agents/withdrawal/{w.pk}/approve/")
    assert response.status_code == 302
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.PAID and fake.transfers_executed == 1
    assert client.get(f"/admin/agents/withdrawal/{w.pk}/approve/").status_code == 405


@pytest.mark.django_db
def test_admin_reject_action_asks_for_a_reason(client, agent, staff):
    give(agent, "1000")
    a, b = request(agent, "100", key="a"), request(agent, "200", key="b")
    client.force_login(staff)
    data = {"action": "reject_selected", "_selected_action": [a.pk, b.pk]}
    page = client.post("/admin/agents/withdrawal/", data)
    assert page.status_code == 200 and "Reason (the agent sees it)" in page.content.decode()
    assert Withdrawal.objects.filter(status=WithdrawalStatus.REJECTED).count() == 0
    no_reason = client.post("/admin/agents/withdrawal/", {**data, "apply": "1", "reason": ""})
    assert no_reason.status_code == 200 and Withdrawal.objects.filter(status=WithdrawalStatus.REJECTED).count() == 0
    done = client.post("/admin/agents/withdrawal/", {**data, "apply": "1", "reason": "Duplicate requests"})
    assert done.status_code == 302
    assert set(Withdrawal.objects.values_list("status", "reject_reason")) == {
        (WithdrawalStatus.REJECTED, "Duplicate requests")
    }
    assert available(agent) == D("1000.00")


@pytest.mark.django_db
def test_admin_reject_page_for_one_withdrawal(client, agent, staff):
    give(agent, "1000")
    w = request(agent, "100")
    client.force_login(staff)
    assert client.get(f"/admin/agents/withdrawal/{w.pk}/reject/").status_code == 200
    assert client.post(f"/admin/agents/withdrawal/{w.pk}/reject/", {"reason": ""}).status_code == 200
    response = client.post(f"/admin/agents/withdrawal/{w.pk}/reject/", {"reason": "Suspicious activity"})
    assert response.status_code == 302
    w.refresh_from_db()
    assert (w.status, w.reject_reason) == (WithdrawalStatus.REJECTED, "Suspicious activity")
    assert w.history.last().actor == staff


@pytest.mark.django_db
def test_admin_records_a_bank_transfer_and_logs_the_account_being_shown(client, agent, staff):
    give(agent, "1000")
    w = request(agent, "300", method="bank", account="6222021234567890", bank_name="ICBC")
    client.force_login(staff)
    change = client.get(f"/admin/agents/withdrawal/{w.pk}/change/").content.decode()
    assert 'data-testid="record-bank"' in change and "6222021234567890" not in change
    page = client.get(f"/admin/agents/withdrawal/{w.pk}/bank-transfer/").content.decode()
    assert "6222021234567890" in page and "¥298.50" in page  # a superuser holds the permission
    event = AuditEvent.objects.get(action="withdrawal.reveal_account")
    assert (event.outcome, event.actor, event.target) == (AuditEvent.Outcome.ALLOWED, staff, w.number)
    response = client.post(f"/admin/agents/withdrawal/{w.pk}/bank-transfer/", {"reference": "CMB8899", "note": ""})
    assert response.status_code == 302
    w.refresh_from_db()
    assert (w.status, w.payout_reference) == (WithdrawalStatus.PAID, "CMB8899")
    assert [h.to_status for h in w.history.all()] == [
        WithdrawalStatus.REQUESTED,
        WithdrawalStatus.APPROVED,
        WithdrawalStatus.PAID,
    ]
    assert balance_of(ledger.BANK) == D("-298.50")


@pytest.mark.django_db
def test_staff_without_the_permission_see_the_account_masked_and_cannot_act(client, agent):
    from django.contrib.auth.models import Permission

    give(agent, "1000")
    w = request(agent, "300", method="bank", account="6222021234567890", bank_name="ICBC")
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_withdrawal"))
    client.force_login(viewer)
    assert client.get("/admin/agents/withdrawal/").status_code == 200
    change = client.get(f"/admin/agents/withdrawal/{w.pk}/change/").content.decode()
    assert 'data-testid="approve"' not in change
    assert client.get(f"/admin/agents/withdrawal/{w.pk}/bank-transfer/").status_code == 403
    assert client.post(f"/admin/agents/withdrawal/{w.pk}/approve/").status_code == 403
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["view_withdrawal", "change_withdrawal"]))
    client.force_login(clerk)
    page = client.get(f"/admin/agents/withdrawal/{w.pk}/bank-transfer/").content.decode()
    assert "6222021234567890" not in page and "••••7890" in page
    assert not AuditEvent.objects.filter(action="withdrawal.reveal_account").exists()
