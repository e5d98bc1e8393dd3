"""Direct top-ups (代充): the product's field declaration and the buyer's values (catalog.topup),
checked on every door before payment; the manual queue in admin (done: delivered and booked;
failed: refunded); its SLA on the SLA clocks; no no-reason refund once topped up."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from catalog import topup
from catalog.models import Product
from ledger import services as ledger
from orders.models import ManualTopup, Order
from orders.services import topup as manual
from orders.services.orders import order_place
from payments.services import payments
from tests.builders import balance_of
from tests.factories import ProductFactory

D = Decimal
PHONE = [
    {
        "name": "phone",
        "label": "手机号码",
        "pattern": r"^1[3-9]\d{9}$",
        "min_length": 11,
        "max_length": 11,
        "confirm": True,
        "help": "",
    }
]
GAME = topup.preset_fields("game_account_server")


def topup_product(fields=None, **kw) -> Product:
    kw.setdefault("price", D("50.00"))
    kw.setdefault("supply_cost", D("45.00"))
    return ProductFactory(
        kind=Product.Kind.DIRECT_TOPUP,
        supply_mode=Product.SupplyMode.MANUAL,
        topup_fields=PHONE if fields is None else fields,
        **kw,
    )


GOOD = {"phone": "13812345678", "phone__confirm": "13812345678"}


# --- the declaration (unit) ------------------------------------------------------------------


def test_the_presets_parse():
    for key in topup.PRESETS:
        assert topup.declaration_parse(topup.preset_fields(key))


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("not a list", "列表"),
        ([{"name": "Account", "label": "账号"}], "名称"),
        ([{"name": "a", "label": "账号"}, {"name": "a", "label": "区服"}], "重复"),
        ([{"name": "a", "label": ""}], "标签"),
        ([{"name": "a", "label": "账号", "pattern": "([a-z"}], "正则"),
        ([{"name": "a", "label": "账号", "min_length": 5, "max_length": 2}], "min_length"),
        ([{"name": "a", "label": "账号", "max_length": 5000}], "min_length"),
        ([{"name": "a", "label": "账号", "min_length": "3"}], "整数"),
        ([{"name": "a", "label": "账号", "colour": "red"}], "colour"),
        ([{"name": "a", "label": "账号", "confirm": "yes"}], "confirm"),
    ],
)
def test_a_bad_declaration_is_refused_with_a_chinese_message_naming_the_field(declaration, message):
    with pytest.raises(ValidationError) as refused:
        topup.declaration_parse(declaration)
    assert message in refused.value.messages[0]


@pytest.mark.django_db
def test_buyer_values_are_trimmed_checked_and_confirmed():
    product = topup_product(GAME)
    values = topup.topup_values_check(
        product=product,
        data={"account": "  player_01 ", "account__confirm": "player_01", "server": " 电信一区 "},
    )
    assert values == {"account": "player_01", "server": "电信一区"}  # the confirmation is not kept

    phone = topup_product()
    cases = [
        ({}, "phone", "请输入手机号码"),
        ({"phone": "1381234567", "phone__confirm": "1381234567"}, "phone", "11"),
        ({"phone": "12812345678", "phone__confirm": "12812345678"}, "phone", "格式"),
        ({"phone": "13812345678"}, "phone__confirm", "再输入一次"),
        ({"phone": "13812345678", "phone__confirm": "13812345679"}, "phone__confirm", "不一致"),
        ({"phone": "1381234567\n8", "phone__confirm": "1381234567\n8"}, "phone", "不允许"),
        ({"phone": ["13812345678"], "phone__confirm": "13812345678"}, "phone", ""),
    ]
    for data, field, text in cases:
        with pytest.raises(topup.TopupValuesError) as refused:
            topup.topup_values_check(product=phone, data=data)
        assert field in refused.value.errors and text in refused.value.errors[field], (data, refused.value.errors)
    # Form names (topup_<name>) work too.
    assert topup.topup_values_check(
        product=phone, data={"topup_phone": "13812345678", "topup_phone__confirm": "13812345678"}
    ) == {"phone": "13812345678"}
    # Not a top-up: nothing asked, nothing kept.
    assert topup.topup_values_check(product=ProductFactory(), data={"phone": "x"}) == {}


def test_a_phone_is_shown_masked():
    assert topup.value_masked("phone", "13812345678") == "138****5678"
    assert topup.value_masked("account", "player_01") == "player_01"


# --- placing ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_order_place_refuses_bad_values_and_keeps_good_ones_without_stock(buyer):
    product = topup_product()
    with pytest.raises(topup.TopupValuesError):
        order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k1", topup={"phone": "123"})
    assert not Order.objects.exists()
    order = order_place(buyer=buyer, product=product, quantity=2, idempotency_key="k2", topup=GOOD)
    assert order.topup_values == {"phone": "13812345678"}
    assert order.fulfilment == Order.Fulfilment.MANUAL
    assert not order.codes.exists()  # no code changes hands


def _paid_topup(buyer, product=None, quantity=1) -> Order:
    product = product or topup_product()
    order = order_place(buyer=buyer, product=product, quantity=quantity, idempotency_key="k", topup=GOOD)
    payments.sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    return order


@pytest.mark.django_db(transaction=True)
def test_a_paid_manual_topup_waits_in_the_queue_and_done_delivers_it_booked(buyer, staff, settings):
    settings.MANUAL_TOPUP_SLA_MINUTES = 30
    product = topup_product()
    payable = ledger.supplier_payable(product.supplier.pk, product.supplier.name)
    order = _paid_topup(buyer, product, quantity=2)

    assert order.status == Order.Status.PAID and order.delivery_due_at is None  # no delivery sweeper spam
    queued = ManualTopup.objects.get(order=order)
    assert queued.state == ManualTopup.State.QUEUED
    assert timedelta(minutes=29) < queued.due_at - timezone.now() <= timedelta(minutes=30)
    assert balance_of(ledger.HELD) == D("100.00")
    # The fulfilment task again (the sweeper, a second notice): still one queue row.
    from orders.services.orders import order_fulfil

    assert order_fulfil(order_id=order.pk) is False
    assert ManualTopup.objects.filter(order=order).count() == 1

    mail.outbox.clear()
    assert manual.manual_topup_done(topup_id=queued.pk, actor=staff, note="已充值 流水 123") is True
    assert manual.manual_topup_done(topup_id=queued.pk, actor=staff, note="again") is False  # a double click

    order.refresh_from_db()
    queued.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert (queued.state, queued.handled_by, queued.note) == (ManualTopup.State.DONE, staff, "已充值 流水 123")
    assert [h.to_status for h in queued.history.order_by("pk")] == ["queued", "done"]
    assert balance_of(ledger.HELD) == 0
    assert balance_of(ledger.SALES) == D("100.00")
    assert balance_of(ledger.COST_OF_SALES) == D("90.00")  # supply_cost 45 × 2
    assert balance_of(payable) == D("90.00")  # owed to the product's supplier
    assert [m.to for m in mail.outbox] == [[buyer.email]]  # the buyer is told


@pytest.mark.django_db(transaction=True)
def test_done_is_refused_once_failed_and_for_an_unpaid_order(buyer, staff):
    product = topup_product()
    order = order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k", topup=GOOD)
    row = ManualTopup.objects.create(order=order, due_at=timezone.now())
    with pytest.raises(manual.TopupError):
        manual.manual_topup_done(topup_id=row.pk, actor=staff)
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
