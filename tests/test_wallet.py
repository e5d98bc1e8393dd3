"""The wallet: recharged through a gateway's signed notification, spent on orders instantly,
never overdrawn, and shown to its owner with every payment (and as CSV)."""

import csv
import io
from decimal import Decimal

import pytest

from orders.models import Order
from orders.services.orders import order_place
from payments.gateways.sandbox import SandboxGateway
from payments.models import Notification, Payment, Recharge
from payments.services import payments as services
from tests.builders import run_concurrently, wallet_balance
from tests.factories import ProductFactory, UserFactory, add_stock

D = Decimal


def recharge(user, amount) -> Recharge:
    r = services.recharge_create(user=user, amount=amount)
    result = services.sandbox_pay(order_number=r.number)
    assert result.ok, result.reason
    return r


def notify(client, body):
    return client.post("/payments/notify/sandbox/", body, content_type="application/x-www-form-urlencoded")


@pytest.mark.django_db(transaction=True)
def test_a_recharge_notification_credits_the_wallet_once(client, buyer):
    r = services.recharge_create(user=buyer, amount="100")
    body = SandboxGateway.build_notification(order_number=r.number, amount=r.amount)
    for _ in range(4):  # the first and three replays
        assert notify(client, body).content == b"success"
    assert wallet_balance(buyer) == D("100.00")
    assert Payment.objects.get(recharge=r).amount == D("100.00")
    assert list(Notification.objects.order_by("id").values_list("outcome", flat=True)) == [
        "applied",
        "replay",
        "replay",
        "replay",
    ]
    r.refresh_from_db()
    assert r.status == Recharge.Status.PAID


@pytest.mark.django_db(transaction=True)
def test_a_tampered_recharge_amount_is_rejected(client, buyer):
    r = services.recharge_create(user=buyer, amount="10")
    body = SandboxGateway.build_notification(order_number=r.number, amount=D("1000.00"))
    response = notify(client, body)
    assert (response.status_code, response.content) == (400, b"failure")
    assert wallet_balance(buyer) == 0
    assert "amount" in Notification.objects.get().reason


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "5000.01", "1.001"])
def test_recharge_amounts_out_of_bounds_are_refused(db, buyer, amount):
    with pytest.raises(services.PaymentError):
        services.recharge_create(user=buyer, amount=amount)
    assert not Recharge.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_pay_an_order_from_the_balance_instantly(client, buyer):
    product = ProductFactory(price=D("30.00"))
    add_stock(product, 2)
    recharge(buyer, "50")
    order = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="k")
    client.force_login(buyer)
    response = client.post(f"/pay/{order.number}/balance/")
    assert response["Location"] == f"/orders/{order.number}/"
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED  # tasks run inline in tests
    assert wallet_balance(buyer) == D("20.00")
    second = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="k2")
    response = client.post(f"/pay/{second.number}/balance/", follow=True)
    assert "30.00" in response.content.decode()  # the clear message names the amount
    second.refresh_from_db()
    assert second.status == Order.Status.PENDING
    assert wallet_balance(buyer) == D("20.00")


@pytest.mark.django_db(transaction=True)
def test_another_buyer_cannot_pay_or_see_my_order_with_their_balance(client, buyer, other_buyer):
    product = ProductFactory(price=D("5.00"))
    add_stock(product, 1)
    recharge(other_buyer, "10")
    order = order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="k")
    client.force_login(other_buyer)
    assert client.post(f"/pay/{order.number}/balance/").status_code == 404
    assert client.get(f"/pay/{order.number}/").status_code == 404
    assert client.post(f"/pay/{order.number}/start/sandbox/").status_code == 404
    assert wallet_balance(other_buyer) == D("10.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_balance_100_and_50_concurrent_purchases_of_10():
    buyer = UserFactory()
    product = ProductFactory(price=D("10.00"), max_per_order=1)
    add_stock(product, 50)
    recharge(buyer, "100")
    orders = [order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key=f"c{i}") for i in range(50)]

    def pay(i):
        try:
            services.balance_pay(order_number=orders[i].number, buyer=buyer)
            return "paid"
        except services.PaymentError:
            return "refused"

    outcomes = run_concurrently(len(orders), pay)
    assert outcomes.count("paid") == 10 and outcomes.count("refused") == 40
    assert wallet_balance(buyer) == 0
    assert Payment.objects.filter(gateway="balance").count() == 10
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == 10
    assert Order.objects.filter(status=Order.Status.PENDING).count() == 40


@pytest.mark.django_db(transaction=True)
def test_wallet_page_recharge_through_the_sandbox_and_csv_export(client, buyer, english):
    client.force_login(buyer)
    page = client.get("/wallet/")
    assert page.status_code == 200 and 'data-testid="wallet-balance"' in page.content.decode()
    bad = client.post("/wallet/", {"amount": "0", "gateway": "sandbox"})
    assert bad.status_code == 400 and 'data-testid="recharge-error"' in bad.content.decode()
    started = client.post("/wallet/", {"amount": "88.50", "gateway": "sandbox"})
    r = Recharge.objects.get(user=buyer)
    assert started["Location"] == f"/pay/sandbox/{r.number}/"
    assert client.get(started["Location"]).status_code == 200
    client.post(started["Location"])  # confirm in the sandbox cashier
    assert wallet_balance(buyer) == D("88.50")
    export = client.get("/wallet/transactions.csv")
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["time", "type", "reference"]
    assert any(row[1] == "recharge" and row[2] == r.number and row[5] == "88.50" for row in rows[1:])
    assert any(row[1] == "balance:recharge" and row[5] == "88.50" for row in rows[1:])


@pytest.mark.django_db(transaction=True)
def test_my_export_holds_only_my_money(client, buyer, other_buyer):
    recharge(other_buyer, "7")
    client.force_login(buyer)
    rows = list(csv.reader(io.StringIO(client.get("/wallet/transactions.csv").content.decode("utf-8-sig"))))
    assert rows[1:] == []
