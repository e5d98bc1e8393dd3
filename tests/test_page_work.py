"""Work a logged-in page of a purchase does not need to do (issue 17, bench/pages.py)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import ProductFactory, add_stock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def ledger_reads(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "ledger_" in q["sql"]]


def test_the_product_page_names_the_balance_without_reading_it(client, buyer, settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    product = ProductFactory()
    add_stock(product, 2)
    client.force_login(buyer)
    client.get(product.get_absolute_url())  # warm
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(product.get_absolute_url()).content.decode()
    assert 'data-channel="balance"' in page and 'data-channel="sandbox"' in page
    assert ledger_reads(ctx) == []


def test_the_checkout_still_shows_the_balance_available(client, buyer, settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    product = ProductFactory()
    add_stock(product, 2)
    client.force_login(buyer)
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(f"/orders/checkout/{product.slug}/?quantity=1").content.decode()
    assert 'data-testid="channel-balance-available"' in page and "Available ¥0.00" in page
    assert len(ledger_reads(ctx)) == 1
