"""What the critical path costs (issue 17), pinned in statements: a plain gateway notification
applied, and a plain fulfilment. A statement more is a regression to explain, not a number to
bump: each one below is named.

Inside a test, ``transaction.atomic`` is a savepoint (SAVEPOINT ... RELEASE) where production
has BEGIN ... COMMIT: the same count.
"""

from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import CardCode
from ledger.models import Entry
from orders.models import Order
from orders.services import orders
from payments.models import Notification, Payment
from payments.services.payments import notification_receive
from tests.builders import place
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.test_payment_pipeline import signed

Status = Order.Status


def _apply(order: Order):
    return notification_receive(gateway_code="sandbox", headers={}, body=signed(order), remote_addr="127.0.0.1")


def _warm(buyer, product, django_capture_on_commit_callbacks) -> None:
    """A first sale, committed: the ledger accounts it opens are kept by the process after."""
    with django_capture_on_commit_callbacks(execute=True):
        assert _apply(place(buyer, product)).outcome == Notification.Outcome.APPLIED


@pytest.mark.postgres
def test_a_plain_notification_apply_costs_five_statements(buyer, django_capture_on_commit_callbacks):
    product = ProductFactory(price=Decimal("20.00"))
    add_stock(product, 2)
    _warm(buyer, product, django_capture_on_commit_callbacks)
    order = place(buyer, product)

    with django_capture_on_commit_callbacks() as after, CaptureQueriesContext(connection) as sql:
        result = _apply(order)
    statements = [q["sql"] for q in sql.captured_queries]
    # SAVEPOINT; the order locked; the ledger lines in one INSERT; moved to paid (the due time
    # with it), its history row, the ledger entry that seals the lines, the payment (its unique
    # trade number is the replay and forgery backstop for a pending order) and the
    # notification's log row, one statement (were three: the move's, the payment's, the
    # entry's); RELEASE.
    assert len(statements) == 5, "\n".join(statements)
    assert statements[2].startswith('INSERT INTO "ledger_line"')
    moved = statements[3]
    assert moved.startswith("WITH moved AS (UPDATE") and "orders_orderstatuschange" in moved
    assert 'a AS (INSERT INTO "payments_payment"' in moved and "payments_notification" in moved
    assert 'r AS (INSERT INTO "ledger_entry"' in moved
    assert not any('FROM "ledger_account"' in s for s in statements)  # accounts kept per process
    assert result.outcome == Notification.Outcome.APPLIED
    order.refresh_from_db()
    assert order.status == Status.PAID and order.delivery_due_at is not None
    assert list(order.history.values_list("from_status", "to_status"))[-1] == (Status.PENDING, Status.PAID)
    payment = Payment.objects.get(order=order)
    assert Notification.objects.get(payment=payment).outcome == Notification.Outcome.APPLIED
    entry = Entry.objects.get(idempotency_key=f"payment:sandbox:{payment.trade_no}")
    assert sorted(entry.lines.values_list("amount", flat=True)) == [Decimal("-20.00"), Decimal("20.00")]
    assert len(after) == 1  # the fulfilment, queued once committed


def test_a_replayed_notification_still_finds_the_payment(buyer, django_capture_on_commit_callbacks):
    """The shortcut for pending orders leaves the replay of a paid order's notification as it was."""
    product = ProductFactory(price=Decimal("20.00"))
    add_stock(product, 1)
    order = place(buyer, product)
    body = signed(order)
    with django_capture_on_commit_callbacks():
        first = notification_receive(gateway_code="sandbox", headers={}, body=body)
        again = notification_receive(gateway_code="sandbox", headers={}, body=body)
    assert (first.outcome, again.outcome) == (Notification.Outcome.APPLIED, Notification.Outcome.REPLAY)
    assert Payment.objects.filter(order=order).count() == 1


@pytest.mark.postgres
def test_a_plain_fulfilment_costs_six_statements_and_renders_nothing(buyer, django_capture_on_commit_callbacks):
    product = ProductFactory(price=Decimal("20.00"))
    add_stock(product, 3)
    _warm(buyer, product, django_capture_on_commit_callbacks)
    order = place(buyer, product, quantity=2)
    with django_capture_on_commit_callbacks():  # paid; its fulfilment not run
        _apply(order)
    sent = len(mail.outbox)

    with django_capture_on_commit_callbacks() as after, CaptureQueriesContext(connection) as sql:
        assert orders.order_fulfil(order_id=order.pk) is True
    statements = [q["sql"] for q in sql.captured_queries]
    # SAVEPOINT; the order locked; its codes sold, returning their costs; the ledger lines in
    # one INSERT; moved to delivered with its history row and the ledger entry that seals the
    # lines, one statement; RELEASE.
    assert len(statements) == 6, "\n".join(statements)
    assert sum('INSERT INTO "ledger_entry"' in s for s in statements) == 1
    assert 'INSERT INTO "ledger_entry"' in statements[-2] and 'UPDATE "orders_order"' in statements[-2]
    assert len(mail.outbox) == sent  # no email rendered or sent by the fulfilment
    order.refresh_from_db()
    assert order.status == Status.DELIVERED and order.buyer_notified_at is None
    codes = CardCode.objects.filter(pk__in=order.codes.values("code_id"))
    assert sorted(codes.values_list("status", flat=True)) == [CardCode.Status.SOLD] * 2
    entry = Entry.objects.get(idempotency_key=f"delivery:{order.number}")
    cost = 2 * codes.first().batch.cost_price
    assert sorted(entry.lines.values_list("amount", flat=True)) == sorted(
        [Decimal("40.00"), Decimal("-40.00"), cost, -cost]
    )

    # After the commit: the run that sends the delivery emails in a batch queued (run in place
    # here, tests' Celery is eager), once. SAVEPOINT; the batch claimed, returning what the
    # emails need; RELEASE: three statements for the whole batch, as for one email before.
    assert len(after) == 1
    with CaptureQueriesContext(connection) as sql:
        after[0]()
    assert len(sql.captured_queries) == 3, "\n".join(q["sql"] for q in sql.captured_queries)
    assert len(mail.outbox) == sent + 1 and order.number in mail.outbox[-1].subject
    assert mail.outbox[-1].to == [buyer.email] and f"/orders/{order.number}/" in mail.outbox[-1].body
    assert orders.order_notify(order_id=order.pk, kind="delivered") is False
    assert len(mail.outbox) == sent + 1


def test_a_guest_order_email_links_the_signed_page(db, django_capture_on_commit_callbacks):
    """The claim reads what the email needs in its UPDATE: a guest's address and signed link."""
    product = ProductFactory(price=Decimal("20.00"))
    add_stock(product, 1)
    order = orders.order_place(
        buyer=None, guest_email="Guest@Example.com", product_id=product.pk, quantity=1, idempotency_key="g1"
    )
    with django_capture_on_commit_callbacks(execute=True):
        _apply(order)
    order.refresh_from_db()
    assert order.status == Status.DELIVERED and order.buyer_notified_at is not None
    [message] = [m for m in mail.outbox if order.number in m.subject]
    assert message.to == ["guest@example.com"] and "/orders/g/" in message.body


def test_ledger_accounts_are_kept_only_once_committed(db, django_capture_on_commit_callbacks):
    """The platform's accounts are kept per process, but only rows known to be committed: an
    account opened by a transaction that rolls back is never remembered (its id would be
    another row's, or nobody's)."""
    from django.db import transaction

    from ledger import services as ledger
    from ledger.models import Account

    gone, kept = ledger.clearing("rolled-back-gateway"), ledger.clearing("kept-gateway")
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                ledger.accounts_get(gone)
                raise RuntimeError("the caller fails")
        except RuntimeError:
            pass
        ledger.accounts_get(kept)
    assert not Account.objects.filter(code=gone.code).exists()
    with CaptureQueriesContext(connection) as sql:
        assert ledger.accounts_get(kept)[kept.code].code == kept.code  # kept: no statement
    assert sql.captured_queries == []
    with CaptureQueriesContext(connection) as sql:
        account = ledger.accounts_get(gone)[gone.code]  # not kept: read (and opened) again
    assert len(sql.captured_queries) >= 2 and Account.objects.filter(pk=account.pk, code=gone.code).exists()
    # An owner's account (a wallet) is read each time: its name follows its owner.
    with django_capture_on_commit_callbacks(execute=True):
        wallet = ledger.accounts_get(ledger.wallet(UserFactory()))
    with CaptureQueriesContext(connection) as sql:
        ledger.accounts_get(ledger.AccountSpec(next(iter(wallet)), "", "liability"))
    assert len(sql.captured_queries) == 1


def test_the_order_lock_builds_the_instance_the_orm_builds(buyer):
    """``order_lock_by_number`` and the fulfilment's lock read the row with a SELECT of constant
    text (PostgreSQL): the same instance as the ORM's, every field converted as it converts it."""
    import pytest
    from django.db import transaction

    product = ProductFactory(price=Decimal("20.00"))
    add_stock(product, 1)
    order = place(buyer, product)
    Order.objects.filter(pk=order.pk).update(topup_values={"account": "玩家 1", "server": 3})
    fields = [f.attname for f in Order._meta.concrete_fields]
    with transaction.atomic():
        orm = Order.objects.select_for_update().get(pk=order.pk)
        with CaptureQueriesContext(connection) as sql:
            by_number = orders.order_lock_by_number(order.number)
            by_id = orders._lock(order.pk)
            missing = orders.order_lock_by_number("no-such-order")
        with pytest.raises(Order.DoesNotExist):
            orders._lock(-1)
    assert missing is None
    for locked in (by_number, by_id):
        assert type(locked) is Order and not locked._state.adding and locked._state.db == orm._state.db
        assert {n: getattr(locked, n) for n in fields} == {n: getattr(orm, n) for n in fields}
    assert by_number.topup_values == {"account": "玩家 1", "server": 3} and by_number.total == Decimal("20.00")
    if connection.vendor == "postgresql":
        assert all(q["sql"].endswith("FOR UPDATE") for q in sql.captured_queries)
