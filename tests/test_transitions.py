"""The order state machine: every (from, to) pair of Order.Status, allowed or not."""

import contextlib
import itertools

import pytest
from django.db import transaction

from marketplace.transitions import IllegalTransition
from orders.models import ORDER_FLOW, Order, OrderStatusChange
from orders.services import orders as services
from tests.factories import ProductFactory, UserFactory, add_stock

OrderStatus = Order.Status
ALL_PAIRS = list(itertools.product(OrderStatus.values, OrderStatus.values))
ALLOWED = [(src, dst) for src, dst in ALL_PAIRS if dst in ORDER_FLOW.transitions.get(src, ())]
FORBIDDEN = [(src, dst) for src, dst in ALL_PAIRS if src != dst and (src, dst) not in ALLOWED]
REPEATS = [(s, s) for s in OrderStatus.values]


@pytest.fixture
def order(db):
    product = ProductFactory()
    add_stock(product, 1)
    return services.order_place(buyer=UserFactory(), product_id=product.pk, quantity=1, idempotency_key="t")


def _force(order: Order, status: str) -> None:
    Order.objects.filter(pk=order.pk).update(status=status)


def _apply(order: Order, dst: str, **kwargs) -> bool:
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        return ORDER_FLOW.apply(locked, dst, **kwargs)


def test_the_table_covers_every_status():
    assert set(ORDER_FLOW.transitions) == set(OrderStatus.values)
    for src, dsts in ORDER_FLOW.transitions.items():
        assert dsts <= set(OrderStatus.values), src
        assert src not in dsts, f"{src} -> {src} would be a repeat, not a move"
    # The moves the business relies on, spelled out (the table is the spec).
    assert ORDER_FLOW.transitions[OrderStatus.PENDING] == {OrderStatus.PAID, OrderStatus.EXPIRED, OrderStatus.CANCELLED}
    assert ORDER_FLOW.transitions[OrderStatus.PAID] == {OrderStatus.DELIVERED, OrderStatus.REFUND_PENDING}
    assert ORDER_FLOW.transitions[OrderStatus.REFUNDED] == frozenset()
    assert len(ALLOWED) + len(FORBIDDEN) + len(REPEATS) == len(OrderStatus.values) ** 2


@pytest.mark.django_db
@pytest.mark.parametrize(("src", "dst"), ALLOWED, ids=[f"{s}->{d}" for s, d in ALLOWED])
def test_allowed_move(order, buyer, src, dst):
    _force(order, src)
    before = OrderStatusChange.objects.filter(order=order).count()

    assert _apply(order, dst, actor=buyer, note="by test") is True

    order.refresh_from_db()
    assert order.status == dst
    changes = OrderStatusChange.objects.filter(order=order).order_by("id")
    assert changes.count() == before + 1
    change = changes.last()
    assert (change.from_status, change.to_status, change.actor_id, change.note) == (src, dst, buyer.pk, "by test")
    assert ORDER_FLOW.can(src, dst)


@pytest.mark.django_db
@pytest.mark.parametrize(("src", "dst"), FORBIDDEN, ids=[f"{s}->{d}" for s, d in FORBIDDEN])
def test_forbidden_move(order, src, dst):
    _force(order, src)
    before = list(Order.objects.filter(pk=order.pk).values())
    history = OrderStatusChange.objects.filter(order=order).count()

    with pytest.raises(IllegalTransition) as excinfo:
        _apply(order, dst, update={"buyer_notified_at": None})

    assert (excinfo.value.src, excinfo.value.dst) == (src, dst)
    assert f"{src} -> {dst}" in str(excinfo.value)
    assert list(Order.objects.filter(pk=order.pk).values()) == before
    assert OrderStatusChange.objects.filter(order=order).count() == history
    assert not ORDER_FLOW.can(src, dst)


@pytest.mark.django_db
@pytest.mark.parametrize(("src", "dst"), REPEATS, ids=[f"{s}->{d}" for s, d in REPEATS])
def test_repeat_is_a_no_op(order, src, dst):
    _force(order, src)
    before = list(Order.objects.filter(pk=order.pk).values())
    history = OrderStatusChange.objects.filter(order=order).count()

    assert _apply(order, dst) is False

    assert list(Order.objects.filter(pk=order.pk).values()) == before
    assert OrderStatusChange.objects.filter(order=order).count() == history


@pytest.mark.django_db
@pytest.mark.parametrize(("dst", "stamp"), [(OrderStatus.PAID, "paid_at"), (OrderStatus.DELIVERED, "delivered_at")])
def test_entering_a_state_stamps_its_time(order, dst, stamp):
    src = OrderStatus.PENDING if dst == OrderStatus.PAID else OrderStatus.PAID
    _force(order, src)
    order.refresh_from_db()
    assert getattr(order, stamp) is None

    _apply(order, dst)

    order.refresh_from_db()
    assert getattr(order, stamp) is not None
    assert getattr(order, stamp) >= order.created_at
    change = order.history.get(to_status=dst)
    assert abs((change.at - getattr(order, stamp)).total_seconds()) < 5


@pytest.mark.django_db
def test_other_moves_stamp_nothing(order):
    _apply(order, OrderStatus.CANCELLED)
    order.refresh_from_db()
    assert (order.paid_at, order.delivered_at) == (None, None)


@pytest.mark.django_db
def test_update_fields_are_written_with_the_move(order):
    _apply(order, OrderStatus.CANCELLED, update={"buyer_ip": "10.1.2.3"}, note="x" * 600)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.buyer_ip == "10.1.2.3"
    assert len(order.history.get(to_status=OrderStatus.CANCELLED).note) == 500


@pytest.mark.django_db
def test_side_effects_run_only_after_commit(order, django_capture_on_commit_callbacks):
    ran = []
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        _apply(order, OrderStatus.PAID, on_commit=[lambda: ran.append("fulfil")])
        assert ran == []  # not while the transaction is open
    assert len(callbacks) == 1
    assert ran == ["fulfil"]


@pytest.mark.django_db
def test_side_effects_of_a_refused_move_never_run(order, django_capture_on_commit_callbacks):
    ran = []
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(IllegalTransition):
        _apply(order, OrderStatus.REFUNDED, on_commit=[lambda: ran.append("x")])
    assert callbacks == []
    assert ran == []


@pytest.mark.django_db(transaction=True)
def test_apply_outside_a_transaction_is_refused():
    product = ProductFactory()
    add_stock(product, 1)
    order = services.order_place(buyer=UserFactory(), product_id=product.pk, quantity=1, idempotency_key="t")
    order = Order.objects.get(pk=order.pk)

    with pytest.raises(RuntimeError, match="inside a transaction"):
        ORDER_FLOW.apply(order, OrderStatus.PAID)

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert order.paid_at is None
    assert order.history.count() == 1


def test_apply_refuses_a_row_moved_meanwhile_under_a_stale_instance(order):
    """The row's UPDATE is guarded by the status the caller saw (PostgreSQL: the UPDATE and its
    history row are one statement): a stale, unlocked instance moves nothing and leaves no
    history, where a blind save would have written over the other move."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement move is PostgreSQL's; elsewhere save() and create()")
    stale = Order.objects.get(pk=order.pk)  # pending, not locked
    _apply(order, Order.Status.CANCELLED)  # someone else moved it
    history = list(OrderStatusChange.objects.filter(order=order).values_list("from_status", "to_status"))
    with pytest.raises(IllegalTransition), transaction.atomic():
        ORDER_FLOW.apply(stale, Order.Status.PAID, note="stale")
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED and order.paid_at is None
    assert list(OrderStatusChange.objects.filter(order=order).values_list("from_status", "to_status")) == history


def test_a_refused_move_leaves_the_instance_as_it_was(order):
    """A row moved meanwhile refuses the guarded UPDATE: the stale instance keeps its status,
    its entered-at stamp and the fields it was asked to write, as it was before the call."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement move is PostgreSQL's; elsewhere save() and create()")
    stale = Order.objects.get(pk=order.pk)
    before = {f.attname: getattr(stale, f.attname) for f in Order._meta.concrete_fields}
    _apply(order, Order.Status.CANCELLED)
    with pytest.raises(IllegalTransition), transaction.atomic():
        ORDER_FLOW.apply(stale, Order.Status.PAID, update={"buyer_ip": "10.9.9.9", "delivery_due_at": order.expires_at})
    assert {f.attname: getattr(stale, f.attname) for f in Order._meta.concrete_fields} == before
    assert (stale.status, stale.paid_at, stale.buyer_ip) == (Order.Status.PENDING, None, before["buyer_ip"])


def test_apply_writes_what_save_writes(order):
    """The one-statement move writes the fields and the history row ``save()`` and
    ``create()`` wrote: the entered-at stamp, extra fields, actor and note."""
    staff = UserFactory(is_staff=True)
    due = order.expires_at
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        assert ORDER_FLOW.apply(locked, Order.Status.PAID, actor=staff, note="n" * 600, update={"delivery_due_at": due})
    fresh = Order.objects.get(pk=order.pk)
    assert (fresh.status, fresh.paid_at, fresh.delivery_due_at) == (Order.Status.PAID, locked.paid_at, due)
    row = OrderStatusChange.objects.filter(order=order).latest("id")
    assert (row.from_status, row.to_status, row.actor_id, row.note) == (
        Order.Status.PENDING,
        Order.Status.PAID,
        staff.pk,
        "n" * 500,
    )
    assert row.at is not None and abs((row.at - fresh.paid_at).total_seconds()) < 5


def _payment_pair(order: Order, trade_no: str):
    from marketplace import rows
    from payments.models import Notification, Payment

    payment = Payment(order=order, gateway="sandbox", trade_no=trade_no, amount=order.total, status="succeeded")
    record = Notification(gateway="sandbox", order_number=order.number, trade_no=trade_no, outcome="applied")
    return payment, record, rows.Pair(payment, record, link="payment")


def test_a_refused_move_writes_none_of_the_rows_along(order):
    """``along``'s rows (a payment and its log row) are written only if the row moves: a stale
    instance's refused move leaves none behind in the caller's transaction, which goes on."""
    from django.db import connection

    from payments.models import Notification, Payment

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement move is PostgreSQL's; elsewhere save() and create()")
    stale = Order.objects.get(pk=order.pk)
    _apply(order, Order.Status.CANCELLED)
    payment, record, pair = _payment_pair(stale, "T-STALE")
    with transaction.atomic():
        with pytest.raises(IllegalTransition):
            ORDER_FLOW.apply(stale, Order.Status.PAID, along=pair)
        assert not Payment.objects.filter(trade_no="T-STALE").exists()
        assert not Notification.objects.filter(trade_no="T-STALE").exists()
    assert payment.pk is None and record.pk is None


@contextlib.contextmanager
def _orm_path_unless(one_statement: bool):
    """Unless ``one_statement``, a ``pre_save`` receiver on Order: the ORM's path (``save()``)."""
    from django.db.models.signals import pre_save

    def receiver(**kwargs):
        pass

    if not one_statement:
        pre_save.connect(receiver, sender=Order, weak=False)
    try:
        yield
    finally:
        pre_save.disconnect(receiver, sender=Order)


@pytest.mark.parametrize("one_statement", [True, False])
def test_a_move_writes_the_rows_along_it(order, one_statement):
    """With ``along`` the move writes its history row and the pair, linked: in one statement, or
    (a model with a ``pre_save`` receiver: the ORM's path) with ``save()`` after the move."""
    from payments.models import Payment

    with _orm_path_unless(one_statement), transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        payment, record, pair = _payment_pair(locked, "T-ALONG")
        assert ORDER_FLOW.apply(locked, Order.Status.PAID, note="paid", along=pair)
    stored = Payment.objects.get(trade_no="T-ALONG")
    assert (stored.pk, stored.order_id) == (payment.pk, order.pk)
    assert record.pk is not None and record.payment is payment
    assert list(stored.notifications.values_list("pk", flat=True)) == [record.pk]
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
    assert OrderStatusChange.objects.filter(order=order).latest("id").to_status == Order.Status.PAID


def _delivery_entry(order: Order, key: str):
    from decimal import Decimal

    from ledger import services as ledger

    return ledger.entry_post_sealed_by_caller(
        kind="test",
        legs=[(ledger.HELD, Decimal("1.00")), (ledger.SALES, Decimal("-1.00"))],
        reference=order.number,
        idempotency_key=key,
    )


@pytest.mark.parametrize("one_statement", [True, False])
def test_a_move_writes_a_single_row_along_it(order, one_statement):
    """``along=rows.Row(...)`` (a delivery's ledger entry): written with the move, in its
    statement on PostgreSQL (``UPDATE`` and the entry's ``INSERT`` in one), else after it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ledger.models import Entry

    with _orm_path_unless(one_statement), transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        row = _delivery_entry(locked, "along:1")
        with CaptureQueriesContext(connection) as sql:
            assert ORDER_FLOW.apply(locked, Order.Status.PAID, note="paid", along=row)
    if one_statement and connection.vendor == "postgresql":
        assert len(sql.captured_queries) == 1
        assert 'INSERT INTO "ledger_entry"' in sql.captured_queries[0]["sql"]
    stored = Entry.objects.get(idempotency_key="along:1")
    assert stored.pk == row.obj.pk and row.obj._state.adding is False
    assert stored.lines.count() == 2
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
    assert OrderStatusChange.objects.filter(order=order).latest("id").to_status == Order.Status.PAID


def test_a_refused_move_writes_no_single_row_along(order):
    """A stale instance's refused move writes no entry along it: the caller's transaction goes
    on without it (and, its lines left unsealed, could not commit: tests/test_ledger.py)."""
    from django.db import connection

    from ledger.models import Entry

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement move is PostgreSQL's; elsewhere save() and create()")
    stale = Order.objects.get(pk=order.pk)
    _apply(order, Order.Status.CANCELLED)
    with transaction.atomic():
        row = _delivery_entry(stale, "along:stale")
        with pytest.raises(IllegalTransition):
            ORDER_FLOW.apply(stale, Order.Status.PAID, along=row)
        assert not Entry.objects.filter(idempotency_key="along:stale").exists()
        transaction.set_rollback(True)
    assert row.obj._state.adding is True


@pytest.mark.parametrize("one_statement", [True, False])
def test_a_move_writes_a_pair_and_a_row_along_it(order, one_statement):
    """``along=rows.PairAndRow(...)`` (a payment, its log row and the ledger entry that books
    it): all three with the move, in its statement on PostgreSQL, else after it."""
    from ledger.models import Entry
    from marketplace import rows
    from payments.models import Payment

    with _orm_path_unless(one_statement), transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        payment, record, pair = _payment_pair(locked, "T-TRIPLE")
        entry = _delivery_entry(locked, "along:triple")
        assert ORDER_FLOW.apply(locked, Order.Status.PAID, along=rows.PairAndRow(pair, entry))
    stored = Payment.objects.get(trade_no="T-TRIPLE")
    assert stored.pk == payment.pk and list(stored.notifications.values_list("pk", flat=True)) == [record.pk]
    assert Entry.objects.get(idempotency_key="along:triple").pk == entry.obj.pk
    assert entry.obj._state.adding is False


def test_a_refused_move_writes_none_of_a_pair_and_a_row(order):
    """A refused move writes neither the pair nor the entry along it."""
    from django.db import connection

    from ledger.models import Entry
    from marketplace import rows
    from payments.models import Payment

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement move is PostgreSQL's; elsewhere save() and create()")
    stale = Order.objects.get(pk=order.pk)
    _apply(order, Order.Status.CANCELLED)
    with transaction.atomic():
        payment, record, pair = _payment_pair(stale, "T-STALE3")
        entry = _delivery_entry(stale, "along:stale3")
        with pytest.raises(IllegalTransition):
            ORDER_FLOW.apply(stale, Order.Status.PAID, along=rows.PairAndRow(pair, entry))
        assert not Payment.objects.filter(trade_no="T-STALE3").exists()
        assert not Entry.objects.filter(idempotency_key="along:stale3").exists()
        transaction.set_rollback(True)
    assert payment.pk is None and record.pk is None
