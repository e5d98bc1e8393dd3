"""Guest to member (issue 12): signing up or logging in with a verified email that has guest
orders attaches them to the account, after the email is confirmed, never before. The order's
history and the audit log record it; the emailed guest link then leads to the member's page,
and the guest's query password stops working."""

import re
import uuid
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from compliance.models import AuditEvent
from orders.models import ATTACH_NOTE_PREFIX, Order
from orders.services import guest as guest_services
from orders.services.orders import order_place
from payments.services import payments
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("english")]
GUEST = "claim.me@example.net"
PASSWORD = "a-Strong-pass-2026"


@pytest.fixture(autouse=True)
def sandbox(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    settings.ACCOUNT_EMAIL_VERIFICATION = "optional"


def guest_order(email: str = GUEST, *, paid: bool = True) -> Order:
    product = ProductFactory(price=Decimal("20.00"))
    add_stock(product, 2)
    order = order_place(
        buyer=None,
        guest_email=email,
        query_password="guest-pass-1",
        product_id=product.pk,
        quantity=1,
        idempotency_key=uuid.uuid4().hex,
    )
    if paid:
        payments.sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    return order


def confirm_link(outbox) -> str:
    for message in reversed(outbox):
        found = re.search(r"https?://[^\s]+/accounts/confirm-email/[^\s/]+/", message.body)
        if found:
            return "/" + found.group(0).split("/", 3)[3]
    raise AssertionError("no confirmation email")


def test_sign_up_attaches_guest_orders_only_after_the_email_is_confirmed(client):
    bought = guest_order()
    pending = guest_order(paid=False)
    other = guest_order("someone.else@example.net")
    token = guest_services.guest_link_token(number=bought.number)
    signup = client.post(
        "/accounts/signup/", {"email": "Claim.Me@Example.net", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert signup.status_code == 302
    user = EmailAddress.objects.get(email__iexact=GUEST).user
    # Signed up, not confirmed: anyone can type any address, so nothing is attached yet.
    assert Order.objects.filter(buyer=user).count() == 0
    assert client.get("/orders/").content.decode().count(bought.number) == 0

    page = client.post(confirm_link(mail.outbox), follow=True)
    assert page.status_code == 200
    html = page.content.decode()
    assert "2 orders you bought without an account at this email are now in My orders." in html
    mine = set(Order.objects.filter(buyer=user).values_list("number", flat=True))
    assert mine == {bought.number, pending.number}
    other.refresh_from_db()
    assert other.buyer is None  # another address's order stays the guest's
    bought.refresh_from_db()
    assert (bought.guest_email, bought.query_password, bought.status) == ("", "", Order.Status.DELIVERED)
    note = bought.history.order_by("-id").first()
    assert note.note == ATTACH_NOTE_PREFIX + GUEST and note.actor == user
    assert note.from_status == note.to_status == Order.Status.DELIVERED
    audit = AuditEvent.objects.get(action="guest_orders.attach")
    assert audit.actor == user and bought.number in audit.detail and pending.number in audit.detail

    # The member's pages have them: the list, the order page (codes), paying the pending one.
    assert bought.number in client.get("/orders/").content.decode()
    assert client.get(f"/orders/{bought.number}/").status_code == 200
    assert client.get(f"/pay/{pending.number}/").status_code == 200
    # The guest pages do not any more; the emailed link goes to the member's page.
    stranger = Client()
    assert stranger.get(f"/orders/g/{token}/")["Location"] == f"/orders/{bought.number}/"
    assert stranger.get(f"/orders/{bought.number}/")["Location"].startswith("/accounts/login/")
    assert client.get(f"/orders/g/{token}/")["Location"] == f"/orders/{bought.number}/"
    # Logging in again attaches nothing twice.
    client.logout()
    client.post("/accounts/login/", {"login": GUEST, "password": PASSWORD})
    assert AuditEvent.objects.filter(action="guest_orders.attach").count() == 1
    assert bought.history.filter(note__startswith=ATTACH_NOTE_PREFIX).count() == 1


def test_login_with_a_verified_address_attaches_orders_bought_since_as_a_guest(client):
    user = UserFactory(email=GUEST)
    user.set_password(PASSWORD)
    user.save()
    EmailAddress.objects.create(user=user, email=GUEST, verified=True, primary=True)
    later = guest_order("CLAIM.ME@example.net ")  # as typed at a checkout: normalised
    login = client.post("/accounts/login/", {"login": GUEST, "password": PASSWORD}, follow=True)
    assert "1 order you bought without an account at this email is now in My orders." in login.content.decode()
    later.refresh_from_db()
    assert later.buyer == user


def test_an_unverified_address_attaches_nothing_at_login(client):
    user = UserFactory(email=GUEST)
    user.set_password(PASSWORD)
    user.save()
    EmailAddress.objects.create(user=user, email=GUEST, verified=False, primary=True)
    order = guest_order()
    client.post("/accounts/login/", {"login": GUEST, "password": PASSWORD})
    order.refresh_from_db()
    assert order.buyer is None and order.guest_email == GUEST
    assert not AuditEvent.objects.filter(action="guest_orders.attach").exists()


def test_a_tampered_or_expired_link_still_says_not_valid(client, settings):
    order = guest_order()
    token = guest_services.guest_link_token(number=order.number)
    assert client.get(f"/orders/g/{token}x/").status_code == 404
    settings.GUEST_LINK_MAX_AGE_DAYS = -1
    assert client.get(f"/orders/g/{token}/").status_code == 404


def test_the_guests_after_sales_join_the_account_with_the_orders(client):
    from aftersales.models import RefundRequest, Ticket, TicketMessage
    from aftersales.services import no_reason, tickets
    from compliance.models import CreditEvent

    order = guest_order()
    ticket = tickets.ticket_open(user=None, kind="other", subject="Where is it?", body="Hello", order=order)
    code = order.codes.order_by("id").first()
    request = no_reason.refund_request_create(
        user=None, order=order, order_code_ids=[str(code.pk)], idempotency_key=uuid.uuid4().hex
    )
    assert CreditEvent.objects.filter(user__isnull=True, email=GUEST).exists()
    user = UserFactory(email=GUEST)
    user.set_password(PASSWORD)
    user.save()
    EmailAddress.objects.create(user=user, email=GUEST, verified=True, primary=True)
    client.post("/accounts/login/", {"login": GUEST, "password": PASSWORD})
    ticket.refresh_from_db()
    assert ticket.user == user
    assert set(TicketMessage.objects.filter(ticket=ticket, from_staff=False).values_list("author", flat=True)) == {
        user.pk
    }
    assert RefundRequest.objects.get(pk=request.pk).user == user
    assert not CreditEvent.objects.filter(email=GUEST).exists()
    assert CreditEvent.objects.filter(user=user).exists()
    # The member's own pages show them now.
    assert client.get(f"/support/{ticket.number}/").status_code == 200
    assert Ticket.objects.filter(user__isnull=True).count() == 0
