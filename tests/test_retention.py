"""电子商务法 第三十一条: transaction records are kept (never deleted); closing an account anonymises
the person and keeps the records (aftersales.services.accounts)."""

from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError
from django.urls import reverse

from aftersales.models import Ticket, TicketMessage
from aftersales.services import tickets
from aftersales.services.accounts import AccountCloseRefused, account_close
from agents.services import api_keys
from compliance.models import AuditEvent
from ledger.models import Account, Entry, Line
from legal.retention import RecordsRetained
from orders.models import Order
from payments.models import Payment
from payments.services import payments
from tests.api_helpers import top_up
from tests.builders import delivered_order, wallet_balance
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("english")
D = Decimal
EMAIL = "alice.liu@example.com"


def _member():
    user = UserFactory(email=EMAIL, username="alice", first_name="Alice", last_name="Liu")
    EmailAddress.objects.create(user=user, email=EMAIL, verified=True, primary=True)
    return user


def _everything_of(user):
    """An order paid by the gateway, one paid from the wallet (so the wallet is back at zero),
    and a resolved ticket quoting the email."""
    first = delivered_order(user, price="30.00", quantity=1)
    top_up(user, "20")
    second = delivered_order(
        user,
        price="20.00",
        quantity=1,
        pay=lambda order_number: payments.balance_pay(order_number=order_number, buyer=user),
    )
    assert wallet_balance(user) == 0
    ticket = tickets.ticket_open(
        user=user, kind=Ticket.Kind.OTHER, subject="Question", body=f"Please write to {EMAIL}", order=first
    )
    return first, second, ticket


def _snapshot(user):
    orders = list(Order.objects.filter(buyer=user).order_by("pk").values_list("pk", "number", "total", "status"))
    pays = list(Payment.objects.filter(order__buyer=user).order_by("pk").values_list("pk", "amount"))
    return orders, pays, Entry.objects.count(), Line.objects.count()


@pytest.mark.django_db(transaction=True)
def test_closing_keeps_the_records_and_removes_the_person(client):
    user = _member()
    first, second, ticket = _everything_of(user)
    tickets.ticket_close(ticket=ticket, actor=user)
    before = _snapshot(user)
    assert len(before[0]) == 2 and len(before[1]) == 2

    account_close(user=user, by=user)

    user.refresh_from_db()
    assert (user.username, user.email) == (f"closed-{user.pk}", f"closed-{user.pk}@closed.invalid")
    assert (user.first_name, user.last_name, user.is_active, user.has_usable_password()) == ("", "", False, False)
    assert not EmailAddress.objects.filter(user=user).exists()
    # The records: same rows, same amounts, still linked to the (anonymous) user.
    assert _snapshot(user) == before
    assert Order.objects.get(pk=first.pk).total == D("30.00") and Order.objects.get(pk=second.pk).total == D("20.00")
    assert Ticket.objects.get(pk=ticket.pk).user_id == user.pk
    assert AuditEvent.objects.filter(action="account_close", target=f"closed-{user.pk}").exists()
    # No trace of the email, the username or the name anywhere a query can reach.
    User = get_user_model()
    assert not User.objects.filter(email__iexact=EMAIL).exists()
    assert not User.objects.filter(username="alice").exists()
    assert not User.objects.filter(first_name="Alice").exists() and not User.objects.filter(last_name="Liu").exists()
    assert not TicketMessage.objects.filter(body__icontains=EMAIL).exists()
    assert not AuditEvent.objects.filter(target__icontains=EMAIL).exists()
    assert not AuditEvent.objects.filter(detail__icontains=EMAIL).exists()
    assert not Account.objects.filter(name__icontains=EMAIL).exists()
    assert not Order.objects.filter(guest_email__iexact=EMAIL).exists()
    if connection.vendor == "postgresql":  # every text column of every table
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND data_type IN ('character varying', 'text')"
            )
            columns = cursor.fetchall()
            found = []
            for table, column in columns:
                cursor.execute(f'SELECT 1 FROM "{table}" WHERE "{column}" ILIKE %s LIMIT 1', [f"%{EMAIL}%"])
                if cursor.fetchone():
                    found.append(f"{table}.{column}")
        assert found == []
    # It cannot sign in any more.
    assert not client.login(username=EMAIL, password="correct-horse-battery")
    # A repeat changes nothing.
    account_close(user=user, by=user)


@pytest.mark.django_db(transaction=True)
def test_closing_is_refused_while_money_or_a_case_is_open():
    user = _member()
    _first, _second, ticket = _everything_of(user)
    with pytest.raises(AccountCloseRefused, match="support ticket is still open"):
        account_close(user=user, by=user)
    tickets.ticket_close(ticket=ticket, actor=user)
    top_up(user, "5")
    with pytest.raises(AccountCloseRefused, match="balance or commission is not zero"):
        account_close(user=user, by=user)
    user.refresh_from_db()
    assert user.is_active and user.email == EMAIL


@pytest.mark.django_db(transaction=True)
def test_closing_revokes_api_keys(level):
    from agents.services.agents import agent_create

    agent = agent_create(user=_member(), level=level)
    key, _secret = api_keys.apikey_create(agent=agent, name="shop")
    account_close(user=agent.user, by=agent.user)
    key.refresh_from_db()
    assert key.revoked_at is not None and key.previous_secret == ""


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_to_delete_transaction_records(buyer):
    order = delivered_order(buyer, quantity=1)
    # The Python guard (it stands in on SQLite): any ORM delete of a record is refused.
    event = AuditEvent.objects.create(action="test", outcome=AuditEvent.Outcome.ALLOWED)
    with pytest.raises(RecordsRetained, match="kept for at least three years"):
        event.delete()
    with pytest.raises(RecordsRetained):
        Ticket.objects.filter(
            pk=tickets.ticket_open(user=buyer, kind=Ticket.Kind.OTHER, subject="s", body="b").pk
        ).delete()
    with pytest.raises((RecordsRetained, ProtectedError)):
        order.delete()
    if connection.vendor != "postgresql":
        pytest.skip("the DELETE triggers are PostgreSQL's")
    for table, pk in [("orders_order", order.pk), ("payments_payment", Payment.objects.get(order=order).pk)]:
        with (
            pytest.raises(DatabaseError, match="kept at least three years"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])
    assert Order.objects.filter(pk=order.pk).exists()


@pytest.mark.django_db
def test_the_profile_page_closes_the_account_with_the_password(client):
    user = _member()
    client.force_login(user)
    assert 'data-testid="profile-close-account"' in client.get(reverse("profile")).content.decode()
    url = reverse("account_close:close")
    response = client.post(url, {"password": "wrong"})
    assert response.status_code == 400 and "password is not correct" in response.content.decode()
    user.refresh_from_db()
    assert user.is_active
    response = client.post(url, {"password": "correct-horse-battery"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_active and user.email.startswith("closed-")
    assert client.get(reverse("profile")).status_code == 302  # signed out


@pytest.mark.django_db
def test_staff_close_an_account_from_admin(client, staff):
    user = _member()
    client.force_login(staff)
    response = client.post(
        reverse("admin:accounts_user_changelist"), {"action": "close_accounts", "_selected_action": [user.pk]}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_active and user.username == f"closed-{user.pk}"
    assert AuditEvent.objects.filter(action="account_close", actor=staff).exists()
