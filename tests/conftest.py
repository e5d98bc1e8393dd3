"""Shared test set-up.

Under CI=true the suite is strict: a test that would skip (no PostgreSQL, no Redis, no
Chromium) fails instead. Tests marked ``postgres`` need PostgreSQL; ``worker`` tests start
a real Celery worker process against Redis; ``browser`` tests drive Debian's Chromium.
"""

import os

import pytest
import rest_framework.throttling  # noqa: F401  # imported before any test patches the clock: DRF keeps time.time as its timer

from marketplace import celery_app

CI = os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: a test that would skip fails instead ({reason})"


@pytest.fixture(autouse=True)
def _tasks_run_inline(request):
    """Outside worker tests, queued tasks run in-process when queued (on commit)."""
    if request.node.get_closest_marker("worker"):
        yield
        return
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def _fresh_log_context():
    """No request id, order or payment left on this thread's log lines by the test before."""
    from marketplace.logcontext import log_context_clear

    log_context_clear()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache (a test's database rolls back; what it cached must too)."""
    from django.core.cache import cache

    from catalog.templatetags.catalog_cards import product_cards_forget
    from catalog.templatetags.catalog_product import product_parts_forget
    from compliance.rating import credit_levels_forget_local
    from ledger.services import accounts_forget
    from marketplace.localcache import local_clear
    from orders.templatetags.checkout_page import checkout_parts_forget
    from orders.templatetags.order_page import order_alerts_forget
    from orders.templatetags.order_rows import order_rows_forget
    from payments.templatetags.pay_methods import pay_methods_forget

    cache.clear()
    local_clear()  # marketplace.localcache: the per-process copies of site-wide values
    product_cards_forget()  # catalog_cards: the product cards drawn in this process
    product_parts_forget()  # catalog_product: the product page's cards drawn in this process
    accounts_forget()  # ledger: the platform's accounts kept in this process (ids of rolled-back rows)
    order_rows_forget()  # order_rows: the order list rows drawn in this process
    order_alerts_forget()  # order_page: a pending order's alerts drawn in this process
    pay_methods_forget()  # pay_methods: the choose page's ways to pay drawn in this process
    checkout_parts_forget()  # checkout_page: the checkout's parts drawn in this process
    credit_levels_forget_local()  # the credit levels' per-process copy (compliance.rating)
    yield


@pytest.fixture(autouse=True)
def _pages_not_cached(settings):
    """Anonymous pages are not kept (marketplace.pagecache): tests change stock and prices
    between two requests and expect to see it. tests/test_pagecache.py turns it on;
    TEST_PAGE_CACHE_SECONDS runs the suite with it on."""
    settings.PAGE_CACHE_SECONDS = int(os.environ.get("TEST_PAGE_CACHE_SECONDS", "0"))


@pytest.fixture(autouse=True)
def _risk_limits_relaxed(request):
    """Risk control's caps and rules (order bursts, unpaid orders held, sign-ups per IP) would
    refuse the many orders and sign-ups one test's client makes: relaxed for every test but
    those that ask for ``risk_limits`` (the settings' own values, tests/test_risk_rules.py)."""
    if "risk_limits" in request.fixturenames:
        yield
        return
    from django.conf import settings as conf
    from django.test.utils import override_settings

    big = 10**6
    rules = {name: {**rule, "limit": big} for name, rule in conf.RISK_RULES.items()}
    caps = {
        name: big
        for name in ("RISK_HOLD_PRODUCT_ORDERS", "RISK_HOLD_PRODUCT_CODES", "RISK_HOLD_ORDERS", "RISK_HOLD_CODES")
    }
    with override_settings(RISK_RULES=rules, **caps):
        yield


@pytest.fixture
def risk_limits():
    """Risk control's caps and rules as the settings say (see ``_risk_limits_relaxed``)."""


@pytest.fixture(autouse=True)
def _ledger_stays_sound(request):
    """After every test that touched the database: every entry balances, nothing is overdrawn."""
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames)
    if not uses_db:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # set up first, so torn down after this check
    yield
    from ledger.selectors import problems

    assert problems() == [], "the ledger is unsound after this test"


@pytest.fixture(scope="session", autouse=True)
def _flush_past_ledger_triggers():
    """Transactional tests end with Django's ``flush``, a TRUNCATE on PostgreSQL, which the
    ledger's triggers refuse (ledger migration 0004). The flush runs with
    ``session_replication_role = replica``, in which ordinary triggers do not fire: a setting
    only a superuser may change (the tests' database user is one; the application's is not)."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        # SET LOCAL: back to normal when the flush's transaction ends, and explicitly after it.
        bracket = ["SET LOCAL session_replication_role = replica", *sql_list]
        original(self, [*bracket, "SET LOCAL session_replication_role = DEFAULT"] if sql_list else sql_list)

    DatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    DatabaseOperations.execute_sql_flush = original


@pytest.fixture(scope="session", autouse=True)
def _fast_passwords():
    """Users are made by the hundred: the production hasher's cost is not what any test measures."""
    from django.test.utils import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture
def english(settings):
    """Messages and pages are compared in English (the UI's default is zh-hans): the active
    language, and what a request without Accept-Language falls back to. A module opts in with
    ``pytestmark = pytest.mark.usefixtures("english")``."""
    from django.utils import translation

    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _require_services(request):
    if request.node.get_closest_marker("postgres") or request.node.get_closest_marker("worker"):
        from django.db import connection

        if connection.vendor != "postgresql":
            pytest.skip("needs PostgreSQL (set DATABASE_URL, or run `python3 dev.py test`)")


@pytest.fixture
def redis_url():
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("needs Redis (set TEST_REDIS_URL, or run `python3 dev.py test`)")
    import redis

    try:
        redis.Redis.from_url(url).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {url} does not answer: {exc}")
    return url


@pytest.fixture
def redis_broker(redis_url):
    """This process publishing (not running) tasks to the test Redis, emptied before and after."""
    import redis

    from tests.worker_utils import broker, exclusive

    with exclusive(redis_url):
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        celery_app.conf.task_always_eager = False
        try:
            with broker(celery_app, redis_url, visibility_timeout=60):
                yield client
        finally:
            celery_app.conf.task_always_eager = True
            client.flushdb()
            client.close()


@pytest.fixture
def buyer(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def other_buyer(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def staff(db):
    from tests.factories import UserFactory

    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def level(db):
    """One agent level, 普通 (rank 1)."""
    from tests.factories import AgentLevelFactory

    return AgentLevelFactory(name="普通", rank=1)


@pytest.fixture
def levels(db):
    """The four agent levels by name, 普通 (rank 1) to 金牌 (rank 4)."""
    from tests.factories import AgentLevelFactory

    names = ["普通", "铜牌", "银牌", "金牌"]
    return {name: AgentLevelFactory(name=name, rank=rank, sort=rank) for rank, name in enumerate(names, start=1)}


# --- the payment gateways' fakes -------------------------------------------------------------


@pytest.fixture(scope="session")
def app_key():
    """The merchant's RSA key for Alipay (the adapter signs with it; the fake checks)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def gateway_key():
    """Alipay's own RSA key (the fake signs replies and notifications with it)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fake(app_key, gateway_key):
    """A running fake Alipay gateway on 127.0.0.1."""
    from tests.fake_alipay import APP_ID, SELLER_ID, FakeAlipay

    fake = FakeAlipay(gateway_key=gateway_key, app_public_key=app_key.public_key(), app_id=APP_ID, seller_id=SELLER_ID)
    with fake.running():
        yield fake


@pytest.fixture
def alipay(settings, fake, app_key):
    """The project's Alipay adapter, configured against the fake."""
    from payments.gateways import get_gateway
    from tests.fake_alipay import APP_ID, PKCS1, SELLER_ID, pem

    settings.ALIPAY_APP_ID = APP_ID
    settings.ALIPAY_SELLER_ID = SELLER_ID
    settings.ALIPAY_APP_PRIVATE_KEY = pem(app_key, PKCS1)
    settings.ALIPAY_PUBLIC_KEY = fake.public_key_b64  # as the Alipay console shows it
    settings.ALIPAY_SERVER_URL = fake.url
    settings.PAYMENTS_GATEWAY_TIMEOUT = 5
    return get_gateway("alipay")


@pytest.fixture
def fake_wechatpay(settings):
    """A running fake WeChat Pay, with the project configured to use it."""
    from tests.fake_wechatpay import FakeWeChatPay, configure, generated_keys

    keys = generated_keys()
    fake = FakeWeChatPay(keys).start()
    configure(settings, keys, gateway_url=fake.url)
    yield fake
    fake.stop()


# --- the browser ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _browser_pages_under_the_enforced_policy(request):
    """Browser tests see production's Content-Security-Policy enforced (development only reports
    it), so a page that needs an inline script fails here; tests.browser_helpers.new_page counts
    the browser's CSP refusals as page errors."""
    if not request.node.get_closest_marker("browser"):
        yield
        return
    settings = request.getfixturevalue("settings")
    policy = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
    if policy:
        settings.CONTENT_SECURITY_POLICY = policy
        settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = None
    yield


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright's sync API (browser tests)."""
    from pathlib import Path

    from tests.browser_helpers import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nScreenshots: {SCREENSHOTS}")
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the tests
    # make here (factories, assertions) are plain blocking calls, which Django refuses while a
    # loop runs unless told otherwise. Only for these tests: restored afterwards.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Clock:
    """A time.time the test moves (``clock.advance(seconds)``)."""

    def __init__(self):
        import time

        self.now = time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    """time.time under the test's control: login locks' and rate limits' windows, the cache's
    expiry, allauth's limits."""
    import time

    fake = Clock()
    monkeypatch.setattr(time, "time", lambda: fake.now)
    return fake
