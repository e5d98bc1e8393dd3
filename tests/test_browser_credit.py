"""In real Chromium at phone width: a restricted buyer's profile (level, limits, the events behind
it, the appeal link) and the checkout's refusal in Chinese. Screenshots credit-*.png."""

from datetime import timedelta
from decimal import Decimal
from importlib import import_module

import pytest
from django.utils import timezone

from compliance.models import CreditEvent, CreditLevel, CreditOverride
from compliance.services import credit_event_record
from tests.browser_helpers import log_in, shot
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_restricted_buyer_sees_why_on_the_profile_and_at_checkout(browser, live_server):
    for values in import_module("compliance.migrations.0006_credit_rating").LEVELS:
        CreditLevel.objects.get_or_create(name=values["name"], defaults=values)
    buyer = UserFactory()
    for days in (3, 40):
        event = credit_event_record(user=buyer, kind=CreditEvent.Kind.NO_REASON_REFUND, reference=f"D{days:06d}")
        CreditEvent.objects.filter(pk=event.pk).update(at=timezone.now() - timedelta(days=days))
    CreditOverride.objects.create(
        user=buyer,
        level=CreditLevel.objects.get(name="Restricted"),
        reason="多次无理由退款",
        expires_at=timezone.now() + timedelta(days=7),
    )
    product = ProductFactory(price=Decimal("10.00"), name="Steam 钱包充值卡 100 元")
    add_stock(product, 5)

    page = log_in(browser, live_server, buyer)
    page.goto("/accounts/profile/")
    card = page.locator("#credit")
    text = card.inner_text()
    assert "受限" in text and "每单最多 1 件" in text and "只能使用账户余额支付" in text
    assert "无理由退款" in text and "D000003" in text
    assert card.get_by_role("link", name="对该等级提出申诉").count() == 1
    shot(page, "credit-01-profile-phone")

    page.goto(f"/orders/checkout/{product.slug}/")
    page.fill("input[name=quantity]", "2")
    page.get_by_test_id("place-order").click()
    page.wait_for_load_state()
    assert "您的账户信用等级为“受限”：每单最多 1 件" in page.content()
    shot(page, "credit-02-checkout-refused-phone")
    assert page.js_errors == []
