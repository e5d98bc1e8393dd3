"""Direct top-ups (代充): the product's field declaration and the buyer's values (catalog.topup),
checked on every door before payment; the manual queue in admin (done: delivered and booked;
failed: refunded); its SLA on the SLA clocks; no no-reason refund once topped up."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from catalog import topup
from catalog.models import Product
from ledger import services as ledger
from marketplace.errors import Conflict
from orders.models import ManualTopup, Order
from orders.services import topup as manual
from orders.services.orders import order_place
from payments.services import payments
from tests.builders import balance_of
from tests.factories import ProductFactory, UserFactory

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
    order = order_place(buyer=buyer, product=product, quantity=quantity, idempotency_key=uuid.uuid4().hex, topup=GOOD)
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


@pytest.mark.django_db(transaction=True)
def test_a_failed_manual_topup_is_refunded_in_full_automatically(buyer, staff, mailoutbox):
    from payments.models import Refund
    from payments.services import refunds

    order = _paid_topup(buyer)
    queued = ManualTopup.objects.get(order=order)
    with pytest.raises(manual.TopupError):  # a note is required: the buyer sees it
        manual.manual_topup_fail(topup_id=queued.pk, actor=staff, note="  ")
    mailoutbox.clear()
    assert manual.manual_topup_fail(topup_id=queued.pk, actor=staff, note="账号不存在") is True
    assert manual.manual_topup_fail(topup_id=queued.pk, actor=staff, note="again") is False  # a double click
    with pytest.raises(Conflict, match="失败"):  # the other decision after it: refused, says who decided
        manual.manual_topup_done(topup_id=queued.pk, actor=staff)

    order.refresh_from_db()
    queued.refresh_from_db()
    assert order.status == Order.Status.REFUND_PENDING
    assert (queued.state, queued.note) == (ManualTopup.State.FAILED, "账号不存在")
    assert balance_of(ledger.HELD) == 0 and balance_of(ledger.REFUNDS_DUE) == D("50.00")
    assert [m.to for m in mailoutbox] == [[buyer.email]] and "充值未能完成" in mailoutbox[0].body

    # Payments' sweep refunds it to where the money came from, once.
    assert refunds.refunds_undeliverable_run() == 1
    assert refunds.refunds_undeliverable_run() == 0
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert Refund.objects.get(order=order).amount == D("50.00")
    assert balance_of(ledger.REFUNDS_DUE) == 0


# --- every door refuses bad values before payment --------------------------------------------


def _form(**extra) -> dict:
    return {"quantity": "1", "idempotency_key": uuid.uuid4().hex, "topup_ack": "1", **extra}


GOOD_FORM = {"topup_phone": "13812345678", "topup_phone__confirm": "13812345678"}


@pytest.mark.django_db
def test_the_checkout_page_shows_the_fields_and_refuses_bad_values_before_payment(client, buyer):
    product = topup_product(slug="mobile-50")
    client.force_login(buyer)
    url = f"/orders/checkout/{product.slug}/"
    page = client.get(url).content.decode()
    assert 'data-testid="topup-phone"' in page and 'data-testid="topup-phone-confirm"' in page
    assert 'data-testid="topup-ack"' in page and "直充商品充值成功后不支持7天无理由退款" in page
    assert "库存 10" not in page  # a top-up has no stock to count

    wrong = client.post(url, _form(topup_phone="13812345678", topup_phone__confirm="13812345670"))
    assert wrong.status_code == 400
    body = wrong.content.decode()
    assert 'data-testid="topup-error-phone-confirm"' in body and "不一致" in body
    assert 'value="13812345678"' in body  # what was typed is kept
    bad = client.post(url, _form(topup_phone="12345", topup_phone__confirm="12345"))
    assert bad.status_code == 400 and 'data-testid="topup-error-phone"' in bad.content.decode()
    unconfirmed = client.post(url, {**_form(**GOOD_FORM), "topup_ack": ""})
    assert unconfirmed.status_code == 400 and "请勾选确认" in unconfirmed.content.decode()
    assert not Order.objects.exists()

    placed = client.post(url, _form(**GOOD_FORM))
    assert placed.status_code == 302
    order = Order.objects.get()
    assert order.topup_values == {"phone": "13812345678"} and order.fulfilment == Order.Fulfilment.MANUAL


@pytest.mark.django_db
def test_a_guest_and_a_storefront_checkout_check_the_values_too(client, level):
    from agents.models import PriceKind
    from agents.services import agents as agent_services
    from agents.services import storefronts
    from tests.factories import verified_operator

    product = topup_product(slug="mobile-30")
    guest = {"guest_email": "g@example.net", "guest_email_confirm": "g@example.net"}
    url = f"/orders/checkout/{product.slug}/"
    refused = client.post(url, _form(topup_phone="1", topup_phone__confirm="1", **guest))
    assert refused.status_code == 400 and 'data-testid="topup-error-phone"' in refused.content.decode()
    assert client.post(url, _form(**GOOD_FORM, **guest)).status_code == 302
    assert Order.objects.get().topup_values == {"phone": "13812345678"}

    agent_services.level_price_set(level=level, product=product, kind=PriceKind.FIXED, value="48.00")
    agent = agent_services.agent_create(user=UserFactory(), level=level)
    verified_operator(agent)
    storefronts.storefront_open(
        agent=agent, slug="lucky", name="Lucky", default_markup_kind=PriceKind.FIXED, default_markup_value="1"
    )
    page = client.get(f"/s/lucky/p/{product.slug}/").content.decode()
    assert 'data-testid="topup-phone"' in page and "直充商品充值成功后不支持7天无理由退款" in page
    buy = f"/s/lucky/p/{product.slug}/buy/"
    refused = client.post(buy, _form(topup_phone="13812345678", **guest))
    assert refused.status_code == 400 and 'data-testid="topup-error-phone-confirm"' in refused.content.decode()
    assert Order.objects.count() == 1
    assert client.post(buy, _form(**GOOD_FORM, **guest)).status_code == 302
    sold = Order.objects.get(channel=Order.Channel.STOREFRONT)
    assert sold.topup_values == {"phone": "13812345678"} and sold.unit_price == D("49.00")


@pytest.mark.django_db(transaction=True)
def test_the_api_order_carries_the_topup_fields(staff):
    from tests.api_helpers import issue_key, level, make_agent, set_level_price, top_up

    product = topup_product()
    gold = level("金牌", 4)
    agent = make_agent(level_obj=gold)
    set_level_price(gold, product, "48.00")
    top_up(agent.user, D("200.00"))
    shop = issue_key(agent)

    listed = shop.get(f"/api/v1/products/{product.pk}/").json()
    assert listed["kind"] == "direct_topup" and listed["topup_fields"][0]["name"] == "phone"

    payload = {"product_id": product.pk, "quantity": 1, "agent_order_no": "T-1"}
    missing = shop.post("/api/v1/orders/", payload)
    assert missing.status_code == 422 and missing.json()["code"] == "topup_invalid"
    assert "topup.phone" in missing.json()["details"]
    bad = shop.post("/api/v1/orders/", {**payload, "agent_order_no": "T-2", "topup": {"phone": "123"}})
    assert bad.status_code == 422 and bad.json()["details"]["topup.phone"]
    assert not Order.objects.exists()  # nothing placed, nothing paid

    placed = shop.post("/api/v1/orders/", {**payload, "agent_order_no": "T-3", "topup": {"phone": " 13812345678 "}})
    assert placed.status_code == 201, placed.json()
    body = placed.json()
    assert (body["status"], body["topup"], body["codes"]) == ("paid", {"phone": "13812345678"}, None)
    retried = shop.post("/api/v1/orders/", {**payload, "agent_order_no": "T-3", "topup": {"phone": "13812345678"}})
    assert retried.status_code == 200 and retried.json()["order_number"] == body["order_number"]  # the same order
    other = shop.post("/api/v1/orders/", {**payload, "agent_order_no": "T-3", "topup": {"phone": "13912345678"}})
    assert other.status_code == 409 and other.json()["code"] == "agent_order_no_conflict"  # never silently dropped
    queued = ManualTopup.objects.get(order__agent_order_no="T-3")
    manual.manual_topup_done(topup_id=queued.pk, actor=staff, note="ok")
    done = shop.get("/api/v1/orders/T-3/").json()
    assert (done["status"], done["codes"]) == ("delivered", [])


@pytest.mark.django_db
def test_the_openapi_schema_describes_the_topup_fields(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    parts = schema["components"]["schemas"]
    assert parts["OrderCreateRequest"]["properties"]["topup"]["type"] == "object"
    assert parts["Order"]["properties"]["topup"]["type"] == "object"
    assert "topup_fields" in parts["Product"]["properties"]


# --- the queue's SLA ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_manual_queue_warns_then_breaches_once_each_emailing_the_supervisors(buyer, settings, mailoutbox):
    from django.conf import settings as conf
    from django.contrib.auth.models import Group

    from aftersales import tasks as aftersales_tasks
    from aftersales.services import sla

    settings.MANUAL_TOPUP_SLA_MINUTES = 30
    group = Group.objects.create(name=conf.AFTERSALES_SUPERVISOR_GROUP)
    boss = UserFactory(is_staff=True, email="supervisor@example.com")
    boss.groups.add(group)
    order = _paid_topup(buyer)
    row = ManualTopup.objects.get(order=order)
    queued_at = row.due_at - timedelta(minutes=30)
    mailoutbox.clear()

    assert sla.topup_sla_sweep(now=queued_at + timedelta(minutes=19)) == {"topups_warned": 0, "topups_breached": 0}
    assert sla.topup_sla_sweep(now=queued_at + timedelta(minutes=21)) == {"topups_warned": 1, "topups_breached": 0}
    assert sla.topup_sla_sweep(now=queued_at + timedelta(minutes=25)) == {"topups_warned": 0, "topups_breached": 0}
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["supervisor@example.com"]
    assert "[SLA]" in mailoutbox[0].subject and order.number in mailoutbox[0].subject
    assert f"/admin/orders/manualtopup/{row.pk}/change/" in mailoutbox[0].body

    assert sla.topup_sla_sweep(now=queued_at + timedelta(minutes=31)) == {"topups_warned": 0, "topups_breached": 1}
    assert sla.topup_sla_sweep(now=queued_at + timedelta(minutes=50)) == {"topups_warned": 0, "topups_breached": 0}
    assert len(mailoutbox) == 2 and "超时" in mailoutbox[1].subject
    row.refresh_from_db()
    assert row.warned_at == queued_at + timedelta(minutes=21) and row.breached_at == queued_at + timedelta(minutes=31)
    # The beat task runs this sweep with the tickets' (nothing more is due).
    counts = aftersales_tasks.sla_sweep()
    assert (counts["topups_warned"], counts["topups_breached"]) == (0, 0) and len(mailoutbox) == 2


@pytest.mark.django_db(transaction=True)
def test_a_warning_whose_email_cannot_be_queued_is_not_stamped_and_fires_at_the_next_sweep(
    buyer, settings, mailoutbox, monkeypatch
):
    import kombu.exceptions
    from django.conf import settings as conf
    from django.contrib.auth.models import Group

    from aftersales import tasks as aftersales_tasks
    from aftersales.services import sla

    settings.MANUAL_TOPUP_SLA_MINUTES = 30
    Group.objects.create(name=conf.AFTERSALES_SUPERVISOR_GROUP).user_set.add(
        UserFactory(is_staff=True, email="supervisor@example.com")
    )
    order = _paid_topup(buyer)
    row = ManualTopup.objects.get(order=order)
    late = row.due_at + timedelta(minutes=1)
    mailoutbox.clear()

    def broker_away(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    with monkeypatch.context() as m:
        m.setattr(aftersales_tasks.topup_sla_notify, "delay", broker_away)
        assert sla.topup_sla_sweep(now=late) == {"topups_warned": 0, "topups_breached": 0}
    row.refresh_from_db()
    assert row.breached_at is None and row.warned_at is None and not mailoutbox  # nothing lost: not stamped
    assert sla.topup_sla_sweep(now=late) == {"topups_warned": 0, "topups_breached": 1}
    assert len(mailoutbox) == 1 and "超时" in mailoutbox[0].subject


@pytest.mark.django_db(transaction=True)
def test_a_topup_found_overdue_gets_the_breach_alone_and_a_decided_one_nothing(buyer, staff, settings, mailoutbox):
    from aftersales.services import sla

    first, second = _paid_topup(buyer), _paid_topup(buyer)
    mailoutbox.clear()
    late = timezone.now() + timedelta(hours=2)
    manual.manual_topup_done(topup_id=second.manual_topup.pk, actor=staff)
    mailoutbox.clear()
    assert sla.topup_sla_sweep(now=late) == {"topups_warned": 0, "topups_breached": 1}
    row = ManualTopup.objects.get(order=first)
    assert row.warned_at == row.breached_at == late  # the warning superseded: no late warning
    assert len(mailoutbox) == 1 and first.number in mailoutbox[0].subject
    assert mailoutbox[0].to == [staff.email]  # no supervisor group: the superusers
    # The SLA report counts the queue: one done in time, one overdue now.
    report = sla.sla_report(now=late).topups
    assert (report.due, report.in_time, report.late, report.overdue_now) == (2, 1, 0, 1)


# --- after-sales -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_no_reason_refund_for_a_done_topup_but_a_ticket_can_be_opened(client, buyer, staff):
    from aftersales.services import no_reason

    order = _paid_topup(buyer)
    manual.manual_topup_done(topup_id=order.manual_topup.pk, actor=staff)
    order.refresh_from_db()
    with pytest.raises(no_reason.RefundRequestError) as refused:
        no_reason.refund_request_create(user=buyer, order=order, order_code_ids=[], idempotency_key="r1")
    assert refused.value.code == "topup_no_reason_refund" and "不支持7天无理由退款" in str(refused.value)
    assert not no_reason.refund_options(order=order, user=buyer).can_request

    client.force_login(buyer)
    page = client.get(f"/orders/{order.number}/").content.decode()
    assert 'data-testid="topup-state" data-state="done"' in page and "已充值" in page
    assert "138****5678" in page and "13812345678" not in page  # the phone shown masked
    assert 'data-testid="refund-entry"' not in page and 'data-testid="report-problem"' in page
    assert "不支持7天无理由退款" in client.get(f"/support/refunds/order/{order.number}/").content.decode()
    assert client.get(f"/support/new/?order={order.number}").status_code == 200
    # After-sales applies: a ticket (and from it a dispute) on the top-up order.
    from aftersales.models import Kind
    from aftersales.services.tickets import ticket_open

    ticket = ticket_open(
        user=buyer, kind=Kind.NOT_RECEIVED, subject="话费未到账", body="充值显示成功但未到账", order=order
    )
    assert ticket.order_id == order.pk


@pytest.mark.django_db(transaction=True)
def test_the_order_page_shows_the_topup_state_from_waiting_to_failed(client, buyer, staff):
    client.force_login(buyer)
    order = _paid_topup(buyer)
    page = client.get(f"/orders/{order.number}/").content.decode()
    assert 'data-state="waiting"' in page and "等待充值" in page and "正在为您填写的账号充值" in page
    manual.manual_topup_fail(topup_id=order.manual_topup.pk, actor=staff, note="账号不存在")
    page = client.get(f"/orders/{order.number}/").content.decode()
    assert 'data-state="failed"' in page and "账号不存在" in page


# --- admin ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_admin_queue_lists_overdue_first_and_staff_decide_on_the_page(client, buyer, staff):
    late, fresh = _paid_topup(buyer), _paid_topup(buyer)
    ManualTopup.objects.filter(order=late).update(due_at=timezone.now() - timedelta(minutes=5))
    client.force_login(staff)
    queue = client.get("/admin/orders/manualtopup/").content.decode()
    assert queue.index(late.number) < queue.index(fresh.number)
    assert 'data-overdue="1"' in queue and "13812345678" in queue  # staff see the account in full

    row = ManualTopup.objects.get(order=fresh)
    page = client.get(f"/admin/orders/manualtopup/{row.pk}/change/").content.decode()
    assert 'data-testid="mark-done"' in page and 'data-testid="mark-failed"' in page
    no_note = client.post(f"/admin/orders/manualtopup/{row.pk}/fail/", {"note": ""})
    assert no_note.status_code == 302 and ManualTopup.objects.get(pk=row.pk).state == "queued"
    done = client.post(f"/admin/orders/manualtopup/{row.pk}/done/", {"note": "流水 88"})
    again = client.post(f"/admin/orders/manualtopup/{row.pk}/done/", {"note": "流水 88"})  # a double click
    assert done.status_code == again.status_code == 302
    row.refresh_from_db()
    fresh.refresh_from_db()
    assert (row.state, row.note, fresh.status) == ("done", "流水 88", Order.Status.DELIVERED)
    assert row.history.filter(to_status="done").count() == 1

    # Without the permission: refused.
    clerk = UserFactory(is_staff=True)
    client.force_login(clerk)
    other = ManualTopup.objects.get(order=late)
    assert client.post(f"/admin/orders/manualtopup/{other.pk}/done/", {"note": "x"}).status_code == 403


@pytest.mark.django_db
def test_the_product_admin_checks_the_declaration(client, staff):
    from tests.factories import CategoryFactory, SupplierFactory

    client.force_login(staff)
    category, supplier = CategoryFactory(), SupplierFactory()
    base = {
        "category": category.pk,
        "supplier": supplier.pk,
        "name": "话费 50",
        "slug": "huafei-50",
        "kind": "direct_topup",
        "description": "",
        "face_value": "50.00",
        "price": "49.50",
        "min_per_order": "1",
        "max_per_order": "5",
        "sort_order": "0",
        "supply_mode": "manual",
        "supply_cost": "48.00",
        "topup_fields": "[]",
    }
    empty = client.post("/admin/catalog/product/add/", base)
    assert empty.status_code == 200 and "至少需要一个" in empty.content.decode()
    bad = client.post(
        "/admin/catalog/product/add/", {**base, "topup_fields": '[{"name": "p", "label": "号", "pattern": "("}]'}
    )
    assert bad.status_code == 200 and "正则" in bad.content.decode()
    stock = client.post("/admin/catalog/product/add/", {**base, "supply_mode": "stock", "topup_preset": "phone"})
    assert stock.status_code == 200 and "不能使用库存卡密" in stock.content.decode()
    assert not Product.objects.exists()
    saved = client.post("/admin/catalog/product/add/", {**base, "topup_preset": "phone"})
    assert saved.status_code == 302, saved.content.decode()[:3000]
    assert Product.objects.get().topup_fields[0]["pattern"] == r"^1[3-9]\d{9}$"
