"""Staff accounts (issue 13): a second factor before admin, shorter sessions, an audit trail.

With ``STAFF_MFA_REQUIRED`` on (production's setting, which refuses to start without it, see
the last tests), a staff member who signed in with a password alone reaches nothing but the
pages that set up or ask for a second factor: admin is refused. The TOTP codes are computed here
from the secret (RFC 6238), as a phone would, and go through allauth's real verification.
"""

import base64
import hashlib
import hmac
import re
import struct
import time

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP
from django.contrib.auth.models import Permission
from django.test import override_settings

from compliance.models import AuditEvent
from marketplace import crypto
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
LOGIN = "/accounts/login/"
STAFF_MFA = override_settings(STAFF_MFA_REQUIRED=True)


def totp(secret: str, offset: int = 0) -> str:
    """The code an authenticator app shows now (offset: 30-second steps later)."""
    counter = int(time.time()) // 30 + offset
    digest = hmac.new(base64.b32decode(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    start = digest[-1] & 0x0F
    value = (struct.unpack(">I", digest[start : start + 4])[0] & 0x7FFFFFFF) % 10**6
    return f"{value:06d}"


def make_staff(email="ops@example.com", **extra):
    user = UserFactory(email=email, is_staff=True, **extra)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def with_totp(user):
    TOTP.activate(user, SECRET)
    return user


def audits(action, outcome=None):
    qs = AuditEvent.objects.filter(action=action)
    return qs.filter(outcome=outcome) if outcome else qs


def password_login(client, user):
    return client.post(LOGIN, {"login": user.email, "password": PASSWORD})


def reauthenticate(client):
    """allauth asks for the password again before two-factor settings change (within 5 min)."""
    response = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:2000]


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- Enforcement --------------------------------------------------------------------------


@STAFF_MFA
def test_admin_login_without_a_second_factor_is_refused(client):
    """The issue's test: a staff member with a password only cannot reach admin."""
    staff = make_staff(is_superuser=True)
    response = password_login(client, staff)
    assert response.status_code == 302 and logged_in(client)  # the password was right

    for path in ("/admin/", "/admin/login/", "/admin/orders/order/", "/"):
        refused = client.get(path)
        assert refused.status_code == 403, path
        assert 'data-testid="staff-mfa-required" data-state="setup"' in refused.content.decode()
    assert audits("staff_mfa_required", AuditEvent.Outcome.DENIED).filter(target=staff.email).count() == 4
    # What it may reach: the pages that set up a second factor, and logging out.
    assert client.get("/accounts/2fa/").status_code == 200
    reauthenticate(client)
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200


@STAFF_MFA
def test_staff_with_an_authenticator_must_pass_it_at_login(client):
    staff = with_totp(make_staff(is_superuser=True))
    response = password_login(client, staff)
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/authenticate/"
    assert not logged_in(client)  # the password alone signs nobody in
    assert client.get("/admin/").status_code == 302  # to the login page

    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000" if totp(SECRET) != "000000" else "111111"})
    assert wrong.status_code == 200 and not logged_in(client)
    assert audits("staff_mfa", AuditEvent.Outcome.DENIED).filter(target=staff.email).exists()

    response = client.post("/accounts/2fa/authenticate/", {"code": totp(SECRET)})
    assert response.status_code == 302 and logged_in(client)
    assert client.get("/admin/").status_code == 200
    login = audits("staff_login", AuditEvent.Outcome.ALLOWED).get(target=staff.email)
    assert login.actor == staff and "mfa" in login.detail and "password" in login.detail


@STAFF_MFA
def test_a_session_without_the_second_factor_is_asked_to_confirm(client):
    """Signed in some other way (here: directly) while an authenticator exists: confirm first."""
    staff = with_totp(make_staff(is_superuser=True))
    client.force_login(staff)
    refused = client.get("/admin/")
    assert refused.status_code == 403
    assert 'data-state="confirm"' in refused.content.decode()
    assert "/accounts/2fa/reauthenticate/?next=/admin/" in refused.content.decode()

    response = client.post("/accounts/2fa/reauthenticate/?next=/admin/", {"code": totp(SECRET)})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@STAFF_MFA
def test_codes_cannot_be_guessed_without_end(client):
    """allauth.mfa's "login_failed" limit (settings.ACCOUNT_RATE_LIMITS) holds for codes: after
    five tries in five minutes even the right code is refused."""
    staff = with_totp(make_staff())
    password_login(client, staff)
    right = totp(SECRET)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for _ in range(5):
        client.post("/accounts/2fa/authenticate/", {"code": wrong})
    response = client.post("/accounts/2fa/authenticate/", {"code": right})
    assert not logged_in(client)
    assert "登录失败次数过多" in response.content.decode()


@STAFF_MFA
def test_a_few_wrong_codes_do_not_lock_the_owner_out(client):
    """The control for the test above: four wrong codes, then the right one signs in."""
    staff = with_totp(make_staff())
    password_login(client, staff)
    right = totp(SECRET)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for _ in range(4):
        client.post("/accounts/2fa/authenticate/", {"code": wrong})
    client.post("/accounts/2fa/authenticate/", {"code": right})
    assert logged_in(client)


@STAFF_MFA
@pytest.mark.django_db(transaction=True)  # allauth announces the activation on commit, in the request
def test_setting_up_an_authenticator_lets_the_staff_member_in(client):
    staff = make_staff(is_superuser=True)
    password_login(client, staff)
    reauthenticate(client)
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', page.content.decode())
    secret = secret or re.search(r'value="([A-Z2-7]{32})"', page.content.decode())
    assert secret, "the activation page shows the secret to type into an app"
    response = client.post("/accounts/2fa/totp/activate/", {"code": totp(secret.group(1))})
    assert response.status_code == 302

    authenticator = Authenticator.objects.get(user=staff, type=Authenticator.Type.TOTP)
    stored = authenticator.data["secret"]
    assert stored != secret.group(1) and crypto.decrypt(stored) == secret.group(1)  # encrypted at rest
    assert audits("mfa_added").filter(target=staff.email, detail__startswith="totp").exists()
    assert client.get("/admin/").status_code == 200  # the activation took a valid code


@STAFF_MFA
def test_staff_cannot_remove_the_authenticator_admin_needs(client):
    staff = with_totp(make_staff())
    password_login(client, staff)
    client.post("/accounts/2fa/authenticate/", {"code": totp(SECRET)})
    reauthenticate(client)
    response = client.post("/accounts/2fa/totp/deactivate/")
    assert response.status_code == 200  # the form again, with allauth's "cannot deactivate"
    assert Authenticator.objects.filter(user=staff, type=Authenticator.Type.TOTP).exists()
    assert not audits("mfa_removed").exists()


def test_buyers_may_remove_theirs_and_it_is_audited(client):
    buyer = UserFactory(email="buyer@example.com")
    EmailAddress.objects.create(user=buyer, email=buyer.email, verified=True, primary=True)
    with_totp(buyer)
    password_login(client, buyer)
    client.post("/accounts/2fa/authenticate/", {"code": totp(SECRET)})
    assert logged_in(client)
    reauthenticate(client)
    assert client.post("/accounts/2fa/totp/deactivate/").status_code == 302
    assert not Authenticator.objects.filter(user=buyer, type=Authenticator.Type.TOTP).exists()
    assert audits("mfa_removed").filter(target=buyer.email, detail__startswith="totp").exists()


@STAFF_MFA
def test_an_administrator_resets_a_colleagues_two_factor(client):
    """Lost phone and recovery codes: a colleague with the permission resets it, audited."""
    colleague = with_totp(make_staff(email="lost@example.com"))
    admin = with_totp(make_staff(email="boss@example.com"))
    admin.user_permissions.add(
        Permission.objects.get(codename="delete_authenticator"), Permission.objects.get(codename="view_authenticator")
    )
    password_login(client, admin)
    client.post("/accounts/2fa/authenticate/", {"code": totp(SECRET)})
    ids = list(Authenticator.objects.filter(user=colleague).values_list("pk", flat=True))
    response = client.post(
        "/admin/mfa/authenticator/", {"action": "reset_two_factor", "_selected_action": ids}, follow=True
    )
    assert response.status_code == 200
    assert not Authenticator.objects.filter(user=colleague).exists()
    event = audits("mfa_reset_by_staff").get(target=colleague.email)
    assert event.actor == admin and "totp" in event.detail
    assert Authenticator.objects.filter(user=admin).exists()


@STAFF_MFA
def test_the_admin_shows_no_secret(client):
    staff = with_totp(make_staff(is_superuser=True))
    password_login(client, staff)
    client.post("/accounts/2fa/authenticate/", {"code": totp(SECRET)})
    authenticator = Authenticator.objects.get(user=staff)
    page = client.get(f"/admin/mfa/authenticator/{authenticator.pk}/change/").content.decode()
    assert authenticator.data["secret"] not in page and SECRET not in page


def test_buyers_are_not_asked_for_a_second_factor(client):
    with override_settings(STAFF_MFA_REQUIRED=True):
        buyer = UserFactory(email="plain@example.com")
        password_login(client, buyer)
        assert client.get("/").status_code == 200


# --- Audit of sign-ins --------------------------------------------------------------------


def test_failed_staff_logins_are_audited_and_buyers_are_not(client):
    staff = make_staff()
    buyer = UserFactory(email="someone@example.com")
    client.post(LOGIN, {"login": staff.email, "password": "wrong-password"}, REMOTE_ADDR="198.51.100.9")
    client.post(LOGIN, {"login": buyer.email, "password": "wrong-password"})
    denied = audits("staff_login", AuditEvent.Outcome.DENIED)
    assert [e.target for e in denied] == [staff.email]
    assert denied[0].ip == "198.51.100.9" and "password" in denied[0].detail


def test_staff_login_without_mfa_requirement_is_audited_with_its_factors(client):
    staff = make_staff()
    password_login(client, staff)
    event = audits("staff_login", AuditEvent.Outcome.ALLOWED).get()
    assert event.detail == "factors: password"
    buyer = UserFactory(email="b2@example.com")
    client.logout()
    password_login(client, buyer)
    assert audits("staff_login").count() == 1


# --- Staff sessions -----------------------------------------------------------------------


@override_settings(STAFF_SESSION_MINUTES=30, STAFF_SESSION_MAX_HOURS=10)
def test_staff_sessions_end_after_idle_minutes(client, clock):
    staff = make_staff(is_superuser=True)
    password_login(client, staff)
    assert client.session.get_expiry_age() == 30 * 60  # the cookie too, not two weeks
    buyer_client = client.__class__()
    password_login(buyer_client, UserFactory(email="long@example.com"))
    assert buyer_client.session.get_expiry_age() > 24 * 3600

    clock.now += 29 * 60
    assert client.get("/admin/").status_code == 200  # activity keeps it alive
    clock.now += 29 * 60
    assert client.get("/admin/").status_code == 200
    clock.now += 31 * 60
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not logged_in(client)
    assert audits("staff_session_end").get(target=staff.email).detail == "idle over 30 min"


@override_settings(STAFF_SESSION_MINUTES=30, STAFF_SESSION_MAX_HOURS=2)
def test_staff_sessions_end_after_max_hours_whatever_the_activity(client, clock):
    staff = make_staff(is_superuser=True)
    password_login(client, staff)
    for _ in range(4):
        clock.now += 25 * 60
        assert client.get("/admin/").status_code == 200
    clock.now += 25 * 60  # 125 minutes after signing in
    assert client.get("/admin/").status_code == 302
    assert not logged_in(client)
    assert audits("staff_session_end").get().detail == "longer than 2 h"


def test_key_rotation_re_encrypts_two_factor_secrets(settings):
    """``rotate_card_keys`` covers the TOTP secrets too: after it, the old key can be dropped."""
    from io import StringIO

    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CARD_CODE_KEYS = [old]
    crypto.reset_key_cache()
    try:
        staff = with_totp(make_staff())
        settings.CARD_CODE_KEYS = [new, old]
        crypto.reset_key_cache()
        out = StringIO()
        call_command("rotate_card_keys", stdout=out)
        assert "mfa.Authenticator: 1 rows re-encrypted" in out.getvalue()
        settings.CARD_CODE_KEYS = [new]
        crypto.reset_key_cache()
        stored = Authenticator.objects.get(user=staff).data["secret"]
        assert crypto.decrypt(stored) == SECRET
    finally:
        crypto.reset_key_cache()
