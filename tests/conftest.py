"""Shared test set-up.

Under CI=true the suite is strict: a test that would skip (no PostgreSQL, no Redis, no
Chromium) fails instead. Tests marked ``postgres`` need PostgreSQL; ``worker`` tests start
a real Celery worker process against Redis; ``browser`` tests drive Debian's Chromium.
"""

import os

import pytest

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
def _fresh_cache():
    """Each test starts with an empty cache (a test's database rolls back; what it cached must too)."""
    from django.core.cache import cache

    cache.clear()
    yield


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
