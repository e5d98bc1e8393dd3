"""A staff member's first sign-in with two-factor required (issue 13), in Chromium: refused at
admin with a page that says what to do, an authenticator set up (the code computed from the
secret the page shows, as a phone would), then admin. Under the enforced CSP."""

import re

import pytest
from allauth.account.models import EmailAddress

from tests.browser_helpers import DESKTOP, log_in, shot
from tests.factories import UserFactory
from tests.test_staff_security import PASSWORD, totp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_sets_up_two_factor_before_admin(browser, live_server, settings):
    settings.STAFF_MFA_REQUIRED = True
    staff = UserFactory(email="ops@example.com", is_staff=True, is_superuser=True)
    EmailAddress.objects.create(user=staff, email=staff.email, verified=True, primary=True)

    page = log_in(browser, live_server, staff, viewport=DESKTOP)
    page.goto("/admin/")
    refused = page.locator('[data-testid="staff-mfa-required"]')
    assert refused.get_attribute("data-state") == "setup"
    shot(page, "staff-mfa-required")

    page.click('[data-testid="staff-mfa-setup"]')
    page.locator('a[href="/accounts/2fa/totp/activate/"]').first.click()
    if "/accounts/reauthenticate/" in page.url:  # allauth asks for the password again first
        page.fill("input[name=password]", PASSWORD)
        page.locator("form:has(input[name=password]) button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/accounts/2fa/totp/activate/"))
    secret = page.locator("#authenticator_secret").input_value()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert page.locator("img[src^='data:image/svg+xml']").first.is_visible()  # the QR code
    shot(page, "staff-mfa-activate")
    page.fill("input[name=code]", totp(secret))
    page.locator("form:has(input[name=code]) button[type=submit]").click()
    page.wait_for_url(lambda url: "/totp/activate/" not in url)  # on to the recovery codes
    shot(page, "staff-mfa-activated")

    page.goto("/admin/")
    assert page.locator("#site-name").is_visible()
    shot(page, "staff-admin-after-mfa")
    assert not page.js_errors, page.js_errors


def _virtual_security_key(page):
    """A security key for this page's browser: Chromium's virtual authenticator (DevTools'
    WebAuthn domain), which answers navigator.credentials like a real USB key would."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "usb",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]
    return cdp, authenticator


def test_staff_signs_in_to_admin_with_a_security_key(browser, live_server, settings):
    """WebAuthn end to end: a staff member registers a security key (allauth.mfa's page, its
    own scripts under the enforced CSP), signs out, signs in again with password and key, and
    reaches admin; the audit log has the key's registration and the logins."""
    from compliance.models import AuditEvent

    settings.STAFF_MFA_REQUIRED = True
    staff = UserFactory(email="keys@example.com", is_staff=True, is_superuser=True)
    EmailAddress.objects.create(user=staff, email=staff.email, verified=True, primary=True)

    page = log_in(browser, live_server, staff, viewport=DESKTOP)
    cdp, authenticator = _virtual_security_key(page)
    page.goto("/accounts/2fa/webauthn/add/")
    if "/accounts/reauthenticate/" in page.url:
        page.fill("input[name=password]", PASSWORD)
        page.locator("form:has(input[name=password]) button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/accounts/2fa/webauthn/add/"))
    page.fill("input[name=name]", "YubiKey")
    shot(page, "staff-webauthn-add")
    page.click("#mfa_webauthn_add")
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(credentials) == 1  # the key holds the credential; the server keeps its public half
    assert staff.authenticator_set.filter(type="webauthn").count() == 1

    page.goto("/accounts/logout/")
    page.locator("main form button[type=submit]").first.click()
    page.goto("/accounts/login/?next=/admin/")
    page.fill("input[name=login]", staff.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(re.compile(r".*/accounts/2fa/authenticate/"))
    shot(page, "staff-webauthn-authenticate")
    page.click("#mfa_webauthn_authenticate")
    page.wait_for_url(lambda url: "/2fa/authenticate/" not in url)
    page.goto("/admin/")
    assert page.locator("#site-name").is_visible()
    assert not page.js_errors, page.js_errors
    actions = set(AuditEvent.objects.filter(actor=staff).values_list("action", flat=True))
    assert {"staff_login", "mfa_added"} <= actions, actions
