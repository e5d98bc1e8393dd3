import re

import pytest

from orders.models import Order
from tests.factories import ProductFactory, add_stock


@pytest.mark.django_db(transaction=True)
def test_buy_pay_deliver_reveal(client, buyer):
    product = ProductFactory()
    secrets_in_stock = add_stock(product, 3)
    client.force_login(buyer)
    page = client.get(f"/orders/checkout/{product.slug}/?quantity=2").content.decode()
    token = re.search(r'name="idempotency_key" value="(\w+)"', page).group(1)
    response = client.post(f"/orders/checkout/{product.slug}/", {"quantity": 2, "idempotency_key": token})
    order = Order.objects.get(buyer=buyer)
    assert response["Location"] == f"/pay/{order.number}/"
    client.post(f"/pay/sandbox/{order.number}/")
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED  # tasks run inline outside worker tests
    code = order.codes.get(pk=order.codes.first().pk)
    revealed = client.post(f"/orders/{order.number}/codes/{code.pk}/reveal/", HTTP_HX_REQUEST="true").content.decode()
    assert any(s in revealed for s in secrets_in_stock)
