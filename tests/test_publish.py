"""What a publish from a web process sends (issue 17: "Celery's publish cost"): the task's
queue, the request id header, and no declaration of the queue on the way (the workers declare
theirs when they start; marketplace/settings.py CELERY_TASK_ROUTES)."""

import base64
import json

from marketplace import celery_app, logcontext
from marketplace.celery import publish
from orders.tasks import fulfil_order, send_lookup_link


def test_a_publish_lands_in_its_queue_with_the_request_id_and_declares_nothing(redis_broker):
    logcontext.log_context_start(request_id="req-publish-1")
    try:
        assert publish(fulfil_order, 42) is True
        assert publish(send_lookup_link, "email", "a@example.com") is True
    finally:
        logcontext.log_context_clear()
    # Only the two queues' lists: no kombu binding sets (what a declaration writes on Redis).
    assert sorted(k.decode() for k in redis_broker.keys("*")) == ["fulfilment", "notifications"]
    message = json.loads(redis_broker.lindex("fulfilment", 0))
    headers = message["headers"]
    assert headers["task"] == "orders.tasks.fulfil_order"
    assert headers[logcontext.TASK_HEADER] == "req-publish-1"
    assert headers["ignore_result"] is True
    assert message["properties"]["delivery_info"]["routing_key"] == "fulfilment"
    assert message["properties"]["body_encoding"] == "base64"
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([42], {})


def test_every_route_skips_the_declaration_and_keeps_its_queue():
    """The option rides on each route; a route's queue is what tests/test_queues.py pins."""
    for name, route in celery_app.conf.task_routes.items():
        assert route["declare"] == [], name
        assert route["queue"] in {q.name for q in celery_app.conf.task_queues}, name
