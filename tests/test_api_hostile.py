"""Hostile requests to the agent API (issue 10, part 4): each bullet of the review, and the
answers it asked for. Every answer is the API's JSON error (``code``, ``message``, and
``details`` for a 400), never a 500 or one of Django's HTML pages."""

import json
import time
from decimal import Decimal

import pytest
from django.test import Client

from agents.models import ApiNonce
from orders.models import Order
from tests.api_helpers import Signed, canonical, issue_key, level, make_agent, set_level_price, top_up
from tests.factories import CategoryFactory, ProductFactory, add_stock

pytestmark = pytest.mark.usefixtures("english")

D = Decimal
JSON = "application/json"


@pytest.fixture
def world(db):
    gold = level("金牌", 4)
    product = ProductFactory(price=D("10.00"))
    add_stock(product, 4)
    agent = make_agent(level_obj=gold)
    set_level_price(gold, product, "9.00")
    top_up(agent.user, D("100.00"))
    return {"agent": agent, "product": product}


@pytest.fixture
def shop(world) -> Signed:
    return issue_key(world["agent"])


def api_error(response, status: int, code: str) -> dict:
    """The API's error shape, with ``details`` on a 400."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == JSON, response["Content-Type"]
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    if status == 400:
        assert isinstance(body["details"], dict) and body["details"], body
        assert all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in body["details"].values())
    return body


def order(product, number: str, **extra) -> dict:
    return {"product_id": product.pk, "quantity": 1, "agent_order_no": number, **extra}


# --- 500s ----------------------------------------------------------------------------------------


def test_a_thousand_nested_arrays_are_refused_before_parsing(shop):
    body = b"[" * 1000 + b"]" * 1000
    response = shop.call("POST", "/api/v1/orders/", sign_body=body, headers={}, payload=None, raw_body=body)
    assert "nested" in api_error(response, 400, "invalid_json")["details"]["body"][0]
    assert not Order.objects.exists()


def test_deep_objects_are_refused_and_brackets_inside_strings_do_not_count(shop, world):
    deep = b'{"a":' * 21 + b"1" + b"}" * 21
    api_error(shop.call("POST", "/api/v1/orders/", raw_body=deep), 400, "invalid_json")
    # Twenty levels are parsed (then refused for their fields, not as JSON).
    fine = b'{"a":' * 19 + b"1" + b"}" * 19
    api_error(shop.call("POST", "/api/v1/orders/", raw_body=fine), 400, "invalid_request")
    # A thousand brackets inside a string are text: the field's own check answers.
    tricky = json.dumps(order(world["product"], "[" * 1000)).encode()
    body = api_error(shop.call("POST", "/api/v1/orders/", raw_body=tricky), 400, "invalid_request")
    assert "agent_order_no" in body["details"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe", b'{"product_id": NaN}', b'{"product_id": 1e99999}'],
    ids=["broken", "not-utf8", "nan", "huge-float"],
)
def test_unparseable_bodies_answer_400_with_details(shop, body):
    response = shop.call("POST", "/api/v1/orders/", raw_body=body)
    if body == b'{"product_id": 1e99999}':  # parses (to infinity): the field refuses it
        api_error(response, 400, "invalid_request")
    else:
        assert api_error(response, 400, "invalid_json")["details"]["body"]


@pytest.mark.parametrize("body", [b"", b"[]", b'"order"', b"12", b"null"])
def test_a_body_that_is_not_an_object_is_invalid(shop, body):
    api_error(shop.call("POST", "/api/v1/orders/", raw_body=body), 400, "invalid_request")


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/v1/products/"),
        ("GET", "/api/v1/products/1/"),
        ("POST", "/api/v1/orders/"),
        ("GET", "/api/v1/orders/SHOP-1/"),
        ("GET", "/api/v1/orders/by-number/ABC/"),
        ("GET", "/api/v1/balance/"),
    ],
)
def test_unicode_digits_in_x_timestamp_are_refused_on_every_operation(shop, world, method, path):
    payload = order(world["product"], "TS-1") if method == "POST" else None
    for timestamp in ["²", "١٢٣", "１２３", "1 2", "-1", "1.5", "9" * 13]:
        response = shop.call(method, path, payload, timestamp=timestamp)
        api_error(response, 401, "invalid_timestamp")


@pytest.mark.parametrize("key_id", ["ak_\x00", "ak_" + "x" * 5000, "ak_中文", "ak_0 0"])
def test_a_malformed_key_id_is_an_unknown_key(shop, key_id):
    api_error(shop.call("GET", "/api/v1/balance/", key_id=key_id), 401, "unknown_key")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/orders/%00/",
        "/api/v1/orders/by-number/%00/",
        "/api/v1/orders/A%00B/",
        "/api/v1/orders/A%1FB/",
        "/api/v1/orders/A%7F/",
        "/api/v1/products/?category=%00",
        "/api/v1/products/?page=1%00",
        "/api/v1/products/?x%00=1",
    ],
)
def test_control_characters_in_the_path_or_query_are_refused_before_the_database(shop, path):
    body = api_error(shop.get(path), 400, "invalid_characters")
    assert body["details"]
    assert not ApiNonce.objects.exists()  # refused before the signature was even checked


def test_control_characters_are_refused_unsigned_too():
    api_error(Client().get("/api/v1/orders/%00/"), 400, "invalid_characters")


@pytest.mark.parametrize(
    "path",
    ["/api/v1/orders/" + "A" * 61 + "/", "/api/v1/orders/-A/", "/api/v1/orders/by-number/" + "A" * 33 + "/"],
)
def test_numbers_no_order_can_have_are_not_found(shop, path):
    api_error(shop.get(path), 404, "not_found")


def test_ids_past_bigint_are_not_found_or_invalid(shop, world):
    api_error(shop.get("/api/v1/products/" + "9" * 30 + "/"), 404, "not_found")
    api_error(shop.get("/api/v1/products/0/"), 404, "not_found")
    huge = {**order(world["product"], "BIG-1"), "product_id": 2**63}
    assert "product_id" in api_error(shop.post("/api/v1/orders/", huge), 400, "invalid_request")["details"]


def test_an_unexpected_error_is_a_json_500(shop, monkeypatch):
    from api import services

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "api_balances", broken)
    shop.client = Client(raise_request_exception=False)
    body = api_error(shop.get("/api/v1/balance/"), 500, "server_error")
    assert "boom" not in body["message"]


# --- The signed path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent, signed",
    [
        ("/api/v1/orders/%41BC/", "/api/v1/orders/ABC/"),
        ("/api/v1/orders/A%7EB/", "/api/v1/orders/A~B/"),
        ("/api/v1/orders/A%7eB/", "/api/v1/orders/A~B/"),
        ("/api/v1/orders/%E8%AE%A2%E5%8D%95/", "/api/v1/orders/%E8%AE%A2%E5%8D%95/"),
        ("/api/v1/orders/%e8%ae%a2%e5%8d%95/", "/api/v1/orders/%E8%AE%A2%E5%8D%95/"),
        ("/api/v1/orders/订单/", "/api/v1/orders/%E8%AE%A2%E5%8D%95/"),
        ("/api/v1/products/?page=%31&category=1", "/api/v1/products/?page=1&category=1"),
        ("/api/v1/products/?q=a%2fb&r=%e4%b8%ad", "/api/v1/products/?q=a%2Fb&r=%E4%B8%AD"),
        ("/api/v1/products/?q=中 文", "/api/v1/products/?q=%E4%B8%AD%20%E6%96%87"),
        ("/api/v1/products/?q=100%", "/api/v1/products/?q=100%25"),
        ("/api/v1/balance/?", "/api/v1/balance/"),
    ],
)
def test_the_canonical_form_of_a_target(sent, signed):
    from agents.services import api_keys

    assert canonical(sent) == signed  # the docs' recipe (tests.api_helpers)
    assert api_keys.canonical_target(sent) == signed  # the server's (it also signs callbacks)


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/v1/orders/%41BC/", 404),
        ("/api/v1/orders/A%7EB/", 404),
        ("/api/v1/orders/%E8%AE%A2%E5%8D%95-1/", 404),
        ("/api/v1/orders/%e8%ae%a2%e5%8d%95-1/", 404),
        ("/api/v1/products/?page=%31&page_size=2", 200),
        ("/api/v1/products/?page_size=%32%30", 200),
    ],
)
def test_a_client_signing_the_canonical_form_is_accepted(shop, path, status):
    """Through the Django test client: the server sees the decoded path (as under any WSGI
    server) and computes the same canonical string the client signed."""
    response = shop.get(path)
    assert response.status_code == status, response.content
    if status == 404:
        api_error(response, 404, "not_found")


def test_an_order_with_a_percent_encoded_number_is_found(shop, world):
    assert shop.post("/api/v1/orders/", order(world["product"], "ABC")).status_code == 201
    for path in ("/api/v1/orders/ABC/", "/api/v1/orders/%41BC/", "/api/v1/orders/%41%42%43/"):
        response = shop.get(path)
        assert response.status_code == 200, (path, response.content)
        assert response.json()["agent_order_no"] == "ABC"


def test_a_signature_of_another_path_is_still_refused(shop):
    api_error(shop.get("/api/v1/orders/%41BC/", sign_path="/api/v1/orders/ABD/"), 401, "bad_signature")
    # The escape of a reserved character in the query changes the query: not the same request.
    api_error(
        shop.get("/api/v1/products/?category=1%262", sign_path="/api/v1/products/?category=1&2"), 401, "bad_signature"
    )


# --- Responses the schema describes ------------------------------------------------------------


@pytest.mark.parametrize(
    "query, field",
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=", "page"),
        ("page=²", "page"),
        ("page_size=0", "page_size"),
        ("page_size=201", "page_size"),
        ("page_size=x", "page_size"),
        ("category=-1", "category"),
        ("category=null", "category"),
        ("category=0", "category"),
        ("category=²", "category"),
        ("category=" + "9" * 20, "category"),
    ],
)
def test_bad_pagination_and_filters_are_400_naming_the_parameter(shop, query, field):
    body = api_error(shop.get(f"/api/v1/products/?{query}"), 400, "invalid_request")
    assert list(body["details"]) == [field]


def test_a_page_past_the_last_is_404_and_an_unknown_category_is_empty(shop, world):
    api_error(shop.get("/api/v1/products/?page=2"), 404, "not_found")
    api_error(shop.get("/api/v1/products/?page=" + "9" * 18), 404, "not_found")
    assert shop.get("/api/v1/products/?page=1").json()["count"] == 1
    assert shop.get(f"/api/v1/products/?category={2**63 - 1}").json() == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }
    category = world["product"].category
    assert shop.get(f"/api/v1/products/?category={category.pk}").json()["count"] == 1
    assert shop.get(f"/api/v1/products/?category={CategoryFactory().pk}").json()["count"] == 0


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/v1/products/null%2Cnull/"),
        ("GET", "/api/v1/products/-1/"),
        ("GET", "/api/v1/nothing-here/"),
        ("GET", "/api/v2/products/"),
        ("POST", "/api/v1/nothing-here/"),  # no CSRF page either
        ("DELETE", "/api/"),
        ("GET", "/api/v1/orders/a/b/"),
        ("GET", "/api/v1/%00/"),
    ],
)
def test_unknown_urls_under_api_are_json_404s(method, path):
    response = Client().generic(method, path)
    api_error(response, 404, "not_found")


def test_a_missing_trailing_slash_is_explained_not_redirected():
    body = api_error(Client().post("/api/v1/orders", "{}", content_type=JSON), 404, "not_found")
    assert "/api/v1/orders/" in body["message"]


def test_too_many_query_parameters_are_a_400_not_a_django_page(shop):
    query = "&".join(f"p{i}=1" for i in range(1200))  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
    body = api_error(shop.get(f"/api/v1/products/?{query}"), 400, "invalid_request")
    assert list(body["details"]) == ["query"]


def test_a_three_megabyte_body_is_413_json_before_it_is_read(shop):
    body = b'{"x": "' + b"a" * (3 * 1024 * 1024) + b'"}'
    api_error(shop.call("POST", "/api/v1/orders/", raw_body=body), 413, "payload_too_large")
    api_error(Client().post("/api/v1/orders/", body, content_type=JSON), 413, "payload_too_large")


def test_a_body_just_over_the_limit_is_413(shop):
    from api.views import MAX_BODY_BYTES

    body = json.dumps({"pad": "a" * MAX_BODY_BYTES}).encode()
    api_error(shop.call("POST", "/api/v1/orders/", raw_body=body), 413, "payload_too_large")


def test_other_methods_are_405_json_with_allow(shop):
    response = shop.call("PUT", "/api/v1/orders/", {"x": 1})
    api_error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]
    api_error(shop.call("DELETE", "/api/v1/balance/"), 405, "method_not_allowed")
    api_error(Client().post("/api/v1/docs/"), 405, "method_not_allowed")
    api_error(Client().post("/api/v1/schema/"), 405, "method_not_allowed")


def test_another_content_type_is_415_json(shop, world):
    body = json.dumps(order(world["product"], "CT-1")).encode()
    response = shop.call("POST", "/api/v1/orders/", raw_body=body, content_type="text/plain")
    api_error(response, 415, "unsupported_media_type")


def test_the_schema_documents_every_answer():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    ops = {op["operationId"]: op for item in schema["paths"].values() for op in item.values()}
    for op_id, op in ops.items():
        assert {"400", "401", "403", "429"} <= set(op["responses"]), op_id
        assert op["responses"]["400"]["content"][JSON]["schema"]["$ref"].endswith("/ValidationError")
    for op_id in ("products_list", "products_retrieve", "orders_retrieve", "orders_retrieve_by_number"):
        assert "404" in ops[op_id]["responses"], op_id
    assert {"402", "409", "413", "415", "422"} <= set(ops["orders_create"]["responses"])
    params = {p["name"]: p["schema"] for p in ops["products_list"]["parameters"]}
    assert params["page"]["minimum"] == 1 and params["page_size"] == {"type": "integer", "minimum": 1, "maximum": 200}
    assert params["category"]["minimum"] == 1


# --- A repeated order number --------------------------------------------------------------------


def test_a_repeated_number_with_another_callback_url_is_a_conflict(shop, world):
    first = order(world["product"], "CB-1", callback_url="https://shop.example.com/a")
    assert shop.post("/api/v1/orders/", first).status_code == 201
    assert shop.post("/api/v1/orders/", first).status_code == 200  # the same request again
    for other in ("https://shop.example.com/b", ""):
        response = shop.post("/api/v1/orders/", {**first, "callback_url": other})
        body = api_error(response, 409, "agent_order_no_conflict")
        assert "callback URL" in body["message"]
    without = {k: v for k, v in first.items() if k != "callback_url"}
    api_error(shop.post("/api/v1/orders/", without), 409, "agent_order_no_conflict")
    assert Order.objects.get().callback_url == "https://shop.example.com/a"


def test_a_repeated_number_without_a_callback_url_stays_idempotent(shop, world):
    first = order(world["product"], "CB-2")
    assert shop.post("/api/v1/orders/", first).status_code == 201
    assert shop.post("/api/v1/orders/", {**first, "callback_url": ""}).status_code == 200
    other = {**first, "callback_url": "https://x.example.com/"}
    api_error(shop.post("/api/v1/orders/", other), 409, "agent_order_no_conflict")


def test_timing_a_deep_body_is_cheap(shop):
    """The depth check is one pass over the brackets of a body already capped in size."""
    from api.views import MAX_BODY_BYTES, json_depth

    body = b"[" * (MAX_BODY_BYTES // 2) + b"]" * (MAX_BODY_BYTES // 2)
    started = time.perf_counter()
    assert json_depth(body, 20) == 21
    assert json_depth(b'["' + b"[" * MAX_BODY_BYTES + b'"]', 20) == 1
    assert time.perf_counter() - started < 0.5
