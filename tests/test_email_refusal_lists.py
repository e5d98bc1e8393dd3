"""The buyer's lists say what the order page says of a refused address (``EmailRefusal``): the
member's orders list and the guest lookup's list of this browser's orders mark such an order
(a badge with words, opening the order page at its explanation), read in the list's own statement;
and a guest's after-sales card names the proof that still works when an emailed code cannot arrive.
"""

import re
from decimal import Decimal
from smtplib import SMTPRecipientsRefused

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import Order
from orders.services import guest as guest_services
from orders.services import orders as order_services
from orders.templatetags import order_rows
from tests.builders import place
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.test_guest_checkout import guest_post, pay_in_sandbox

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
UNKNOWN = (550, b"5.1.1 <x@example.net>: Recipient address rejected: User unknown")
FULL = (452, b"4.2.2 Mailbox full")


def refuse(order: Order, reply=UNKNOWN) -> None:
    """What the delivery run records when the mail server refuses the address (its own call)."""
    order_services.email_refusal_record(order=order, refused=SMTPRecipientsRefused({order.buyer_email: reply}))


def buy_as_guest(client: Client, product, password: str) -> Order:
    """A guest order placed and paid in ``client`` (the placing browser), delivered."""
    response = client.post(f"/orders/checkout/{product.slug}/", guest_post(password, quantity="1"))
    assert response.status_code == 302, response.content.decode()[:2000]
    order = Order.objects.get(number=response["Location"].split("/")[2])
    assert pay_in_sandbox(client, order.number).status_code == 302
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order


def statements(client: Client, path: str) -> tuple[int, str]:
    """The statements of a GET of ``path`` but the session's (kept in the database by the tests, in
    the cache in production: tests/test_page_costs.py's count), and its page."""
    with CaptureQueriesContext(connection) as run:
        response = client.get(path)
    assert response.status_code == 200
    found = [q["sql"] for q in run.captured_queries if '"django_session"' not in q["sql"]]
    return len(found), response.content.decode()


def marked(html: str) -> dict[str, str]:
    """Each marked row's order number -> its marker's data-permanent ("1" for good, "0" for now)."""
    rows = re.findall(r'data-number="(\w+)">(.*?)</a>', html, re.S)
    return {
        number: re.search(r'data-testid="row-email-refused" data-permanent="(\d)"', body).group(1)
        for number, body in rows
        if 'data-testid="row-email-refused"' in body
    }


def test_the_orders_list_marks_refused_orders_in_its_own_statements(client, settings):
    """Ten orders, four refused in ways the order page tells (two for good, two for now and not
    sent since) and one refused for now but sent since (not told): the list marks the four, and
    reads them with its rows: as many statements as with no refusal at all, three (the user, the
    count, the page: tests/test_page_costs.py's pin)."""
    buyer = UserFactory()
    product = ProductFactory(price=Decimal("10.00"))
    add_stock(product, 10)
    orders = [place(buyer, product) for _ in range(10)]
    Order.objects.filter(buyer=buyer).update(buyer_notified_at=timezone.now())
    client.force_login(buyer)
    client.get("/orders/")  # warm: the session, the compiled statements
    before, html = statements(client, "/orders/")
    assert marked(html) == {} and html.count('data-testid="order-row"') == 10

    refuse(orders[1])
    refuse(orders[4])
    Order.objects.filter(pk__in=[orders[2].pk, orders[7].pk]).update(buyer_notified_at=None)  # not sent since
    refuse(orders[2], FULL)
    refuse(orders[7], FULL)
    refuse(orders[9], FULL)  # refused for now, then sent at a later attempt (buyer_notified_at kept)
    order_rows.order_rows_forget()  # drawn anew: a first drawing reads nothing either
    after, html = statements(client, "/orders/")
    assert after == before == 3
    assert marked(html) == {orders[1].number: "1", orders[4].number: "1", orders[2].number: "0", orders[7].number: "0"}
    # The marked row opens the order page at the explanation; the others open it at its top.
    assert f'href="/orders/{orders[1].number}/#email-refused"' in html
    assert f'href="/orders/{orders[9].number}/"' in html and f'href="/orders/{orders[0].number}/"' in html
    assert "Email refused" in html and "Email not delivered" in html
    page = client.get(f"/orders/{orders[1].number}/").content.decode()
    assert 'id="email-refused"' in page  # where the row's link lands

    # Kept rows follow a refusal that comes later, and one that is no longer told.
    Order.objects.filter(pk=orders[2].pk).update(buyer_notified_at=timezone.now())
    refuse(orders[0])
    assert marked(client.get("/orders/").content.decode()) == {
        orders[0].number: "1",
        orders[1].number: "1",
        orders[4].number: "1",
        orders[7].number: "0",
    }


def test_another_buyers_refusal_marks_nothing_in_my_list(client):
    mine, theirs = UserFactory(), UserFactory()
    product = ProductFactory(price=Decimal("10.00"))
    add_stock(product, 2)
    my_order, their_order = place(mine, product), place(theirs, product)
    refuse(their_order)
    client.force_login(mine)
    html = client.get("/orders/").content.decode()
    assert my_order.number in html and marked(html) == {}


@pytest.fixture
def sandbox(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sandbox")
def test_the_guest_lookup_list_marks_refused_orders_in_its_own_statement():
    product = guest_product(3)
    browser = Client()
    bought = [buy_as_guest(browser, product, password="pw-123456") for _ in range(3)]
    browser.get("/orders/lookup/")
    before, html = statements(browser, "/orders/lookup/")
    assert html.count('data-testid="recent-order"') == 3 and marked(html) == {}

    refuse(bought[0])
    refuse(bought[2], FULL)  # delivered and its email sent: a temporary refusal since is not told
    Order.objects.filter(pk=bought[1].pk).update(buyer_notified_at=None)
    refuse(bought[1], FULL)
    after, html = statements(browser, "/orders/lookup/")
    assert after == before
    assert marked(html) == {bought[0].number: "1", bought[1].number: "0"}
    assert f'href="/orders/guest/{bought[0].number}/#email-refused"' in html


# --- the guest's after-sales card ------------------------------------------------------------------


def guest_product(stock: int):
    product = ProductFactory(price=Decimal("50.00"), face_value=Decimal("50.00"))
    add_stock(product, stock)
    return product


def link_holder(*orders: Order) -> Client:
    """A browser that opened the emailed link of ``orders``: it may view them, never proved or placed them."""
    holder = Client()
    for order in orders:
        holder.get(f"/orders/g/{guest_services.guest_link_token(number=order.number)}/")
    return holder


def card(client: Client, order: Order) -> str:
    html = client.get(f"/orders/guest/{order.number}/").content.decode()
    found = re.search(r'data-testid="guest-aftersales-locked" data-way="(\w[\w-]*)">(.*?)</div>', html, re.S)
    assert found, "the after-sales card asks for a proof"
    return found.group(1) + " " + " ".join(found.group(2).split())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sandbox")
def test_the_after_sales_card_names_the_proof_that_works_when_the_address_was_refused():
    product = guest_product(2)
    placing = Client()
    with_password = buy_as_guest(placing, product, password="pw-123456")
    without = buy_as_guest(placing, product, password="")
    holder = link_holder(with_password, without)

    # No refusal: either proof.
    assert card(holder, without).startswith("any ") and "(query password or emailed code)" in card(holder, without)

    refuse(with_password)
    refuse(without)
    # A query password: it, and no word of an emailed code as a way in.
    text = card(holder, with_password)
    assert text.startswith("password ") and "with the order's query password" in text
    assert "emailed code)" not in text and 'href="#guest-proof"' in text
    # None, but this browser placed the order: it may set one (orders.views.guest.password_set).
    text = card(placing, without)
    assert text.startswith("set-password ") and 'href="#email-refused"' in text
    assert 'data-testid="refused-password-form"' in placing.get(f"/orders/guest/{without.number}/").content.decode()
    # None, and not the placing browser: customer service, with what finds the order.
    text = card(holder, without)
    assert text.startswith("support ") and without.number in text and "Alipay or WeChat Pay bill" in text
    assert 'href="/support/new/"' in text
    # The server allows what each says, and no more: the holder may not set a password ...
    assert holder.post(f"/orders/guest/{without.number}/password/", {"query_password": "stolen-pw"}).status_code == 404
    # ... may not get a code emailed ...
    refused = holder.post(f"/orders/guest/{without.number}/code/send/", follow=True).content.decode()
    assert "the mail server refused it" in refused
    # ... and customer service's ticket asks for a login, then opens for any member, without the order.
    assert holder.get("/support/new/")["Location"].startswith("/accounts/login/")
    member = Client()
    member.force_login(UserFactory())
    assert member.get("/support/new/").status_code == 200
    # The password with the order number proves it from anywhere, as the card says.
    found = Client().post("/orders/lookup/", {"query": with_password.number, "query_password": "pw-123456"})
    assert found.status_code == 302 and found["Location"] == f"/orders/guest/{with_password.number}/"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sandbox")
def test_a_temporary_refusal_leaves_the_card_offering_both_proofs():
    order = buy_as_guest(Client(), guest_product(1), password="")
    Order.objects.filter(pk=order.pk).update(buyer_notified_at=None)
    refuse(order, FULL)  # the code may still arrive: guest_code_send sends it
    assert card(link_holder(order), order).startswith("any ")
