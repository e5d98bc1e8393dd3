"""A page view never writes to the database (issue 11).

The demo data (``dev.py up``'s) plus what it lacks (a new buyer whose wallet was never opened,
a pending order, a withdrawal, an API key, an invitation), then every main page GET as a
visitor, a buyer, an agent and staff, while every SQL statement the pages send is recorded.
An INSERT, UPDATE or DELETE fails the test with the page that sent it.

Logging in happens before the recording (``force_login`` writes the session and the user's
``last_login``). Nothing is allowed while recording: the session is not modified by reading a
page, so ``SessionMiddleware`` does not save it.
"""

import re
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from aftersales.models import ArbitrationCase, RefundRequest, Ticket
from agents.models import Agent, Commission, Invitation, Storefront, Withdrawal
from agents.services import agents as services
from agents.services import api_keys, withdrawals
from catalog.models import Product
from compliance.models import Qualification
from ledger import services as ledger
from ledger.models import Account, Entry
from ledger.selectors import balance_of
from orders.models import Order
from payments.models import Payment, Refund
from payments.services import payments as payments
from tests.builders import delivered_order, place
from tests.factories import ProductFactory, UserFactory, add_stock

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|COPY)\b", re.IGNORECASE)


class WriteRecorder:
    """A ``connection.execute_wrapper`` that notes every statement that writes."""

    def __init__(self):
        self.writes: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if WRITE.match(sql):
            self.writes.append(sql[:160])
        return execute(sql, params, many, context)


@pytest.fixture
def world(settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    call_command("seed_demo", "--quiet")
    call_command("seed_demo_agents", "--quiet")
    call_command("seed_demo_sales")
    call_command("seed_demo_aftersales")
    call_command("seed_demo_compliance", verbosity=0)
    call_command("trust_compute", verbosity=0)
    users = {u.email: u for u in get_user_model().objects.filter(email__endswith="@demo.local")}
    agent = Agent.objects.select_related("user").get(user=users["agent@demo.local"])
    # A buyer who never had a wallet: its account must not be opened by looking at it.
    newcomer = UserFactory()
    delivered = delivered_order(newcomer, price="12.00", quantity=2)
    product = ProductFactory(price=Decimal("9.00"))
    add_stock(product, 2)
    pending = place(newcomer, product)
    recharge = payments.recharge_create(user=newcomer, amount="50")
    key, _secret = api_keys.apikey_create(agent=agent, name="shop")
    services.invitation_create(upline=agent, level=agent.level, max_uses=3)
    available = balance_of(ledger.commission_available(agent.user))
    assert available >= Decimal("20.00"), "the demo agent has commission to withdraw"
    withdrawal = withdrawals.withdrawal_request(
        agent=agent,
        amount="20",
        method=Withdrawal.Method.ALIPAY,
        payee_name="张三",
        payee_account="13800138000",
        idempotency_key="get-no-writes",
    )
    return {
        "users": users,
        "agent": agent,
        "newcomer": newcomer,
        "delivered": delivered,
        "pending": pending,
        "recharge": recharge,
        "key": key,
        "withdrawal": withdrawal,
    }


def buyer_pages(buyer, world) -> list[str]:
    order = Order.objects.filter(buyer=buyer, status=Order.Status.DELIVERED).order_by("pk").first()
    product = order.product
    pages = [
        reverse("catalog:home"),
        reverse("catalog:search") + "?q=" + product.name[:2],
        reverse("catalog:category", args=[product.category.slug]),
        reverse("catalog:product", args=[product.slug]),
        reverse("orders:checkout", args=[product.slug]),
        reverse("orders:list"),
        reverse("orders:detail", args=[order.number]),
        reverse("orders:status", args=[order.number]),
        reverse("wallet:home"),
        reverse("wallet:export"),
        reverse("profile"),
        reverse("aftersales:tickets"),
        reverse("aftersales:ticket_new"),
        reverse("aftersales:refund_new", args=[order.number]),
    ]
    for ticket in Ticket.objects.filter(user=buyer):
        pages.append(reverse("aftersales:ticket", args=[ticket.number]))
    for request in RefundRequest.objects.filter(user=buyer):
        pages.append(reverse("aftersales:refund_detail", args=[request.public_id]))
    for case in ArbitrationCase.objects.filter(ticket__user=buyer).select_related("ticket"):
        pages.append(reverse("aftersales:arbitration", args=[case.ticket.number]))
    pending = Order.objects.filter(buyer=buyer, status=Order.Status.PENDING).first()
    if pending is not None:
        pages += [
            reverse("orders:detail", args=[pending.number]),
            reverse("payments:choose", args=[pending.number]),
            reverse("payments:status", args=[pending.number]),
            reverse("payments:sandbox", args=[pending.number]),
        ]
    recharge = world["recharge"]
    if recharge.user_id == buyer.pk:
        pages += [
            reverse("payments:choose", args=[recharge.number]),
            reverse("payments:sandbox", args=[recharge.number]),
        ]
    return pages


def storefront_pages(shop: Storefront) -> list[str]:
    product = Product.objects.filter(is_active=True).order_by("pk").first()
    return [
        reverse("storefront:home", args=[shop.slug]),
        reverse("storefront:product", args=[shop.slug, product.slug]),
        reverse("storefront:operator", args=[shop.slug]),
    ]


def agent_pages(world) -> list[str]:
    agent = world["agent"]
    shop = Storefront.objects.get(agent=agent)
    downline = Agent.objects.filter(upline=agent).first()
    return [
        reverse("agents:home"),
        reverse("agents:downline"),
        reverse("agents:downline_detail", args=[downline.pk]),
        reverse("agents:reports"),
        reverse("agents:reports_csv"),
        reverse("agents:pricing"),
        reverse("agents:invitations"),
        reverse("agents:storefront"),
        reverse("agents:storefront_prices"),
        reverse("agents:posters"),
        reverse("agents:poster_shop", args=["svg"]),
        reverse("agents:coupons"),
        reverse("agents:reports_sources"),
        reverse("agents:reports_csv") + "?kind=sources",
        reverse("agents:api_keys"),
        reverse("agents:api_key_edit", args=[world["key"].pk]),
        reverse("agents:withdrawals"),
        reverse("agents:withdrawal_fee") + "?amount=100",
        reverse("agents:withdrawal_detail", args=[world["withdrawal"].number]),
        reverse("wallet:home"),
        reverse("profile"),
        *storefront_pages(shop),
    ]


def admin_pages(world) -> list[str]:
    pages = [reverse("admin:index")]
    pages += [reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist") for m in admin.site._registry]
    records = [
        world["delivered"],
        world["pending"],
        world["withdrawal"],
        world["recharge"],
        world["agent"],
        world["newcomer"],
        Ticket.objects.first(),
        ArbitrationCase.objects.first(),
        RefundRequest.objects.first(),
        Refund.objects.first(),
        Payment.objects.first(),
        Commission.objects.first(),
        Invitation.objects.first(),
        Account.objects.filter(code__startswith="liability:wallet:").first(),
        Entry.objects.first(),
        Qualification.objects.first(),
    ]
    records = [r for r in records if type(r) in admin.site._registry]
    pages += [reverse(f"admin:{r._meta.app_label}_{r._meta.model_name}_change", args=[r.pk]) for r in records]
    pages += [
        reverse("admin:ledger_trial_balance"),
        reverse("admin:aftersales_sla_report"),
        reverse("admin:payments_channels"),
        reverse("admin:payments_refund_order", args=[world["delivered"].number]),
    ]
    return pages


def qualification_images() -> list[str]:
    shown = Qualification.objects.filter(image_updated_at__isnull=False)
    return [reverse("compliance:qualification_image", args=[q.pk]) for q in shown]


def writes_of(client: Client, pages: list[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """GET every page while recording: the writes each one sent, and any page that did not render."""
    found, broken = {}, {}
    for url in pages:
        recorder = WriteRecorder()
        with connection.execute_wrapper(recorder):
            response = client.get(url)
        if response.status_code != 200:
            broken[url] = response.status_code
        if recorder.writes:
            found[url] = recorder.writes
    return found, broken


@pytest.mark.django_db(transaction=True)
def test_no_page_view_writes_to_the_database(world):
    users = world["users"]
    accounts_before = Account.objects.count()
    visits = {
        "visitor": (
            None,
            [
                reverse("catalog:home"),
                reverse("compliance:qualifications"),
                *qualification_images(),
                reverse("trust:index"),
                reverse("trust:certificate_lookup") + "?number=NO-SUCH-CERT",
                reverse("rights:notice_list") + "?status=taken_down&q=RN",
                *storefront_pages(Storefront.objects.get(slug="jinpai")),
            ],
        ),
        "demo buyer": (users["buyer@demo.local"], buyer_pages(users["buyer@demo.local"], world)),
        "new buyer": (world["newcomer"], buyer_pages(world["newcomer"], world)),
        "agent": (users["agent@demo.local"], agent_pages(world)),
        "staff": (users["admin@demo.local"], admin_pages(world)),
    }
    found, broken = {}, {}
    for who, (user, pages) in visits.items():
        client = Client()
        if user is not None:
            client.force_login(user)  # writes the session and last_login: before recording
        assert not transaction.get_connection().in_atomic_block
        writes, failures = writes_of(client, pages)
        found.update({f"{who} GET {url}": sql for url, sql in writes.items()})
        broken.update({f"{who} GET {url}": status for url, status in failures.items()})
    assert broken == {}, "these pages did not render"
    assert found == {}, "these page views wrote to the database"
    assert Account.objects.count() == accounts_before  # looking at a wallet does not open it


@pytest.mark.django_db
def test_the_recorder_sees_a_write():
    recorder = WriteRecorder()
    with connection.execute_wrapper(recorder):
        UserFactory()
        list(get_user_model().objects.all())
    assert recorder.writes and all(WRITE.match(sql) for sql in recorder.writes)
