"""In real Chromium, at 390 px and 1366 px: the inviter's page (link, QR, invitations in each
state, the invitee masked), the printable poster, and a friend following the link to sign up
(issue 15). Screenshots referrals-*.png."""

import pytest
from django.utils import timezone

from referrals import services
from referrals.models import Referral, ReferralStatus
from tests.browser_helpers import PHONE, log_in, new_page, shot
from tests.builders import delivered_order
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 860}


@pytest.fixture
def inviter(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    user = UserFactory(email="host@example.com")
    code = services.invite_code_get(user=user).code
    people = [UserFactory(email=e) for e in ("alice@example.com", "bob@example.cn", "carol@example.com")]
    for n, person in enumerate(people):
        services.referral_record(invitee=person, code=code, ip=f"198.51.100.{n + 1}", device="")
    # alice: rewarded (her first order delivered, its window closed); bob: waiting on the window.
    for person in people[:2]:
        delivered_order(person, quantity=1)
    services.referrals_process_due()
    Referral.objects.filter(invitee=people[0]).update(window_closes_at=timezone.now())
    services.referrals_process_due()
    assert Referral.objects.get(invitee=people[0]).status == ReferralStatus.REWARDED
    assert Referral.objects.get(invitee=people[1]).status == ReferralStatus.QUALIFIED
    return user, code


def test_the_invitation_page_and_poster_at_phone_and_desktop_widths(browser, live_server, inviter):
    user, code = inviter
    for name, viewport in (("phone", PHONE), ("desktop", WIDE)):
        page = log_in(browser, live_server, user, viewport=viewport)
        page.goto("/accounts/invite/")
        link = page.locator("[data-testid=invite-link]")
        assert link.input_value().endswith(f"/r/{code}/")
        assert page.locator("[data-testid=invite-qr] svg").is_visible()
        listed = page.locator("[data-testid=invite-list]").inner_text()
        assert "a***@example.com" in listed and "alice" not in listed
        assert "Rewarded" in listed or "已奖励" in listed
        assert "¥5.00" in page.locator("[data-testid=invite-earned]").inner_text()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"the page scrolls sideways at {viewport['width']} px"
        shot(page, f"referrals-01-invite-{name}")
        page.locator("[data-testid=invite-poster]").click()
        page.wait_for_url("**/accounts/invite/poster/")
        assert page.locator("[data-testid=poster-qr] svg").is_visible()
        assert page.locator("[data-testid=poster-link]").inner_text().endswith(f"/r/{code}/")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        shot(page, f"referrals-02-poster-{name}")
        assert not page.js_errors, page.js_errors
        page.close()


def test_a_friend_follows_the_link_and_signs_up(browser, live_server, inviter):
    user, code = inviter
    page = new_page(browser, live_server.url, viewport=PHONE)
    page.goto(f"/r/{code}/")
    page.wait_for_url("**/accounts/signup/")
    page.fill("input[name=email]", "dave@example.com")
    page.fill("input[name=password1]", "a-Long-pass-123")
    page.fill("input[name=password2]", "a-Long-pass-123")
    page.locator('main form button[type="submit"]').first.click()
    page.wait_for_url(lambda url: "/signup" not in url)
    referral = Referral.objects.get(invitee__email="dave@example.com")
    assert referral.inviter == user and referral.status == ReferralStatus.PENDING
    page.close()
