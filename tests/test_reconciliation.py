"""Reconciliation (payments.services.reconciliation): the active query, closing at the gateway, daily bills.

Everything goes through the fake gateways of tests/fake_alipay.py and tests/fake_wechatpay.py:
the adapters sign real requests, the fakes check them and sign their replies, and the adapters
verify those signatures. Nothing is mocked but the clock, moved by editing the rows' times.
"""

import io
import json
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from compliance.models import CreditEvent
from marketplace.celery import app as celery_app
from marketplace.money import to_fen, yuan_str
from orders.models import Order, OrderStatusChange
from orders.services import orders as order_services
from payments import tasks
from payments.gateways import Device, GatewayError
from payments.gateways.alipay import AlipayGateway
from payments.models import Mismatch, Notification, Payment, PaymentAttempt, ReconciliationRun, Refund
from payments.services import payments as services
from payments.services import reconciliation
from tests.builders import place, run_concurrently, values_and_errors
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.fake_alipay import Refund as FakeAlipayRefund
from tests.fake_alipay import now_beijing
from tests.fake_wechatpay import (
    as_meta,
    bill_row,
    bill_text,
    callback,
    generated_keys,
    transaction_resource,
)

pytestmark = pytest.mark.usefixtures("english")


BEIJING = ZoneInfo("Asia/Shanghai")
Kind = Mismatch.Kind
Outcome = Notification.Outcome


# --- the two channels, as the tests script them -------------------------------------------------


class AlipayChannel:
    code = "alipay"
    notify_path = "/payments/notify/alipay/"

    def __init__(self, fake):
        self.fake = fake

    def opened(self, order):
        """The buyer opened Alipay's cashier: the trade exists there, unpaid."""
        self.fake.add_trade(order.number, order.total, status="WAIT_BUYER_PAY")

    def pay(self, order):
        """The buyer pays at Alipay; the notification is lost."""
        trade = self.fake.trades[order.number]
        trade.status, trade.paid = "TRADE_SUCCESS", now_beijing()

    def trade_no(self, order) -> str:
        return self.fake.trades[order.number].trade_no

    def calls(self, method: str, number: str | None = None) -> int:
        return sum(
            1
            for name, params in self.fake.calls
            if name == method and (number is None or json.loads(params["biz_content"])["out_trade_no"] == number)
        )

    def queries(self, number=None) -> int:
        return self.calls("alipay.trade.query", number)

    def closes(self, number=None) -> int:
        return self.calls("alipay.trade.close", number)

    def is_closed(self, order) -> bool:
        return self.fake.trades[order.number].status == "TRADE_CLOSED"

    def fail(self, status: int | None):
        self.fake.fail_status = status

    def late_notification(self, client, order):
        body = self.fake.notification(
            out_trade_no=order.number, total_amount=yuan_str(order.total), trade_no=self.trade_no(order)
        )
        response = client.post(self.notify_path, data=body, content_type="application/x-www-form-urlencoded")
        assert (response.status_code, response.content) == (200, b"success")

    def set_bill(self, day, payments, refunds=()):
        """payments: (number, trade_no, amount); refunds: (number, trade_no, refund_no, amount).

        The fake bills every paid trade and every refund it holds (it does not look at the day)."""
        fake = self.fake
        fake.trades.clear()
        fake.refunds.clear()
        for number, trade_no, amount in payments:
            fake.add_trade(number, amount, trade_no=trade_no, paid=f"{day} 12:00:00")
        for number, trade_no, refund_no, amount in refunds:
            if number not in fake.trades:
                fake.add_trade(number, amount, trade_no=trade_no, status="TRADE_CLOSED", refunded=Decimal(amount))
            fake.refunds[(number, refund_no)] = FakeAlipayRefund(number, refund_no, Decimal(amount), f"{day} 13:00:00")


class WeChatChannel:
    code = "wechat"
    notify_path = "/payments/notify/wechat/"

    def __init__(self, fake):
        self.fake = fake
        self.keys = generated_keys()

    def opened(self, order):
        # payment_start already opened it: WeChat Pay's pay() creates the trade.
        assert self.fake.trades[order.number]["state"] == "NOTPAY"

    def pay(self, order):
        self.fake.add_trade(order.number, to_fen(order.total), state="SUCCESS")

    def trade_no(self, order) -> str:
        return self.fake.trades[order.number]["transaction_id"]

    def _count(self, method, pattern, number):
        prefix = "/v3/pay/transactions/out-trade-no/" + (number or "")
        return sum(1 for s in self.fake.seen if s.method == method and s.path.startswith(prefix) and pattern(s.path))

    def queries(self, number=None) -> int:
        return self._count("GET", lambda path: "/close" not in path, number)

    def closes(self, number=None) -> int:
        return self._count("POST", lambda path: path.endswith("/close"), number)

    def is_closed(self, order) -> bool:
        return self.fake.trades[order.number]["state"] == "CLOSED"

    def fail(self, status: int | None):
        self.fake.fail_status = status or 0

    def late_notification(self, client, order):
        resource = transaction_resource(
            self.keys,
            order_number=order.number,
            total_fen=to_fen(order.total),
            transaction_id=self.trade_no(order),
            success_time=self.fake.trades[order.number]["success_time"],
        )
        body, headers = callback(self.keys, resource)
        response = client.post(self.notify_path, data=body, content_type="application/json", **as_meta(headers))
        assert response.status_code == 204

    def set_bill(self, day, payments, refunds=()):
        rows = [
            bill_row(
                self.keys,
                交易时间=f"{day} 12:00:00",
                微信订单号=trade_no,
                商户订单号=number,
                交易类型="NATIVE",
                交易状态="SUCCESS",
                应结订单金额=str(amount),
                订单金额=str(amount),
                商品名称="点卡",
            )
            for number, trade_no, amount in payments
        ]
        rows += [
            bill_row(
                self.keys,
                交易时间=f"{day} 13:00:00",
                微信订单号=trade_no,
                商户订单号=number,
                交易类型="NATIVE",
                交易状态="REFUND",
                应结订单金额="0.00",
                订单金额="0.00",
                商户退款单号=refund_no,
                申请退款金额=str(amount),
                退款金额=str(amount),
                退款状态="SUCCESS",
                商品名称="点卡",
            )
            for number, trade_no, refund_no, amount in refunds
        ]
        self.fake.set_bill(day.isoformat(), "\ufeff" + bill_text(rows))


@pytest.fixture(params=["alipay", "wechat"])
def channel(request):
    if request.param == "alipay":
        request.getfixturevalue("alipay")  # configures the project for the fake
        return AlipayChannel(request.getfixturevalue("fake"))
    return WeChatChannel(request.getfixturevalue("fake_wechatpay"))


@pytest.fixture
def both(alipay, fake, fake_wechatpay):
    return AlipayChannel(fake), WeChatChannel(fake_wechatpay)


# --- helpers ----------------------------------------------------------------------------------


def start(channel, order) -> PaymentAttempt:
    """The buyer chooses the channel: the attempt is recorded, the trade opened at the fake."""
    services.payment_start(
        gateway_code=channel.code, payable=order, device=Device.DESKTOP, client_ip="10.0.0.8", subject="点卡 × 1"
    )
    channel.opened(order)
    return PaymentAttempt.objects.get(number=order.number, gateway=channel.code)


def travel_to_due(*numbers) -> None:
    """Time travel: the attempts' next query is now."""
    attempts = PaymentAttempt.objects.filter(next_query_at__isnull=False)
    if numbers:
        attempts = attempts.filter(number__in=numbers)
    attempts.update(next_query_at=timezone.now() - timedelta(seconds=1))


def expire(order) -> None:
    """Time travel past the order's 15 minutes; its attempt is due then (queries never wait past expiry)."""
    past = timezone.now() - timedelta(seconds=1)
    Order.objects.filter(pk=order.pk).update(expires_at=past)
    PaymentAttempt.objects.filter(number=order.number, next_query_at__isnull=False).update(next_query_at=past)


def run_beat() -> None:
    tasks.attempts_query_due()
    tasks.attempts_close_expired()


def paid_orders(channel, buyer, prices) -> list[Order]:
    """Orders paid at the fake and found by the active query (their notifications were lost)."""
    orders = []
    for price in prices:
        product = ProductFactory(price=Decimal(price))
        add_stock(product, 1)
        order = place(buyer, product)
        start(channel, order)
        channel.pay(order)
        orders.append(order)
    travel_to_due()
    tasks.attempts_query_due()
    assert Payment.objects.filter(order__in=orders).count() == len(orders)
    return orders


def yesterday_noon():
    return datetime.combine(reconciliation.yesterday(), time(12), tzinfo=BEIJING)


def mismatches(run) -> set[tuple]:
    return {(m.kind, m.order_number, m.trade_no, m.refund_no, m.ours, m.theirs) for m in run.mismatches.all()}


# --- the active query -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_every_notification_lost_for_50_paid_orders_all_completed_once_by_the_active_query(client, channel, buyer):
    product = ProductFactory(price=Decimal("30.00"))
    add_stock(product, 50)
    orders = [place(buyer, product) for _ in range(50)]
    for order in orders:
        start(channel, order)
        channel.pay(order)  # paid at the gateway; no notification ever arrives
    assert not Notification.objects.exists()
    assert tasks.attempts_query_due() == 0  # the first query comes 2 minutes after the start

    travel_to_due()
    if connection.vendor == "postgresql":
        # Four beats at once (two beat processes, overlapping runs): they split the work.
        _, errors = values_and_errors(run_concurrently(4, lambda i: tasks.attempts_query_due(), timeout=120))
        assert not errors
    else:
        tasks.attempts_query_due()
    run_beat()  # and once more, after them

    numbers = [order.number for order in orders]
    assert Payment.objects.filter(gateway=channel.code).count() == 50
    assert set(Payment.objects.values_list("order__number", flat=True)) == set(numbers)
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.DELIVERED}
    assert OrderStatusChange.objects.filter(to_status=Order.Status.PAID).count() == 50
    assert OrderStatusChange.objects.filter(to_status=Order.Status.DELIVERED).count() == 50
    assert list(Notification.objects.values_list("outcome", flat=True)) == [Outcome.APPLIED] * 50
    assert [channel.queries(number) for number in numbers] == [1] * 50  # each asked once, however many beats
    assert channel.closes() == 0
    assert not PaymentAttempt.objects.filter(next_query_at__isnull=False).exists()
    assert PaymentAttempt.objects.filter(queries=1, finished_at__isnull=False).count() == 50

    # Running again changes nothing and asks nothing.
    calls = channel.queries()
    travel_to_due()
    run_beat()
    assert channel.queries() == calls
    assert Payment.objects.count() == 50
    assert OrderStatusChange.objects.filter(to_status=Order.Status.DELIVERED).count() == 50

    # The genuine notification arrives late after all: a replay.
    channel.late_notification(client, orders[7])
    assert Notification.objects.order_by("-id").values_list("outcome", flat=True)[0] == Outcome.REPLAY
    assert Payment.objects.count() == 50
    assert OrderStatusChange.objects.filter(order=orders[7]).count() == 3  # placed, paid, delivered


@pytest.mark.django_db
def test_backoff_schedule(alipay, fake, buyer, settings):
    settings.ORDER_PAYMENT_MINUTES = 24 * 60  # a long window, to see the whole schedule
    channel = AlipayChannel(fake)
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    before = timezone.now()
    attempt = start(channel, order)
    assert before + timedelta(minutes=2) <= attempt.next_query_at <= timezone.now() + timedelta(minutes=2)
    assert attempt.queries == 0

    run_beat()
    assert channel.queries() == 0  # not due yet

    for turn, minutes in enumerate([4, 8, 16, 32, 32, 32], start=1):
        travel_to_due()
        before = timezone.now()
        run_beat()
        run_beat()  # a second beat in the same minute asks nothing
        attempt.refresh_from_db()
        assert channel.queries() == turn == attempt.queries
        assert attempt.last_state == "WAIT_BUYER_PAY"
        wait = timedelta(minutes=minutes)
        assert before + wait <= attempt.next_query_at <= timezone.now() + wait, turn
    assert [reconciliation.query_delay(n).seconds // 60 for n in range(7)] == [2, 4, 8, 16, 32, 32, 32]


@pytest.mark.django_db
def test_queries_never_wait_past_the_order_expiry(alipay, fake, buyer):
    channel = AlipayChannel(fake)
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)  # 15 minutes to pay
    start(channel, order)
    for _ in range(4):  # 2, 4, 8 ... and the fourth would be after the expiry
        travel_to_due()
        run_beat()
    attempt = PaymentAttempt.objects.get()
    order.refresh_from_db()
    assert attempt.next_query_at == order.expires_at


@pytest.mark.django_db
def test_expired_unpaid_order_is_closed_at_the_gateway_and_then_left_alone(channel, buyer):
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(channel, order)
    travel_to_due()
    run_beat()
    assert (channel.queries(order.number), channel.closes()) == (1, 0)  # waiting for the buyer

    expire(order)
    assert order_services.orders_expire_due() == 1
    assert tasks.attempts_query_due() == 0  # an expired order is not queried ...
    assert tasks.attempts_close_expired() == 1  # ... but closed

    assert channel.closes(order.number) == 1
    assert channel.is_closed(order)
    attempt = PaymentAttempt.objects.get()
    assert attempt.closed_at is not None and attempt.next_query_at is None
    assert not Payment.objects.exists()
    calls = (channel.queries(), channel.closes())
    for _ in range(3):  # not queried, nor closed, ever again
        PaymentAttempt.objects.update(created_at=timezone.now() - timedelta(days=3))
        run_beat()
    assert (channel.queries(), channel.closes()) == calls


@pytest.mark.django_db
@pytest.mark.parametrize(("state", "weighs"), [("PAYERROR", True), ("NOTPAY", False)])
def test_a_payment_the_gateway_says_failed_is_a_credit_event_one_left_unpaid_is_not(
    fake_wechatpay, buyer, state, weighs
):
    """WeChat Pay's PAYERROR (the bank refused the payment) weighs on the payer's credit once,
    however often the trade is looked at; a trade merely left unpaid does not (the order's own
    expiry is the event for that)."""
    channel = WeChatChannel(fake_wechatpay)
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(channel, order)
    fake_wechatpay.trades[order.number]["state"] = state
    expire(order)
    order_services.orders_expire_due()
    assert tasks.attempts_close_expired() == 1
    tasks.attempts_close_expired()

    failed = CreditEvent.objects.filter(kind=CreditEvent.Kind.PAYMENT_FAILED)
    if weighs:
        [event] = failed
        assert (event.user, event.reference) == (buyer, f"wechat:{order.number}")
        assert "PAYERROR" in event.detail
    else:
        assert not failed.exists()
    assert CreditEvent.objects.filter(kind=CreditEvent.Kind.ORDER_EXPIRED, user=buyer).count() == 1


@pytest.mark.django_db
def test_a_close_that_fails_is_retried_at_the_next_run(channel, buyer):
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(channel, order)
    expire(order)

    channel.fail(500)
    assert tasks.attempts_close_expired() == 1
    attempt = PaymentAttempt.objects.get()
    assert attempt.closed_at is None and attempt.last_error
    assert attempt.next_query_at <= timezone.now() + reconciliation.CLOSE_RETRY
    assert tasks.attempts_close_expired() == 0  # a minute later, not at once

    channel.fail(None)
    travel_to_due()  # a minute later
    assert tasks.attempts_close_expired() == 1
    attempt.refresh_from_db()
    assert attempt.closed_at is not None and attempt.last_error == ""
    assert channel.is_closed(order)


@pytest.mark.django_db
def test_the_close_itself_failing_is_retried_too(alipay, fake, buyer, monkeypatch):
    channel = AlipayChannel(fake)
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(channel, order)
    expire(order)
    real_close = AlipayGateway.close

    def refused(self, *, order_number):
        raise GatewayError("alipay.trade.close: cannot reach the gateway")

    monkeypatch.setattr(AlipayGateway, "close", refused)
    assert reconciliation.attempt_check(attempt_id=PaymentAttempt.objects.get().pk) == "close failed"
    assert PaymentAttempt.objects.get().last_error.startswith("close: ")
    monkeypatch.setattr(AlipayGateway, "close", real_close)
    travel_to_due()
    assert reconciliation.attempt_check(attempt_id=PaymentAttempt.objects.get().pk) == "closed"
    assert channel.is_closed(order)


@pytest.mark.django_db
def test_a_close_refused_for_a_whole_day_is_given_up_and_shown_to_staff(alipay, fake, buyer):
    channel = AlipayChannel(fake)
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(channel, order)
    expire(order)
    channel.fail(500)
    tasks.attempts_close_expired()
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(days=1, minutes=1))
    travel_to_due()
    calls = len(fake.calls)
    assert tasks.attempts_close_expired() == 1
    assert len(fake.calls) == calls  # not asked again
    attempt = PaymentAttempt.objects.get()
    assert attempt.next_query_at is None and attempt.closed_at is None
    assert attempt.last_error.startswith("not closed at the gateway, gave up")


@pytest.mark.django_db
def test_paid_at_the_last_moment_before_expiry_is_applied_not_closed(
    channel, buyer, django_capture_on_commit_callbacks
):

    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(channel, order)
    channel.pay(order)  # just before the 15 minutes were up; the notification is lost
    expire(order)
    order_services.orders_expire_due()

    with django_capture_on_commit_callbacks(execute=True):  # fulfilment, queued on commit
        tasks.attempts_close_expired()

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED  # paid late, stock reserved again, delivered
    assert Payment.objects.get().trade_no == channel.trade_no(order)
    assert channel.closes() == 0
    assert PaymentAttempt.objects.get().next_query_at is None


@pytest.mark.django_db
def test_order_paid_by_its_notification_needs_no_query(client, channel, buyer):
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(channel, order)
    channel.pay(order)
    channel.late_notification(client, order)  # in time, this once
    travel_to_due()

    run_beat()

    assert channel.queries() == 0 and channel.closes() == 0
    attempt = PaymentAttempt.objects.get()
    assert attempt.next_query_at is None and attempt.last_state == "paid (notified)"


@pytest.mark.django_db
def test_a_paid_trade_whose_amount_differs_is_refused_and_not_queried_again(alipay, fake, buyer):
    channel = AlipayChannel(fake)
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(channel, order)
    fake.trades[order.number].total_amount = order.total - Decimal("0.01")
    channel.pay(order)
    travel_to_due()

    run_beat()

    assert not Payment.objects.exists()
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert Notification.objects.get().outcome == Outcome.REJECTED
    attempt = PaymentAttempt.objects.get()
    assert attempt.next_query_at is None and "amount" in attempt.last_error
    travel_to_due()
    run_beat()
    assert channel.queries() == 1


@pytest.mark.django_db
def test_starting_twice_records_one_attempt_per_gateway(both, buyer):
    alipay_channel, wechat_channel = both
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    start(alipay_channel, order)
    start(alipay_channel, order)
    start(wechat_channel, order)
    assert sorted(PaymentAttempt.objects.values_list("gateway", flat=True)) == ["alipay", "wechat"]


@pytest.mark.django_db
def test_the_sandbox_records_no_attempt(buyer):
    product = ProductFactory()
    add_stock(product, 1)
    order = place(buyer, product)
    services.payment_start(gateway_code="sandbox", payable=order, device=Device.DESKTOP, client_ip="", subject="x")
    assert not PaymentAttempt.objects.exists()


# --- daily bills ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_bill_with_a_missing_an_extra_and_a_wrong_amount_line_gives_three_mismatches(channel, buyer, staff):
    one, two, three = paid_orders(channel, buyer, ["10.00", "20.00", "30.00"])
    Payment.objects.update(paid_at=yesterday_noon())  # time travel: they were paid yesterday
    day = reconciliation.yesterday()
    trade = {o.number: channel.trade_no(o) for o in (one, two, three)}
    refund = Refund.objects.create(
        payment=Payment.objects.get(order=one),
        order=one,
        amount=Decimal("4.00"),
        reason="test",
        idempotency_key="test:refund:1",
        status=Refund.Status.SUCCEEDED,
        succeeded_at=yesterday_noon(),
    )
    channel.set_bill(
        day,
        payments=[
            (one.number, trade[one.number], "10.00"),  # as ours
            # two is missing from the bill
            (three.number, trade[three.number], "31.00"),  # a wrong amount
            ("2401010000EXTRA000000000001", "EXTRA0000000000000000000001", "55.00"),  # not ours
        ],
        refunds=[(one.number, trade[one.number], refund.number, "4.00")],  # as ours
    )

    run = reconciliation.reconciliation_run(gateway_code=channel.code, day=day)

    assert run.status == ReconciliationRun.Status.DONE
    expected = {
        (Kind.MISSING_THERE, two.number, trade[two.number], "", Decimal("20.00"), None),
        (Kind.AMOUNT_DIFFERS, three.number, trade[three.number], "", Decimal("30.00"), Decimal("31.00")),
        (Kind.MISSING_HERE, "2401010000EXTRA000000000001", "EXTRA0000000000000000000001", "", None, Decimal("55.00")),
    }
    assert mismatches(run) == expected
    assert (run.bill_lines, run.our_records, run.matched) == (4, 4, 2)
    assert (run.missing_here, run.missing_there, run.amount_differs) == (1, 1, 1)
    assert (run.bill_payments_total, run.our_payments_total) == (Decimal("96.00"), Decimal("60.00"))
    assert (run.bill_refunds_total, run.our_refunds_total) == (Decimal("4.00"), Decimal("4.00"))
    extra = run.mismatches.get(kind=Kind.MISSING_HERE)
    assert extra.note == "no order or recharge has this number"

    # Staff resolve one; running the day again gives the same three, not six, and keeps the resolution.
    assert reconciliation.mismatch_resolve(mismatch_ids=[extra.pk], user=staff, note="another shop's trade") == 1
    out = io.StringIO()
    call_command("reconcile", "--day", day.isoformat(), "--gateway", channel.code, stdout=out)
    assert "1 missing here, 1 missing there, 1 amount differs" in out.getvalue()
    assert ReconciliationRun.objects.count() == 1
    run.refresh_from_db()
    assert mismatches(run) == expected
    assert Mismatch.objects.count() == 3
    again = run.mismatches.get(kind=Kind.MISSING_HERE)
    assert (again.resolved_by, again.resolution_note) == (staff, "another shop's trade")
    assert run.mismatches.filter(resolved_at__isnull=True).count() == 2

    # Fixed at the gateway's side (say the bill is corrected): the day runs clean.
    channel.set_bill(
        day,
        payments=[(o.number, trade[o.number], yuan_str(o.total)) for o in (one, two, three)],
        refunds=[(one.number, trade[one.number], refund.number, "4.00")],
    )
    run = reconciliation.reconciliation_run(gateway_code=channel.code, day=day)
    assert (run.mismatch_total, run.matched, Mismatch.objects.count()) == (0, 4, 0)


@pytest.mark.django_db
def test_refund_lines_are_matched_by_refund_number(fake_wechatpay, buyer):
    channel = WeChatChannel(fake_wechatpay)
    [order] = paid_orders(channel, buyer, ["50.00"])
    payment = Payment.objects.get()
    Payment.objects.update(paid_at=yesterday_noon())
    day = reconciliation.yesterday()

    def refund(n, amount, status=Refund.Status.SUCCEEDED):
        return Refund.objects.create(
            payment=payment,
            order=order,
            amount=Decimal(amount),
            reason="test",
            idempotency_key=f"test:{n}",
            status=status,
            succeeded_at=yesterday_noon() if status == Refund.Status.SUCCEEDED else None,
        )

    matched, not_on_bill, other_amount = refund(1, "5.00"), refund(2, "6.00"), refund(3, "7.00")
    processing = refund(4, "8.00", Refund.Status.PROCESSING)
    Refund.objects.filter(pk=processing.pk).update(created_at=timezone.now() - timedelta(days=1))
    Refund.objects.filter(pk__in=[matched.pk, not_on_bill.pk, other_amount.pk]).update(
        created_at=yesterday_noon() - timedelta(minutes=5)
    )
    trade = payment.trade_no
    channel.set_bill(
        day,
        payments=[(order.number, trade, "50.00")],
        refunds=[
            (order.number, trade, matched.number, "5.00"),
            (order.number, trade, other_amount.number, "7.50"),
            (order.number, trade, processing.number, "8.00"),
            (order.number, trade, "FNOTOURS00000000000000001", "9.00"),
        ],
    )

    run = reconciliation.reconciliation_run(gateway_code="wechat", day=day)

    assert mismatches(run) == {
        (Kind.MISSING_THERE, order.number, trade, not_on_bill.number, Decimal("6.00"), None),
        (Kind.AMOUNT_DIFFERS, order.number, trade, other_amount.number, Decimal("7.00"), Decimal("7.50")),
        (Kind.MISSING_HERE, order.number, trade, processing.number, None, Decimal("8.00")),
        (Kind.MISSING_HERE, order.number, trade, "FNOTOURS00000000000000001", None, Decimal("9.00")),
    }
    notes = dict(run.mismatches.values_list("refund_no", "note"))
    assert notes[processing.number] == "our refund is At the gateway"
    assert notes["FNOTOURS00000000000000001"] == "no refund has this number"
    assert run.matched == 2  # the payment and one refund
    # The refund nobody here made took the money back at the gateway: the payer's credit
    # records one reversed payment, however often the day is reconciled.
    reconciliation.reconciliation_run(gateway_code="wechat", day=day)
    [reversed_] = CreditEvent.objects.filter(kind=CreditEvent.Kind.PAYMENT_FAILED)
    assert (reversed_.user, reversed_.reference) == (buyer, "rev:FNOTOURS00000000000000001")
    assert "9.00" in reversed_.detail


@pytest.mark.django_db
def test_a_payment_dated_on_the_next_day_is_not_missing_from_this_bill(fake_wechatpay, buyer):
    channel = WeChatChannel(fake_wechatpay)
    [order] = paid_orders(channel, buyer, ["12.00"])
    payment = Payment.objects.get()
    Payment.objects.update(paid_at=yesterday_noon() - timedelta(days=1))  # ours says the day before
    day = reconciliation.yesterday()
    channel.set_bill(day, payments=[(order.number, payment.trade_no, "12.00")])
    run = reconciliation.reconciliation_run(gateway_code="wechat", day=day)
    assert (run.mismatch_total, run.matched, run.our_records) == (0, 1, 0)


@pytest.mark.django_db
def test_a_bill_that_cannot_be_downloaded_fails_the_run_and_keeps_what_was_found(channel, buyer):
    paid_orders(channel, buyer, ["10.00"])
    Payment.objects.update(paid_at=yesterday_noon())
    day = reconciliation.yesterday()
    channel.set_bill(day, payments=[])
    run = reconciliation.reconciliation_run(gateway_code=channel.code, day=day)
    assert run.missing_there == 1

    channel.fail(500)
    with pytest.raises(GatewayError):
        reconciliation.reconciliation_run(gateway_code=channel.code, day=day)
    run.refresh_from_db()
    assert run.status == ReconciliationRun.Status.FAILED and run.error
    assert run.mismatches.count() == 1


@pytest.mark.django_db
def test_today_and_unknown_gateways_are_refused(alipay):
    today = timezone.now().astimezone(BEIJING).date()
    with pytest.raises(reconciliation.ReconciliationError, match="not ended"):
        reconciliation.reconciliation_run(gateway_code="alipay", day=today)
    with pytest.raises(reconciliation.ReconciliationError, match="not an enabled gateway"):
        reconciliation.reconciliation_run(gateway_code="sandbox", day=today - timedelta(days=1))
    with pytest.raises(CommandError, match="not reconciled: alipay"):
        call_command("reconcile", "--day", today.isoformat(), "--gateway", "alipay", stderr=io.StringIO())
    with pytest.raises(CommandError, match="not a date"):
        call_command("reconcile", "--day", "yesterday")
    assert not ReconciliationRun.objects.exists()


@pytest.mark.django_db
def test_the_command_and_the_daily_task_reconcile_every_gateway_for_yesterday(both, buyer):
    alipay_channel, wechat_channel = both
    day = reconciliation.yesterday()
    wechat_channel.set_bill(day, payments=[])
    alipay_channel.set_bill(day, payments=[])

    out = io.StringIO()
    call_command("reconcile", stdout=out)  # --day defaults to yesterday
    assert f"alipay {day}: 0 bill lines" in out.getvalue()
    assert f"wechat {day}: 0 bill lines" in out.getvalue()

    ReconciliationRun.objects.all().delete()
    assert sorted(tasks.bills_reconcile_yesterday()) == ["alipay", "wechat"]
    runs = ReconciliationRun.objects.order_by("gateway").values_list("gateway", "day", "status")
    assert list(runs) == [("alipay", day, "done"), ("wechat", day, "done")]


def test_periodic_tasks_are_declared_once_and_exist():
    schedule = {entry["task"]: entry["schedule"] for entry in celery_app.conf.beat_schedule.values()}
    ours = ["attempts_query_due", "attempts_close_expired", "bills_reconcile_yesterday"]
    for name in ours:
        assert f"payments.tasks.{name}" in schedule
        assert f"payments.tasks.{name}" in celery_app.tasks
    assert schedule["payments.tasks.attempts_query_due"] == 60.0
    daily = schedule["payments.tasks.bills_reconcile_yesterday"]
    assert (daily.hour, daily.minute) == ({10}, {30})


# --- admin --------------------------------------------------------------------------------------------


@pytest.fixture
def runs(buyer):
    day = reconciliation.yesterday()
    run = ReconciliationRun.objects.create(
        gateway="alipay",
        day=day,
        status=ReconciliationRun.Status.DONE,
        bill_lines=3,
        missing_here=1,
        missing_there=1,
    )
    ReconciliationRun.objects.create(
        gateway="wechat", day=day, status=ReconciliationRun.Status.FAILED, error="HTTP 500"
    )
    here = Mismatch.objects.create(run=run, kind=Kind.MISSING_HERE, order_number="N-0001", trade_no="T1", theirs=9)
    there = Mismatch.objects.create(run=run, kind=Kind.MISSING_THERE, order_number="N-0002", trade_no="T2", ours=8)
    PaymentAttempt.objects.create(number="N-0002", gateway="alipay", queries=3, last_error="HTTP 500")
    return run, here, there


@pytest.mark.django_db
def test_admin_pages_show_runs_the_day_report_and_mismatches(client, staff, runs):
    run, here, _there = runs
    client.force_login(staff)
    report = reverse("admin:payments_reconciliation_report", args=[run.day.isoformat()])
    pages = [
        reverse("admin:payments_reconciliationrun_changelist"),
        reverse("admin:payments_reconciliationrun_change", args=[run.pk]),
        reverse("admin:payments_mismatch_changelist") + "?resolved=no&kind=missing_here&run__gateway=alipay",
        reverse("admin:payments_mismatch_changelist") + f"?run__id__exact={run.pk}",
        reverse("admin:payments_mismatch_change", args=[here.pk]),
        reverse("admin:payments_paymentattempt_changelist") + "?state=error",
        reverse("admin:payments_paymentattempt_change", args=[PaymentAttempt.objects.get().pk]),
        report,
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
    html = client.get(report).content.decode()
    assert html.count('data-testid="mismatch"') == 2
    assert "HTTP 500" in html  # the failed run's error
    assert client.get(reverse("admin:payments_reconciliation_report", args=["not-a-day"])).status_code == 404
    change = client.get(reverse("admin:payments_reconciliationrun_change", args=[run.pk])).content.decode()
    assert 'name="_save"' not in change


@pytest.mark.django_db
def test_mark_resolved_asks_for_a_note(client, staff, runs):
    _run, here, there = runs
    client.force_login(staff)
    url = reverse("admin:payments_mismatch_changelist")
    selected = {"action": "mark_resolved", "_selected_action": [here.pk, there.pk]}

    page = client.post(url, {**selected, "index": 0})
    assert page.status_code == 200
    assert "What was done" in page.content.decode()

    refused = client.post(url, {**selected, "apply": "1", "note": "  "})
    assert refused.status_code == 200 and "errorlist" in refused.content.decode()
    assert not Mismatch.objects.filter(resolved_at__isnull=False).exists()

    done = client.post(url, {**selected, "apply": "1", "note": "refunded by hand, ticket 42"})
    assert done.status_code == 302
    assert set(Mismatch.objects.values_list("resolved_by", "resolution_note")) == {
        (staff.pk, "refunded by hand, ticket 42")
    }
    unresolved = client.get(url + "?resolved=no").content.decode()
    assert "N-0001" not in unresolved and "N-0002" not in unresolved


@pytest.mark.django_db
def test_only_staff_allowed_to_resolve_see_the_action(client, runs):
    run, here, _there = runs
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_mismatch", "view_reconciliationrun"]))
    client.force_login(viewer)
    url = reverse("admin:payments_mismatch_changelist")
    assert "mark_resolved" not in client.get(url).content.decode()
    client.post(url, {"action": "mark_resolved", "_selected_action": [here.pk], "apply": "1", "note": "x"})
    assert not Mismatch.objects.filter(resolved_at__isnull=False).exists()
    assert client.get(reverse("admin:payments_reconciliation_report", args=[run.day.isoformat()])).status_code == 200


@pytest.mark.django_db
def test_resolving_needs_a_note():
    with pytest.raises(reconciliation.ReconciliationError):
        reconciliation.mismatch_resolve(mismatch_ids=[], user=None, note=" ")
