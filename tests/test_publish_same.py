"""marketplace.celery.publish's shortcut past Task.apply_async (issue 17: "Celery's publish cost")
writes to Redis what Celery's own path (``task.delay`` → ``apply_async`` → ``send_task``) writes:
the same body, headers, properties, queue, signals and retry policy; with the broker away it
logs and answers False as before."""

import base64
import json
import logging
import time

import pytest
from celery import _state as celery_state
from celery.signals import after_task_publish, before_task_publish

from marketplace import celery_app, logcontext
from marketplace.celery import _sender, publish
from tests.worker_utils import broker

# Every task the code queues with publish(), with arguments of the kinds it passes.
PUBLISHED = [
    ("orders.tasks", "fulfil_order", (42,)),
    ("orders.tasks", "notify_refund_pending", (7,)),
    ("orders.tasks", "send_callback", (123456789012,)),
    ("orders.tasks", "advance_upstream", (5,)),
    ("orders.tasks", "send_lookup_link", ("email", "a'b\"c@example.com")),
    ("payments.tasks", "refund_execute", (9,)),
    ("payments.tasks", "refund_notify", (9,)),
    ("catalog.tasks", "restock_notify", (3, None)),
    ("catalog.tasks", "restock_notify", (3, 4)),
    ("aftersales.tasks", "sla_notify", (11,)),
]


def _task(module, name):
    import importlib

    return getattr(importlib.import_module(module), name)


def _pop_all(client) -> list[tuple[str, dict]]:
    """Every message in every list of the broker's database, with its list's name, oldest first."""
    found = []
    for key in sorted(client.keys("*")):
        assert client.type(key) == b"list", key  # nothing but queues' lists (no bindings)
        found += [(key.decode(), json.loads(raw)) for raw in reversed(client.lrange(key, 0, -1))]
    client.flushdb()
    return found


def _normalised(message: dict) -> dict:
    """The message with what differs on every publish (the task's id, the delivery tag) masked;
    the body decoded. The id is checked to be where Celery puts it before it is masked."""
    message = json.loads(json.dumps(message))
    headers, properties = message["headers"], message["properties"]
    task_id = headers["id"]
    assert len(task_id) == 36
    assert headers["root_id"] == properties["correlation_id"] == task_id
    assert headers["parent_id"] is None
    headers["id"] = headers["root_id"] = properties["correlation_id"] = "<id>"
    properties["delivery_tag"] = "<tag>"
    assert properties["body_encoding"] == "base64"
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


@pytest.fixture
def signals_seen():
    """What Celery's publish signals receive, per publish."""
    seen = []

    def before(**kwargs):
        kwargs.pop("signal")
        seen.append(("before", kwargs))

    def after(**kwargs):
        kwargs.pop("signal")
        seen.append(("after", kwargs))

    before_task_publish.connect(before, weak=False)
    after_task_publish.connect(after, weak=False)
    yield seen
    before_task_publish.disconnect(before)
    after_task_publish.disconnect(after)


def _signals_normalised(seen: list) -> list:
    out = []
    for kind, kwargs in seen:
        kwargs = json.loads(json.dumps(kwargs, default=repr))
        kwargs["headers"]["id"] = kwargs["headers"]["root_id"] = "<id>"
        if "properties" in kwargs:
            kwargs["properties"]["correlation_id"] = "<id>"
        out.append((kind, kwargs))
    return out


@pytest.mark.parametrize(("module", "name", "args"), PUBLISHED, ids=[f"{n}{a}" for _m, n, a in PUBLISHED])
def test_the_shortcut_writes_what_celerys_send_task_writes(redis_broker, signals_seen, module, name, args):
    task = _task(module, name)
    assert _sender(task) is not None  # the shortcut is taken, not task.delay
    logcontext.log_context_start(request_id="req-same-1")
    try:
        task.delay(*args)  # Celery's path: apply_async → send_task
        celery_signals = _signals_normalised(signals_seen)
        signals_seen.clear()
        (celery_queue, celery_message), *rest = _pop_all(redis_broker)
        assert rest == []

        assert publish(task, *args) is True
        ours_signals = _signals_normalised(signals_seen)
        (ours_queue, ours_message), *rest = _pop_all(redis_broker)
        assert rest == []
    finally:
        logcontext.log_context_clear()

    assert ours_queue == celery_queue == celery_app.amqp.router.route({}, task.name)["queue"].name
    assert ours_message["headers"][logcontext.TASK_HEADER] == "req-same-1"
    assert ours_message["headers"]["task"] == task.name
    assert _normalised(ours_message) == _normalised(celery_message)
    assert ours_message["headers"]["id"] != celery_message["headers"]["id"]
    # The signals saw the same message, exchange, routing key, declarations and retry policy.
    assert [kind for kind, _ in ours_signals] == ["before", "after"]
    assert ours_signals == celery_signals


def test_a_message_body_carries_the_arguments_and_a_new_id_each_time(redis_broker):
    from orders.tasks import fulfil_order

    for order_id in (1, 2, 10**12):
        assert publish(fulfil_order, order_id) is True
    messages = [message for _queue, message in _pop_all(redis_broker)]
    assert [_normalised(m)["body"][0] for m in messages] == [[1], [2], [10**12]]
    assert [m["headers"]["argsrepr"] for m in messages] == ["(1,)", "(2,)", f"({10**12},)"]
    assert len({m["headers"]["id"] for m in messages}) == 3


def test_wrong_arguments_are_refused_where_celery_refuses_them(redis_broker):
    """Celery checks the arguments against the function's signature before publishing (a task
    wrapped by a decorator taking ``*args`` is not checked, by either path)."""
    refused = []
    for module, name, args in PUBLISHED:
        task = _task(module, name)
        outcomes = []
        for send in (task.delay, lambda *a, task=task: publish(task, *a)):
            try:
                send(*args, 0)
            except TypeError:
                outcomes.append("refused")
            else:
                outcomes.append("sent")
        assert outcomes[0] == outcomes[1], (name, outcomes)
        refused += [name] if outcomes[0] == "refused" else []
        _pop_all(redis_broker)
    assert "send_lookup_link" in refused and "restock_notify" in refused


def test_a_replaced_delay_is_called_instead(redis_broker, monkeypatch):
    """What tests (and any class overriding delay) replace is still what a publish calls."""
    from orders.tasks import fulfil_order

    sent = []
    monkeypatch.setattr("celery.app.task.Task.delay", lambda self, *args: sent.append((self.name, args)))
    assert _sender(fulfil_order) is None
    assert publish(fulfil_order, 5) is True
    assert sent == [("orders.tasks.fulfil_order", (5,))]
    assert redis_broker.keys("*") == []


def test_inside_a_worker_task_celerys_path_gives_the_message_its_parent(redis_broker):
    """The sweeper (deliver_due_orders) publishes from inside its task: parent and root ids."""
    from orders.tasks import deliver_due_orders, fulfil_order

    deliver_due_orders.push_request(id="parent-1", root_id="root-1", is_eager=False, called_directly=False)
    celery_state._task_stack.push(deliver_due_orders)
    try:
        assert _sender(fulfil_order) is None
        assert publish(fulfil_order, 6) is True
    finally:
        celery_state._task_stack.pop()
        deliver_due_orders.pop_request()
    ((_queue, message),) = _pop_all(redis_broker)
    assert (message["headers"]["parent_id"], message["headers"]["root_id"]) == ("parent-1", "root-1")
    assert _sender(fulfil_order) is not None


def test_with_the_broker_away_a_publish_logs_and_answers_false_after_the_retry_policy(
    redis_broker, signals_seen, caplog
):
    from orders.tasks import fulfil_order

    with broker(celery_app, "redis://127.0.0.1:1/0", visibility_timeout=60):  # nothing listens on port 1
        task = fulfil_order
        assert _sender(task) is not None
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="marketplace.celery"):
            assert publish(task, 77) is False
        elapsed = time.monotonic() - started
        ours = _signals_normalised(signals_seen)
        signals_seen.clear()
        # Celery's own path, the same broker: the same signal (then the same failure).
        with pytest.raises(Exception) as raised:
            task.delay(77)
        celery = _signals_normalised(signals_seen)
    assert "could not queue orders.tasks.fulfil_order(77,) (a sweeper will)" in caplog.text
    assert raised.type.__name__ == "OperationalError"
    assert ours == celery and [kind for kind, _ in ours] == ["before"]
    assert ours[0][1]["retry_policy"] == {**celery_app.conf.task_publish_retry_policy}
    assert elapsed < 3  # one retry 0.2 s apart, not the default policy's three with backoff
    # The pools were reset on the way out: the next publish reaches the test broker again.
    assert publish(fulfil_order, 78) is True
    assert len(_pop_all(redis_broker)) == 1
