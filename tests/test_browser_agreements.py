"""In real Chromium, at 390 px and 1366 px: the notice of an upcoming agreement version on every
page, the sign-up's acceptance box, and the accept page a member is sent to when a version they
have not accepted is in force (legal). Screenshots agreements-*.png."""

import re

import pytest
from django.core.management import call_command
from django.utils import timezone

from legal.models import AgreementAcceptance, AgreementDocument, AgreementVersion
from tests.browser_helpers import PASSWORD, PHONE, new_page, shot
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 860}


@pytest.fixture
def agreements():
    call_command("seed_demo_legal")  # the four documents in force, a new user agreement in 10 days
    return AgreementVersion.objects.get(kind=AgreementDocument.USER, version="2026.2")


@pytest.mark.parametrize(("name", "viewport"), [("phone", PHONE), ("desktop", WIDE)])
def test_banner_sign_up_box_and_accept_page(browser, live_server, agreements, name, viewport):
    date = timezone.localtime(agreements.effective_at).strftime("%Y-%m-%d")
    page = new_page(browser, live_server.url, viewport=viewport)
    page.goto("/")
    banner = page.locator("[data-testid=legal-banner]")
    assert f"《用户协议》新版本将于 {date} 生效" in banner.inner_text()
    assert page.locator("[data-testid=footer-legal] a").count() == 5  # four documents and the list
    shot(page, f"agreements-01-banner-{name}")
    banner.locator("a").click()
    page.wait_for_url("**/legal/user-agreement/2026.2/")
    assert "该版本尚未生效" in page.locator("[data-testid=legal-status]").inner_text()
    shot(page, f"agreements-02-upcoming-version-{name}")

    # Sign-up: without the box ticked it is refused; ticked, the acceptance is recorded.
    page.goto("/accounts/signup/")
    box = page.locator("input[name=accept_agreements]")
    assert "我已阅读并同意" in page.locator("label[for=id_accept_agreements]").inner_text()
    email = f"new-{name}@example.cn"
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", "Zh3ng-Quan!x")
    page.fill("input[name=password2]", "Zh3ng-Quan!x")
    shot(page, f"agreements-03-signup-{name}")
    page.locator('main form button[type="submit"]').first.click()
    # allauth's checkbox has no "required" attribute: the server refuses and says why.
    page.locator("text=请阅读并同意相关协议后再注册").wait_for()
    shot(page, f"agreements-03b-signup-refused-{name}")
    page.fill("input[name=password1]", "Zh3ng-Quan!x")
    page.fill("input[name=password2]", "Zh3ng-Quan!x")
    assert not AgreementAcceptance.objects.filter(user__email=email).exists()
    box.check()
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(re.compile(r"^(?!.*signup).*$"))
    assert AgreementAcceptance.objects.filter(user__email=email).count() == 2
    assert page.js_errors == []

    # A member who has not accepted the documents in force is asked on the next page, then sent back.
    member = UserFactory()
    page = new_page(browser, live_server.url, viewport=viewport)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", member.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(re.compile(r"/legal/accept/"))
    pending = page.locator("[data-testid=legal-pending]").all_inner_texts()
    assert len(pending) == 2 and any("用户协议" in p for p in pending) and any("隐私政策" in p for p in pending)
    shot(page, f"agreements-04-accept-{name}")
    page.goto("/orders/")
    page.wait_for_url(re.compile(r"/legal/accept/\?next=%2Forders%2F"))
    page.locator("[data-testid=legal-accept-box]").check()
    page.locator("[data-testid=legal-accept-submit]").click()
    page.wait_for_url(re.compile(r"/orders/$"))
    assert AgreementAcceptance.objects.filter(user=member).count() == 2
    assert page.js_errors == []


@pytest.mark.parametrize(("name", "viewport"), [("phone", PHONE), ("desktop", WIDE)])
def test_closing_the_account_from_the_profile_page(browser, live_server, name, viewport):
    member = UserFactory()
    page = new_page(browser, live_server.url, viewport=viewport)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", member.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(live_server.url + "/")
    page.goto("/accounts/profile/")
    page.locator("[data-testid=profile-close-account]").click()
    page.wait_for_url("**/accounts/close/")
    page.fill("[data-testid=account-close-password]", "wrong-password")
    page.locator("[data-testid=account-close-submit]").click()
    page.locator("text=密码不正确").wait_for()
    page.fill("[data-testid=account-close-password]", PASSWORD)
    shot(page, f"agreements-05-close-account-{name}")
    page.locator("[data-testid=account-close-submit]").click()
    page.wait_for_url(live_server.url + "/")
    assert "您的账号已注销" in page.locator("main").inner_text()
    member.refresh_from_db()
    assert not member.is_active and member.email == f"closed-{member.pk}@closed.invalid"
    assert page.js_errors == []
