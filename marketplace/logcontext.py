"""Who a log line is about: the request id, the order number and the payment, on every line of
a sale (issue 17).

Context variables set where a sale is handled (RequestIdMiddleware for the request id;
``log_context(order=..., payment=...)`` in order placement, payment handling and fulfilment; a
Celery task inherits the request id of the request that queued it, marketplace/celery.py) and a
logging filter that copies them onto every record, so the formatter (JSON in production,
LOG_FORMAT=json; plain text otherwise) prints them without each call passing them along.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import uuid
from collections.abc import Iterator

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
order_var: contextvars.ContextVar[str] = contextvars.ContextVar("order", default="")
payment_var: contextvars.ContextVar[str] = contextvars.ContextVar("payment", default="")

# A request id taken from the proxy (X-Request-ID) only if it looks like one: it is logged and
# echoed back, so nothing that could forge a log line or a header.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
REQUEST_ID_HEADER = "X-Request-ID"
# The Celery message header that carries it into a task.
TASK_HEADER = "request_id"

FIELDS = ("request_id", "order", "payment")


def request_id_new() -> str:
    return uuid.uuid4().hex


def request_id_clean(value: str | None) -> str:
    """The given id if it is well formed, else a new one."""
    return value if value and _REQUEST_ID.match(value) else request_id_new()


def request_id() -> str:
    return request_id_var.get()


@contextlib.contextmanager
def log_context(
    *, request_id: str | None = None, order: str | None = None, payment: str | None = None
) -> Iterator[None]:
    """Within the block, log records carry these (None: keep the outer value). Whatever the
    block sets with log_context_set is undone when it ends."""
    tokens = []
    for var, value in ((request_id_var, request_id), (order_var, order), (payment_var, payment)):
        tokens.append((var, var.set(var.get() if value is None else str(value))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def log_context_set(*, order: str | None = None, payment: str | None = None) -> None:
    """Set for the rest of the current context (a request, a task): where a block does not fit,
    e.g. once the order a callback is about has been found. The request or task resets it."""
    if order is not None:
        order_var.set(str(order))
    if payment is not None:
        payment_var.set(str(payment))


def log_context_start(*, request_id: str = "") -> None:
    """A new request or task: its id, and no order or payment yet."""
    request_id_var.set(request_id)
    order_var.set("")
    payment_var.set("")


def log_context_clear() -> None:
    log_context_start(request_id="")


class ContextFilter(logging.Filter):
    """Adds request_id, order and payment to every record (empty when unknown), and ``context``:
    the same as " [request_id=... order=... payment=...]" for plain-text formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = {"request_id": request_id_var.get(), "order": order_var.get(), "payment": payment_var.get()}
        for name, value in values.items():
            if not getattr(record, name, ""):
                setattr(record, name, value)
        shown = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, ""))
        record.context = f" [{shown}]" if shown else ""
        return True


JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(order)s %(payment)s"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        JSON_FORMAT,
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        reserved_attrs=[*RESERVED_ATTRS, "context"],  # the plain format's rendering of the same fields
    )
