"""A stranger cannot lock a buyer out (issue 10): the login locks of accounts.services.

Five wrong passwords for an email used to lock that account for everyone. Now the lock is on
the account from that client; the owner elsewhere gets in at once. A far higher limit per
account, from everywhere, stops distributed guessing and warns the owner by email, once.
Time travels by a patched clock (the locmem cache reads time.time too), never by sleeping.
"""

import re
import uuid

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
ATTACKER, OWNER = "203.0.113.66", "198.51.100.7"
LOGIN = "/accounts/login/"


@pytest.fixture
def victim(db):
    return UserFactory(email="victim@example.com")


def attempt(client, email, password, ip, **extra):
    return client.post(LOGIN, {"login": email, "password": password}, REMOTE_ADDR=ip, **extra)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def lock_of(response) -> str | None:
    """Which lock answered (the page's data-lock), or None for an ordinary answer."""
    if response.status_code != 429:
        return None
    match = re.search(r'data-testid="login-locked" data-lock="(\w+)"', response.content.decode())
    assert match, "a 429 without the lockout page"
    return match.group(1)


def test_wrong_passwords_lock_the_account_from_that_client_only(client, victim, clock, mailoutbox):
    for _ in range(4):
        response = attempt(client, victim.email, "guess", ATTACKER)
        assert response.status_code == 200 and lock_of(response) is None  # the form, with its error

    fifth = attempt(client, victim.email, "guess", ATTACKER, HTTP_ACCEPT_LANGUAGE="en")
    assert lock_of(fifth) == "client"
    assert fifth["Retry-After"] == "300"
    assert "no-store" in fifth["Cache-Control"]
    page = fifth.content.decode()
    assert "Sign-in temporarily locked" in page
    assert "Please try again in 5 minutes." in page
    assert reverse("account_reset_password") in page

    # The right password from the locked client is refused too: no password is checked.
    right = attempt(client, victim.email, PASSWORD, ATTACKER)
    assert lock_of(right) == "client" and not logged_in(client)
    # The case of the email changes nothing.
    assert lock_of(attempt(client, victim.email.upper(), PASSWORD, ATTACKER)) == "client"

    # The owner, from elsewhere, gets in at once; and nobody was emailed for a client lock.
    response = attempt(client, victim.email, PASSWORD, OWNER)
    assert response.status_code == 302 and logged_in(client)
    assert mailoutbox == []


def test_after_the_wait_the_client_may_try_again(client, victim, clock):
    for _ in range(5):
        attempt(client, victim.email, "guess", ATTACKER)
    clock.advance(4 * 60 + 30)
    waiting = attempt(client, victim.email, PASSWORD, ATTACKER, HTTP_ACCEPT_LANGUAGE="en")
    assert lock_of(waiting) == "client"
    assert "Please try again in 1 minute." in waiting.content.decode()  # rounded up, singular
    assert waiting["Retry-After"] == "30"

    clock.advance(31)
    response = attempt(client, victim.email, PASSWORD, ATTACKER)
    assert response.status_code == 302 and logged_in(client)


def test_counting_starts_afresh_after_a_lock_and_after_the_right_password(client, victim, clock):
    for _ in range(5):
        attempt(client, victim.email, "guess", ATTACKER)
    clock.advance(5 * 60 + 1)
    for _ in range(4):  # a fresh window: four more failures do not lock
        assert lock_of(attempt(client, victim.email, "guess", ATTACKER)) is None
    # The owner on the same network mistypes four times, then gets it right: that forgets them.
    assert attempt(client, victim.email, PASSWORD, ATTACKER).status_code == 302
    client.logout()
    for _ in range(4):
        assert lock_of(attempt(client, victim.email, "guess", ATTACKER)) is None


def test_a_distributed_attack_locks_the_account_for_all_and_warns_the_owner_once(client, victim, clock, mailoutbox):
    answers = [lock_of(attempt(client, victim.email, "guess", f"10.1.{n // 250}.{n % 250 + 1}")) for n in range(40)]
    assert answers[:29] == [None] * 29  # one failure per address: no client lock, no spray lock
    assert answers[29:] == ["account"] * 11  # the 30th failure within the hour locks the account

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == [victim.email]
    assert "http://127.0.0.1:8000/accounts/password/reset/" in mail.body
    assert "30" in mail.body and PASSWORD not in mail.body and ATTACKER not in mail.body

    # For everyone while it holds, the owner too; and the owner is not emailed again.
    owner = attempt(client, victim.email, PASSWORD, OWNER, HTTP_ACCEPT_LANGUAGE="en")
    assert lock_of(owner) == "account" and not logged_in(client)
    assert "Please try again in 30 minutes." in owner.content.decode()
    assert len(mailoutbox) == 1

    clock.advance(30 * 60 + 1)
    assert attempt(client, victim.email, PASSWORD, OWNER).status_code == 302 and logged_in(client)

    # A new lockout, later, is a new warning.
    client.logout()
    for n in range(50):
        attempt(client, victim.email, "guess", f"10.2.0.{n + 1}")
    assert len(mailoutbox) == 2


def test_thirty_wrong_passwords_for_one_account_lock_it(client, victim, clock, mailoutbox):
    """Issue 13's test. From one client the 5th wrong password locks the account from that
    client, and the other 25 are refused unchecked (the right one too); the owner elsewhere
    still gets in. From many clients, the 30th failure within the hour locks it for everyone."""
    one = []
    for _ in range(30):  # over 90 s: under allauth's 30 login posts a minute from one client
        one.append(lock_of(attempt(client, victim.email, "guess", ATTACKER)))
        clock.advance(3)
    assert one == [None] * 4 + ["client"] * 26
    assert lock_of(attempt(client, victim.email, PASSWORD, ATTACKER)) == "client" and not logged_in(client)
    assert attempt(client, victim.email, PASSWORD, OWNER).status_code == 302 and logged_in(client)
    client.logout()
    assert mailoutbox == []

    # 5 failures counted so far (the refused ones checked no password): 25 more from 25 clients.
    many = [lock_of(attempt(client, victim.email, "guess", f"10.4.0.{n + 1}")) for n in range(25)]
    assert many == [None] * 24 + ["account"]
    locked = attempt(client, victim.email, PASSWORD, OWNER)
    assert lock_of(locked) == "account" and not logged_in(client)
    assert "登录已暂时锁定" in locked.content.decode() and "请在 30 分钟后重试。" in locked.content.decode()
    assert len(mailoutbox) == 1


def test_an_unknown_email_is_locked_the_same_and_nobody_is_emailed(client, victim, clock, mailoutbox):
    """The locks must not tell which emails have accounts."""
    answers = [lock_of(attempt(client, "nobody@example.com", "guess", ATTACKER)) for _ in range(5)]
    assert answers == [None, None, None, None, "client"]
    for n in range(50):
        attempt(client, "ghost@example.com", "guess", f"10.3.0.{n + 1}")
    assert lock_of(attempt(client, "ghost@example.com", "guess", OWNER)) == "account"
    assert mailoutbox == []


def test_one_client_spraying_many_accounts_is_locked_for_all_of_them(client, victim, clock):
    other = UserFactory()
    for n in range(30):  # 30 accounts, one guess each, over 90 s (under allauth's 30 requests/min)
        answer = lock_of(attempt(client, f"target{n}@example.com", "123456", ATTACKER))
        clock.advance(3)
    assert answer == "ip"
    # From that address, no account can sign in for a while, not even with its password ...
    refused = attempt(client, other.email, PASSWORD, ATTACKER, HTTP_ACCEPT_LANGUAGE="en")
    assert lock_of(refused) == "ip" and not logged_in(client)
    assert "Please try again in 15 minutes." in refused.content.decode()
    # ... while everyone elsewhere is unaffected.
    assert attempt(client, victim.email, PASSWORD, OWNER).status_code == 302


def test_a_flood_of_login_posts_gets_the_sites_page_too(client, clock, settings):
    """allauth's own limit on login posts per minute (before any password) answers in the site's
    style and language, not with a bare English page."""
    settings.LOGIN_IP_FAILURE_LIMIT = 100
    answers = [attempt(client, f"someone{n}@example.com", "guess", ATTACKER) for n in range(31)]
    assert [a.status_code for a in answers[:30]] == [200] * 30
    flood = answers[30]
    assert flood.status_code == 429 and 'data-testid="too-many-requests"' in flood.content.decode()
    assert "请求过于频繁" in flood.content.decode()


def test_client_addresses_come_from_the_trusted_proxies_only(client, victim, clock, settings):
    """Behind one proxy a forged X-Forwarded-For prefix changes nothing; an IPv6 client is its /64."""
    settings.NUM_PROXIES = 1
    for n in range(5):
        forged = f"192.0.2.{n + 1}, {ATTACKER}"
        last = attempt(client, victim.email, "guess", "10.0.0.1", HTTP_X_FORWARDED_FOR=forged)
    assert lock_of(last) == "client"
    right = attempt(client, victim.email, PASSWORD, "10.0.0.1", HTTP_X_FORWARDED_FOR=f"9.9.9.9, {ATTACKER}")
    assert lock_of(right) == "client"
    # The owner behind the same proxy, from their own address, gets in.
    assert attempt(client, victim.email, PASSWORD, "10.0.0.1", HTTP_X_FORWARDED_FOR=OWNER).status_code == 302

    settings.NUM_PROXIES = 0
    client.logout()
    for n in range(5):
        attempt(client, victim.email, "guess", f"2001:db8:1:2::{n + 1}")
    assert lock_of(attempt(client, victim.email, PASSWORD, "2001:db8:1:2:ffff::9")) == "client"
    assert attempt(client, victim.email, PASSWORD, "2001:db8:1:3::1").status_code == 302


def test_the_admin_login_is_the_same_door(client, clock):
    staff = UserFactory(is_staff=True, is_superuser=True)
    # The admin's own form is gone: it sends to the site's login, and a posted password is ignored.
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith(LOGIN + "?next=")
    response = client.post("/admin/login/", {"username": staff.username, "password": PASSWORD}, REMOTE_ADDR=OWNER)
    assert response.status_code == 302 and not logged_in(client)

    # Staff are locked out of one client like anyone ...
    for _ in range(5):
        last = client.post(f"{LOGIN}?next=/admin/", {"login": staff.email, "password": "guess"}, REMOTE_ADDR=ATTACKER)
    assert lock_of(last) == "client"
    refused = client.post(f"{LOGIN}?next=/admin/", {"login": staff.email, "password": PASSWORD}, REMOTE_ADDR=ATTACKER)
    assert lock_of(refused) == "client" and not logged_in(client)
    # ... and get into the admin from elsewhere.
    response = client.post(f"{LOGIN}?next=/admin/", {"login": staff.email, "password": PASSWORD}, REMOTE_ADDR=OWNER)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/login/").status_code == 302  # signed-in staff pass through

    # A signed-in buyer is refused the admin, not shown a login form.
    client.logout()
    client.force_login(UserFactory())
    assert client.get("/admin/login/").status_code == 403


def test_the_lock_page_speaks_chinese_by_default_and_english_on_request(client, victim, clock):
    for _ in range(4):
        attempt(client, victim.email, "guess", ATTACKER)
    page = attempt(client, victim.email, "guess", ATTACKER).content.decode()
    assert '<html lang="zh-hans">' in page
    assert "登录已暂时锁定" in page
    assert "请在 5 分钟后重试。" in page
    assert "重置密码" in page and reverse("account_reset_password") in page
    assert "Sign-in" not in page and "minutes" not in page

    page = attempt(client, victim.email, "guess", ATTACKER, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="en">' in page
    assert "Sign-in temporarily locked" in page and "from your device or network" in page
    assert "Reset password" in page and "登录已暂时锁定" not in page


def test_the_warning_email_is_in_chinese(client, victim, clock, mailoutbox):
    for n in range(50):
        attempt(client, victim.email, "guess", f"10.4.0.{n + 1}", HTTP_ACCEPT_LANGUAGE="en")
    (mail,) = mailoutbox
    assert "暂停" in mail.subject
    assert "北京时间" in mail.body and "重置" in mail.body


def test_a_password_reset_lets_the_owner_in_during_a_lock_and_lifts_it(client, victim, clock, mailoutbox):
    for n in range(50):
        attempt(client, victim.email, "guess", f"10.5.0.{n + 1}")
    assert lock_of(attempt(client, victim.email, PASSWORD, OWNER)) == "account"

    client.post(reverse("account_reset_password"), {"email": victim.email}, REMOTE_ADDR=OWNER)
    link = re.search(r"https?://\S+(/accounts/password/reset/key/\S+)", mailoutbox[-1].body).group(1)
    form_url = client.get(link, REMOTE_ADDR=OWNER)["Location"]
    new_password = "Another-horse-2026!"
    response = client.post(form_url, {"password1": new_password, "password2": new_password}, REMOTE_ADDR=OWNER)
    assert response.status_code == 302 and logged_in(client)  # ACCOUNT_LOGIN_ON_PASSWORD_RESET

    client.logout()
    response = attempt(client, victim.email, new_password, "192.0.2.200")
    assert response.status_code == 302 and logged_in(client)


def test_the_locks_hold_in_redis_the_production_cache(client, victim, redis_url):
    """The same attack against Redis (shared by every gunicorn worker), not the in-process cache."""
    import redis

    prefix = f"test-lockout-{uuid.uuid4().hex}"
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    caches["default"]["KEY_PREFIX"] = prefix
    try:
        with override_settings(CACHES=caches):
            answers = [lock_of(attempt(client, victim.email, "guess", ATTACKER)) for _ in range(5)]
            assert answers == [None, None, None, None, "client"]
            assert lock_of(attempt(client, victim.email, PASSWORD, ATTACKER)) == "client"
            assert attempt(client, victim.email, PASSWORD, OWNER).status_code == 302
            keys = redis.Redis.from_url(redis_url).keys(f"{prefix}:*login:client:lock:*")
            assert len(keys) == 1 and 0 < redis.Redis.from_url(redis_url).ttl(keys[0]) <= 300
    finally:
        connection = redis.Redis.from_url(redis_url)
        for key in connection.scan_iter(f"{prefix}:*"):
            connection.delete(key)
        cache.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_lock_page_on_a_phone(browser, live_server):
    """In Chromium, on a phone, in Chinese: the fifth wrong password shows the lock page."""
    from tests.browser_helpers import new_page, shot

    user = UserFactory(email="phone-owner@example.com")
    page = new_page(browser, live_server.url)
    page.goto(LOGIN)
    for _ in range(5):
        page.fill("input[name=login]", user.email)
        page.fill("input[name=password]", "wrong-guess")
        page.locator('main form button[type="submit"]').first.click()
        page.wait_for_load_state()
        if page.locator('[data-testid="login-locked"]').count():
            break
    locked = page.locator('[data-testid="login-locked"]')
    locked.wait_for(state="visible")
    assert page.locator("main h1").inner_text().strip() == "登录已暂时锁定"
    assert page.locator('[data-testid="lock-wait"]').inner_text().strip() == "请在 5 分钟后重试。"
    reset = page.locator('[data-testid="lock-reset-password"]')
    assert reset.is_visible()
    box = reset.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]  # no sideways scroll
    shot(page, "login-locked-phone-zh")
    reset.click()
    page.wait_for_url(re.compile(r"/accounts/password/reset/$"))
    assert not page.js_errors, page.js_errors
    page.context.close()


def test_a_lock_refusing_a_staff_account_is_audited(client, clock, settings):
    """Issue 13: the audit log records staff logins and failed ones, the lock's refusals too."""
    from compliance.models import AuditEvent

    staff = UserFactory(email="ops@example.com", is_staff=True)
    for _ in range(4):
        attempt(client, staff.email, "guess", ATTACKER)
    assert lock_of(attempt(client, staff.email, "guess", ATTACKER)) == "client"
    assert lock_of(attempt(client, staff.email, PASSWORD, ATTACKER)) == "client"
    rows = AuditEvent.objects.filter(action="staff_login_locked", target=staff.email).order_by("id")
    assert [r.detail for r in rows] == ["locked by this failure", "locked: refused before the password was checked"]
    assert all(r.outcome == AuditEvent.Outcome.DENIED and r.ip == ATTACKER for r in rows)
    # A buyer's lock is in the login locks, not the audit log.
    for _ in range(5):
        attempt(client, "buyer@example.com", "guess", OWNER)
    assert not AuditEvent.objects.filter(action="staff_login_locked", target="buyer@example.com").exists()
