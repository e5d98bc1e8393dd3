"""The logged-in floor kept per process (accounts.models.session_auth_hash, risk.middleware's
device cookie): the same answers as computing them each time, and a logout, a password change,
a deactivation or a new secret still apply from the very next request."""

import pytest
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.hashers import make_password
from django.core import signing
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from accounts.models import User
from risk import middleware as device
from tests.factories import UserFactory

PAGE = "/accounts/profile/"  # login required: 200 for a member, a redirect to the login page otherwise
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"


def _logged_in(client) -> bool:
    response = client.get(PAGE)
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


@pytest.mark.django_db
def test_the_session_auth_hash_is_djangos():
    user = UserFactory()
    django_hash = AbstractBaseUser._get_session_auth_hash
    assert user.get_session_auth_hash() == django_hash(user) == user.get_session_auth_hash()
    with override_settings(SECRET_KEY="another-secret-key-of-fifty-characters-or-more-0123456789"):
        assert user.get_session_auth_hash() == django_hash(user)
    assert user._get_session_auth_hash(secret="old") == django_hash(user, secret="old")
    before = user.get_session_auth_hash()
    user.set_password("another-horse-battery")
    assert user.get_session_auth_hash() == django_hash(user) != before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        "password changed elsewhere",
        "deactivated",
        "logged out",
        "secret key rotated without fallback",
    ],
)
def test_a_change_applies_from_the_next_request(client, change):
    user = UserFactory()
    client.force_login(user)
    assert _logged_in(client) and _logged_in(client)  # the hash checked (and kept) twice
    if change == "password changed elsewhere":  # another process: the row only
        User.objects.filter(pk=user.pk).update(password=make_password("new-horse-battery"))
    elif change == "deactivated":
        User.objects.filter(pk=user.pk).update(is_active=False)
    elif change == "logged out":
        assert client.post("/accounts/logout/").status_code == 302
    else:
        with override_settings(SECRET_KEY="rotated-secret-key-of-fifty-characters-or-more-0123456789"):
            assert not _logged_in(client)
        return
    assert not _logged_in(client)


@pytest.mark.django_db
def test_a_rotated_key_with_the_old_one_as_fallback_keeps_the_session(client):
    user = UserFactory()
    client.force_login(user)
    assert _logged_in(client)
    new = "rotated-secret-key-of-fifty-characters-or-more-0123456789"
    with override_settings(SECRET_KEY=new, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert _logged_in(client) and _logged_in(client)


def _device(cookie: str | None, user_agent: str = UA):
    request = RequestFactory().get("/", HTTP_USER_AGENT=user_agent)
    if cookie is not None:
        request.COOKIES[settings.RISK_DEVICE_COOKIE] = cookie
    response = device.DeviceMiddleware(lambda r: HttpResponse())(request)
    return request.device_id, response.cookies.get(settings.RISK_DEVICE_COOKIE)


def test_the_device_id_is_the_cookies_token_and_the_user_agents_hashes():
    token = "A" * 22
    cookie = signing.Signer(salt=device.SALT).sign(token)
    for _ in range(2):  # computed, then kept
        found, set_cookie = _device(cookie)
        assert found == f"{device._hash(token, 20)}.{device._hash(UA, 8)}" and set_cookie is None
    assert _device(cookie, "other agent")[0] == f"{device._hash(token, 20)}.{device._hash('other agent', 8)}"


@pytest.mark.parametrize("cookie", [None, "", "forged:abc", "A" * 22])
def test_a_missing_or_forged_cookie_gives_no_device_and_a_new_cookie(cookie):
    for _ in range(2):
        found, set_cookie = _device(cookie)
        assert found == "" and set_cookie is not None
        assert signing.Signer(salt=device.SALT).unsign(set_cookie.value)


def test_a_cookie_signed_with_a_retired_key_is_refused_at_once():
    cookie = signing.Signer(salt=device.SALT).sign("B" * 22)
    assert _device(cookie)[0] != ""
    new = "rotated-secret-key-of-fifty-characters-or-more-0123456789"
    with override_settings(SECRET_KEY=new, SECRET_KEY_FALLBACKS=[]):
        assert _device(cookie)[0] == ""
    with override_settings(SECRET_KEY=new, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert _device(cookie)[0] != ""
