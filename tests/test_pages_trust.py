"""Pages a customer trusts (issue 12): the live payment channels only, no fake discount off
face value, the refund offer updated after a reveal, the balance payment confirmed, a reissue
shown on the order page and in its history, and a hand-edited checkout quantity that never
shows a total that cannot be bought."""

import re
from decimal import Decimal

import pytest

from aftersales.models import Kind
from aftersales.services import disputes
from aftersales.services.tickets import ticket_open
from orders.models import Order, OrderStatusChange
from orders.services.orders import order_place
from payments.models import Payment
from payments.services import payments
from tests.builders import chain_of, codes_of, delivered_order, place, wallet_balance
from tests.factories import ProductFactory, add_stock, storefront_create

D = Decimal
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def channels(html: str) -> set[str]:
    """The channels a page names: the choice on a checkout (``payments/_channel_choice.html``),
    else the line of ``payments/_live_channels.html``."""
    choice = re.search(r'data-testid="channel-choice">(.*?)</fieldset>', html, re.S)
    if choice:
        found = set(re.findall(r'data-testid="channel-(\w+)"', choice.group(1)))
        return found or set(re.findall(r'data-channel="(\w+)"', choice.group(1)))
    block = re.search(r'data-testid="pay-channels">(.*?)</span>\s*</p>', html, re.S)
    assert block, "the page names no payment channels"
    return set(re.findall(r'data-channel="(\w+)"', block.group(1)))


@pytest.fixture
def shop(level):
    agent = chain_of(1, level)[0]
    return storefront_create(agent=agent, slug="trusty", name="Trusty", default_markup_value=D(20))


# --- 1. The live payment channels -----------------------------------------------------------


def test_product_pages_and_checkout_name_only_live_channels(client, settings, buyer, shop):
    product = ProductFactory()
    add_stock(product, 3)
    settings.PAYMENTS_SANDBOX_ENABLED = True
    settings.ALIPAY_APP_ID, settings.ALIPAY_SELLER_ID = "2021000000000000", "2088000000000000"
    settings.ALIPAY_APP_PRIVATE_KEY, settings.ALIPAY_PUBLIC_KEY = "key", "key"
    settings.WECHATPAY_MCHID = ""  # WeChat Pay not configured
    pages = {
        "product": product.get_absolute_url(),
        "checkout": f"/orders/checkout/{product.slug}/",
        "storefront": f"/s/{shop.slug}/p/{product.slug}/",
    }

    anonymous = client.get(pages["product"]).content.decode()
    assert channels(anonymous) == {"sandbox", "alipay"}  # a visitor has no balance
    client.force_login(buyer)
    for name, url in pages.items():
        html = client.get(url).content.decode()
        assert channels(html) == {"sandbox", "alipay", "balance"}, name
        assert "WeChat Pay" not in html, name  # no fixed sentence naming every channel

    settings.ALIPAY_APP_ID = ""  # Alipay switched off: gone from every page at once
    for name, url in pages.items():
        html = client.get(url).content.decode()
        assert channels(html) == {"sandbox", "balance"}, name
        assert "Alipay" not in html, name

    settings.PAYMENTS_SANDBOX_ENABLED = False
    client.logout()
    html = client.get(pages["product"]).content.decode()
    assert channels(html) == {"none"} and "No payment channel is available right now." in html


# --- 2. Face value --------------------------------------------------------------------------


def face_value_parts(html: str) -> list[str]:
    return re.findall(r'data-testid="face-value"[^>]*>.*?</span>|data-testid="face-value">[^<]*</small>', html, re.S)


def struck(html: str) -> bool:
    """Whether the product summary strikes its face value through (shown as a discount)."""
    part = re.search(r'data-testid="face-value">(.*?)</span></span>', html, re.S)
    assert part, "the face value is shown"
    return "line-through" in part.group(1)


def test_a_price_above_face_value_is_never_a_discount(client, shop):
    above = ProductFactory(price=D("97.00"), face_value=D("90.00"), name="Above face")  # shop: 116.40
    below = ProductFactory(price=D("97.00"), face_value=D("150.00"), name="Below face")  # shop: 116.40
    add_stock(above, 2)
    add_stock(below, 2)

    assert not struck(client.get(above.get_absolute_url()).content.decode())
    assert struck(client.get(below.get_absolute_url()).content.decode())
    assert not struck(client.get(f"/s/{shop.slug}/p/{above.slug}/").content.decode())
    assert struck(client.get(f"/s/{shop.slug}/p/{below.slug}/").content.decode())

    # The product cards (the platform's category page and the storefront's home).
    for url in (above.category.get_absolute_url(), f"/s/{shop.slug}/?q=Above"):
        html = client.get(url).content.decode()
        assert "Above face" in html and 'data-testid="face-value"' not in html, url
    for url in (below.category.get_absolute_url(), f"/s/{shop.slug}/?q=Below"):
        html = client.get(url).content.decode()
        card = re.search(r'<small class="[^"]*line-through[^"]*" data-testid="face-value">([^<]*)</small>', html)
        assert card and "150.00" in card.group(1), url


# --- 3. A reveal updates the refund offer ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_reveal_answers_with_the_refund_offer_as_it_stands(client, buyer):
    order = delivered_order(buyer, quantity=2)
    first, second = codes_of(order)
    client.force_login(buyer)
    page = client.get(order.get_absolute_url()).content.decode()
    assert 'id="reveal-confirm"' in page and 'data-confirm-modal="#reveal-confirm"' in page  # confirmed first
    assert 'data-testid="refund-entry"' in page and 'data-count="2"' in page

    one = client.post(f"/orders/{order.number}/codes/{first.pk}/reveal/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="revealed-secret"' in one
    assert 'id="refund-entry-slot" hx-swap-oob="true"' in one
    assert 'data-count="1"' in one and "1 unrevealed code can be refunded now." in one

    two = client.post(f"/orders/{order.number}/codes/{second.pk}/reveal/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="refund-entry-slot" hx-swap-oob="true"' in two
    assert 'data-testid="refund-entry"' not in two  # nothing left to refund without a reason: the offer goes
    assert 'data-testid="refund-entry"' not in client.get(order.get_absolute_url()).content.decode()


# --- 4. Paying from the balance is confirmed ------------------------------------------------


def fund(user, amount: str) -> None:
    recharge = payments.recharge_create(user=user, amount=amount)
    payments.sandbox_pay(order_number=recharge.number)


@pytest.mark.django_db(transaction=True)
def test_balance_payment_has_a_confirmation_and_a_double_post_pays_once(client, buyer):
    fund(buyer, "100")
    product = ProductFactory(price=D("30.00"))
    add_stock(product, 2)
    order = place(buyer, product)
    client.force_login(buyer)

    choose = client.get(f"/pay/{order.number}/").content.decode()
    assert re.search(r'<form method="get" action="/pay/\w+/balance/">', choose)  # the button only asks
    confirm = client.get(f"/pay/{order.number}/balance/")
    html = confirm.content.decode()
    assert confirm.status_code == 200
    assert re.search(r'data-testid="balance-before">¥100.00<', html)
    assert re.search(r'data-testid="amount-due">−¥30.00<', html)
    assert re.search(r'data-testid="balance-after">¥70.00<', html)
    assert 'data-testid="pay-balance-confirm"' in html
    assert not Payment.objects.filter(order=order).exists() and wallet_balance(buyer) == D("100.00")

    first = client.post(f"/pay/{order.number}/balance/")
    again = client.post(f"/pay/{order.number}/balance/", follow=True)  # a double click
    assert first.status_code == 302 and first["Location"] == order.get_absolute_url()
    assert again.redirect_chain[0][0] == order.get_absolute_url()
    assert "can no longer be paid" not in again.content.decode()
    assert Payment.objects.filter(order=order).count() == 1 and wallet_balance(buyer) == D("70.00")
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    # Once paid, the confirmation is gone: it leads to the order.
    assert client.get(f"/pay/{order.number}/balance/")["Location"] == order.get_absolute_url()


def test_balance_confirmation_without_enough_balance_offers_no_payment(client, buyer):
    fund(buyer, "10")
    product = ProductFactory(price=D("30.00"))
    add_stock(product, 1)
    order = place(buyer, product)
    client.force_login(buyer)
    html = client.get(f"/pay/{order.number}/balance/").content.decode()
    assert 'data-testid="balance-short"' in html and 'data-testid="pay-balance-confirm"' not in html
    assert re.search(r'data-testid="balance-after">-¥20.00<', html)


# --- 5. A reissue on the order page and in its history ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_reissue_shows_its_outcome_the_replacement_and_a_history_row(client, buyer, staff):
    order = delivered_order(buyer, quantity=3, spare=1)
    first, old, third = codes_of(order)
    ticket = ticket_open(
        user=buyer, kind=Kind.INVALID, subject="Invalid", body="Already used", order=order, order_code=old
    )
    history_before = order.history.count()

    reissue = disputes.dispute_reissue(ticket=ticket, order_code=old, staff=staff, reason="supplier confirmed")

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED  # the status does not move
    row = OrderStatusChange.objects.filter(order=order).order_by("-id").first()
    assert order.history.count() == history_before + 1
    assert (row.from_status, row.to_status, row.actor) == ("delivered", "delivered", staff)
    client.force_login(buyer)
    html = client.get(order.get_absolute_url()).content.decode()
    assert 'data-testid="reissue-outcome"' in html and "code #2 was marked defective" in html
    # The replacement takes the place of code #2, and says so.
    slots = re.findall(
        r'<span class="code-index[^"]*">(\d+)</span>\s*<div class="flex-grow-1 min-w-0" id="slot-(\d+)"', html
    )
    assert slots == [("1", str(first.pk)), ("2", str(reissue.new_code_id)), ("3", str(third.pk))]
    assert html.count('data-testid="replacement-badge"') == 1 and "Replacement for code #2" in html
    assert 'data-testid="history-reissue"' in html and "Code #2 replaced (reissue)" in html


# --- 6. A hand-edited checkout quantity -----------------------------------------------------


def checkout_shows(client, product, raw) -> tuple[int, str, str]:
    html = client.get(f"/orders/checkout/{product.slug}/", {"quantity": raw}).content.decode()
    field = re.search(
        r'id="quantity" name="quantity" type="number" inputmode="numeric" value="(\d+)" min="\d+" max="(\d+)"', html
    )
    total = re.search(r'data-testid="estimated-total">([^<]*)<', html)
    assert field and total
    return int(field.group(1)), field.group(2), total.group(1)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("999", 4), ("-5", 2), ("abc", 2), ("", 2), ("3", 3), ("1", 2), ("4.5", 2), ("9" * 5000, 2), ("0x10", 2)],
)
def test_a_hand_edited_quantity_shows_a_total_that_can_be_bought(client, buyer, raw, shown):
    product = ProductFactory(price=D("12.50"), min_per_order=2, max_per_order=10)
    add_stock(product, 4)  # fewer than the maximum per order
    client.force_login(buyer)

    quantity, maximum, total = checkout_shows(client, product, raw)

    assert (quantity, maximum) == (shown, "4")
    assert total == f"¥{D('12.50') * shown:,.2f}"
    # What the page shows is what placing the order accepts and charges.
    order = order_place(
        buyer=buyer, product_id=product.pk, quantity=quantity, idempotency_key=f"k-{len(raw)}-{raw[:5]}"
    )
    assert f"¥{order.total:,.2f}" == total


def test_checkout_of_a_product_that_cannot_be_bought_offers_no_total_to_pay(client, buyer):
    product = ProductFactory(min_per_order=2)
    add_stock(product, 1)  # below the minimum: nothing can be bought
    client.force_login(buyer)
    html = client.get(f"/orders/checkout/{product.slug}/?quantity=1").content.decode()
    assert 'data-testid="cannot-buy"' in html
    assert re.search(r'data-testid="place-order" disabled', html)


def test_storefront_product_page_clamps_the_quantity_to_the_stock(client, buyer, shop):
    product = ProductFactory(price=D("10.00"))
    add_stock(product, 3)
    html = client.get(f"/s/{shop.slug}/p/{product.slug}/?quantity=999").content.decode()
    assert re.search(r'value="3" min="1" max="3"', html)
    assert 'data-testid="estimated-total">¥36.00<' in html  # 3 × 12.00 (the shop's 20% over 10.00)
