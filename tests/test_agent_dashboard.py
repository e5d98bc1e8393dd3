"""The agent's dashboard pages: overview, prices and markups, downline (and who may see what)."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents import selectors
from agents.models import Markup, PriceKind
from agents.services import agents as services
from catalog.models import Product
from compliance.models import AuditEvent
from ledger import services as ledger
from tests.factories import CategoryFactory, ProductFactory, UserFactory

D = Decimal
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


@pytest.fixture
def setup(levels):
    """A (银牌, top) > B (铜牌) > C (普通); product P in category K at 100.00, P2 at 33.33."""
    k = CategoryFactory(name="Game cards")
    p = ProductFactory(category=k, price=D("100.00"), name="Steam 100")
    p2 = ProductFactory(category=k, price=D("33.33"), name="Odd price")
    services.level_price_set(level=levels["银牌"], kind=PriceKind.FIXED, value="80.00", product=p)
    a = services.agent_create(user=UserFactory(), level=levels["银牌"])
    b = services.agent_create(user=UserFactory(), level=levels["铜牌"], upline=a)
    c = services.agent_create(user=UserFactory(), level=levels["普通"], upline=b)
    services.markup_set(agent=a, kind=PriceKind.PERCENT, value="10")  # everything, any level
    services.markup_set(agent=a, kind=PriceKind.FIXED, value="3.00", category=k, downline_level=levels["普通"])
    services.markup_set(agent=b, kind=PriceKind.FIXED, value="2.50", product=p)
    return {"a": a, "b": b, "c": c, "p": p, "p2": p2, "k": k}


def price_rows(response):
    return {row["product"].pk: row for row in response.context["rows"]}


def cell(row, level):
    return next(c for c in row["cells"] if c["level"].pk == level.pk)


def test_pricing_page_numbers_for_a_three_level_chain(client, setup, levels):
    a, b, c, p, p2 = setup["a"], setup["b"], setup["c"], setup["p"], setup["p2"]

    client.force_login(a.user)
    rows = price_rows(client.get(reverse("agents:pricing")))
    assert rows[p.pk]["cost"] == D("80.00")
    assert cell(rows[p.pk], levels["普通"])["pays"] == D("83.00")  # category rule for 普通 wins
    assert cell(rows[p.pk], levels["普通"])["margin"] == D("3.00")
    assert cell(rows[p.pk], levels["铜牌"])["pays"] == D("88.00")  # 10% of 80
    assert rows[p2.pk]["cost"] == D("33.33")
    assert cell(rows[p2.pk], levels["铜牌"])["pays"] == D("36.66")  # 3.333 rounded to the fen
    assert cell(rows[p2.pk], levels["铜牌"])["margin"] == D("3.33")

    client.force_login(b.user)
    r = client.get(reverse("agents:pricing"))
    rows = price_rows(r)
    assert rows[p.pk]["cost"] == D("88.00")
    for level in levels.values():  # B's product markup is for any level
        assert cell(rows[p.pk], level)["pays"] == D("90.50")
        assert cell(rows[p.pk], level)["margin"] == D("2.50")
    assert rows[p2.pk]["cost"] == D("36.66")
    assert cell(rows[p2.pk], levels["普通"])["margin"] == D("0.00")
    html = r.content.decode()
    assert "¥88.00" in html and "¥90.50" in html and "+2.50" in html
    assert "orders placed from now on" in html

    # What B's page says a 普通 downline pays is what C really pays.
    products = Product.objects.filter(pk__in=[p.pk, p2.pk]).select_related("category")
    real = selectors.agent_costs(agent=c, products=products)
    assert real == {pid: cell(row, levels["普通"])["pays"] for pid, row in rows.items()}


def test_pricing_lists_every_active_product_paginated_and_searchable(client, levels):
    agent = services.agent_create(user=UserFactory(), level=levels["普通"])
    cat = CategoryFactory(name="会员")
    for i in range(55):
        ProductFactory(category=cat, name=f"Card {i:02d}")
    hidden = ProductFactory(category=cat, name="Off sale", is_active=False)
    client.force_login(agent.user)
    first = client.get(reverse("agents:pricing"))
    assert len(first.context["rows"]) == 50 and first.context["page"].paginator.count == 55
    second = client.get(reverse("agents:pricing"), {"page": 2})
    assert len(second.context["rows"]) == 5
    ids = {r["product"].pk for r in first.context["rows"]} | {r["product"].pk for r in second.context["rows"]}
    assert hidden.pk not in ids
    found = client.get(reverse("agents:pricing"), {"q": "Card 07"})
    assert [r["product"].name for r in found.context["rows"]] == ["Card 07"]
    by_category = client.get(reverse("agents:pricing"), {"q": "会员"})
    assert by_category.context["page"].paginator.count == 55


def test_pricing_page_queries_do_not_grow_with_products(client, levels):
    top = services.agent_create(user=UserFactory(), level=levels["金牌"])
    mid = services.agent_create(user=UserFactory(), level=levels["银牌"], upline=top)
    agent = services.agent_create(user=UserFactory(), level=levels["铜牌"], upline=mid)
    services.markup_set(agent=top, kind=PriceKind.PERCENT, value="5")
    client.force_login(agent.user)

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("agents:pricing")).status_code == 200
        return len(ctx.captured_queries)

    ProductFactory()
    count()  # warm: what every page caches (the footer's promises) is read once
    few = count()
    for _ in range(40):
        ProductFactory()
    assert count() == few


def test_markup_forms_set_refuse_negative_and_delete(client, setup, levels):
    b, p, k = setup["b"], setup["p"], setup["k"]
    client.force_login(b.user)
    url = reverse("agents:markups")
    r = client.post(
        url, {"action": "set", "scope": "category", "category": k.pk, "kind": "percent", "value": "5"}, follow=True
    )
    assert "Markup saved" in r.content.decode()
    m = Markup.objects.get(agent=b, scope="category")
    assert (m.category, m.kind, m.value, m.downline_level) == (k, "percent", D("5"), None)

    # Edit (same target): updates the one row.
    client.post(
        url,
        {"action": "set", "scope": "category", "category": k.pk, "kind": "fixed", "value": "1.20"},
    )
    m.refresh_from_db()
    assert (m.kind, m.value) == ("fixed", D("1.20")) and Markup.objects.filter(agent=b).count() == 2

    # For one downline level only.
    client.post(
        url,
        {"action": "set", "scope": "all", "kind": "fixed", "value": "0.80", "level": levels["金牌"].pk},
    )
    assert Markup.objects.get(agent=b, scope="all").downline_level == levels["金牌"]

    r = client.post(url, {"action": "set", "scope": "all", "kind": "fixed", "value": "-1"}, follow=True)
    assert "Cannot be negative" in r.content.decode()
    r = client.post(url, {"action": "set", "scope": "all", "kind": "fixed", "value": "1.234"}, follow=True)
    assert "at most two decimal places" in r.content.decode()
    r = client.post(url, {"action": "set", "scope": "product", "kind": "fixed", "value": "1"}, follow=True)
    assert "Choose the product" in r.content.decode()
    r = client.post(url, {"action": "set", "scope": "all", "kind": "fixed", "value": "abc"}, follow=True)
    assert "is not a number" in r.content.decode()
    assert Markup.objects.filter(agent=b).count() == 3

    product_markup = Markup.objects.get(agent=b, product=p)
    r = client.post(url, {"action": "delete", "markup": product_markup.pk}, follow=True)
    assert "Markup deleted" in r.content.decode()
    assert not Markup.objects.filter(pk=product_markup.pk).exists()


def test_markup_ids_of_another_agent_are_404_and_audited(client, setup):
    a, b = setup["a"], setup["b"]
    theirs = Markup.objects.filter(agent=a).first()
    client.force_login(b.user)
    assert client.post(reverse("agents:markups"), {"action": "delete", "markup": theirs.pk}).status_code == 404
    assert Markup.objects.filter(pk=theirs.pk).exists()
    assert client.get(reverse("agents:pricing"), {"edit": theirs.pk}).status_code == 404
    actions = set(AuditEvent.objects.filter(actor=b.user).values_list("action", flat=True))
    assert actions == {"agents.markup_delete", "agents.markup_edit"}
    assert set(AuditEvent.objects.values_list("outcome", flat=True)) == {AuditEvent.Outcome.DENIED}


def test_downline_shows_only_the_direct_downline(client, setup, levels):
    a, b, c = setup["a"], setup["b"], setup["c"]
    b2 = services.agent_create(user=UserFactory(), level=levels["普通"], upline=a)
    client.force_login(a.user)
    r = client.get(reverse("agents:downline"))
    shown = {row["agent"].pk for row in r.context["rows"]}
    assert shown == {b.pk, b2.pk}
    html = r.content.decode()
    assert b.user.email in html and c.user.email not in html
    team = {row["agent"].pk: row["agent"].team for row in r.context["rows"]}
    assert team == {b.pk: 1, b2.pk: 0}

    assert client.get(reverse("agents:downline_detail", args=[b.pk])).status_code == 200
    # A grand-downline, an upline, another tree: all 404 and logged.
    (x,) = [services.agent_create(user=UserFactory(), level=levels["普通"])]
    for other in (c, x):
        assert client.get(reverse("agents:downline_detail", args=[other.pk])).status_code == 404
    client.force_login(b.user)
    assert client.get(reverse("agents:downline_detail", args=[a.pk])).status_code == 404
    events = AuditEvent.objects.filter(action="agents.downline_detail", outcome=AuditEvent.Outcome.DENIED)
    assert sorted(events.values_list("target", flat=True)) == sorted(f"agent:{o.pk}" for o in (c, x, a))


def test_home_shows_level_upline_and_balances(client, setup):
    a, b = setup["a"], setup["b"]
    # Put money in B's accounts the way the ledger would: through an entry.
    from django.db import transaction

    with transaction.atomic():
        ledger.transfer(
            debit=ledger.COMMISSIONS,
            credit=ledger.commission_pending(b.user),
            amount=D("12.34"),
            kind="commission",
            reference="test",
            idempotency_key="test-home-balance",
        )
    client.force_login(b.user)
    r = client.get(reverse("agents:home"))
    html = r.content.decode()
    assert r.context["balances"] == {"pending": D("12.34"), "available": D("0.00"), "wallet": D("0.00")}
    assert "¥12.34" in html and "铜牌" in html
    assert a.user.email[:2] + "***@" in html and a.user.email not in html  # the upline by name only
    client.force_login(a.user)
    assert "The platform" in client.get(reverse("agents:home")).content.decode()


def test_agent_centre_link_only_for_agents(client, setup):
    client.force_login(setup["a"].user)
    assert b'data-testid="nav-agent"' in client.get(reverse("agents:pricing")).content
    client.force_login(UserFactory())
    assert b'data-testid="nav-agent"' not in client.get(reverse("catalog:home")).content
