"""In real Chromium, at 390 px and 1366 px: restock alerts (issue 15). A guest leaves an email on
a sold-out product, confirms it by the emailed link; a member asks with one click on a
storefront's product page; stock is imported and both get their alert; the guest unsubscribes
from the next one through the link. Screenshots restock-*.png."""

import re
from decimal import Decimal

import pytest
from django.core import mail

from catalog import services as catalog_services
from catalog.models import RestockSubscription
from tests.browser_helpers import PHONE, log_in, new_page, shot
from tests.builders import chain_of
from tests.factories import ProductFactory, UserFactory, add_stock, storefront_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1366, "height": 860}


def link_in(message, kind: str) -> str:
    return re.search(rf"http://\S+/restock/{kind}/\S+/", message.body).group(0)


@pytest.mark.parametrize("name, viewport", [("phone", PHONE), ("desktop", WIDE)])
def test_guest_and_member_restock_alerts(browser, live_server, settings, level, name, viewport):
    settings.SITE_URL = live_server.url
    product = ProductFactory(name="腾讯Q币 100元", slug=f"qb-{name}", price=Decimal("98.00"))
    shop = storefront_create(
        agent=chain_of(1, level)[0], slug=f"star-{name}", name="星辰卡铺", default_markup_value=Decimal(5)
    )

    # A guest on the platform's product page: sold out, leaves an email.
    page = new_page(browser, live_server.url, viewport=viewport)
    page.goto(product.get_absolute_url())
    form = page.locator("[data-testid=restock]")
    assert "到货通知" in form.inner_text()
    shot(page, f"restock-01-sold-out-guest-{name}")
    page.fill("[data-testid=restock-email]", "Guest@Example.com")
    page.locator("[data-testid=restock-submit]").click()
    page.wait_for_url(re.compile(r"#restock$"))
    assert "确认链接" in page.locator(".alert-success").inner_text()
    shot(page, f"restock-02-confirm-sent-{name}")

    (confirmation,) = mail.outbox
    assert confirmation.subject == "请确认「腾讯Q币 100元」的到货通知"
    page.goto(link_in(confirmation, "confirm"))
    shot(page, f"restock-03-confirm-page-{name}")
    assert RestockSubscription.objects.get(email="guest@example.com").confirmed_at is None  # the GET wrote nothing
    page.locator("[data-testid=restock-confirm]").click()
    assert "已确认" in page.locator("[data-testid=restock-state]").inner_text()
    shot(page, f"restock-04-confirmed-{name}")

    # A member on the storefront's product page: one click.
    member = UserFactory(email=f"member-{name}@example.com")
    page = log_in(browser, live_server, member, viewport=viewport)
    page.goto(f"/s/{shop.slug}/p/{product.slug}/")
    page.locator("[data-testid=restock-submit]").click()
    page.wait_for_url(re.compile(r"#restock$"))
    assert member.email in page.locator("[data-testid=restock-subscribed]").inner_text()
    shot(page, f"restock-05-storefront-member-subscribed-{name}")

    # Stock arrives: each gets one alert, the member's linking back to the storefront.
    mail.outbox.clear()
    add_stock(product, 3)  # run at once, outside any test transaction: on_commit queues the task
    alerts = {m.to[0]: m for m in mail.outbox}
    assert sorted(alerts) == sorted(["guest@example.com", member.email]) and len(mail.outbox) == 2
    assert f"/s/{shop.slug}/p/{product.slug}/" in alerts[member.email].body
    html = alerts["guest@example.com"].alternatives[0][0]
    page.set_content(html)
    shot(page, f"restock-06-alert-email-{name}")

    # The guest's unsubscribe link, for the next subscription.
    again, _outcome = catalog_services.restock_subscribe(product=ProductFactory(), user=member)
    page.goto(live_server.url + f"/restock/unsubscribe/{again.token}/")
    shot(page, f"restock-07-unsubscribe-page-{name}")
    page.locator("[data-testid=restock-unsubscribe]").click()
    assert "已退订" in page.locator("[data-testid=restock-state]").inner_text()
    again.refresh_from_db()
    assert again.unsubscribed_at is not None
