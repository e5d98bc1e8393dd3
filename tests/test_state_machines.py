"""Every status through a state machine (issue 11).

- Every model with a status has a machine (``StateMachine(model=...)``), whose table names
  exactly the model's statuses and whose history table (if any) records them.
- Per table: every allowed move applies (``apply`` on a locked row, and ``move_all`` in one
  guarded UPDATE) and writes a history row; every other move is refused and changes nothing;
  a repeat is a no-op.
- The source holds no status write outside a machine (``.update(status=...)``,
  ``x.status = ...``, ``save(update_fields=[..."status"...])``), but for the allow-list below.
"""

import ast
import itertools
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection, models, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from aftersales.models import ArbitrationCase, RefundRequest, Ticket
from aftersales.services import arbitration
from agents.models import Commission, OperatorIdentity, Withdrawal
from agents.services import agents as agent_services
from agents.services import commissions
from catalog.models import CODE_FLOW, CardCode, StockBatch
from marketplace.transitions import IllegalTransition, StateMachine, machine_for, machines
from orders.models import ApiCallback, ManualTopup, Order, UpstreamOrder
from orders.services import callbacks as callback_services
from payments.models import Payment, Recharge, ReconciliationRun, Refund
from payments.services import refunds
from referrals.models import Referral
from reports.models import Report
from rights.models import AuthorisationReview, RightsNotice
from risk.models import Alert
from supply.models import SupplierConnection
from tests.builders import ask, codes_of, delivered_order, place, reveal, storefront_order
from tests.factories import AgentLevelFactory, OperatorIdentityFactory, ProductFactory, UserFactory, add_stock

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ("marketplace", "accounts", "ledger", "compliance", "catalog", "agents", "orders", "payments")
APP_PACKAGES += ("aftersales", "api", "rights")

# Machines without a history table, and why (every other machine must have one).
NO_HISTORY = {
    # Codes move in bulk on the purchase path (one UPDATE for an order's codes): a history row
    # per code would cost a write per code. OrderCode, the reveal log and defective_at tell it.
    CardCode: "bulk moves on the purchase path",
    # A payment's status is what it was recorded as; it never moves.
    Payment: "never moves",
}


def _status_field(model: type[models.Model]) -> models.Field | None:
    """The model's status: a field named ``status``, or one whose choices are its ``Status``."""
    status_choices = getattr(getattr(model, "Status", None), "choices", None)
    for field in model._meta.concrete_fields:
        if field.name == "status" or (status_choices and field.choices == status_choices):
            return field
    return None


def _machines() -> list[tuple[type[models.Model], StateMachine]]:
    return sorted(machines().items(), key=lambda item: item[0]._meta.label)


# --- every status has a machine ---------------------------------------------------------------


def test_every_model_with_a_status_has_a_machine():
    with_status = [m for m in apps.get_models() if not m._meta.proxy and _status_field(m) is not None]
    assert len(with_status) >= 13  # the walk sees the project's models
    missing = [m._meta.label for m in with_status if machine_for(m) is None]
    assert missing == [], f"models with a status and no state machine (StateMachine(model=...)): {missing}"


@pytest.mark.parametrize(("model", "machine"), _machines(), ids=[m._meta.label for m, _ in _machines()])
def test_the_table_is_the_models_statuses(model, machine):
    field = model._meta.get_field(machine.status_field)
    if machine.status_field == "status":  # a machine moving another field (``state``) names it
        assert field is _status_field(model)
    statuses = {value for value, _label in field.choices}
    assert set(machine.transitions) == statuses, "every status is a row of the table"
    for src, dsts in machine.transitions.items():
        assert dsts <= statuses, src
        assert src not in dsts, f"{src} -> {src} would be a repeat, not a move"
    for state, stamp in machine.entered_at.items():
        assert state in statuses
        assert isinstance(model._meta.get_field(stamp), models.DateTimeField)
    if model in NO_HISTORY:
        assert machine.history_model is None
        return
    history = machine.history_model
    assert history is not None, f"{model._meta.label}: a machine keeps a history (or is in NO_HISTORY, with why)"
    fk = history._meta.get_field(machine.history_fk)
    assert fk.related_model is model
    assert history.subject == machine.history_fk
    for name in ("from_status", "to_status"):
        assert {v for v, _label in history._meta.get_field(name).choices} == statuses


# --- one instance of each model, in any status --------------------------------------------------


_DAYS = itertools.count()  # one report per period: each built one has its own


def _agent():
    return agent_services.agent_create(user=UserFactory(), level=AgentLevelFactory(), upline=None)


def _order() -> Order:
    product = ProductFactory()
    add_stock(product, 1)
    return place(UserFactory(), product)


def _payment() -> Payment:
    order = _order()
    return Payment.objects.create(
        order=order, gateway="sandbox", trade_no=uuid.uuid4().hex, amount=order.total, status=Payment.Status.SUCCEEDED
    )


def _ticket() -> Ticket:
    now = timezone.now()
    return Ticket.objects.create(
        user=UserFactory(),
        kind=Ticket.Kind.OTHER,
        subject="t",
        first_response_due_at=now + timedelta(hours=48),
        warn_at=now + timedelta(hours=36),
        resolution_due_at=now + timedelta(days=7),
    )


def _batch() -> StockBatch:
    product = ProductFactory()
    return StockBatch.objects.create(
        product=product, supplier=product.supplier, cost_price=Decimal(1), created_by=UserFactory()
    )


BUILD = {
    Order: _order,
    Ticket: _ticket,
    StockBatch: _batch,
    CardCode: lambda: CardCode.objects.create(
        product=(b := _batch()).product, batch=b, secret_enc="x", secret_hash=uuid.uuid4().hex
    ),
    Payment: _payment,
    Refund: lambda: Refund.objects.create(
        payment=_payment(), amount=Decimal(1), reason="t", idempotency_key=uuid.uuid4().hex
    ),
    Recharge: lambda: Recharge.objects.create(
        user=UserFactory(), amount=Decimal(10), expires_at=timezone.now() + timedelta(minutes=15)
    ),
    ReconciliationRun: lambda: ReconciliationRun.objects.create(gateway="alipay", day=date(2024, 1, 1)),
    Commission: lambda: Commission.objects.create(
        order=_order(),
        agent=_agent(),
        depth=0,
        unit_amount=Decimal(1),
        quantity=1,
        amount=Decimal(1),
        available_at=timezone.now(),
    ),
    Withdrawal: lambda: Withdrawal.objects.create(
        number=uuid.uuid4().hex[:20],
        agent=_agent(),
        amount=Decimal(10),
        net=Decimal(10),
        method=Withdrawal.Method.BANK,
        payee_name="A",
        payee_account="x",
        idempotency_key="k",
    ),
    ManualTopup: lambda: ManualTopup.objects.create(order=_order(), due_at=timezone.now()),
    ApiCallback: lambda: ApiCallback.objects.create(
        agent=_agent(), order=_order(), event="order.delivered", url="https://example.com/cb", payload="{}"
    ),
    RefundRequest: lambda: RefundRequest.objects.create(
        order=_order(), user=UserFactory(), quantity=1, status=RefundRequest.Status.APPROVED, idempotency_key="k"
    ),
    ArbitrationCase: lambda: ArbitrationCase.objects.create(ticket=_ticket(), requested_by=UserFactory()),
    Alert: lambda: Alert.objects.create(rule="signup_ip", action="log", email="a@example.net"),
    AuthorisationReview: lambda: AuthorisationReview.objects.create(
        supplier=ProductFactory().supplier,
        certificate_no="C-1",
        submitted_by=UserFactory(),
        valid_until=date(2030, 1, 1),
    ),
    RightsNotice: lambda: RightsNotice.objects.create(
        product=ProductFactory(),
        product_reference="p",
        notifier_name="A",
        notifier_email="a@example.net",
        right_claimed="copyright",
        evidence="e",
        declaration_accepted_at=timezone.now(),
    ),
    OperatorIdentity: lambda: OperatorIdentityFactory(agent=_agent(), status=OperatorIdentity.Status.SUBMITTED),
    Report: lambda: Report.objects.create(
        kind=Report.Kind.MONTHLY_COMPLIANCE,
        period_start=(d := date(2000, 1, 1) + timedelta(days=next(_DAYS))),
        period_end=d,
    ),
    Referral: lambda: Referral.objects.create(inviter=UserFactory(), invitee=UserFactory()),
    UpstreamOrder: lambda: UpstreamOrder.objects.create(
        order=_order(),
        connection=SupplierConnection.objects.create(
            supplier=ProductFactory().supplier, name=uuid.uuid4().hex, base_url="https://supplier.example", app_id="a"
        ),
        supplier_ref="P1",
        quantity=1,
    ),
}


def test_every_machine_can_be_exercised_here():
    assert set(BUILD) == set(machines()), "add a builder for the new machine's model to BUILD"


def _pairs(which: str) -> list:
    out = []
    for model, machine in _machines():
        statuses = list(machine.transitions)
        for src, dst in itertools.product(statuses, statuses):
            allowed = machine.can(src, dst)
            if (which == "allowed" and allowed) or (which == "forbidden" and src != dst and not allowed):
                out.append(pytest.param(model, src, dst, id=f"{model.__name__}:{src}->{dst}"))
    return out


ALLOWED = _pairs("allowed")
FORBIDDEN = _pairs("forbidden")


def _force(obj: models.Model, status: str) -> None:
    type(obj).objects.filter(pk=obj.pk).update(**{machine_for(type(obj)).status_field: status})


def _status(obj: models.Model) -> str:
    machine = machine_for(type(obj))
    return type(obj).objects.values_list(machine.status_field, flat=True).get(pk=obj.pk)


def _history(obj: models.Model) -> list[tuple]:
    machine = machine_for(type(obj))
    if machine.history_model is None:
        return []
    rows = machine.history_model.objects.filter(**{machine.history_fk: obj}).order_by("id")
    return list(rows.values_list("from_status", "to_status", "actor_id", "note"))


def _apply(obj: models.Model, dst: str, **kwargs) -> bool:
    with transaction.atomic():
        locked = type(obj).objects.select_for_update().get(pk=obj.pk)
        return machine_for(type(obj)).apply(locked, dst, **kwargs)


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "src", "dst"), ALLOWED)
def test_allowed_move(model, src, dst):
    machine, obj, staff = machine_for(model), BUILD[model](), UserFactory(is_staff=True)
    keeps_history = machine.history_model is not None

    # One row, locked: apply.
    _force(obj, src)
    before = _history(obj)
    assert _apply(obj, dst, actor=staff, note="by test") is True
    assert _status(obj) == dst
    assert _history(obj) == before + ([(src, dst, staff.pk, "by test")] if keeps_history else [])
    if dst in machine.entered_at:
        assert getattr(model.objects.get(pk=obj.pk), machine.entered_at[dst]) is not None

    # The same move in one guarded UPDATE: moves the row once, the second time finds nothing.
    _force(obj, src)
    before = _history(obj)
    rows = model.objects.filter(pk=obj.pk)
    assert machine.move_all(rows, src, dst, actor=staff, note="in bulk") == 1
    assert _status(obj) == dst
    assert _history(obj) == before + ([(src, dst, staff.pk, "in bulk")] if keeps_history else [])
    assert machine.move_all(rows, src, dst) == 0
    assert _history(obj) == before + ([(src, dst, staff.pk, "in bulk")] if keeps_history else [])


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "src", "dst"), FORBIDDEN)
def test_forbidden_move(model, src, dst):
    machine, obj = machine_for(model), BUILD[model]()
    _force(obj, src)
    row = list(model.objects.filter(pk=obj.pk).values())
    history = _history(obj)

    with pytest.raises(IllegalTransition) as excinfo:
        _apply(obj, dst, note="by test")
    assert (excinfo.value.src, excinfo.value.dst) == (src, dst)
    assert f"{src} -> {dst}" in str(excinfo.value)

    with CaptureQueriesContext(connection) as queries, pytest.raises(IllegalTransition):
        machine.move_all(model.objects.filter(pk=obj.pk), src, dst, note="in bulk")
    assert len(queries) == 0, "refused before touching the database"
    with pytest.raises(IllegalTransition):
        machine.require(src, dst)

    assert list(model.objects.filter(pk=obj.pk).values()) == row
    assert _history(obj) == history


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "machine"), _machines(), ids=[m._meta.label for m, _ in _machines()])
def test_a_repeat_is_a_no_op(model, machine):
    obj = BUILD[model]()
    for status in machine.transitions:
        _force(obj, status)
        row = list(model.objects.filter(pk=obj.pk).values())
        history = _history(obj)
        assert _apply(obj, status, note="again") is False
        assert machine.move_all(model.objects.filter(pk=obj.pk), status, status) == 0
        assert list(model.objects.filter(pk=obj.pk).values()) == row
        assert _history(obj) == history


# --- move_all: one statement ---------------------------------------------------------------------


@pytest.mark.django_db
def test_moving_codes_in_bulk_is_one_update_however_many_codes():
    product = ProductFactory()
    add_stock(product, 5)
    codes = CardCode.objects.filter(product=product)
    codes.filter(pk__in=list(codes.values_list("pk", flat=True)[:2])).update(status=CardCode.Status.RESERVED)

    with CaptureQueriesContext(connection) as queries:
        moved = CODE_FLOW.move_all(codes, CardCode.Status.AVAILABLE, CardCode.Status.RESERVED)
    assert moved == 3
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")
    assert codes.filter(status=CardCode.Status.RESERVED).count() == 5


@pytest.mark.django_db
def test_a_bulk_move_with_history_is_one_update_and_one_insert():
    machine = machine_for(Refund)
    payment = _payment()
    refunds = [
        Refund.objects.create(payment=payment, amount=Decimal(1), reason="t", idempotency_key=f"k{i}") for i in range(4)
    ]
    Refund.objects.filter(pk=refunds[0].pk).update(status=Refund.Status.FAILED)
    staff = UserFactory(is_staff=True)

    with CaptureQueriesContext(connection) as queries:
        moved = machine.move_all(
            Refund.objects.filter(payment=payment),
            Refund.Status.REQUESTED,
            Refund.Status.PROCESSING,
            actor=staff,
            note="claimed",
            last_error="",
        )
    assert moved == 3
    assert [q["sql"].split()[0] for q in queries] == ["UPDATE", "INSERT"]
    assert _history(refunds[0]) == []
    for refund in refunds[1:]:
        assert _history(refund) == [(Refund.Status.REQUESTED, Refund.Status.PROCESSING, staff.pk, "claimed")]
    assert _status(refunds[0]) == Refund.Status.FAILED


@pytest.mark.django_db
def test_a_bulk_move_through_a_join_moves_only_the_rows_asked_for():
    machine = machine_for(Commission)
    kept, moved = BUILD[Commission](), BUILD[Commission]()
    rows = Commission.objects.filter(order__number=moved.order.number)  # a filter across a join

    assert machine.move_all(rows, Commission.Status.PENDING, Commission.Status.AVAILABLE) == 1
    assert _status(moved) == Commission.Status.AVAILABLE
    assert model_settled(moved) is not None  # entered_at stamped in the same UPDATE
    assert _status(kept) == Commission.Status.PENDING
    assert _history(kept) == []
    assert _history(moved) == [(Commission.Status.PENDING, Commission.Status.AVAILABLE, None, "")]


def model_settled(commission: Commission):
    return Commission.objects.values_list("settled_at", flat=True).get(pk=commission.pk)


def test_apply_needs_a_transaction():
    with pytest.raises(RuntimeError, match="inside a transaction"):
        machine_for(Order).apply(Order(status=Order.Status.PENDING), Order.Status.PAID)


def test_one_machine_per_model():
    with pytest.raises(RuntimeError, match="two state machines"):
        StateMachine(transitions={}, model=Order)
    assert machine_for(Order) is not None


# --- no status written outside a machine --------------------------------------------------------

# Status writes the scan finds that are not a model's status, or must stay as they are.
# (path, the line's code) -> why.
ALLOWED_WRITES = {
    # HTTP status codes of refusals (exceptions), not a model's status:
    ("marketplace/errors.py", "self.status = status"): "ServiceError.status, the HTTP status of a refusal",
    (
        "agents/services/api_keys.py",
        "self.code, self.message, self.status, self.key = code, message, status, key",
    ): "Refused.status, the HTTP status of an API key refusal",
    (
        "api/services.py",
        "self.status, self.code, self.message, self.extra = status, code, str(message), extra",
    ): "the API error's HTTP status",
    (
        "catalog/services.py",
        'f"UPDATE {table} SET status = %s, updated_at = %s WHERE id IN ("  # noqa: S608 (no user input)',
    ): "the stock claim: one UPDATE ... FOR UPDATE SKIP LOCKED in raw SQL, checked with CODE_FLOW.require",
    (
        "catalog/services.py",
        'f"UPDATE {code} SET status = %s, updated_at = %s FROM {batch} JOIN {supplier}"  # noqa: S608 (no user input)',
    ): "the sale of an order's codes returning their costs (stock_sell), checked with CODE_FLOW.require",
    (
        "payments/services/payments.py",
        "order.status, order.expires_at, order.buyer_id = row",
    ): "balance_pay's relock: the locked row's status read into the caller's instance (a read, not a write)",
}


def _status_writes(tree: ast.AST):
    """(line, what) of every status write in a module's syntax tree."""

    def targets(node):
        if isinstance(node, ast.Tuple | ast.List):
            for element in node.elts:
                yield from targets(element)
        else:
            yield node

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            for target in itertools.chain.from_iterable(
                targets(t) for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            ):
                if isinstance(target, ast.Attribute) and target.attr == "status":
                    yield node.lineno, "assigns .status"
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("update", "bulk_update", "update_or_create") and "status" in keywords:
                yield node.lineno, f"{name}(status=...)"
            if name == "setattr" and len(node.args) > 1 and getattr(node.args[1], "value", None) == "status":
                yield node.lineno, "setattr(..., 'status', ...)"
            fields = keywords.get("update_fields") or (keywords.get("fields") if name == "bulk_update" else None)
            if name == "bulk_update" and len(node.args) > 1:
                fields = node.args[1]
            if isinstance(fields, ast.List | ast.Tuple | ast.Set) and any(
                getattr(e, "value", None) == "status" for e in fields.elts
            ):
                yield node.lineno, f"{name}(... fields with 'status')"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "set status" in node.value.lower():
            yield node.lineno, "raw SQL setting status"


def _sources():
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative or "/tests/" in relative or relative == "marketplace/transitions.py":
                continue
            yield relative, path


def test_no_status_is_written_outside_a_state_machine():
    found, used = [], set()
    for relative, path in _sources():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for lineno, what in _status_writes(ast.parse(text, filename=relative)):
            key = (relative, lines[lineno - 1].strip())
            if key in ALLOWED_WRITES:
                used.add(key)
            else:
                found.append(f"{relative}:{lineno}: {what}: {key[1]}")
    assert found == [], "status written outside a state machine (use MACHINE.apply or move_all):\n" + "\n".join(found)
    assert used == set(ALLOWED_WRITES), f"allow-list entries no longer needed: {set(ALLOWED_WRITES) - used}"


def test_the_scan_finds_what_it_must():
    source = """
order.status = "paid"
order.status, order.paid_at = "paid", now
Order.objects.filter(pk=1).update(status="paid")
setattr(order, "status", "paid")
order.save(update_fields=["status", "paid_at"])
Order.objects.bulk_update(orders, ["status"])
cursor.execute("UPDATE orders_order SET status = 'paid'")
order.status == "paid"
Order.objects.filter(status="paid").update(paid_at=now)
"""
    assert [line for line, _what in _status_writes(ast.parse(source))] == [2, 3, 4, 5, 6, 7, 8]


# --- the services leave the history -------------------------------------------------------------


@pytest.mark.django_db
def test_an_import_leaves_the_batchs_history():
    product = ProductFactory()
    add_stock(product, 2)
    batch = StockBatch.objects.get(product=product)
    assert [(f, t) for f, t, _a, _n in _history(batch)] == [("queued", "running"), ("running", "done")]


@pytest.mark.django_db(transaction=True)  # fulfilment runs on commit
def test_a_no_reason_refund_leaves_the_history_of_request_refund_and_commissions(level, buyer):
    _chain, order = storefront_order(level, buyer, depth=2, quantity=2)
    commissions = list(Commission.objects.filter(order=order).order_by("pk"))
    assert commissions and all(_history(c) == [] for c in commissions)  # booked pending: no move yet

    request = ask(buyer, order, codes_of(order))

    request.refresh_from_db()
    assert request.status == RefundRequest.Status.REFUNDED
    assert _history(request) == [("approved", "refunded", buyer.pk, request.refund.number)]
    assert [(f, t) for f, t, _a, _n in _history(request.refund)] == [
        ("requested", "processing"),
        ("processing", "succeeded"),
    ]
    for commission in commissions:
        assert [(f, t) for f, t, _a, _n in _history(commission)] == [("pending", "reversed")]


@pytest.mark.django_db(transaction=True)  # fulfilment runs on commit
def test_settling_a_commission_leaves_its_history(level, buyer):
    _chain, order = storefront_order(level, buyer, depth=1, quantity=1)
    commission = Commission.objects.get(order=order)
    Commission.objects.filter(pk=commission.pk).update(available_at=timezone.now() - timedelta(seconds=1))

    assert commissions.commissions_settle_due() == 1

    commission.refresh_from_db()
    assert (commission.status, commission.settled_at is not None) == (Commission.Status.AVAILABLE, True)
    assert _history(commission) == [("pending", "available", None, "refund window closed")]


@pytest.mark.django_db
def test_a_refund_given_up_then_retried_by_staff_leaves_its_history(staff):
    refund = BUILD[Refund]()
    Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.PROCESSING, attempts=refunds.MAX_ATTEMPTS - 1)
    refund.refresh_from_db()

    assert refunds._retry_later(refund, "gateway down") == "failed"
    assert refunds.refund_retry(refund_id=refund.pk, staff=staff) is True
    assert refunds.refund_retry(refund_id=refund.pk, staff=staff) is False  # not failed any more

    refund.refresh_from_db()
    assert (refund.status, refund.attempts) == (Refund.Status.PROCESSING, 1)
    assert _history(refund) == [
        ("processing", "failed", None, f"after {refunds.MAX_ATTEMPTS} attempts"),
        ("failed", "processing", staff.pk, "retried by staff"),
    ]


@pytest.mark.django_db
def test_a_callback_sent_again_leaves_its_history():
    callback = BUILD[ApiCallback]()
    ApiCallback.objects.filter(pk=callback.pk).update(status=ApiCallback.Status.DELIVERED, attempts=2)

    callback_services.callback_resend(callback_id=callback.pk)

    callback.refresh_from_db()
    assert (callback.status, callback.attempts) == (ApiCallback.Status.PENDING, 0)
    assert _history(callback) == [("delivered", "pending", None, "sent again by staff")]


@pytest.mark.django_db(transaction=True)  # fulfilment runs on commit
def test_an_arbitration_case_leaves_its_history(buyer, staff):
    order = delivered_order(buyer, quantity=1)
    reveal(codes_of(order)[0], buyer)
    request = ask(buyer, order, codes_of(order), reason="it did not work")  # revealed: a dispute
    case = arbitration.arbitration_open(ticket=request.ticket, user=staff, statement="")

    arbitration.arbitration_submit(case=case, staff=staff, third_party="Council", case_number="C-1")
    arbitration.arbitration_decide(case=case, staff=staff, outcome="platform", note="The code was used.")

    assert _history(case) == [("preparing", "submitted", staff.pk, ""), ("submitted", "decided", staff.pk, "")]


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Refund, RefundRequest, ArbitrationCase, Commission, ApiCallback, ManualTopup])
def test_staff_see_the_history_read_only_on_the_records_page(client, staff, model):
    machine, obj = machine_for(model), BUILD[model]()
    src = next(s for s, dsts in machine.transitions.items() if dsts)
    dst = sorted(machine.transitions[src])[0]
    _force(obj, src)
    _apply(obj, dst, actor=staff, note="moved by the history test")
    client.force_login(staff)

    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
    html = client.get(url).content.decode()

    assert "moved by the history test" in html
    assert 'name="history-0-note"' not in html  # shown, not editable
