"""Dates drawn without a format of their own read as the pages write them, in both languages
(settings.FORMAT_MODULE_PATH, marketplace/formats): staff compare an order's times in the admin
with a gateway's bill (``2026-12-08 09:30:12``) and with log lines, where Django's own formats
wrote ``2026年12月8日 09:30`` or ``Dec. 8, 2026, 9:30 a.m.``."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.utils import display_for_value
from django.utils import formats, translation

from orders.models import Order
from orders.services import orders as order_services
from tests.factories import ProductFactory, add_stock

MOMENT = datetime(2026, 12, 8, 9, 5, 7, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_formats_are_the_sites_in_every_language(language):
    with translation.override(language):
        assert display_for_value(MOMENT, "-") == "2026-12-08 09:05:07"
        assert formats.date_format(MOMENT, "SHORT_DATETIME_FORMAT") == "2026-12-08 09:05"
        assert formats.date_format(MOMENT.date()) == "2026-12-08"
        assert formats.time_format(MOMENT.time()) == "09:05:07"
        # Input stays Django's: a date typed the ISO way is accepted in both languages.
        assert "%Y-%m-%d" in formats.get_format("DATE_INPUT_FORMATS")


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_the_admins_order_list_shows_times_as_the_bills_do(client, staff, buyer, language):
    product = ProductFactory()
    add_stock(product, 1)
    order = order_services.order_place(buyer=buyer, product_id=product.pk, quantity=1, idempotency_key="fmt")
    Order.objects.filter(pk=order.pk).update(created_at=MOMENT)
    client.force_login(staff)
    page = client.get("/admin/orders/order/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert "2026-12-08 09:05:07" in page
    assert not re.search(r"2026年12月8日|Dec\. 8, 2026", page)
