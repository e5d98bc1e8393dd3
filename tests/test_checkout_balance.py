"""The balance offered at the checkout and on the "choose how to pay" page: with its figure,
disabled with the reason and a recharge link when it does not cover the total; each member sees
their own figure (the kept part is keyed by it); the confirmation still refuses a stale choice."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from orders.models import Order
from orders.services.orders import order_place
from orders.templatetags.checkout_page import checkout_parts_forget
from tests.api_helpers import top_up
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english", "sandbox")]


@pytest.fixture
def sandbox(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True


@pytest.fixture
def product(db):
    p = ProductFactory(price=Decimal("50.00"), face_value=Decimal("50.00"))
    add_stock(p, 5)
    return p


def balance_option(html: str) -> str:
    """The balance's label and what follows it up to the next option (or the fieldset's end)."""
    start = html.index('data-testid="channel-balance"')
    end = html.index("</fieldset>", start)
    return html[start:end]


def radios(html: str) -> dict[str, str]:
    return {code: state for code, state in re.findall(r'name="channel" value="(\w+)" ?(checked|disabled)?', html)}


def checkout(client: Client, product, quantity: int = 1) -> str:
    response = client.get(f"/orders/checkout/{product.slug}/?quantity={quantity}")
    assert response.status_code == 200
    return response.content.decode()


def test_a_balance_below_the_total_is_shown_disabled_with_the_reason_and_a_recharge_link(product):
    checkout_parts_forget()
    poor, rich = UserFactory(), UserFactory()
    top_up(rich, Decimal("120.00"))
    client = Client()

    client.force_login(poor)
    html = checkout(client, product)
    option = balance_option(html)
    assert "Available ¥0.00" in option
    assert radios(html)["balance"] == "disabled" and radios(html)["sandbox"] == "checked"
    assert 'data-testid="channel-balance-short">not enough for this total' in option
    assert 'data-testid="channel-balance-short" hidden' not in option
    assert 'href="/wallet/" data-testid="channel-balance-recharge"' in option
    # Chosen before (the form sent back): still not checked while it cannot pay.
    again = client.get(f"/orders/checkout/{product.slug}/?quantity=1&channel=balance").content.decode()
    assert radios(again)["balance"] == "disabled" and radios(again)["sandbox"] == "checked"

    # Another member, right after: their own figure, not the first one's kept markup.
    client.force_login(rich)
    html = checkout(client, product)
    assert "Available ¥120.00" in balance_option(html) and radios(html)["balance"] == ""
    assert "confirmed on the next page" in balance_option(html)
    # Three codes cost 150.00: more than the 120.00 this member has.
    html = checkout(client, product, quantity=3)
    assert "Available ¥120.00" in balance_option(html) and radios(html)["balance"] == "disabled"

    client.force_login(poor)
    assert "Available ¥0.00" in balance_option(checkout(client, product))


def test_the_choose_page_says_why_and_the_confirmation_refuses_a_stale_choice(product):
    member = UserFactory()
    top_up(member, Decimal("60.00"))
    order = order_place(buyer=member, product_id=product.pk, quantity=2, idempotency_key="k2")  # 100.00
    client = Client()
    client.force_login(member)
    html = client.get(f"/pay/{order.number}/").content.decode()
    button = html[
        html.index('data-testid="pay-balance"') : html.index("</form>", html.index('data-testid="pay-balance"'))
    ]
    assert "disabled" in button.split(">", 1)[0]
    assert "Available ¥60.00" in button and "not enough for this order" in button
    assert 'data-testid="pay-balance-recharge"' in button
    # The page can be stale (or the form forged): paying from the balance is refused all the same.
    client.post(f"/pay/{order.number}/balance/")
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING
