"""Delivery emails in batches (issue 17): one run sends every email due over one mail connection.

A delivery queues nothing for its email: beat runs ``send_delivery_emails`` every few seconds
(``marketplace.celery.DELIVERY_EMAIL_INTERVAL``), which claims with ``FOR UPDATE SKIP LOCKED`` and
sends in the claim's transaction, so a failed send loses nothing and a sent email is never sent
again; the minute sweep sends what stayed due past the grace. The real worker's side (with beat)
is in tests/test_worker.py.
"""

from datetime import timedelta
from smtplib import SMTPRecipientsRefused, SMTPServerDisconnected

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplace import celery_app
from marketplace.celery import DELIVERY_EMAIL_INTERVAL
from orders.models import Order
from orders.services import orders
from orders.tasks import send_delivery_emails, sweep_delivery_emails
from payments.services.payments import sandbox_pay
from tests.builders import place, transaction_held
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.worker_utils import broker

Status = Order.Status


def deliver_quietly(django_capture_on_commit_callbacks, n: int, *, guest: bool = False) -> list[Order]:
    """``n`` orders paid and delivered, each by its own buyer, their emails not sent (nothing
    run on commit): what the batch finds after a burst of deliveries."""
    product = ProductFactory()
    add_stock(product, n)
    delivered = []
    for i in range(n):
        if guest:
            order = orders.order_place(
                buyer=None,
                guest_email=f"guest{i}@example.com",
                product_id=product.pk,
                quantity=1,
                idempotency_key=f"g{i}",
            )
        else:
            order = place(UserFactory(), product)
        with django_capture_on_commit_callbacks():
            sandbox_pay(order_number=order.number)
            assert orders.order_fulfil(order_id=order.pk) is True
        delivered.append(order)
    assert not Order.objects.filter(pk__in=[o.pk for o in delivered]).exclude(buyer_notified_at=None).exists()
    return delivered


def recipients() -> list[str]:
    return sorted(address for message in mail.outbox for address in message.to)


def notified(batch: list[Order]) -> set[int]:
    return set(
        Order.objects.filter(pk__in=[o.pk for o in batch], buyer_notified_at__isnull=False).values_list("pk", flat=True)
    )


@pytest.mark.postgres
def test_one_run_sends_every_due_email_once_in_one_statement_per_batch(
    db, django_capture_on_commit_callbacks, settings
):
    settings.DELIVERY_EMAIL_BATCH_SIZE = 50
    batch = deliver_quietly(django_capture_on_commit_callbacks, 5)
    guests = deliver_quietly(django_capture_on_commit_callbacks, 2, guest=True)
    mail.outbox.clear()

    with CaptureQueriesContext(connection) as sql:
        assert orders.delivery_emails_send() == 7
    # SAVEPOINT; the claim (UPDATE ... RETURNING what the emails need); RELEASE. A batch smaller
    # than the batch size is the last: no second claim.
    assert len(sql.captured_queries) == 3, "\n".join(q["sql"] for q in sql.captured_queries)
    assert "FOR UPDATE SKIP LOCKED" in sql.captured_queries[1]["sql"]
    assert recipients() == sorted([o.buyer.email for o in batch] + ["guest0@example.com", "guest1@example.com"])
    for order in batch:
        [message] = [m for m in mail.outbox if order.number in m.subject]
        assert message.to == [order.buyer.email] and f"/orders/{order.number}/" in message.body
    for order in guests:
        [message] = [m for m in mail.outbox if order.number in m.subject]
        assert "/orders/g/" in message.body  # the guest's signed link
    assert notified(batch + guests) == {o.pk for o in batch + guests}

    assert orders.delivery_emails_send() == 0  # claimed: never sent again
    assert orders.order_notify(order_id=batch[0].pk, kind="delivered") is False
    assert len(mail.outbox) == 7


def test_batches_of_the_batch_size(db, django_capture_on_commit_callbacks, settings):
    settings.DELIVERY_EMAIL_BATCH_SIZE = 2
    batch = deliver_quietly(django_capture_on_commit_callbacks, 5)
    mail.outbox.clear()
    with CaptureQueriesContext(connection) as sql:
        assert orders.delivery_emails_send() == 5
    claims = [q["sql"] for q in sql.captured_queries if "UPDATE" in q["sql"]]
    assert len(claims) == 3  # 2 + 2 + 1
    assert recipients() == sorted(o.buyer.email for o in batch)


class FlakyBackend(EmailBackend):
    """locmem, but the mail server goes away at the ``fail_at``-th message (1-based, over all
    connections), or refuses the recipients listed in ``refused``."""

    fail_at = 0
    refused: set[str] = set()
    attempts = 0

    def send_messages(self, messages):
        for message in messages:
            FlakyBackend.attempts += 1
            if FlakyBackend.attempts == FlakyBackend.fail_at:
                raise SMTPServerDisconnected("gone")
            if set(message.to) & FlakyBackend.refused:
                raise SMTPRecipientsRefused({message.to[0]: (550, b"5.1.1 no such user")})
        return super().send_messages(messages)


@pytest.fixture
def flaky(settings):
    settings.EMAIL_BACKEND = "tests.test_delivery_emails.FlakyBackend"
    FlakyBackend.fail_at, FlakyBackend.refused, FlakyBackend.attempts = 0, set(), 0
    yield FlakyBackend
    FlakyBackend.fail_at, FlakyBackend.refused = 0, set()


def test_a_send_failing_mid_batch_keeps_the_sent_claimed_and_the_rest_due(
    db, django_capture_on_commit_callbacks, flaky
):
    batch = deliver_quietly(django_capture_on_commit_callbacks, 5)
    mail.outbox.clear()
    flaky.fail_at = 3

    with pytest.raises(SMTPServerDisconnected):
        orders.delivery_emails_send()
    sent = {m.to[0] for m in mail.outbox}
    assert len(sent) == 2  # messages 1 and 2 went out before the server went away
    assert {o.buyer.email for o in batch if o.pk in notified(batch)} == sent  # exactly those are claimed

    assert orders.delivery_emails_send() == 3  # the retry: the other three, nothing twice
    assert recipients() == sorted(o.buyer.email for o in batch)
    assert notified(batch) == {o.pk for o in batch}


def test_beat_runs_the_batch_every_few_seconds_and_the_sweep_every_minute():
    """No Celery retry of its own (it would be an ETA message the worker holds unacknowledged):
    the next tick is the retry, and the minute sweep takes what stays due past the grace."""
    schedule = celery_app.conf.beat_schedule
    run = schedule["orders-delivery-emails"]
    assert run["task"] == send_delivery_emails.name and run["schedule"] == DELIVERY_EMAIL_INTERVAL <= 5
    assert run["options"]["expires"] == DELIVERY_EMAIL_INTERVAL  # a backlog of ticks is not worth keeping
    assert schedule["orders-delivery-emails-sweep"]["task"] == sweep_delivery_emails.name
    assert not getattr(send_delivery_emails, "autoretry_for", ())


def test_the_run_takes_what_came_due_within_the_grace_and_the_sweep_the_rest(
    db, django_capture_on_commit_callbacks, settings
):
    settings.DELIVERY_EMAIL_SWEEP_GRACE_SECONDS = 60
    fresh, late = deliver_quietly(django_capture_on_commit_callbacks, 2)
    Order.objects.filter(pk=late.pk).update(delivered_at=timezone.now() - timedelta(minutes=5))
    mail.outbox.clear()
    assert send_delivery_emails() == 1
    assert recipients() == [fresh.buyer.email]
    assert sweep_delivery_emails() == 1
    assert recipients() == sorted([fresh.buyer.email, late.buyer.email])
    assert send_delivery_emails() == sweep_delivery_emails() == 0


def test_a_refused_recipient_does_not_hold_up_the_others(db, django_capture_on_commit_callbacks, flaky, settings):
    settings.DELIVERY_EMAIL_BATCH_SIZE = 2
    batch = deliver_quietly(django_capture_on_commit_callbacks, 5)
    mail.outbox.clear()
    bad = batch[0]
    flaky.refused = {bad.buyer.email}

    assert orders.delivery_emails_send() == 4
    assert recipients() == sorted(o.buyer.email for o in batch[1:])
    # Refused for good (550): its email stays claimed, never offered again (tests/test_email_refusals.py).
    assert notified(batch) == {o.pk for o in batch}
    assert bad.email_refusal.permanent


def test_the_sweep_sends_what_is_due_past_the_grace_and_not_old_orders(
    db, django_capture_on_commit_callbacks, settings
):
    settings.DELIVERY_EMAIL_SWEEP_GRACE_SECONDS = 60
    settings.DELIVERY_EMAIL_MAX_AGE_HOURS = 24
    lost, fresh, old = deliver_quietly(django_capture_on_commit_callbacks, 3)
    now = timezone.now()
    Order.objects.filter(pk=lost.pk).update(delivered_at=now - timedelta(minutes=2))  # its run was lost
    Order.objects.filter(pk=old.pk).update(delivered_at=now - timedelta(days=3))  # before emails were batched
    mail.outbox.clear()

    assert sweep_delivery_emails() == 1
    assert recipients() == [lost.buyer.email]
    assert orders.delivery_emails_send() == 1  # a run sends the fresh one; the old order is never emailed
    assert recipients() == sorted([lost.buyer.email, fresh.buyer.email])
    assert notified([lost, fresh, old]) == {lost.pk, fresh.pk}


def test_with_eager_tasks_the_run_follows_the_delivery(db, django_capture_on_commit_callbacks):
    """Eager tasks (the tests) have no beat beside them: the run follows each delivery's commit."""
    [other] = deliver_quietly(django_capture_on_commit_callbacks, 1)
    product = ProductFactory()
    add_stock(product, 1)
    order = place(UserFactory(), product)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        sandbox_pay(order_number=order.number)
    assert recipients() == sorted([order.buyer.email, other.buyer.email])  # every due email, not only its own


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_two_runs_at_once_never_send_the_same_email(settings):
    """A run holding its batch (claimed, sending) and another run: the second skips the locked
    rows and takes the rest; each buyer gets one email."""
    settings.DELIVERY_EMAIL_BATCH_SIZE = 2
    product = ProductFactory()
    add_stock(product, 4)
    batch = []
    for _ in range(4):
        order = place(UserFactory(), product)
        sandbox_pay(order_number=order.number)  # delivered and emailed (eager tasks) ...
        batch.append(order)
    Order.objects.filter(pk__in=[o.pk for o in batch]).update(buyer_notified_at=None)  # ... not yet, as after a burst
    mail.outbox.clear()

    def first_batch():
        return orders._delivery_emails_claim(size=2, older_than=None, newer_than=None, skip=[])

    with transaction_held(first_batch) as held:  # claimed, its transaction open
        assert len(held.value) == 2
        assert orders.delivery_emails_send() == 2  # the other two; the held ones are skipped
        held.release()
    assert orders.delivery_emails_send() == 0  # all four claimed
    assert len(notified(batch)) == 4
    held_ids = {o.pk for o in held.value}
    assert recipients() == sorted(o.buyer.email for o in batch if o.pk not in held_ids)


def test_a_delivery_queues_nothing_for_its_email(db, django_capture_on_commit_callbacks, redis_broker):
    """Not eager: the delivery's commit publishes no task for the email; beat's next run sends it."""
    product = ProductFactory()
    add_stock(product, 1)
    order = place(UserFactory(), product)
    with django_capture_on_commit_callbacks(execute=True):
        sandbox_pay(order_number=order.number)  # paid: the fulfilment is queued (not run: not eager)
    assert [k.decode() for k in redis_broker.keys("*") if redis_broker.type(k) == b"list"] == ["fulfilment"]
    redis_broker.delete("fulfilment")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert orders.order_fulfil(order_id=order.pk) is True
    assert redis_broker.llen("notifications") == 0 and mail.outbox == []
    assert send_delivery_emails() == 1  # beat's next tick
    assert recipients() == [order.buyer.email]


def test_with_the_broker_away_the_delivery_stands_and_the_email_waits_for_the_run(
    db, django_capture_on_commit_callbacks
):
    product = ProductFactory()
    add_stock(product, 1)
    order = place(UserFactory(), product)
    with django_capture_on_commit_callbacks(execute=True):
        sandbox_pay(order_number=order.number)  # eager: delivered
    Order.objects.filter(pk=order.pk).update(buyer_notified_at=None)
    mail.outbox.clear()
    celery_app.conf.task_always_eager = False
    try:
        with broker(celery_app, "redis://127.0.0.1:1/0", visibility_timeout=60):  # nothing listens there
            assert send_delivery_emails() == 1  # the run needs the database and the mail server only
    finally:
        celery_app.conf.task_always_eager = True
    assert recipients() == [order.buyer.email]
    assert notified([order]) == {order.pk}
