"""Storefront operators' identities (网络交易监督管理办法 第二十四条、第二十五条; issue 14): what an
agent submits and how it is checked, the number kept encrypted and shown masked, staff's decisions
and reveals (audited), the gate on opening and showing a storefront, and the half-yearly report's
rows with their sales."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from PIL import Image

from agents.models import OperatorIdentity, OperatorIdentityStatusChange, Storefront
from agents.selectors import id_number_masked, id_number_of, operators_report_rows
from agents.services import agents as agent_services
from agents.services import operators, storefronts
from agents.services.operators import OperatorError, OperatorNotVerified
from compliance.models import AuditEvent
from marketplace import crypto
from marketplace.errors import Forbidden
from marketplace.transitions import IllegalTransition
from orders.models import Order
from orders.selectors.operators import SMALL_SALES_YEARLY_LIMIT, operator_sales, operators_report
from tests.builders import storefront_order
from tests.factories import UserFactory, id_number_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]

Status = OperatorIdentity.Status
Kind = OperatorIdentity.Kind
ID_NUMBER = id_number_for(123)  # 110101199003071234-like, with its right check character
USCC = "91350100M000100Y43"  # a published sample with a right check character


def licence_upload() -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (600, 400), "#f5efe0").save(out, format="PNG")
    return SimpleUploadedFile("licence.png", out.getvalue(), content_type="image/png")


@pytest.fixture
def agent(level):
    return agent_services.agent_create(user=UserFactory(), level=level)


def individual(agent, **changes):
    values = dict(
        kind=Kind.INDIVIDUAL,
        legal_name="张三",
        id_number=ID_NUMBER,
        address="北京市东城区东长安街 1 号",
        phone="13800138000",
        small_sales_declared=True,
    )
    return operators.operator_identity_submit(agent=agent, **{**values, **changes})


def business(agent, **changes):
    values = dict(
        kind=Kind.BUSINESS,
        legal_name="王五",
        company_name="杭州示例数码有限公司",
        credit_code=USCC,
        address="浙江省杭州市西湖区文三路 90 号",
        phone="0571-87654321",
        licence_image=licence_upload(),
    )
    return operators.operator_identity_submit(agent=agent, **{**values, **changes})


def verified(agent, staff, **changes):
    identity = individual(agent, **changes)
    return operators.operator_identity_verify(identity_id=identity.pk, by=staff)


# --- what is submitted -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"id_number": ID_NUMBER[:-1] + ("0" if ID_NUMBER[-1] != "0" else "1")}, "id_number", "does not match"),
        ({"id_number": "12345"}, "id_number", "18 characters"),
        ({"id_number": "110101199002301234"}, "id_number", "birth date"),
        ({"id_number": id_number_for(5, born=f"{timezone.localdate().year - 16}0101")}, "id_number", "at least 18"),
        ({"phone": "12345"}, "phone", "mobile number"),
        ({"legal_name": "  "}, "legal_name", "required"),
        ({"address": ""}, "address", "required"),
        ({"small_sales_declared": False}, "small_sales_declared", "sporadic"),
        ({"kind": "robot"}, "kind", "operator type"),
    ],
)
def test_an_individuals_bad_details_are_refused_with_the_field(agent, changes, field, message):
    with pytest.raises(OperatorError, match=message) as exc:
        individual(agent, **changes)
    assert exc.value.field == field
    assert not OperatorIdentity.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"credit_code": "91350100M000100Y44"}, "credit_code", "check character"),
        ({"credit_code": "91350100M000100Y4"}, "credit_code", "18 characters"),
        ({"credit_code": "91350100M000100Y4O"}, "credit_code", "cannot appear"),
        ({"company_name": ""}, "company_name", "required"),
        ({"licence_image": None}, "licence_image", "Upload an image"),
        (
            {"licence_image": SimpleUploadedFile("x.png", b"not an image", content_type="image/png")},
            "licence_image",
            "not an image",
        ),
    ],
)
def test_a_business_bad_details_are_refused_with_the_field(agent, changes, field, message):
    with pytest.raises(OperatorError, match=message) as exc:
        business(agent, **changes)
    assert exc.value.field == field
    assert not OperatorIdentity.objects.exists()


def test_a_business_is_kept_with_its_normalised_code_and_a_clean_licence(agent):
    identity = business(agent, credit_code=" 9135 0100 m000 100y43 ")
    identity.refresh_from_db()
    assert (identity.kind, identity.credit_code, identity.status) == (Kind.BUSINESS, USCC, Status.SUBMITTED)
    assert identity.id_number == "" and bytes(identity.licence_image)[:2] == b"\xff\xd8"  # re-encoded JPEG
    assert identity.history.get().to_status == Status.SUBMITTED


# --- the number at rest and on screen ------------------------------------------------------------------


def test_the_id_number_is_encrypted_at_rest_with_a_keyed_digest(agent):
    identity = individual(agent, id_number=ID_NUMBER[:-1] + ID_NUMBER[-1].lower())
    identity.refresh_from_db()
    assert ID_NUMBER not in identity.id_number
    assert crypto.decrypt(identity.id_number) == ID_NUMBER == id_number_of(identity)
    assert identity.id_number_digest == crypto.keyed_digest(ID_NUMBER)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM agents_operatoridentity")
        assert ID_NUMBER not in repr(cursor.fetchall())


def test_the_number_is_shown_masked_first_and_last_character(agent, client):
    identity = individual(agent)
    masked = id_number_masked(identity)
    assert masked == ID_NUMBER[0] + "•" * 16 + ID_NUMBER[-1]
    client.force_login(agent.user)
    page = client.get("/agent/storefront/operator/").content.decode()
    assert masked in page and ID_NUMBER not in page


# --- staff's reveal ---------------------------------------------------------------------------------


def test_revealing_needs_the_permission_and_every_attempt_is_audited(agent):
    identity = individual(agent)
    clerk = UserFactory(is_staff=True)
    with pytest.raises(Forbidden):
        operators.operator_id_number_reveal(identity=identity, by=clerk)
    denied = AuditEvent.objects.get(action="operator_identity.reveal")
    assert (denied.outcome, denied.actor) == (AuditEvent.Outcome.DENIED, clerk)

    clerk.user_permissions.add(Permission.objects.get(codename="reveal_operator_id_number"))
    clerk = type(clerk).objects.get(pk=clerk.pk)  # forget the cached permissions
    assert operators.operator_id_number_reveal(identity=identity, by=clerk) == ID_NUMBER
    allowed = AuditEvent.objects.filter(action="operator_identity.reveal", outcome=AuditEvent.Outcome.ALLOWED).get()
    assert allowed.actor == clerk and f"operator:{identity.pk}" in allowed.target
    assert ID_NUMBER not in allowed.detail


def test_the_admin_reveal_page_shows_the_number_only_on_post_and_audits_it(agent, client):
    identity = individual(agent)
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["view_operatoridentity"]))
    client.force_login(clerk)
    url = f"/admin/agents/operatoridentity/{identity.pk}/reveal/"
    change = client.get(f"/admin/agents/operatoridentity/{identity.pk}/change/")
    assert change.status_code == 200 and ID_NUMBER not in change.content.decode()
    assert client.get(url).status_code == 403
    assert client.post(url).status_code == 403
    assert AuditEvent.objects.filter(action="operator_identity.reveal", outcome=AuditEvent.Outcome.DENIED).exists()

    clerk.user_permissions.add(Permission.objects.get(codename="reveal_operator_id_number"))
    page = client.get(url)
    assert page.status_code == 200 and ID_NUMBER not in page.content.decode()
    shown = client.post(url)
    assert ID_NUMBER in shown.content.decode() and "no-store" in shown["Cache-Control"]
    assert AuditEvent.objects.filter(action="operator_identity.reveal", outcome=AuditEvent.Outcome.ALLOWED).count() == 1


# --- the state machine ------------------------------------------------------------------------------


def _put(identity, status):
    OperatorIdentity.objects.filter(pk=identity.pk).update(status=status)


def _decide(identity, decision, staff):
    if decision == "verify":
        return operators.operator_identity_verify(identity_id=identity.pk, by=staff)
    return operators.operator_identity_reject(identity_id=identity.pk, by=staff, reason="the photo is unreadable")


@pytest.mark.parametrize(
    ("start", "decision", "end"),
    [(Status.SUBMITTED, "verify", Status.VERIFIED), (Status.SUBMITTED, "reject", Status.REJECTED)],
)
def test_staff_decide_a_submission_with_history_and_audit(agent, staff, start, decision, end):
    identity = individual(agent)
    decided = _decide(identity, decision, staff)
    assert decided.status == end and decided.reviewed_by == staff
    assert list(identity.history.values_list("from_status", "to_status", "actor")) == [
        ("", Status.SUBMITTED, agent.user.pk),
        (Status.SUBMITTED, end, staff.pk),
    ]
    event = AuditEvent.objects.get(action=f"operator_identity.{decision}")
    assert event.actor == staff and event.outcome == AuditEvent.Outcome.ALLOWED
    # A repeat changes nothing and writes nothing more.
    _decide(identity, decision, staff)
    assert identity.history.count() == 2 and AuditEvent.objects.filter(action__startswith="operator_identity.").count()


@pytest.mark.parametrize(
    ("start", "decision"),
    [
        (Status.VERIFIED, "reject"),
        (Status.REJECTED, "verify"),
    ],
)
def test_a_decided_identity_cannot_be_decided_the_other_way(agent, staff, start, decision):
    identity = individual(agent)
    _put(identity, start)
    with pytest.raises(IllegalTransition):
        _decide(identity, decision, staff)
    identity.refresh_from_db()
    assert identity.status == start


@pytest.mark.parametrize("start", [Status.VERIFIED, Status.REJECTED])
def test_a_change_after_a_decision_is_submitted_again(agent, staff, start):
    identity = individual(agent)
    _decide(identity, "verify" if start == Status.VERIFIED else "reject", staff)
    changed = individual(agent, id_number="", address="上海市黄浦区中山东一路 1 号")
    assert changed.status == Status.SUBMITTED and changed.reject_reason == "" and changed.verified_at is None
    last = changed.history.last()
    assert (last.from_status, last.to_status) == (start, Status.SUBMITTED) and "address" in last.note
    assert id_number_of(changed) == ID_NUMBER  # an empty number keeps the stored one


def test_a_rejected_identity_resubmitted_unchanged_goes_back_to_staff(agent, staff):
    identity = individual(agent)
    _decide(identity, "reject", staff)
    again = individual(agent, id_number="")
    assert again.status == Status.SUBMITTED and again.history.last().note == "submitted again"


def test_an_unchanged_resubmission_keeps_the_verification(agent, staff):
    identity = verified(agent, staff)
    again = individual(agent, id_number="")
    assert again.status == Status.VERIFIED and again.history.count() == identity.history.count()
    again = individual(agent, id_number=ID_NUMBER)  # the same number typed again
    assert again.status == Status.VERIFIED


def test_a_rejection_needs_a_reason(agent, staff):
    identity = individual(agent)
    with pytest.raises(OperatorError, match="reason"):
        operators.operator_identity_reject(identity_id=identity.pk, by=staff, reason="  ")
    identity.refresh_from_db()
    assert identity.status == Status.SUBMITTED


def test_the_admin_reject_page_requires_a_reason_and_the_agent_sees_it(agent, staff, client):
    identity = individual(agent)
    client.force_login(staff)
    url = f"/admin/agents/operatoridentity/{identity.pk}/reject/"
    assert client.post(url, {"reason": ""}).status_code == 200  # the form again, with its error
    identity.refresh_from_db()
    assert identity.status == Status.SUBMITTED
    assert client.post(url, {"reason": "姓名与身份证不符"}).status_code == 302
    identity.refresh_from_db()
    assert (identity.status, identity.reject_reason) == (Status.REJECTED, "姓名与身份证不符")
    client.force_login(agent.user)
    page = client.get("/agent/storefront/operator/").content.decode()
    assert "姓名与身份证不符" in page and "Rejected" in page


def test_the_admin_verify_button_and_list_action(level, staff, client):
    one, two = (agent_services.agent_create(user=UserFactory(), level=level) for _ in range(2))
    first, second = individual(one), business(two)
    client.force_login(staff)
    assert client.post(f"/admin/agents/operatoridentity/{first.pk}/verify/").status_code == 302
    response = client.post(
        "/admin/agents/operatoridentity/",
        {"action": "verify_selected", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 302
    assert set(OperatorIdentity.objects.values_list("status", flat=True)) == {Status.VERIFIED}
    assert AuditEvent.objects.filter(action="operator_identity.verify").count() == 2
    licence = client.get(f"/admin/agents/operatoridentity/{second.pk}/licence/")
    assert licence["Content-Type"] == "image/jpeg" and "no-store" in licence["Cache-Control"]
    clerk = UserFactory(is_staff=True)
    client.force_login(clerk)
    assert client.get(f"/admin/agents/operatoridentity/{second.pk}/licence/").status_code == 403
    assert client.post(f"/admin/agents/operatoridentity/{first.pk}/verify/").status_code == 403


# --- the gate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [None, Status.SUBMITTED, Status.REJECTED])
def test_a_storefront_does_not_open_without_a_verified_operator(agent, staff, status):
    if status is not None:
        identity = individual(agent)
        if status == Status.REJECTED:
            _decide(identity, "reject", staff)
    with pytest.raises(OperatorNotVerified):
        storefronts.storefront_open(agent=agent, slug="lucky", name="Lucky")
    assert not Storefront.objects.exists()


def test_the_open_page_refuses_and_points_to_the_operator_page(agent, client):
    client.force_login(agent.user)
    page = client.get("/agent/storefront/")
    assert 'data-testid="operator-gate"' in page.content.decode()
    response = client.post("/agent/storefront/", {"slug": "lucky", "name": "Lucky"})
    assert response.status_code == 400 and "operator identity must be verified" in response.content.decode()
    assert not Storefront.objects.exists()


def test_a_verified_operator_opens_and_a_change_hides_the_shop_until_verified_again(agent, staff, client):
    verified(agent, staff)
    sf = storefronts.storefront_open(agent=agent, slug="lucky", name="Lucky")
    assert client.get("/s/lucky/").status_code == 200
    individual(agent, id_number="", phone="13900001111")  # a change: submitted again
    assert client.get("/s/lucky/").status_code == 404
    assert storefronts.storefront_for_slug("lucky") is None
    operators.operator_identity_verify(identity_id=agent.operator_identity.pk, by=staff)
    assert client.get("/s/lucky/").status_code == 200 and storefronts.storefront_for_slug("lucky") == sf


def test_the_agent_submits_on_the_page(agent, client):
    client.force_login(agent.user)
    data = {
        "kind": "individual",
        "legal_name": "张三",
        "id_number": ID_NUMBER,
        "address": "北京市东城区东长安街 1 号",
        "phone": "138 0013 8000",
        "small_sales_declared": "on",
    }
    bad = client.post("/agent/storefront/operator/", {**data, "id_number": "110101199003071230"})
    assert bad.status_code == 400 and "does not match" in bad.content.decode()
    assert client.post("/agent/storefront/operator/", data).status_code == 302
    identity = OperatorIdentity.objects.get(agent=agent)
    assert (identity.status, identity.phone) == (Status.SUBMITTED, "13800138000")
    assert "Awaiting verification" in client.get("/agent/storefront/operator/").content.decode()


def test_someone_not_an_agent_gets_404_on_the_operator_page(client, buyer):
    client.force_login(buyer)
    assert client.get("/agent/storefront/operator/").status_code == 404


# --- the half-yearly report -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the delivery runs on commit
def test_the_report_rows_and_sales_over_a_fixture(level, staff, buyer):
    start = timezone.now() - timedelta(days=1)
    chain, order = storefront_order(level, buyer, depth=2)  # chain[-1]'s shop "shop", one delivered order
    seller = chain[-1]  # the builder gave it a verified individual identity (tests.factories)
    company = agent_services.agent_create(user=UserFactory(), level=level)
    business(company)
    operators.operator_identity_verify(identity_id=company.operator_identity.pk, by=staff)
    storefronts.storefront_open(agent=company, slug="firm", name="Firm")
    # A storefront from before the rule, whose operator never submitted: listed, with the gap shown.
    bare = agent_services.agent_create(user=UserFactory(), level=level)
    Storefront.objects.create(agent=bare, slug="bare", name="Bare")
    end = timezone.now() + timedelta(seconds=1)
    # Opened after the period: not in it.
    late = agent_services.agent_create(user=UserFactory(), level=level)
    verified(late, staff, id_number=id_number_for(77))
    Storefront.objects.create(agent=late, slug="late", name="Late")
    Storefront.objects.filter(slug="late").update(created_at=end + timedelta(hours=1))

    rows = {row.storefront_path: row for row in operators_report_rows(start=start, end=end)}
    assert set(rows) == {"/s/shop/", "/s/firm/", "/s/bare/"}
    firm = rows["/s/firm/"]
    assert (firm.operator_type, firm.name, firm.legal_name, firm.number) == (
        Kind.BUSINESS,
        "杭州示例数码有限公司",
        "王五",
        USCC,
    )
    assert (firm.status, firm.storefront_name, firm.address) == (
        Status.VERIFIED,
        "Firm",
        "浙江省杭州市西湖区文三路 90 号",
    )
    shop = rows["/s/shop/"]
    assert shop.operator_type == Kind.INDIVIDUAL and shop.small_sales_declared
    assert shop.number == id_number_of(seller.operator_identity) and len(shop.number) == 18  # in full
    assert (rows["/s/bare/"].status, rows["/s/bare/"].number) == ("", "")

    lines = {line.identity.storefront_path: line for line in operators_report(start=start, end=end)}
    assert (lines["/s/shop/"].sales.orders, lines["/s/shop/"].sales.amount) == (1, order.total)
    assert lines["/s/firm/"].sales.orders == 0 and lines["/s/firm/"].sales.amount == Decimal("0.00")
    assert not lines["/s/shop/"].over_small_sales_limit
    # Past ¥100,000 in the year, an individual is marked (第二十五条); a business never is.
    big = SMALL_SALES_YEARLY_LIMIT + Decimal("2.00")  # 3 codes at 33,334.00
    Order.objects.filter(pk=order.pk).update(unit_price=big / 3, subtotal=big, total=big)
    lines = {line.identity.storefront_path: line for line in operators_report(start=start, end=end)}
    assert lines["/s/shop/"].over_small_sales_limit and not lines["/s/firm/"].over_small_sales_limit
    # The period bounds the figures: nothing was paid before it.
    assert operator_sales(start=start - timedelta(days=2), end=start) == {}


def test_the_report_reads_in_a_fixed_number_of_queries(level, staff, django_assert_max_num_queries):
    for n in range(4):
        agent = agent_services.agent_create(user=UserFactory(), level=level)
        verified(agent, staff, id_number=id_number_for(n + 10))
        storefronts.storefront_open(agent=agent, slug=f"shop-{n}", name=f"Shop {n}")
    now = timezone.now()
    with django_assert_max_num_queries(2):
        rows = operators_report_rows(start=now - timedelta(days=1), end=now + timedelta(seconds=1))
    assert len(rows) == 4 and all(row.status == Status.VERIFIED for row in rows)
    assert OperatorIdentityStatusChange.objects.filter(to_status=Status.VERIFIED).count() == 4
