"""The agent API under schemathesis: every operation of our OpenAPI schema, in positive and
negative mode, through the examples, coverage, fuzzing and stateful phases, with every check
on. It must report no failure.

The run is in-process (WSGI) against a real database: an agent with a balance and a key, and
products with stock, so orders are really placed, paid and delivered. Every request is signed
with the agent's real key the way the docs' example client signs: the schemathesis auth
config marks a request as "to be signed" with the key's ID, and ``SigningClient`` (the hook on
the wire, where the final bytes are known, like a client library's signing step) computes
X-Timestamp, X-Nonce and X-Signature over the method, the canonical path and query, and the
SHA-256 of the body exactly as sent. A request the check ``ignored_auth`` strips of its
credentials (or gives a wrong one) passes unsigned and must be refused.

Bounded: a fixed seed and a fixed number of examples per phase, so the run is deterministic
and takes about a minute here.
"""

import io
import itertools
import os
import secrets
import time
from decimal import Decimal

import pytest
import schemathesis
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import connections
from schemathesis import GenerationMode
from schemathesis.engine import Status, events, from_schema
from schemathesis.transport.wsgi import WSGITransport

from tests.api_helpers import canonical, issue_key, level, make_agent, set_level_price, sign, top_up
from tests.factories import ProductFactory, add_stock

D = Decimal
SEED = 20261203
# Per operation and phase: about a minute (some 900 requests) on a 2-core machine. More finds more; set
# API_FUZZ_EXAMPLES to run longer by hand.
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "80"))
TO_BE_SIGNED = "sign-me"

# Every check schemathesis has, on (its defaults are the same; listed so none can go missing).
# Notes on the ones with nothing to bite on here:
# - use_after_free looks for a resource read after a DELETE: the API has no DELETE.
# - object_level_authorization needs a second identity configured; that one agent cannot see
#   another's orders is tested in tests/test_api.py (and ignored_auth checks unsigned access).
# - max_response_time needs a threshold: timing is not a correctness check on a shared machine.
CHECKS = {
    "not_a_server_error": {"enabled": True},
    "status_code_conformance": {"enabled": True},
    "content_type_conformance": {"enabled": True},
    "response_schema_conformance": {"enabled": True},
    "response_headers_conformance": {"enabled": True},
    "negative_data_rejection": {"enabled": True},
    # A well-formed order can still be refused by business rules, not for its shape: a product
    # not on sale, a quantity over the product's limit (422 order_refused) or its stock (409), more
    # than the balance (402). Everything else is schemathesis's default list.
    "positive_data_acceptance": {
        "enabled": True,
        "expected-statuses": ["2xx", "3xx", "401", "402", "403", "404", "409", "422", "429", "5xx"],
    },
    "use_after_free": {"enabled": True},
    "ensure_resource_availability": {"enabled": True},
    "missing_required_header": {"enabled": True},
    "ignored_auth": {"enabled": True},
    "object_level_authorization": {"enabled": True},
    "unsupported_method": {"enabled": True},
    "allow_header_conformance": {"enabled": True},
}


class SigningClient:
    """WSGI middleware standing for the shop's HTTP client: a request that carries our key ID
    and the placeholder signature is signed like the docs' example does, over what is sent."""

    def __init__(self, app, key_id: str, secret: str):
        self.app, self.key_id, self.secret = app, key_id, secret
        self.signed = 0
        self.connections = {}  # schemathesis's worker threads' database connections

    def close_connections(self) -> None:
        for connection in self.connections.values():
            connection.inc_thread_sharing()
            connection.close()
            connection.dec_thread_sharing()

    def __call__(self, environ, start_response):
        connection = connections["default"]
        self.connections[id(connection)] = connection
        if (
            environ.get("HTTP_X_API_KEY") == self.key_id
            and environ.get("HTTP_X_SIGNATURE") == TO_BE_SIGNED
            and environ.get("HTTP_X_TIMESTAMP") == TO_BE_SIGNED
        ):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            # The target as the client sent it (werkzeug keeps the path as sent in RAW_URI).
            query = environ.get("QUERY_STRING", "")
            target = environ["RAW_URI"].split("?", 1)[0] + (f"?{query}" if query else "")
            timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
            environ["HTTP_X_TIMESTAMP"], environ["HTTP_X_NONCE"] = timestamp, nonce
            environ["HTTP_X_SIGNATURE"] = sign(
                self.secret, environ["REQUEST_METHOD"], canonical(target), timestamp, nonce, body
            )
            self.signed += 1
        return self.app(environ, start_response)


@pytest.fixture
def market(transactional_db, settings):
    """An agent with a balance and a key; two products with stock (one at a level price)."""
    # The fuzzer sends thousands of requests a minute: the per-key rate limit would answer most
    # of them 429 (tested on its own in tests/test_api.py).
    settings.AGENT_API_RATE_PER_MINUTE = 1_000_000
    settings.LANGUAGE_CODE = "en"
    cache.clear()
    gold = level("金牌", 4)
    products = [ProductFactory(price=D("10.00"), max_per_order=5), ProductFactory(price=D("3.00"), max_per_order=5)]
    for product in products:
        add_stock(product, 40)
    agent = make_agent(level_obj=gold)
    set_level_price(gold, products[0], "9.00")
    top_up(agent.user, D("5000.00"))
    shop = issue_key(agent)
    yield {"products": products, "shop": shop}
    cache.clear()


@pytest.fixture
def wsgi_probes(monkeypatch):
    """schemathesis 4.32 sends the probes of ``ignored_auth`` (the request again without, or
    with a wrong, credential) with the run's transport options but no session; its WSGI
    transport then hands ``max_redirects`` etc. to werkzeug, which refuses them. Drop the
    options that mean nothing in-process, as the transport itself does when given a session."""
    send = WSGITransport.send

    def send_in_process(self, case, *, session=None, **kwargs):
        if session is None:
            for name in ("max_redirects", "verify", "cert", "proxies"):
                kwargs.pop(name, None)
        return send(self, case, session=session, **kwargs)

    monkeypatch.setattr(WSGITransport, "send", send_in_process)


@pytest.fixture
def no_callback_calls(monkeypatch):
    """Orders placed with a generated callback URL are called back on delivery: refuse every
    destination instead of resolving made-up host names (the callbacks have their own tests)."""
    from orders.services import callbacks

    monkeypatch.setattr(callbacks, "destination_refusal", lambda url: "not called from the fuzz test")


def test_schemathesis_finds_nothing(market, wsgi_probes, no_callback_calls):
    shop = market["shop"]
    turns = itertools.count()
    app = SigningClient(get_wsgi_application(), shop.key_id, shop.secret)
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Both modes; no example database, so a run depends on the seed alone.
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": CHECKS,
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 8, "generation": {"max-examples": MAX_EXAMPLES // 2}},
            },
            "auth": {
                "openapi": {
                    "ApiKey": {"api_key": shop.key_id},
                    "Timestamp": {"api_key": TO_BE_SIGNED},
                    "Nonce": {"api_key": "0123456789abcdef-to-be-replaced"},
                    "Signature": {"api_key": TO_BE_SIGNED},
                }
            },
            "warnings": False,
        }
    )
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", app, config=config)

    @schema.hook
    def map_case(context, case):
        """Every other well-formed order names a product on sale (each in turn), one code, so
        orders are really placed (and the stateful phase can follow them); the rest stay as
        generated (mostly refused: no such product, too many codes)."""
        meta = case.meta
        if (
            case.operation.label == "POST /api/v1/orders/"
            and meta is not None
            and meta.generation.mode == GenerationMode.POSITIVE
            and isinstance(case.body, dict)
        ):
            turn = next(turns)
            if turn % 2 == 0:
                product = market["products"][turn // 2 % len(market["products"])]
                case.body = {**case.body, "product_id": product.pk, "quantity": 1}
        return case

    started = time.monotonic()
    failures, errors, scenarios, statuses = [], [], 0, {}
    try:
        run = list(from_schema(schema).execute())
    finally:
        app.close_connections()
    for event in run:
        if isinstance(event, events.ScenarioFinished):
            scenarios += 1
            recorder = event.recorder
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    code = interaction.response.status_code
                    statuses[code] = statuses.get(code, 0) + 1
            for case_id, nodes in recorder.checks.items():
                for node in nodes:
                    if node.status == Status.FAILURE and node.failure_info is not None:
                        info = node.failure_info
                        failures.append(
                            f"{recorder.label} [{node.name}] {info.failure.title}: "
                            f"{info.failure.message}\n{info.code_sample}"
                        )
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            errors.append(event)
        elif isinstance(event, events.EngineFinished):
            failures += [str(f) for f in event.failures]
    elapsed = time.monotonic() - started

    print(
        f"schemathesis: {scenarios} scenarios, {app.signed} signed requests, statuses {sorted(statuses.items())}, "
        f"{elapsed:.0f} s"
    )
    assert not errors, [str(getattr(e, "value", None) or getattr(e, "exception", e)) for e in errors]
    # Unique failures, for a readable report.
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    assert app.signed > 300  # the run really exercised the API
    assert statuses.get(201, 0) > 5, statuses  # and orders were placed
