"""The agent tree: invitations (create, accept, refuse, race), staff moves with history, admin."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent, AgentMove, Invitation
from agents.services import agents as services
from agents.services.agents import AgentError
from compliance.models import AuditEvent
from tests.builders import run_concurrently, values_and_errors
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("english")


def chain(levels, depth, level="银牌"):
    out, upline = [], None
    for _ in range(depth):
        upline = services.agent_create(user=UserFactory(), level=levels[level], upline=upline)
        out.append(upline)
    return out


def staff():
    return UserFactory(is_staff=True, is_superuser=True)


# --- joining -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_agent_create_records_the_joining(levels):
    admin_user = staff()
    (top,) = chain(levels, 1)
    agent = services.agent_create(user=UserFactory(), level=levels["普通"], upline=top, actor=admin_user)
    move = AgentMove.objects.get(agent=agent)
    assert (move.from_upline, move.to_upline, move.from_path, move.to_path) == (None, top, "", agent.path)
    assert move.actor == admin_user and move.invitation is None
    assert AgentMove.objects.filter(agent=top, to_upline=None, to_path=top.path).exists()


@pytest.mark.django_db
def test_invitation_code_is_random_and_accept_makes_a_downline_agent(levels):
    (top,) = chain(levels, 1)
    inv = services.invitation_create(upline=top, level=levels["铜牌"], max_uses=2, expires_at=None)
    other = services.invitation_create(upline=top, level=levels["铜牌"], max_uses=2, expires_at=None)
    assert len(inv.code) == 12 and inv.code != other.code
    assert set(inv.code) <= set(services.INVITATION_ALPHABET)
    user = UserFactory()
    agent = services.invitation_accept(code=inv.code.lower()[:6] + "-" + inv.code.lower()[6:], user=user)
    assert (agent.user, agent.upline, agent.level, agent.depth) == (user, top, levels["铜牌"], 2)
    assert agent.path == f"{top.path}{agent.pk}/"
    inv.refresh_from_db()
    assert inv.uses == 1
    move = AgentMove.objects.get(agent=agent)
    assert move.invitation == inv and move.actor == user and move.to_upline == top


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state, message",
    [
        ("expired", "has expired"),
        ("revoked", "withdrawn"),
        ("used", "already been used"),
    ],
)
def test_an_unusable_invitation_is_refused(levels, state, message):
    (top,) = chain(levels, 1)
    inv = services.invitation_create(upline=top, level=levels["普通"], max_uses=1, expires_at=None)
    if state == "expired":
        Invitation.objects.filter(pk=inv.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif state == "revoked":
        services.invitation_revoke(invitation=inv)
    else:
        services.invitation_accept(code=inv.code, user=UserFactory())
    user = UserFactory()
    with pytest.raises(AgentError, match=message):
        services.invitation_accept(code=inv.code, user=user)
    assert not Agent.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_unknown_code_and_existing_agent_are_refused(levels):
    top, below = chain(levels, 2)
    inv = services.invitation_create(upline=top, level=levels["普通"], max_uses=5, expires_at=None)
    with pytest.raises(AgentError, match="no invitation with this code"):
        services.invitation_accept(code="NOPE2345ABCD", user=UserFactory())
    with pytest.raises(AgentError, match="already an agent"):
        services.invitation_accept(code=inv.code, user=below.user)
    inv.refresh_from_db()
    assert inv.uses == 0


@pytest.mark.django_db
def test_invitation_create_rules(levels, settings):
    (top,) = chain(levels, 1, level="铜牌")
    with pytest.raises(AgentError, match="your own level or below"):
        services.invitation_create(upline=top, level=levels["金牌"], max_uses=1, expires_at=None)
    with pytest.raises(AgentError, match="1 to 1000"):
        services.invitation_create(upline=top, level=levels["普通"], max_uses=0, expires_at=None)
    with pytest.raises(AgentError, match="in the future"):
        services.invitation_create(
            upline=top, level=levels["普通"], max_uses=1, expires_at=timezone.now() - timedelta(minutes=1)
        )
    settings.AGENTS_MAX_DEPTH = 1
    with pytest.raises(AgentError, match="deepest the agent tree allows"):
        services.invitation_create(upline=top, level=levels["普通"], max_uses=1, expires_at=None)


@pytest.mark.django_db
def test_accepting_beyond_the_depth_limit_is_refused(levels, settings):
    *_, bottom = chain(levels, 3)
    inv = services.invitation_create(upline=bottom, level=levels["普通"], max_uses=1, expires_at=None)
    settings.AGENTS_MAX_DEPTH = 3  # lowered after the invitation was sent
    user = UserFactory()
    with pytest.raises(AgentError, match="cannot take on a downline"):
        services.invitation_accept(code=inv.code, user=user)
    assert not Agent.objects.filter(user=user).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_accepts_of_a_one_use_invitation_make_one_agent(levels):
    (top,) = chain(levels, 1)
    inv = services.invitation_create(upline=top, level=levels["普通"], max_uses=1, expires_at=None)
    users = [UserFactory() for _ in range(8)]
    made, raised = values_and_errors(
        run_concurrently(len(users), lambda i: services.invitation_accept(code=inv.code, user=users[i]))
    )
    refused = [e for e in raised if isinstance(e, AgentError)]
    errors = [e for e in raised if not isinstance(e, AgentError)]
    assert errors == []
    assert len(made) == 1 and len(refused) == len(users) - 1
    inv.refresh_from_db()
    assert inv.uses == 1
    assert Agent.objects.filter(upline=top).count() == 1


# --- moves ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_move_rewrites_the_whole_subtree_and_keeps_history(levels):
    admin_user = staff()
    a, b, c, d = chain(levels, 4)  # a > b > c > d
    (x,) = chain(levels, 1)  # another top agent
    e = services.agent_create(user=UserFactory(), level=levels["普通"], upline=c)  # c has two below
    move = services.agent_move(agent=b, new_upline=x, actor=admin_user, reason="asked by both uplines")
    b, c, d, e = (Agent.objects.get(pk=o.pk) for o in (b, c, d, e))
    assert (b.upline_id, b.depth, b.path) == (x.pk, 2, f"/{x.pk}/{b.pk}/")
    assert (c.depth, c.path) == (3, f"/{x.pk}/{b.pk}/{c.pk}/")
    assert (d.depth, d.path) == (4, f"/{x.pk}/{b.pk}/{c.pk}/{d.pk}/")
    assert (e.depth, e.path) == (4, f"/{x.pk}/{b.pk}/{c.pk}/{e.pk}/")
    assert c.upline_id == b.pk and d.upline_id == c.pk  # inside the subtree nothing else changes
    assert (move.from_upline_id, move.to_upline_id) == (a.pk, x.pk)
    assert (move.from_path, move.to_path) == (f"/{a.pk}/{b.pk}/", f"/{x.pk}/{b.pk}/")
    assert move.subtree_size == 3 and move.actor == admin_user and move.reason == "asked by both uplines"
    assert Agent.objects.get(pk=a.pk).path == f"/{a.pk}/"  # the old upline is untouched

    # And up to the platform: depth 1, no upline.
    services.agent_move(agent=c, new_upline=None, actor=admin_user, reason="independent now")
    c, d = Agent.objects.get(pk=c.pk), Agent.objects.get(pk=d.pk)
    assert (c.upline_id, c.depth, c.path) == (None, 1, f"/{c.pk}/")
    assert (d.depth, d.path) == (2, f"/{c.pk}/{d.pk}/")
    assert AgentMove.objects.filter(agent=c).count() == 2  # joined, moved


@pytest.mark.django_db
def test_move_refuses_cycles(levels):
    admin_user = staff()
    a, b, c = chain(levels, 3)
    with pytest.raises(AgentError, match="under itself or its own downline"):
        services.agent_move(agent=a, new_upline=c, actor=admin_user, reason="x")
    with pytest.raises(AgentError, match="under itself or its own downline"):
        services.agent_move(agent=b, new_upline=b, actor=admin_user, reason="x")
    with pytest.raises(AgentError, match="already under this upline"):
        services.agent_move(agent=c, new_upline=b, actor=admin_user, reason="x")
    assert Agent.objects.get(pk=c.pk).path == f"/{a.pk}/{b.pk}/{c.pk}/"
    assert AgentMove.objects.exclude(from_path="").count() == 0


@pytest.mark.django_db
def test_move_refuses_depth_overflow_of_any_subtree_agent(levels, settings):
    settings.AGENTS_MAX_DEPTH = 4
    admin_user = staff()
    _a, b, c = chain(levels, 3)  # depths 1..3
    _x, y = chain(levels, 2)  # y at depth 2
    # b's subtree (b, c) would be at depths 3 and 4 under y: allowed. Under a deeper z: refused.
    z = services.agent_create(user=UserFactory(), level=levels["普通"], upline=y)  # depth 3
    with pytest.raises(AgentError, match=r"at most 4 levels deep.*level 5"):
        services.agent_move(agent=b, new_upline=z, actor=admin_user, reason="x")
    assert Agent.objects.get(pk=c.pk).depth == 3
    services.agent_move(agent=b, new_upline=y, actor=admin_user, reason="fits")
    assert Agent.objects.get(pk=c.pk).depth == 4


@pytest.mark.django_db
def test_move_is_for_staff_and_needs_a_reason(levels):
    a, b = chain(levels, 2)
    (x,) = chain(levels, 1)
    with pytest.raises(PermissionDenied):
        services.agent_move(agent=b, new_upline=x, actor=a.user, reason="self-service")
    with pytest.raises(AgentError, match="reason"):
        services.agent_move(agent=b, new_upline=x, actor=staff(), reason="  ")


# --- pages ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_invitation_pages_create_list_revoke(client, levels):
    (top,) = chain(levels, 1)
    client.force_login(top.user)
    r = client.post(
        reverse("agents:invitations"), {"level": levels["铜牌"].pk, "max_uses": "3", "valid_days": "7"}, follow=True
    )
    inv = Invitation.objects.get(upline=top)
    assert (inv.level, inv.max_uses) == (levels["铜牌"], 3)
    assert inv.expires_at > timezone.now() + timedelta(days=6)
    html = r.content.decode()
    assert inv.code in html and reverse("agents:join", args=[inv.code]) in html

    r = client.post(reverse("agents:invitations"), {"level": levels["金牌"].pk, "max_uses": "1", "valid_days": "7"})
    assert "at or below your own" in r.content.decode()
    r = client.post(reverse("agents:invitations"), {"level": levels["普通"].pk, "max_uses": "-1", "valid_days": "0"})
    assert "1 to 1000" in r.content.decode()
    assert Invitation.objects.filter(upline=top).count() == 1

    client.post(reverse("agents:invitation_revoke", args=[inv.pk]))
    inv.refresh_from_db()
    assert inv.revoked_at is not None


@pytest.mark.django_db
def test_revoking_someone_elses_invitation_is_404_and_audited(client, levels):
    (a,) = chain(levels, 1)
    (b,) = chain(levels, 1)
    inv = services.invitation_create(upline=b, level=levels["普通"], max_uses=1, expires_at=None)
    client.force_login(a.user)
    assert client.post(reverse("agents:invitation_revoke", args=[inv.pk])).status_code == 404
    inv.refresh_from_db()
    assert inv.revoked_at is None
    event = AuditEvent.objects.get(action="agents.invitation_revoke")
    assert event.actor == a.user and event.outcome == AuditEvent.Outcome.DENIED


@pytest.mark.django_db
def test_join_page_flow(client, levels):
    (top,) = chain(levels, 1)
    inv = services.invitation_create(upline=top, level=levels["铜牌"], max_uses=1, expires_at=None)
    url = reverse("agents:join", args=[inv.code])
    # Anonymous: who invites, the level, and sign up / log in that come back here.
    html = client.get(url).content.decode()
    assert "铜牌" in html and top.user.email[:2] + "***@" in html and top.user.email not in html
    assert f"next={url.replace('/', '%2F')}" in html
    assert client.post(url)["Location"].startswith(reverse("account_login"))
    # Logged in: accept.
    user = UserFactory()
    client.force_login(user)
    r = client.post(url)
    assert r.status_code == 302 and r["Location"] == reverse("agents:home")
    assert Agent.objects.get(user=user).upline == top
    # Used up now: the page says so.
    client.force_login(UserFactory())
    assert "already been used" in client.get(url).content.decode()
    # Unknown code: a friendly 404; the code form redirects to the code's page.
    assert client.get(reverse("agents:join", args=["ZZZZ"])).status_code == 404
    r = client.get(reverse("agents:join_code"), {"code": f" {inv.code.lower()} "})
    assert r["Location"] == url


@pytest.mark.django_db
def test_a_refused_join_comes_back_to_the_invitation_with_the_message(client, levels):
    """The join page lets the service's AgentError through: ServiceErrorMiddleware answers it."""
    (top,) = chain(levels, 1)
    inv = services.invitation_create(upline=top, level=levels["铜牌"], max_uses=1, expires_at=None)
    url = reverse("agents:join", args=[inv.code])
    services.invitation_accept(code=inv.code, user=UserFactory())
    client.force_login(UserFactory())
    r = client.post(url, HTTP_REFERER=f"http://testserver{url}")
    assert r.status_code == 302 and r["Location"] == f"http://testserver{url}"
    assert [str(m) for m in get_messages(r.wsgi_request)] == [
        "This invitation has already been used. Ask the agent who invited you for a new one."
    ]
    assert Agent.objects.count() == 2


@pytest.mark.django_db
def test_non_agent_gets_the_become_an_agent_page(client, levels):
    client.force_login(UserFactory())
    for name in ("home", "pricing", "downline", "invitations", "reports"):
        r = client.get(reverse(f"agents:{name}"))
        assert r.status_code == 200 and b'data-testid="become-agent"' in r.content, name
    assert client.get(reverse("agents:home")).status_code == 200
    client.logout()
    assert client.get(reverse("agents:home"))["Location"].startswith(reverse("account_login"))


# --- admin ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_shows_chain_and_moves_an_agent(client, levels):
    admin_user = staff()
    a, b, c = chain(levels, 3)
    (x,) = chain(levels, 1)
    client.force_login(admin_user)
    html = client.get(reverse("admin:agents_agent_change", args=[c.pk])).content.decode()
    assert 'data-testid="agent-chain"' in html
    chain_html = html[html.index('data-testid="agent-chain"') :]
    assert chain_html.index(str(a.user)) < chain_html.index(str(b.user)) < chain_html.index(str(c.user))
    assert 'data-testid="downline-count">0<' in html
    html = client.get(reverse("admin:agents_agent_change", args=[a.pk])).content.decode()
    assert 'data-testid="downline-count">1<' in html

    url = reverse("admin:agents_agent_move", args=[b.pk])
    assert client.get(url).status_code == 200
    r = client.post(url, {"new_upline": str(c.pk), "reason": "loop"})
    assert "under itself or its own downline" in r.content.decode()
    r = client.post(url, {"new_upline": str(x.pk), "reason": "merged teams"})
    assert r.status_code == 302
    assert Agent.objects.get(pk=c.pk).path == f"/{x.pk}/{b.pk}/{c.pk}/"
    assert AgentMove.objects.get(agent=b, reason="merged teams").actor == admin_user
    for name in ("agentmove", "commission", "invitation"):
        assert client.get(reverse(f"admin:agents_{name}_changelist")).status_code == 200, name


@pytest.mark.django_db
def test_admin_creates_an_invitation_through_the_service(client, levels):
    admin_user = staff()
    (top,) = chain(levels, 1, level="铜牌")
    client.force_login(admin_user)
    url = reverse("admin:agents_invitation_add")
    r = client.post(url, {"upline": top.pk, "level": levels["金牌"].pk, "max_uses": 1})
    assert r.status_code == 200 and "your own level or below" in r.content.decode()
    r = client.post(url, {"upline": top.pk, "level": levels["普通"].pk, "max_uses": 2})
    assert r.status_code == 302
    inv = Invitation.objects.get()
    assert len(inv.code) == 12 and inv.max_uses == 2
