"""The buyer is told when the mail server refused the address of their order's email
(``orders.models.EmailRefusal``): on the guest's and the member's order page, which address, in
plain words what the server said, what to do; and the guest who mistyped the address and set no
query password is not locked out of the codes: the browser that placed the order may set one
(``orders.services.guest.guest_password_set``), nobody else may, and nothing redirects email."""

from datetime import timedelta
from decimal import Decimal
from smtplib import SMTPRecipientsRefused

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.models import AuditEvent
from orders.models import EmailRefusal, Order
from orders.services import guest as guest_services
from orders.services import orders as order_services
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.test_delivery_emails import deliver_quietly
from tests.test_guest_checkout import buy_as_guest, reveal, secrets_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english", "sandbox")]
UNKNOWN = (550, b"5.1.1 <guest.buyer@example.net>: Recipient address rejected: User unknown")
FULL = (452, b"4.2.2 Mailbox full")


@pytest.fixture
def sandbox(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True


@pytest.fixture
def product(db):
    p = ProductFactory(price=Decimal("50.00"), face_value=Decimal("50.00"), slug="steam-50")
    add_stock(p, 6)
    return p


def refuse(order: Order, reply=UNKNOWN) -> None:
    """What the delivery run records when the mail server refuses the address (its own call)."""
    refused = SMTPRecipientsRefused({order.buyer_email: reply})
    order_services.email_refusal_record(order=order, refused=refused)


def page(client: Client, order: Order) -> str:
    response = client.get(f"/orders/guest/{order.number}/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_guest_without_a_query_password_is_told_and_sets_one_from_the_placing_browser(client, product):
    order = buy_as_guest(client, product, password="")
    assert order.buyer_notified_at is not None  # the email was "sent" (the test backend), then refused
    refuse(order)

    html = page(client, order)
    assert 'data-testid="email-refused" data-permanent="1"' in html
    assert "guest.buyer@example.net</span> answered that this address does not exist" in html  # in full: placed here
    assert "We will not send to it again." in html
    assert 'data-testid="refused-number">' + order.number in html
    assert 'data-testid="refused-password-form"' in html
    # Codes cannot be emailed to it: the page does not offer them.
    assert 'data-testid="send-code"' not in html and 'data-testid="no-code-email"' in html
    assert reveal(client, order).status_code == 403  # no proof yet
    sent = len(mail.outbox)
    refused = client.post(f"/orders/guest/{order.number}/code/send/", follow=True).content.decode()
    assert "the mail server refused it" in refused and len(mail.outbox) == sent  # a forged post sends nothing

    response = client.post(f"/orders/guest/{order.number}/password/", {"query_password": "new-secret"})
    assert response.status_code == 302 and response["Location"] == f"/orders/guest/{order.number}/"
    assert reveal(client, order).status_code == 200  # the password set is a proof, as at checkout
    assert AuditEvent.objects.filter(
        action=guest_services.PASSWORD_SET_ACTION, target=order.number, outcome=AuditEvent.Outcome.ALLOWED
    ).exists()
    html = page(client, order)
    assert 'data-testid="refused-password-form"' not in html  # once: it has one now
    assert 'data-testid="refused-codes-here"' in html

    # From any other device: the order lookup with the number and that password.
    other = Client()
    found = other.post("/orders/lookup/", {"query": order.number, "query_password": "new-secret"})
    assert found.status_code == 302 and found["Location"] == f"/orders/guest/{order.number}/"
    secret = secrets_of(order)[0]
    assert secret in reveal(other, order).content.decode()


def test_whoever_holds_the_link_sees_the_address_masked_and_cannot_set_a_password(client, product):
    order = buy_as_guest(client, product, password="")
    refuse(order)
    stranger = Client()
    assert stranger.get(f"/orders/g/{guest_services.guest_link_token(number=order.number)}/").status_code == 302

    html = page(stranger, order)
    assert 'data-testid="email-refused"' in html
    assert "gu***@example.net</span> answered" in html and "guest.buyer@example.net" not in html
    assert 'data-testid="refused-password-form"' not in html and 'data-testid="refused-no-way"' in html
    response = stranger.post(f"/orders/guest/{order.number}/password/", {"query_password": "stolen-pw"})
    assert response.status_code == 404
    assert Order.objects.get(pk=order.pk).query_password == ""


def test_a_password_set_at_checkout_is_never_replaced_and_no_refusal_no_password(client, product):
    order = buy_as_guest(client, product, password="")
    # No refusal: the email reached the buyer, whose proof is the emailed code.
    assert 'data-testid="email-refused"' not in page(client, order)
    client.post(f"/orders/guest/{order.number}/password/", {"query_password": "new-secret"})
    assert Order.objects.get(pk=order.pk).query_password == ""
    assert reveal(client, order).status_code == 403

    # A password too short is refused and sets nothing.
    refuse(order)
    client.post(f"/orders/guest/{order.number}/password/", {"query_password": "abc"})
    assert Order.objects.get(pk=order.pk).query_password == ""

    Order.objects.filter(pk=order.pk).update(query_password="x")  # as if set meanwhile
    html = page(client, order)
    assert 'data-testid="refused-password-form"' not in html and "the query password you set" in html
    with pytest.raises(guest_services.GuestProofError):
        guest_services.guest_password_set(order=Order.objects.get(pk=order.pk), password="new-secret")
    assert Order.objects.get(pk=order.pk).query_password == "x"


@pytest.mark.django_db  # the delivery's email held back (deliver_quietly): not transactional
def test_a_temporary_refusal_says_until_when_and_goes_once_the_email_is_sent(django_capture_on_commit_callbacks):
    [order] = deliver_quietly(django_capture_on_commit_callbacks, 1, guest=True)
    order.refresh_from_db()
    refuse(order, FULL)  # the delivery run refused it for now: not claimed, tried again
    member = Client()
    member.get(f"/orders/g/{guest_services.guest_link_token(number=order.number)}/")
    html = page(member, order)
    until = timezone.localtime(order.delivered_at + timedelta(hours=24)).strftime("%Y-%m-%d %H:%M")
    kept = f'We keep trying until <span class="text-nowrap" data-testid="refused-until">{until}</span>.'
    assert 'data-permanent="0"' in html and f"is not accepting mail for it now. {kept}" in html  # one line

    Order.objects.filter(pk=order.pk).update(delivered_at=timezone.now() - timedelta(hours=25))
    assert "and have stopped." in page(member, order)

    Order.objects.filter(pk=order.pk).update(buyer_notified_at=timezone.now())  # sent at a later attempt
    assert EmailRefusal.objects.filter(order=order).exists()
    assert 'data-testid="email-refused"' not in page(member, order)


@pytest.mark.django_db
def test_a_member_is_told_to_correct_the_account_address_and_the_page_reads_it_in_its_statement(
    django_capture_on_commit_callbacks,
):
    [order, other] = deliver_quietly(django_capture_on_commit_callbacks, 2)
    client = Client()
    client.force_login(order.buyer)
    path = f"/orders/{order.number}/"
    client.get(path)  # warm: the session, the compiled statements
    without, _html = _count(client, path)
    refuse(Order.objects.get(pk=order.pk))
    with_refusal, html = _count(client, path)
    assert with_refusal == without  # read in the order's own statement, no read of its own
    assert 'data-testid="email-refused" data-permanent="1"' in html
    assert f"{order.buyer.email}</span> answered that this address does not exist" in html
    assert 'href="/accounts/email/" data-testid="refused-fix-email"' in html
    assert 'data-testid="refused-codes-here"' in html and 'data-testid="refused-password-form"' not in html
    # Another buyer's order page says nothing of it.
    stranger = UserFactory()
    client.force_login(other.buyer)
    assert 'data-testid="email-refused"' not in client.get(f"/orders/{other.number}/").content.decode()
    client.force_login(stranger)
    assert client.get(f"/orders/{order.number}/").status_code == 404


def _count(client: Client, path: str) -> tuple[int, str]:
    """The statements a view of ``path`` runs, and its page."""
    with CaptureQueriesContext(connection) as run:
        response = client.get(path)
    assert response.status_code == 200
    return len(run), response.content.decode()


@pytest.mark.django_db
def test_the_notice_speaks_chinese_to_a_chinese_reader(django_capture_on_commit_callbacks, settings):
    from tests.test_pages_display import english_fragments, visible_text

    settings.LANGUAGE_CODE = "zh-hans"
    [order] = deliver_quietly(django_capture_on_commit_callbacks, 1)
    refuse(Order.objects.get(pk=order.pk))
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.force_login(order.buyer)
    text = visible_text(client.get(f"/orders/{order.number}/").content.decode())
    assert "该地址不存在。我们不会再向它发送邮件。" in text and "修改我的邮箱地址" in text
    assert [f for f in english_fragments() if f in text] == []
