"""The session's user read once compiled (accounts/backends.py, marketplace.rows.read_one) and
the sessions of the backends' previous paths renamed (accounts/middleware.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from allauth.account import auth_backends
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import backends as django_backends
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models.sql.compiler import SQLCompiler
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import middleware
from accounts.backends import RENAMED, AuthenticationBackend, ModelBackend
from accounts.models import User
from marketplace import rows
from tests.factories import UserFactory

PAGE = "/accounts/profile/"  # login required: 200 for a member, a redirect to the login page otherwise
BACKENDS = (ModelBackend, AuthenticationBackend)


def _fields(user) -> dict:
    return {f.attname: (getattr(user, f.attname), type(getattr(user, f.attname))) for f in User._meta.concrete_fields}


def _logged_in(client) -> bool:
    response = client.get(PAGE)
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("backend", BACKENDS)
def test_get_user_is_the_instance_the_orm_builds(backend):
    user = UserFactory(phone="13800138000", first_name="张", last_login=timezone.now())
    got = backend().get_user(user.pk)
    expected = django_backends.ModelBackend().get_user(user.pk)
    assert type(got) is User and got.pk == user.pk
    assert _fields(got) == _fields(expected)  # values and their types (aware datetimes, bools)
    assert (got._state.db, got._state.adding) == (expected._state.db, expected._state.adding)
    assert got.last_login == user.last_login and got.check_password("correct-horse-battery")


@pytest.mark.django_db
@pytest.mark.parametrize("backend", BACKENDS)
def test_get_user_refuses_inactive_and_missing_users(backend):
    inactive = UserFactory(is_active=False)
    assert backend().get_user(inactive.pk) is None
    assert django_backends.ModelBackend().get_user(inactive.pk) is None  # the parent's answer too
    assert backend().get_user(987654321) is None


def test_settings_name_the_new_backends_in_the_old_order():
    assert list(RENAMED.values()) == settings.AUTHENTICATION_BACKENDS
    assert list(RENAMED) == [
        "django.contrib.auth.backends.ModelBackend",
        "allauth.account.auth_backends.AuthenticationBackend",
    ]
    assert issubclass(AuthenticationBackend, auth_backends.AuthenticationBackend)  # allauth's login picks it


@pytest.mark.django_db
def test_inactive_or_deleted_member_is_anonymous(client):
    member = UserFactory()
    client.force_login(member)
    assert _logged_in(client)
    User.objects.filter(pk=member.pk).update(is_active=False)
    assert not _logged_in(client)

    gone = UserFactory()
    client.force_login(gone)
    assert _logged_in(client)
    gone.delete()
    assert not _logged_in(client)


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), list(RENAMED.items()))
def test_a_session_of_an_old_backend_path_still_logs_in_and_is_renamed(client, old, new):
    member = UserFactory()
    client.force_login(member)
    session = client.session
    session[BACKEND_SESSION_KEY] = old
    session.save()
    assert client.session[BACKEND_SESSION_KEY] == old

    assert _logged_in(client)
    stored = client.session  # read back from the session store
    assert stored[BACKEND_SESSION_KEY] == new
    assert stored[SESSION_KEY] == str(member.pk) and stored[HASH_SESSION_KEY] == member.get_session_auth_hash()
    assert _logged_in(client)


@pytest.mark.django_db
def test_an_unknown_backend_path_is_still_refused(client):
    client.force_login(UserFactory())
    session = client.session
    session[BACKEND_SESSION_KEY] = "somewhere.else.Backend"
    session.save()
    assert not _logged_in(client)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "written"), [(next(iter(RENAMED)), True), (ModelBackend.__module__ + ".ModelBackend", False)]
)
def test_the_session_is_written_only_when_a_path_changed(path, written):
    from importlib import import_module

    member = UserFactory()
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store.update(
        {SESSION_KEY: str(member.pk), BACKEND_SESSION_KEY: path, HASH_SESSION_KEY: member.get_session_auth_hash()}
    )
    store.create()
    request = RequestFactory().get(PAGE)
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(store.session_key)
    middleware.AuthenticationMiddleware(lambda r: None).process_request(request)
    assert request.user.pk == member.pk
    assert request.session.modified is written
    assert request.session[BACKEND_SESSION_KEY] == "accounts.backends.ModelBackend"


@pytest.mark.django_db
def test_a_password_change_elsewhere_logs_the_session_out(client):
    member = UserFactory()
    client.force_login(member)
    assert _logged_in(client)
    member.set_password("another-horse-battery")
    member.save()
    assert not _logged_in(client)
    assert SESSION_KEY not in client.session  # flushed, as Django does


@pytest.mark.django_db
def test_a_logged_in_page_reads_its_user_once_with_constant_text(client, monkeypatch):
    members = [UserFactory(), UserFactory()]
    compiled_for_user = []
    original = SQLCompiler.as_sql

    def as_sql(self, *args, **kwargs):
        if self.query.model is User:
            compiled_for_user.append(self.query)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", as_sql)
    reads = []
    for member in members:
        client.force_login(member)
        assert _logged_in(client)  # warm: the statement is built once per process
        with CaptureQueriesContext(connection) as sql:
            assert _logged_in(client)
        user_reads = [q["sql"] for q in sql.captured_queries if '"accounts_user"' in q["sql"]]
        assert len(user_reads) == 1, "\n".join(q["sql"] for q in sql.captured_queries)
        reads.append(user_reads[0])
    compiled_for_user.clear()
    with CaptureQueriesContext(connection):
        assert _logged_in(client)
    assert compiled_for_user == []  # no queryset of the user compiled by the request
    statement = rows._SELECT_SQL[(User, "id", connection.vendor, False)][0]
    assert reads == [statement % member.pk for member in members]
    assert "FOR UPDATE" not in statement


def test_read_one_on_sqlite(tmp_path):
    """The development default: the same plain SQL and converters on SQLite (booleans, dates)."""
    base = Path(__file__).resolve().parent.parent
    script = """
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
call_command("migrate", "accounts", verbosity=0)
assert connection.vendor == "sqlite"
from accounts.backends import ModelBackend
from accounts.models import User
from marketplace import rows
u = User.objects.create(username="a", email="a@example.com", last_login=timezone.now(), is_staff=True)
got, orm = rows.read_one(User, "email", "a@example.com", using="default"), User.objects.get(pk=u.pk)
fields = lambda x: [(getattr(x, f.attname), type(getattr(x, f.attname))) for f in User._meta.concrete_fields]
assert fields(got) == fields(orm), (fields(got), fields(orm))
assert got.is_staff is True and got.is_agent is False and got.last_login == u.last_login
assert ModelBackend().get_user(u.pk).pk == u.pk and ModelBackend().get_user(u.pk + 1) is None
User.objects.filter(pk=u.pk).update(is_active=False)
assert ModelBackend().get_user(u.pk) is None
print("sqlite ok")
"""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=base, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "sqlite ok" in result.stdout


@pytest.mark.django_db
def test_read_one_refuses_a_column_that_is_not_unique():
    with pytest.raises(ValueError, match="not unique"):
        rows.read_one(User, "first_name", "x", using="default")


def test_an_anonymous_request_loads_no_session():
    request = RequestFactory().get(PAGE)

    class Untouchable(dict):
        def get(self, *args):  # a session read before request.user is asked for would fail here
            raise AssertionError("session read")

    request.session = Untouchable()
    middleware.AuthenticationMiddleware(lambda r: None).process_request(request)
    assert not hasattr(request, "_cached_user")
    request.session = {}
    assert isinstance(request.user, AnonymousUser)
