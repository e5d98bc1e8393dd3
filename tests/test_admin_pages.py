"""Every admin list and record page renders for staff, read-only records offer no Save,
and no page shows a card code's secret."""

import pytest
from django.contrib import admin
from django.urls import reverse

from catalog.models import CardCode, StockBatch
from orders.models import CodeReveal, Order, OrderStatusChange
from orders.services.orders import order_code_reveal, order_place
from payments.models import Notification, Payment
from payments.services.payments import sandbox_pay
from tests.factories import ProductFactory, add_stock


@pytest.fixture
def sold_order(buyer, staff):
    product = ProductFactory()
    secrets_in_stock = add_stock(product, 3, user=staff, numbered=True)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=2, idempotency_key="k1")
    sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    code = order.codes.first()
    order_code_reveal(buyer=buyer, order_number=order.number, order_code_id=code.pk, ip="10.0.0.1", user_agent="t")
    return order, secrets_in_stock


@pytest.mark.django_db(transaction=True)
def test_every_admin_page_renders_without_secrets(client, staff, sold_order):
    order, secrets_in_stock = sold_order
    client.force_login(staff)
    records = [
        order,
        OrderStatusChange.objects.filter(order=order).first(),
        CodeReveal.objects.first(),
        Payment.objects.get(order=order),
        Notification.objects.first(),
        StockBatch.objects.first(),
        CardCode.objects.first(),
        order.product,
        order.product.supplier,
        order.product.category,
    ]
    pages = [reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist") for m in admin.site._registry]
    pages += [reverse(f"admin:{r._meta.app_label}_{r._meta.model_name}_change", args=[r.pk]) for r in records]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in secrets_in_stock:
            assert secret not in html, f"{url} shows a secret"
    read_only = [order, Payment.objects.get(order=order), StockBatch.objects.first(), CardCode.objects.first()]
    for record in read_only:
        url = reverse(f"admin:{record._meta.app_label}_{record._meta.model_name}_change", args=[record.pk])
        assert 'name="_save"' not in client.get(url).content.decode(), url
        assert client.post(url, {}).status_code == 403, url


@pytest.mark.django_db
def test_read_only_admins_share_one_mixin(rf, staff):
    """marketplace.admin.ReadOnlyMixin: nobody adds, edits or deletes; an ``acted_on`` admin
    keeps the change permission for its list (actions, buttons), never for one record's form."""
    from marketplace.admin import ReadOnlyMixin

    request = rf.get("/admin/")
    request.user = staff
    read_only = ["agents.AgentMove", "agents.Commission", "aftersales.SlaEvent", "aftersales.RefundRequest"]
    read_only += ["orders.ApiCallback", "orders.Order", "payments.Payment"]
    acted_on = ["aftersales.Ticket", "aftersales.ArbitrationCase", "agents.Withdrawal"]
    by_label = {model._meta.label: model_admin for model, model_admin in admin.site._registry.items()}
    for label in read_only + acted_on:
        model_admin = by_label[label]
        assert isinstance(model_admin, ReadOnlyMixin), label
        assert not model_admin.has_add_permission(request), label
        assert not model_admin.has_delete_permission(request, object()), label
        assert not model_admin.has_change_permission(request, object()), label
        assert model_admin.has_change_permission(request) is (label in acted_on), label
