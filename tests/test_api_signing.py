"""The signed path, as real clients send it: the docs' own Python example (run as published)
against the app under gunicorn, a raw HTTP client that signs the request target byte for byte,
the Django test client (which, like every WSGI server, hands the app a decoded path), and the
in-page signer of the docs page in Chromium. All of them must agree with the server on
``%41BC``, ``%7E``, a percent-encoded Chinese order number and a query string."""

import http.client
import os
import re
import secrets
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from agents.services import api_keys
from tests.api_helpers import canonical, issue_key, level, make_agent, set_level_price, sign, top_up
from tests.factories import ProductFactory, add_stock
from tests.live_gunicorn import running_gunicorn

CHROMIUM = "/usr/bin/chromium"

# (what the client sends, HTTP status once the signature is accepted). An order number that is
# not ours is a 404: anything but 401 shows the signature was accepted.
TARGETS = [
    ("/api/v1/orders/%41BC/", 200),  # the order ABC exists
    ("/api/v1/orders/%41%42%43/", 200),
    ("/api/v1/orders/SHOP%7E1/", 404),
    ("/api/v1/orders/SHOP%7e1/", 404),
    ("/api/v1/orders/%E8%AE%A2%E5%8D%95-1/", 404),
    ("/api/v1/orders/%e8%ae%a2%e5%8d%95-1/", 404),
    ("/api/v1/orders/by-number/%41%42/", 404),
    ("/api/v1/products/?page=%31&page_size=%35", 200),
    ("/api/v1/products/?page=1&category=%37", 200),
    ("/api/v1/balance/", 200),
]


def docs_example(name: str) -> str:
    """The Python example of the API reference, as the docs page renders it."""
    from api.schema import postprocess_description

    text = postprocess_description({"info": {}}, None, None, True)["info"]["description"]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@pytest.fixture
def market(transactional_db):
    gold = level("金牌", 4)
    product = ProductFactory(price=Decimal("10.00"))
    add_stock(product, 3)
    agent = make_agent(level_obj=gold)
    set_level_price(gold, product, "9.00")
    top_up(agent.user, Decimal("50.00"))
    shop = issue_key(agent)
    assert shop.post("/api/v1/orders/", {"product_id": product.pk, "quantity": 1, "agent_order_no": "ABC"}).status_code
    return {"shop": shop, "product": product}


@pytest.fixture
def gunicorn(market):
    """The app under gunicorn (as in production), on the test database."""
    with running_gunicorn(env={"AGENT_API_RATE_PER_MINUTE": "1000"}) as (base, _process):
        yield base


def raw_get(base: str, target: str, signed_as: str, shop) -> int:
    """GET ``target`` byte for byte (http.client sends the request target untouched)."""
    timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
    signature = sign(shop.secret, "GET", signed_as, timestamp, nonce, b"")
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        for name, value in {
            "X-Api-Key": shop.key_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": signature,
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.postgres
def test_the_docs_python_example_works_against_gunicorn(market, gunicorn):
    """The example exactly as published (only the key and the address filled in)."""
    shop = market["shop"]
    code = docs_example("python").split("\n\nprint(")[0]
    code = code.replace('"ak_..."', repr(shop.key_id)).replace('"sk_..."', repr(shop.secret))
    code = code.replace('"https://example.com"', repr(gunicorn))
    namespace = {}
    exec(compile(code, "schema_description.md", "exec"), namespace)
    for target, status in [*TARGETS, ("/api/v1/orders/订单-1/", 404)]:
        response = namespace["call"]("GET", target)
        assert response.status_code == status, (target, response.status_code, response.text[:200])
        assert response.headers["Content-Type"] == "application/json"
    placed = namespace["call"](
        "POST", "/api/v1/orders/", {"product_id": market["product"].pk, "quantity": 1, "agent_order_no": "ABC"}
    )
    assert placed.status_code == 200 and placed.json()["agent_order_no"] == "ABC"  # the same order, again


@pytest.mark.postgres
def test_gunicorn_also_accepts_the_target_signed_exactly_as_sent(market, gunicorn):
    shop = market["shop"]
    for target, status in TARGETS:
        assert raw_get(gunicorn, target, canonical(target), shop) == status, target
        assert raw_get(gunicorn, target, target, shop) == status, target  # gunicorn's RAW_URI
    # Neither form of another target.
    assert raw_get(gunicorn, "/api/v1/orders/%41BC/", "/api/v1/orders/ABD/", shop) == 401


def test_the_django_test_client_sees_a_decoded_path_so_only_the_canonical_form_counts(market):
    """Under a WSGI server that does not pass the target as sent (the test client, runserver,
    uWSGI), the canonical form is the one that works: the reason the docs define it."""
    shop = market["shop"]
    shop.client = Client()
    for target, status in TARGETS:
        assert shop.get(target).status_code == status, target  # signs canonical(target)
    assert shop.get("/api/v1/orders/%41BC/", sign_path="/api/v1/orders/%41BC/").status_code == 401


@pytest.mark.parametrize(
    "target",
    [t for t, _ in TARGETS]
    + ["/api/v1/orders/订单/", "/api/v1/products/?q=中 文", "/api/v1/products/?q=100%", "/api/v1/balance/?"],
)
def test_the_server_helper_agrees_with_the_docs_recipe(target):
    assert api_keys.canonical_target(target) == canonical(target)


def test_callbacks_are_signed_with_the_canonical_target(settings):
    """What the agent's shop checks: the callback URL's canonical path and query."""
    headers = api_keys.signature_headers(
        key_id="ak_x", secret="sk_y", method="POST", path="/cb/%7euser?sig=%e4", body=b"{}"
    )
    expected = sign("sk_y", "POST", "/cb/~user?sig=%E4", headers["X-Timestamp"], headers["X-Nonce"], b"{}")
    assert headers["X-Signature"] == expected


@pytest.mark.browser
def test_the_in_page_signer_computes_the_same_canonical_form(live_server, transactional_db):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    targets = [t for t, _ in TARGETS] + [
        "/api/v1/orders/订单/",
        "/api/v1/products/?q=中 文",
        "/api/v1/products/?q=a%2fb&r=%e4%b8%ad",
        "/api/v1/products/?q=100%",
        "/api/v1/balance/?",
        "/api/v1/orders/a%2Fb/",
    ]
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            try:
                page = browser.new_page()
                errors = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(live_server.url + "/api/v1/docs/")
                page.wait_for_function("typeof window.kamarketApiCanonical === 'function'")
                signed = page.evaluate("(targets) => targets.map(window.kamarketApiCanonical)", targets)
                # What fetch() sends for a URL typed into Swagger UI, and its canonical form.
                sent = page.evaluate(
                    "(t) => { const u = new URL(t, location.href); return u.pathname + u.search; }",
                    "/api/v1/orders/订单 1/?q=a b",
                )
                assert not errors, errors
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
    assert signed == [canonical(t) for t in targets]
    assert canonical(sent) == canonical("/api/v1/orders/订单 1/?q=a b")
    assert settings.STATIC_URL  # the page loaded its vendored scripts through the static files
