"""The product page's two cards drawn once per process per set of values shown
(catalog/templatetags/catalog_product.py): never stale, escaped, per language."""

from decimal import Decimal

import pytest
from django.test import Client

from catalog.templatetags import catalog_product
from tests.factories import ProductFactory, SupplierFactory, add_stock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def page(client, slug, **headers):
    response = client.get(f"/p/{slug}/", **headers)
    assert response.status_code == 200
    return response.content.decode()


def test_what_the_cards_show_follows_every_change_at_once():
    supplier = SupplierFactory(name="First supplier", authorisation_cert_no="CERT-1")
    product = ProductFactory(slug="cards", supplier=supplier, price=Decimal("97.00"))
    add_stock(product, 2)
    client = Client()
    html = page(client, "cards")
    assert "2 codes in stock" in html and "CERT-1" in html and "97.00" in html
    assert len(catalog_product._drawn) == 2  # both cards drawn and kept

    add_stock(product, 1)
    supplier.authorisation_cert_no = "CERT-2"
    supplier.name = "Second supplier"
    supplier.save(update_fields=["authorisation_cert_no", "name"])
    product.price = Decimal("95.00")
    product.refund_policy = "Our own policy"
    product.save(update_fields=["price", "refund_policy"])
    html = page(client, "cards")
    assert "3 codes in stock" in html and "2 codes in stock" not in html
    assert "CERT-2" in html and "CERT-1" not in html and "Second supplier" in html
    assert "95.00" in html and "Our own policy" in html


def test_hostile_values_come_out_escaped_and_each_language_gets_its_own_card():
    supplier = SupplierFactory(is_authorised=False, authorisation_cert_no="", name="<b>Dist</b>")
    ProductFactory(slug="hostile", supplier=supplier, name="<script>x</script>", refund_policy="<i>p</i>")
    client = Client()
    html = page(client, "hostile")
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "&lt;b&gt;Dist&lt;/b&gt;" in html and "&lt;i&gt;p&lt;/i&gt;" in html
    assert "Sold out" in html
    chinese = page(client, "hostile", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "货源信息" in chinese
    assert "Supply source" not in chinese and "Supply source" in html


def test_the_quantity_limit_reads_as_one_number_when_the_least_is_the_most():
    one = ProductFactory(slug="only-one", min_per_order=1, max_per_order=1)
    some = ProductFactory(slug="some", min_per_order=1, max_per_order=10)
    add_stock(one, 1)
    add_stock(some, 1)
    client = Client()
    assert "1 per order" in page(client, "only-one") and "1 to 1 per order" not in page(client, "only-one")
    assert "1 to 10 per order" in page(client, "some")
    checkout = client.get("/orders/checkout/only-one/").content.decode()
    assert "1 per order" in checkout and "1 to 1 per order" not in checkout
    chinese = page(client, "only-one", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "每单限购 1 件" in chinese and "1–1" not in chinese
