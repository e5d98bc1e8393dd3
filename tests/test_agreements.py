"""Agreements (legal): versions published at least 7 days ahead (电子商务法 第三十四条), the public
pages, the banner of an upcoming version, and acceptance at sign-up, at guest checkout and after a
new version takes effect. With no version published nothing is asked of anyone (every other
test runs that way)."""

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone, translation

from agents.services.agents import agent_create
from legal import services
from legal.models import AgreementAcceptance, AgreementDocument, AgreementVersion
from legal.retention import RecordsRetained
from orders.models import Order
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
Kind = AgreementDocument


def publish(kind, version="1", *, effective_in=timedelta(0), at=None, body="正文。"):
    """A version of ``kind`` published ``at`` (now), taking effect ``effective_in`` later."""
    at = at or timezone.now()
    draft = services.agreement_version_create(
        kind=kind, version=version, title=f"{kind} {version}", body=body, effective_at=at + effective_in
    )
    return services.agreement_version_publish(version=draft, now=at)


@pytest.fixture
def in_force():
    """The four documents, each in force since 30 days ago."""
    past = timezone.now() - timedelta(days=30)
    return {kind: publish(kind, "2026.1", at=past) for kind in Kind.values}


# --- publishing --------------------------------------------------------------------------------


def test_the_first_version_may_take_effect_at_once_a_later_one_only_after_seven_days():
    first = publish(Kind.USER, "1")
    assert first.published_at is not None and first.effective_at <= timezone.now()
    draft = services.agreement_version_create(
        kind=Kind.USER, version="2", title="t", body="b", effective_at=timezone.now() + timedelta(days=6, hours=23)
    )
    with pytest.raises(
        services.AgreementError, match=r"at least 7 days before it takes effect \(E-Commerce Law, Art\. 34\)"
    ):
        services.agreement_version_publish(version=draft)
    draft.refresh_from_db()
    assert draft.published_at is None
    AgreementVersion.objects.filter(pk=draft.pk).update(effective_at=timezone.now() + timedelta(days=7, minutes=1))
    assert services.agreement_version_publish(version=draft).published_at is not None


def test_a_published_version_is_not_published_again_nor_deleted():
    version = publish(Kind.PRIVACY)
    with pytest.raises(services.Conflict):
        services.agreement_version_publish(version=version)
    with pytest.raises(RecordsRetained), transaction.atomic():
        version.delete()
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM legal_agreementversion WHERE id = %s", [version.pk])
    draft = services.agreement_version_create(
        kind=Kind.PRIVACY, version="draft", title="t", body="b", effective_at=timezone.now() + timedelta(days=30)
    )
    draft.delete()  # a draft was never public: it may go


# --- pages ---------------------------------------------------------------------------------------


def test_nothing_published_no_footer_no_banner_and_no_box(client):
    page = client.get("/").content.decode()
    assert 'data-testid="footer-legal"' not in page and 'data-testid="legal-banner"' not in page
    assert "accept_agreements" not in client.get("/accounts/signup/").content.decode()
    assert client.get("/legal/user-agreement/").status_code == 404


def test_the_pages_show_the_version_in_force_earlier_ones_and_the_upcoming_one(client, in_force):
    past = timezone.now() - timedelta(days=10)
    second = publish(Kind.USER, "2026.2", at=past, effective_in=timedelta(days=8))  # in force 2 days ago
    third = publish(
        Kind.USER, "2026.3", effective_in=timedelta(days=9), body="第一段 <script>alert(1)</script>\n\n第二段"
    )

    index = client.get("/legal/").content.decode()
    assert index.count('data-testid="legal-document"') == 4 and "/legal/user-agreement/2026.3/" in index

    page = client.get("/legal/user-agreement/").content.decode()
    assert 'data-version="2026.2"' in page and "in effect since" in page
    assert "/legal/user-agreement/2026.1/" in page  # earlier
    assert "/legal/user-agreement/2026.3/" in page and 'data-testid="legal-next"' in page  # upcoming

    upcoming = client.get(third.get_absolute_url()).content.decode()
    assert "not in effect yet" in upcoming
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in upcoming and "<script>alert(1)" not in upcoming
    assert "<p>第一段" in upcoming and "<p>第二段</p>" in upcoming
    assert "earlier version" in client.get(in_force[Kind.USER].get_absolute_url()).content.decode()
    assert second.is_published
    assert client.get("/legal/nonsense/").status_code == 404
    assert client.get("/legal/user-agreement/9.9/").status_code == 404

    home = client.get("/").content.decode()
    assert 'data-testid="footer-legal"' in home and "/legal/privacy-policy/" in home
    expected = (timezone.localtime(third.effective_at)).strftime("%Y-%m-%d")
    assert f"New version of “User agreement” takes effect on {expected}" in home


def test_the_banner_in_chinese(client, in_force):
    upcoming = publish(Kind.USER, "2026.2", effective_in=timedelta(days=7))
    with translation.override("zh-hans"):
        client.cookies["django_language"] = "zh-hans"
        home = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    date = timezone.localtime(upcoming.effective_at).strftime("%Y-%m-%d")
    assert f"《用户协议》新版本将于 {date} 生效" in home


def test_agreement_titles_have_book_title_marks_in_chinese_only(client, in_force):
    """The footer's links, the agreements page and the sign-up box: 《用户协议》, "User agreement"."""

    def footer(html):
        return re.search(r'data-testid="footer-legal">(.*?)</ul>', html, re.S).group(1)

    english = footer(client.get("/").content.decode())
    assert ">User agreement</a>" in english and "《" not in english
    assert ">User agreement</a></h2>" in client.get("/legal/").content.decode()
    signup = client.get("/accounts/signup/").content.decode()
    assert 'rel="noopener">User agreement</a>' in signup and "《" not in signup
    with translation.override("zh-hans"):
        client.cookies["django_language"] = "zh-hans"
        chinese = footer(client.get("/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode())
        assert ">《用户协议》</a></h2>" in client.get("/legal/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
        signup = client.get("/accounts/signup/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert ">《用户协议》</a>" in chinese and ">《隐私政策》</a>" in chinese
    assert 'rel="noopener">《用户协议》</a>' in signup


# --- sign-up ----------------------------------------------------------------------------------


PASSWORD = "Zh3ng-Quan!x"


def test_sign_up_requires_the_box_and_records_the_acceptance_with_the_ip(client, in_force):
    data = {"email": "new@example.cn", "password1": PASSWORD, "password2": PASSWORD}
    refused = client.post("/accounts/signup/", data)
    assert (
        refused.status_code == 200 and "Please read and accept the agreements to sign up." in refused.content.decode()
    )
    assert not AgreementAcceptance.objects.exists()
    response = client.post("/accounts/signup/", {**data, "accept_agreements": "on"}, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 302
    rows = AgreementAcceptance.objects.filter(user__email="new@example.cn")
    assert sorted(rows.values_list("version__kind", flat=True)) == sorted([Kind.USER, Kind.PRIVACY])
    assert {r.ip for r in rows} == {"203.0.113.9"}
    # Accepted: the new member's pages are not interrupted.
    assert client.get("/").status_code == 200


def test_sign_up_without_versions_needs_no_box(client):
    response = client.post("/accounts/signup/", {"email": "x@example.cn", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302 and not AgreementAcceptance.objects.exists()


# --- a new version takes effect ------------------------------------------------------------------


def test_a_member_who_has_not_accepted_the_version_in_force_is_sent_to_accept_it_and_back(client, in_force, buyer):
    services.agreements_accept(versions=[in_force[Kind.USER], in_force[Kind.PRIVACY]], user=buyer)
    client.force_login(buyer)
    assert client.get("/orders/").status_code == 200
    # A new user agreement, published 8 days ago, in force since yesterday.
    new = publish(Kind.USER, "2026.2", at=timezone.now() - timedelta(days=8), effective_in=timedelta(days=7))
    response = client.get("/orders/?page=1")
    assert response.status_code == 302 and response["Location"] == "/legal/accept/?next=%2Forders%2F%3Fpage%3D1"
    # Not the API, the admin, the legal pages, htmx fragments or posts.
    assert client.get("/legal/user-agreement/").status_code == 200
    assert client.get("/orders/", HTTP_HX_REQUEST="true").status_code == 200
    page = client.get(response["Location"]).content.decode()
    assert "2026.2" in page and 'data-testid="legal-pending"' in page and "2026.1" not in page
    refused = client.post("/legal/accept/", {"next": "/orders/?page=1"})
    assert refused.status_code == 400
    accepted = client.post("/legal/accept/", {"accept": "on", "next": "/orders/?page=1"}, REMOTE_ADDR="198.51.100.7")
    assert accepted.status_code == 302 and accepted["Location"] == "/orders/?page=1"
    row = AgreementAcceptance.objects.get(user=buyer, version=new)
    assert row.ip == "198.51.100.7"
    assert client.get("/orders/").status_code == 200
    # An outside "next" is not followed.
    AgreementAcceptance.objects.filter(pk=row.pk).update(user=UserFactory())
    client.session.flush()
    client.force_login(buyer)
    assert client.post("/legal/accept/", {"accept": "on", "next": "https://evil.example/"})["Location"] == "/"


def test_an_agent_must_accept_the_agent_agreement(client, in_force, level):
    agent = agent_create(user=UserFactory(), level=level)
    services.agreements_accept(versions=[in_force[Kind.USER], in_force[Kind.PRIVACY]], user=agent.user)
    client.force_login(agent.user)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/legal/accept/")
    assert "agent-agreement" in client.get(response["Location"]).content.decode()
    client.post("/legal/accept/", {"accept": "on", "next": "/"})
    assert AgreementAcceptance.objects.filter(user=agent.user, version=in_force[Kind.AGENT]).exists()
    assert client.get("/").status_code == 200


# --- guest checkout --------------------------------------------------------------------------------


@pytest.fixture
def product():
    p = ProductFactory(price=Decimal("50.00"), slug="steam-50")
    add_stock(p, 3)
    return p


def _guest_post(**extra):
    return {
        "quantity": "1",
        "idempotency_key": uuid.uuid4().hex,
        "guest_email": "Guest@Example.net",
        "guest_email_confirm": "guest@example.net",
        **extra,
    }


def test_a_guest_accepts_the_versions_in_force_at_checkout(client, in_force, product):
    url = f"/orders/checkout/{product.slug}/"
    assert 'data-testid="guest-accept-agreements"' in client.get(url).content.decode()
    refused = client.post(url, _guest_post())
    assert refused.status_code == 400 and "accept the agreements to place the order" in refused.content.decode()
    assert not Order.objects.exists()
    response = client.post(url, _guest_post(accept_agreements="on"), REMOTE_ADDR="192.0.2.44")
    assert response.status_code == 302
    order = Order.objects.get()
    rows = AgreementAcceptance.objects.filter(order=order)
    assert sorted(rows.values_list("version__kind", flat=True)) == sorted([Kind.USER, Kind.REFUND, Kind.PRIVACY])
    assert {(r.email, r.ip, r.user_id) for r in rows} == {("guest@example.net", "192.0.2.44", None)}


def test_guest_checkout_without_versions_has_no_box(client, product):
    url = f"/orders/checkout/{product.slug}/"
    assert "accept_agreements" not in client.get(url).content.decode()
    assert client.post(url, _guest_post()).status_code == 302
    assert Order.objects.count() == 1 and not AgreementAcceptance.objects.exists()


# --- admin -----------------------------------------------------------------------------------------


def test_staff_publish_from_admin_and_a_published_version_is_read_only(client, staff):
    client.force_login(staff)
    first = publish(Kind.REFUND, "1")
    draft = services.agreement_version_create(
        kind=Kind.REFUND, version="2", title="t", body="b", effective_at=timezone.now() + timedelta(days=3)
    )
    url = reverse("admin:legal_agreementversion_changelist")
    response = client.post(url, {"action": "publish", "_selected_action": [draft.pk]}, follow=True)
    assert "at least 7 days before it takes effect" in response.content.decode()
    draft.refresh_from_db()
    assert draft.published_at is None
    AgreementVersion.objects.filter(pk=draft.pk).update(effective_at=timezone.now() + timedelta(days=8))
    response = client.post(url, {"action": "publish", "_selected_action": [draft.pk]}, follow=True)
    assert "1 version published." in response.content.decode()
    draft.refresh_from_db()
    assert draft.is_published
    # Published: the change form shows the text but has no field to change it, and no delete.
    page = client.get(reverse("admin:legal_agreementversion_change", args=[first.pk])).content.decode()
    assert 'name="body"' not in page and "deletelink" not in page
    client.post(reverse("admin:legal_agreementversion_change", args=[first.pk]), {"title": "changed", "body": "x"})
    first.refresh_from_db()
    assert first.title != "changed"


def test_sign_up_points_out_a_likely_misspelt_mail_provider_and_keeps_it_when_submitted_again(client):
    """The verification email and every order email go to this address: qq.con is pointed out
    (as at the guest checkout); the same address submitted again is kept as typed."""
    data = {"email": "wang.wu@qq.con", "password1": PASSWORD, "password2": PASSWORD}
    pointed = client.post("/accounts/signup/", data)
    page = pointed.content.decode()
    assert pointed.status_code == 200 and "Did you mean wang.wu@qq.com?" in page
    assert 'name="email_checked" value="wang.wu@qq.con"' in page
    kept = client.post("/accounts/signup/", {**data, "email_checked": "wang.wu@qq.con"})
    assert kept.status_code == 302
    assert get_user_model().objects.filter(email="wang.wu@qq.con").exists()
