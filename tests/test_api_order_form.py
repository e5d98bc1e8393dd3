"""The API order's body: ``order_create_data`` takes the plain body as it is and gives every
other body to ``OrderCreateSerializer``; both must give the same data, or the same errors."""

import pytest
from rest_framework import serializers

from api.serializers import MAX_ID, OrderCreateSerializer, order_create_data

BODIES = [
    {"product_id": 12, "quantity": 2, "agent_order_no": "SHOP-20240501-0001"},
    {"product_id": 1, "quantity": 1, "agent_order_no": "a"},
    {"product_id": MAX_ID, "quantity": 10_000, "agent_order_no": "A" * 60},
    {"product_id": MAX_ID + 1, "quantity": 1, "agent_order_no": "a"},
    {"product_id": 0, "quantity": 1, "agent_order_no": "a"},
    {"product_id": -3, "quantity": 1, "agent_order_no": "a"},
    {"product_id": 5, "quantity": 0, "agent_order_no": "a"},
    {"product_id": 5, "quantity": 10_001, "agent_order_no": "a"},
    {"product_id": True, "quantity": 1, "agent_order_no": "a"},
    {"product_id": 5, "quantity": True, "agent_order_no": "a"},
    {"product_id": 5.0, "quantity": 1, "agent_order_no": "a"},
    {"product_id": "5", "quantity": "2", "agent_order_no": "a"},
    {"product_id": 5, "quantity": 1, "agent_order_no": "A" * 61},
    {"product_id": 5, "quantity": 1, "agent_order_no": ""},
    {"product_id": 5, "quantity": 1, "agent_order_no": "-abc"},
    {"product_id": 5, "quantity": 1, "agent_order_no": "abc\n"},
    {"product_id": 5, "quantity": 1, "agent_order_no": " abc "},
    {"product_id": 5, "quantity": 1, "agent_order_no": "ab c"},
    {"product_id": 5, "quantity": 1, "agent_order_no": "ab\x00c"},
    {"product_id": 5, "quantity": 1, "agent_order_no": "abç"},
    {"product_id": 5, "quantity": 1, "agent_order_no": 123},
    {"product_id": 5, "quantity": 1, "agent_order_no": None},
    {"product_id": 5, "quantity": 1},
    {"product_id": 5, "quantity": 1, "agent_order_no": "a", "callback_url": ""},
    {"product_id": 5, "quantity": 1, "agent_order_no": "a", "coupon_code": "X"},
    {"product_id": 5, "quantity": 1, "agent_order_no": "a", "unknown": 1},
    {},
    [],
    "text",
]


def _serializer(body):
    form = OrderCreateSerializer(data=body)
    if form.is_valid():
        return "ok", dict(form.validated_data)
    return "error", form.errors


def _fast(body):
    try:
        return "ok", dict(order_create_data(body))
    except serializers.ValidationError as exc:
        return "error", exc.detail


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_same_as_the_serializer(body):
    assert _fast(body) == _serializer(body)


def test_the_plain_body_skips_the_serializer(monkeypatch):
    def refuse(*args, **kwargs):  # pragma: no cover - the test fails if called
        raise AssertionError("the serializer ran")

    monkeypatch.setattr(OrderCreateSerializer, "is_valid", refuse)
    body = {"product_id": 7, "quantity": 3, "agent_order_no": "N-1"}
    assert order_create_data(body) == body
