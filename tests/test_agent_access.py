"""An agent never reaches anything outside its own data and direct downline: every dashboard
page and action that takes an id, given another tree's id, answers 404, writes an audit row
and changes nothing. (Each area's own tests go deeper; this one walks all of them at once.)"""

from decimal import Decimal

import pytest
from django.test import Client

from agents.models import ApiKey, Invitation, Markup, PriceKind, RetailPrice, Withdrawal
from agents.services import agents as services
from agents.services import api_keys
from compliance.models import AuditEvent
from tests.api_helpers import withdrawal_with_commission
from tests.factories import ProductFactory, UserFactory, storefront_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


@pytest.fixture
def victim(level):
    """An agent with one of everything: downline, markup, invitation, storefront price, key, withdrawal."""
    agent = services.agent_create(user=UserFactory(), level=level)
    downline = services.agent_create(user=UserFactory(), level=level, upline=agent)
    product = ProductFactory(price=Decimal("50.00"))
    markup = services.markup_set(agent=agent, kind=PriceKind.FIXED, value="2.00")
    invitation = services.invitation_create(upline=agent, level=level, max_uses=3)
    shop = storefront_create(agent=agent, slug="victim-shop", name="Victim")
    RetailPrice.objects.create(storefront=shop, product=product, price=Decimal("60.00"))
    key, _secret = api_keys.apikey_create(agent=agent, name="shop")
    withdrawal = withdrawal_with_commission(agent)
    return {
        "level": level,
        "agent": agent,
        "downline": downline,
        "product": product,
        "markup": markup,
        "invitation": invitation,
        "shop": shop,
        "key": key,
        "withdrawal": withdrawal,
    }


@pytest.fixture
def intruder(victim):
    """An agent of another tree, with a storefront of its own, logged in."""
    agent = services.agent_create(user=UserFactory(), level=victim["level"])
    storefront_create(agent=agent, slug="intruder-shop", name="Intruder")
    client = Client()
    client.force_login(agent.user)
    return client


def snapshot(v):
    key = ApiKey.objects.get(pk=v["key"].pk)
    return (
        Markup.objects.filter(pk=v["markup"].pk).values_list("value", flat=True).first(),
        Invitation.objects.get(pk=v["invitation"].pk).revoked_at,
        RetailPrice.objects.get(storefront=v["shop"]).price,
        (key.name, key.secret, key.revoked_at),
        Withdrawal.objects.get(pk=v["withdrawal"].pk).status,
    )


ATTEMPTS = [
    ("get", lambda v: f"/agent/downline/{v['downline'].pk}/", lambda v: {}),
    ("post", lambda v: "/agent/pricing/markups/", lambda v: {"action": "delete", "markup": v["markup"].pk}),
    ("post", lambda v: f"/agent/invitations/{v['invitation'].pk}/revoke/", lambda v: {}),
    (
        "post",
        lambda v: f"/agent/storefront/prices/{v['product'].pk}/",
        lambda v: {"storefront": v["shop"].pk, "action": "set", "price": "99.00"},
    ),
    ("get", lambda v: f"/agent/api-keys/{v['key'].pk}/edit/", lambda v: {}),
    (
        "post",
        lambda v: f"/agent/api-keys/{v['key'].pk}/edit/",
        lambda v: {"name": "stolen", "ip_allowlist": "", "callback_url": ""},
    ),
    ("post", lambda v: f"/agent/api-keys/{v['key'].pk}/rotate/", lambda v: {}),
    ("post", lambda v: f"/agent/api-keys/{v['key'].pk}/revoke/", lambda v: {}),
    ("get", lambda v: f"/agent/withdrawals/{v['withdrawal'].number}/", lambda v: {}),
]


@pytest.mark.parametrize(
    ("method", "url", "data"), ATTEMPTS, ids=[f"{m}-{i}" for i, (m, _u, _d) in enumerate(ATTEMPTS)]
)
def test_another_trees_ids_get_404_an_audit_row_and_change_nothing(victim, intruder, method, url, data):
    before = snapshot(victim)
    audits = AuditEvent.objects.count()
    response = getattr(intruder, method)(url(victim), data(victim))
    assert response.status_code == 404
    assert AuditEvent.objects.count() == audits + 1
    event = AuditEvent.objects.latest("id")
    assert event.outcome == AuditEvent.Outcome.DENIED and event.ip and event.path
    assert snapshot(victim) == before


def test_an_upline_cannot_reach_below_its_direct_downline(victim):
    grandchild = services.agent_create(user=UserFactory(), level=victim["level"], upline=victim["downline"])
    client = Client()
    client.force_login(victim["agent"].user)
    assert client.get(f"/agent/downline/{victim['downline'].pk}/").status_code == 200
    assert client.get(f"/agent/downline/{grandchild.pk}/").status_code == 404
    assert AuditEvent.objects.filter(outcome=AuditEvent.Outcome.DENIED).count() == 1
    # A downline cannot look up at its upline either.
    client.force_login(victim["downline"].user)
    assert client.get(f"/agent/downline/{victim['agent'].pk}/").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/agent/pricing/",
        "/agent/downline/",
        "/agent/invitations/",
        "/agent/reports/",
        "/agent/reports/export.csv?kind=daily",
        "/agent/storefront/",
        "/agent/storefront/prices/",
        "/agent/api-keys/",
        "/agent/withdrawals/",
    ],
)
def test_a_user_who_is_not_an_agent_gets_nothing(victim, url):
    client = Client()
    client.force_login(UserFactory())
    response = client.get(url)
    body = response.content.decode(errors="ignore")
    # Either the page is not there for them, or they are told how to become an agent.
    assert response.status_code == 404 or (response.status_code == 200 and 'data-testid="become-agent"' in body)
    assert victim["shop"].name not in body and victim["key"].key_id not in body


def test_anonymous_visitors_are_sent_to_log_in(victim):
    response = Client().get("/agent/pricing/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
