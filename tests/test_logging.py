"""Structured logs (issue 17): the request id, order number and payment on every line of a sale."""

import json
import logging

import pytest
from celery.app.task import Context

from marketplace import celery as celery_module
from marketplace import logcontext
from orders.models import Order
from payments.services.payments import sandbox_pay
from tests.builders import place
from tests.factories import ProductFactory, UserFactory, add_stock


class Collect(logging.Handler):
    """A handler like the console's: the context filter on it, the records kept."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.addFilter(logcontext.ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def collected():
    handler = Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_console_handler_is_configured_with_the_context_filter():
    console = [
        h for h in logging.getLogger().handlers if any(isinstance(f, logcontext.ContextFilter) for f in h.filters)
    ]
    assert console, "settings.LOGGING's console handler lost its context filter"


@pytest.mark.django_db(transaction=True)  # fulfilment runs on commit
def test_a_sale_logs_its_order_and_payment_on_every_line(collected):
    product = ProductFactory()
    add_stock(product, 2)
    with logcontext.log_context(request_id="sale-00000001"):  # as the requests of a sale would
        order = place(UserFactory(), product)
        sandbox_pay(order_number=order.number)  # verified notification -> paid -> fulfil_order (eager)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED

    placed = [r for r in collected if r.getMessage().startswith(f"order {order.number} placed")]
    applied = [r for r in collected if "applied to order" in r.getMessage()]
    delivered = [r for r in collected if r.getMessage() == f"order {order.number} delivered"]
    assert placed and applied and delivered
    assert all(r.order == order.number for r in placed + applied + delivered)
    payment = order.payments.get()
    assert applied[0].payment == f"sandbox:{payment.trade_no}"
    # Every line logged while the payment was applied and the order delivered names the order.
    sale = collected[collected.index(applied[0]) : collected.index(delivered[0]) + 1]
    assert all(r.order == order.number for r in sale), [(r.name, r.getMessage(), r.order) for r in sale]
    assert all(r.request_id == "sale-00000001" for r in placed + sale)
    # Outside the sale, nothing is left behind.
    logging.getLogger("test").info("after")
    assert collected[-1].order == "" and collected[-1].payment == ""


def test_json_format_carries_the_context():
    record = logging.LogRecord("orders", logging.INFO, __file__, 1, "order %s delivered", ("N1",), None)
    with logcontext.log_context(request_id="req-12345678", order="N1", payment="alipay:T9"):
        logcontext.ContextFilter().filter(record)
    line = json.loads(logcontext.json_formatter().format(record))
    assert line["message"] == "order N1 delivered"
    assert line["order"] == "N1" and line["payment"] == "alipay:T9" and line["request_id"] == "req-12345678"
    assert line["level"] == "INFO" and line["logger"] == "orders" and "time" in line
    assert "context" not in line


def test_plain_format_shows_the_context_only_when_there_is_one():
    formatter = logging.Formatter("%(message)s%(context)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    logcontext.ContextFilter().filter(record)
    assert formatter.format(record) == "hello"
    with logcontext.log_context(order="N2"):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
        logcontext.ContextFilter().filter(record)
    assert formatter.format(record) == "hello [order=N2]"


@pytest.mark.django_db
def test_request_id_header_made_or_taken(client, collected):
    response = client.get("/healthz")
    made = response["X-Request-ID"]
    assert len(made) == 32
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-abcdef-0001")["X-Request-ID"] == "lb-abcdef-0001"
    # Not a sane id (it would land in logs and headers as it is): replaced.
    forged = client.get("/healthz", HTTP_X_REQUEST_ID="x\nforged")["X-Request-ID"]
    assert forged != "x\nforged" and len(forged) == 32


@pytest.mark.django_db
def test_request_id_on_lines_logged_during_the_request(client, collected):
    client.get("/no-such-page-at-all/", HTTP_X_REQUEST_ID="trace-0000000042")
    lines = [r for r in collected if r.name == "django.request"]
    assert lines and all(r.request_id == "trace-0000000042" for r in lines)


def test_request_id_travels_to_tasks_in_a_header():
    headers = {}
    with logcontext.log_context(request_id="req-abcdef12"):
        celery_module._pass_request_id(headers=headers)
    assert headers == {"request_id": "req-abcdef12"}

    class FakeTask:
        request = Context({"id": "t-1", "request_id": "req-abcdef12", "is_eager": False})

    celery_module._task_log_context(task=FakeTask())
    try:
        assert logcontext.request_id() == "req-abcdef12"
    finally:
        celery_module._task_log_context_end(task=FakeTask())
    assert logcontext.request_id() == ""

    class Unnamed:
        request = Context({"id": "t-2", "is_eager": False})

    celery_module._task_log_context(task=Unnamed())
    try:
        assert logcontext.request_id() == "task-t-2"  # queued by beat: its own id
    finally:
        celery_module._task_log_context_end(task=Unnamed())
