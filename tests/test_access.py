"""Who may see what: a buyer's orders, payment pages and codes are theirs alone."""

import pytest
from django.conf import settings
from django.db import transaction
from django.urls import reverse

from catalog.services import code_plaintext
from orders.models import CodeReveal, Order, OrderCode
from orders.services import orders as services
from payments.models import Notification, Payment
from payments.services.payments import sandbox_pay
from tests.factories import ProductFactory, add_stock


def place(buyer, product, quantity=1, key=None) -> Order:
    key = key or f"k-{Order.objects.count()}-{buyer.pk}"
    return services.order_place(buyer=buyer, product_id=product.pk, quantity=quantity, idempotency_key=key)


def deliver(order: Order) -> Order:
    """Paid and fulfilled, without the on-commit queue (plain django_db tests)."""
    with transaction.atomic():
        services.order_mark_paid(order=services.order_lock_by_number(order.number), note="test")
    assert services.order_fulfil(order_id=order.pk) is True
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order


@pytest.fixture
def product(db):
    product = ProductFactory()
    add_stock(product, 10, numbered=True)
    return product


@pytest.fixture
def pending_order(buyer, product):
    return place(buyer, product, 2, key="pending")


@pytest.fixture
def delivered_order(buyer, product):
    return deliver(place(buyer, product, 2, key="delivered"))


def urls(order: Order, code: OrderCode) -> list[tuple[str, str]]:
    n = order.number
    return [
        ("get", f"/orders/{n}/"),
        ("get", f"/orders/{n}/status/"),
        ("get", f"/pay/{n}/"),
        ("get", f"/pay/sandbox/{n}/"),
        ("post", f"/pay/sandbox/{n}/"),
        ("post", f"/orders/{n}/codes/{code.pk}/reveal/"),
        ("post", f"/orders/{n}/cancel/"),
    ]


def _snapshot(order: Order):
    return (
        list(Order.objects.filter(pk=order.pk).values()),
        list(OrderCode.objects.filter(order=order).values()),
        order.history.count(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("which", ["pending_order", "delivered_order"])
@pytest.mark.parametrize("step", range(7), ids=["detail", "status", "choose", "cashier", "pay", "reveal", "cancel"])
def test_another_buyer_gets_404_everywhere(client, request, other_buyer, which, step):
    order = request.getfixturevalue(which)
    code = order.codes.first()
    secret = code_plaintext(code.code)[1]
    method, url = urls(order, code)[step]
    before = _snapshot(order)
    client.force_login(other_buyer)

    response = getattr(client, method)(url, HTTP_HX_REQUEST="true")

    assert response.status_code == 404
    assert secret not in response.content.decode()
    assert CodeReveal.objects.count() == 0
    assert Payment.objects.count() == 0
    assert Notification.objects.count() == 0
    assert _snapshot(order) == before


@pytest.mark.django_db
@pytest.mark.parametrize("step", range(7), ids=["detail", "status", "choose", "cashier", "pay", "reveal", "cancel"])
def test_anonymous_is_sent_to_login(client, delivered_order, step):
    code = delivered_order.codes.first()
    method, url = urls(delivered_order, code)[step]
    before = _snapshot(delivered_order)

    response = getattr(client, method)(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert "next=" in response["Location"]
    assert CodeReveal.objects.count() == 0
    assert Payment.objects.count() == 0
    assert _snapshot(delivered_order) == before


@pytest.mark.django_db
def test_anonymous_order_list_goes_to_login_and_checkout_asks_for_a_guest_email(client, product):
    response = client.get("/orders/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    # Issue 12: the checkout serves guests; without the guest email nothing is placed.
    assert 'data-testid="guest-email"' in client.get(f"/orders/checkout/{product.slug}/").content.decode()
    assert client.post(f"/orders/checkout/{product.slug}/", {"quantity": 1}).status_code == 400
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_owner_reveal_is_logged_once_with_ip_and_user_agent(client, buyer, delivered_order):
    code = delivered_order.codes.order_by("id").first()
    number, secret = code_plaintext(code.code)
    client.force_login(buyer)

    response = client.post(
        f"/orders/{delivered_order.number}/codes/{code.pk}/reveal/",
        HTTP_HX_REQUEST="true",
        HTTP_USER_AGENT="Mozilla/5.0 (iPhone) test",
        REMOTE_ADDR="203.0.113.7",
    )

    assert response.status_code == 200
    assert secret in response.content.decode()
    assert number in response.content.decode()
    reveal = CodeReveal.objects.get()
    assert reveal.order_code_id == code.pk
    assert reveal.user_id == buyer.pk
    assert reveal.ip == "203.0.113.7"
    assert reveal.user_agent == "Mozilla/5.0 (iPhone) test"
    assert reveal.at is not None
    # The other code of the order stays unrevealed, and its secret was not shown.
    other_code = delivered_order.codes.exclude(pk=code.pk).get()
    assert other_code.reveals.count() == 0
    assert code_plaintext(other_code.code)[1] not in response.content.decode()


@pytest.mark.django_db
def test_owner_reveal_without_htmx_renders_the_order_page(client, buyer, delivered_order):
    code = delivered_order.codes.order_by("id").first()
    client.force_login(buyer)

    response = client.post(f"/orders/{delivered_order.number}/codes/{code.pk}/reveal/")

    assert response.status_code == 200
    assert code_plaintext(code.code)[1] in response.content.decode()
    assert CodeReveal.objects.count() == 1


@pytest.mark.django_db
def test_order_page_does_not_show_secrets_before_reveal(client, buyer, delivered_order):
    client.force_login(buyer)
    page = client.get(f"/orders/{delivered_order.number}/").content.decode()
    for oc in delivered_order.codes.all():
        assert code_plaintext(oc.code)[1] not in page
    assert CodeReveal.objects.count() == 0


@pytest.mark.django_db
def test_reveal_before_delivery_is_404(client, buyer, pending_order):
    code = pending_order.codes.first()
    client.force_login(buyer)

    response = client.post(f"/orders/{pending_order.number}/codes/{code.pk}/reveal/", HTTP_HX_REQUEST="true")

    assert response.status_code == 404
    assert code_plaintext(code.code)[1] not in response.content.decode()
    assert CodeReveal.objects.count() == 0


@pytest.mark.django_db
def test_reveal_is_get_proof(client, buyer, delivered_order):
    code = delivered_order.codes.first()
    client.force_login(buyer)
    assert client.get(f"/orders/{delivered_order.number}/codes/{code.pk}/reveal/").status_code == 405
    assert CodeReveal.objects.count() == 0


@pytest.mark.django_db
def test_reveal_of_a_code_from_my_other_order_through_this_order_is_404(client, buyer, product, delivered_order):
    mine_elsewhere = deliver(place(buyer, product, 1, key="second"))
    foreign_code = mine_elsewhere.codes.get()
    client.force_login(buyer)

    response = client.post(f"/orders/{delivered_order.number}/codes/{foreign_code.pk}/reveal/")

    assert response.status_code == 404
    assert CodeReveal.objects.count() == 0


@pytest.mark.django_db
def test_reveal_service_refuses_another_buyer(other_buyer, delivered_order):
    code = delivered_order.codes.first()
    with pytest.raises(OrderCode.DoesNotExist):
        services.order_code_reveal(
            buyer=other_buyer, order_number=delivered_order.number, order_code_id=code.pk, ip=None, user_agent="x"
        )
    assert CodeReveal.objects.count() == 0


@pytest.mark.django_db
def test_order_list_shows_only_my_orders(client, buyer, other_buyer, product):
    mine = [place(buyer, product, 1, key=f"m{i}") for i in range(2)]
    theirs = [place(other_buyer, product, 1, key=f"t{i}") for i in range(2)]
    client.force_login(buyer)

    page = client.get("/orders/").content.decode()

    for order in mine:
        assert order.number in page
    for order in theirs:
        assert order.number not in page
    assert page.count('data-testid="order-row"') == 2


@pytest.mark.django_db
def test_owner_sees_own_pages(client, buyer, pending_order):
    client.force_login(buyer)
    n = pending_order.number
    for url in (f"/orders/{n}/", f"/orders/{n}/status/", f"/pay/{n}/", f"/pay/sandbox/{n}/"):
        assert client.get(url).status_code == 200, url
    assert client.get(f"/orders/{n}/status/").json()["status"] == "pending"


@pytest.mark.django_db(transaction=True)
def test_delivery_email_links_to_the_order_and_never_holds_a_secret(buyer, product, mailoutbox):
    order = place(buyer, product, 3, key="mail")

    result = sandbox_pay(order_number=order.number)

    assert result.ok
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED  # fulfilment ran on commit, inline
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == [buyer.email]
    assert order.number in mail.subject
    assert settings.SITE_URL + f"/orders/{order.number}/" in mail.body
    everything = "\n".join(
        [mail.subject, mail.body, *(str(content) for content, _mimetype in getattr(mail, "alternatives", []))]
    )
    codes = list(order.codes.select_related("code"))
    assert len(codes) == 3
    for oc in codes:
        card_number, secret = code_plaintext(oc.code)
        assert secret and secret not in everything
        assert card_number and card_number not in everything
        assert oc.code.secret_enc not in everything
    # Delivered once, emailed once: running the notification again sends nothing.
    assert services.order_notify(order_id=order.pk, kind="delivered") is False
    assert len(mailoutbox) == 1


@pytest.mark.parametrize(
    ("num_proxies", "forwarded", "expected"),
    [
        (0, "1.2.3.4", "127.0.0.1"),  # no proxy: a client's header proves nothing
        (1, "1.2.3.4", "1.2.3.4"),
        (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # a forged entry on the left is ignored
        (2, "6.6.6.6, 1.2.3.4, 10.0.0.2", "1.2.3.4"),
        (2, "1.2.3.4", "127.0.0.1"),  # fewer hops than proxies: fall back to the peer
    ],
)
def test_client_ip_trusts_only_configured_proxies(rf, settings, num_proxies, forwarded, expected):
    from marketplace.http import client_ip

    settings.NUM_PROXIES = num_proxies
    request = rf.get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="127.0.0.1")
    assert client_ip(request) == expected
