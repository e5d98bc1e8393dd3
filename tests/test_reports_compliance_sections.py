"""The monthly compliance report's real-name, minors' and rights sections, and the half-yearly
operator report's identity columns (issue 14), over a fixture made through the real services:
real-name checks of each result and subject, two minors' refusals of different limits, a notice
whose product is still down and one restored after the counter-notice, an authorisation approved
and one rejected; a verified business and a verified individual operating storefronts. The
figures are computed by hand and read back from the XLSX cells and the PDF text."""

import io
import os
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook
from PIL import Image
from pypdf import PdfReader

from agents.selectors import id_number_of
from agents.services import agents as agent_services
from agents.services import operators as operator_services
from agents.services import storefronts
from compliance import minors, realname
from compliance.identity import id_check_char
from compliance.minors import MinorLimitError
from compliance.models import AuditEvent, RealNameVerification
from compliance.realname import RealNameError, RealNameUnavailable, Subject
from orders.services import orders as order_services
from reports import services
from reports.models import Report
from reports.periods import month_of
from rights import services as rights
from rights.models import RightsNotice
from tests.builders import storefront_order
from tests.factories import ProductFactory, SupplierFactory, UserFactory, add_stock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
D = Decimal
MONTHLY = Report.Kind.MONTHLY_COMPLIANCE
USCC = "91350100M000100Y43"  # a published sample with a right check character
SAMPLE_DIR = os.environ.get("REPORTS_SAMPLE_DIR", "")  # set to keep the rendered files and look at them
PDF_DOC = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(autouse=True)
def private_root(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"


def this_month():
    return month_of(timezone.localdate())


def id_for_age(age: int, seq: str) -> str:
    today = minors.china_today()
    first17 = f"110101{date(today.year - age, 1, 1):%Y%m%d}{seq}"
    return first17 + id_check_char(first17)


def check(subject: Subject, name: str, number: str):
    try:
        return realname.realname_verify(subject=subject, name=name, id_number=number)
    except RealNameError:
        return None


def place(buyer, price: str):
    product = ProductFactory(price=D(price), face_value=D(price), is_game_topup=True, max_per_order=10)
    add_stock(product, 2)
    with pytest.raises(MinorLimitError):
        order_services.order_place(buyer=buyer, product=product, quantity=1, idempotency_key=uuid.uuid4().hex)


@pytest.fixture
def month(staff):
    """Everything of this month, through the services; one row of each kind moved to last month."""
    start, _end = this_month()
    before = timezone.make_aware(datetime.combine(start, time.min)) - timedelta(days=1)
    # Real-name checks: members 2 matches (a 15- and a 7-year-old) and a mismatch; guests a
    # match and a no record; an API end user a match. A provider failure records nothing.
    teen, child, adult = UserFactory(), UserFactory(), UserFactory()
    check(Subject(user=teen), "张小明", id_for_age(15, "101"))
    check(Subject(user=child), "张小红", id_for_age(7, "102"))
    check(Subject(user=adult), "李不符", id_for_age(30, "103"))
    check(Subject(email="guest@example.com", source="guest"), "王五", id_for_age(40, "104"))
    check(Subject(email="other@example.com", source="guest"), "赵无记录", id_for_age(41, "105"))
    check(Subject(source="api"), "钱七", id_for_age(25, "106"))
    with pytest.raises(RealNameUnavailable):
        realname.realname_verify(subject=Subject(user=UserFactory()), name="孙故障", id_number=id_for_age(33, "107"))
    old = check(Subject(user=UserFactory()), "周八", id_for_age(35, "108"))
    RealNameVerification.objects.filter(pk=old.pk).update(checked_at=before)
    # Minors refused: the 15-year-old 60.00 in one payment, the 7-year-old anything (30.00).
    place(teen, "60.00")
    place(child, "30.00")
    place(child, "20.00")
    moved = AuditEvent.objects.filter(action="minors.refused").order_by("-pk").first()
    AuditEvent.objects.filter(pk=moved.pk).update(at=before)  # last month's: not counted
    # Rights notices: one product still down, one restored 15 days after the counter-notice.
    down = ProductFactory(
        name="星辰点卡 100 元", supplier=SupplierFactory(name="星辰供货", contact_email="s@example.com")
    )
    back = ProductFactory(
        name="月影点卡 50 元", supplier=SupplierFactory(name="月影供货", contact_email="m@example.com")
    )
    add_stock(down, 1)
    add_stock(back, 1)
    notices = []
    for product in (down, back):
        notices.append(
            rights.notice_file(
                product_reference=product.slug,
                notifier_name="星辰互娱有限公司",
                notifier_email="legal@xingchen.example",
                right_claimed="trademark",
                evidence="We own the registered trademark (No. 12345678); this card is not from our channel.",
                declaration=True,
            )
        )
    rights.notice_counter_record(notice_id=notices[1].pk, by=staff, text="Bought from the authorised distributor.")
    delivered = RightsNotice.objects.get(pk=notices[1].pk).counter_delivered_at
    assert rights.notices_restore_due(now=delivered + timedelta(days=15)) == 1
    # Authorisation reviews: one approved, one rejected.
    reviews = [
        rights.review_submit(
            supplier_id=product.supplier_id,
            product_ids=[product.pk],
            certificate_no=f"AUTH-{product.pk}",
            rights_holder="Brand Owner Ltd",
            documents=[rights.document_check(name="authorisation.pdf", data=PDF_DOC)],
            by=UserFactory(is_staff=True),
        )
        for product in (down, back)
    ]
    rights.review_approve(review_id=reviews[0].pk, by=staff, valid_until=timezone.localdate() + timedelta(days=365))
    rights.review_reject(review_id=reviews[1].pk, by=staff, note="The certificate does not name this product.")
    return {"notices": [RightsNotice.objects.get(pk=n.pk) for n in notices], "teen": teen}


def sheet(report: Report, title: str) -> list[tuple]:
    book = load_workbook(io.BytesIO(bytes(report.xlsx)))
    name = next(n for n in book.sheetnames if n.split(" ", 1)[1].startswith(title[:20]))
    return list(book[name].iter_rows(values_only=True))


def body(rows: list[tuple]) -> dict:
    """A section sheet's rows after its title, note and header, by their first cell."""
    return {row[0]: row[1:] for row in rows[3:] if row[0]}


def pdf_text(report: Report) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(bytes(report.pdf))).pages)


def test_the_monthly_reports_new_sections_have_the_hand_computed_figures(month):
    start, end = this_month()
    report = services.report_generate(kind=MONTHLY, start=start, end=end)
    if SAMPLE_DIR:
        (Path(SAMPLE_DIR) / "monthly-sections.pdf").write_bytes(bytes(report.pdf))
        (Path(SAMPLE_DIR) / "monthly-sections.xlsx").write_bytes(bytes(report.xlsx))

    # Real-name: member 2 match + 1 mismatch, guest 1 match + 1 no record, API 1 match.
    assert report.summary["realname"] == {
        "checks": "6",
        "match": "4",
        "mismatch": "1",
        "no_record": "1",
        "source_member": "3",
        "source_guest": "2",
        "source_api": "1",
    }
    checks = body(sheet(report, "Real-name checks"))
    assert checks["Match"] == (2, 1, 1, 4)
    assert checks["Name and number do not match"] == (1, 0, 0, 1)
    assert checks["No record"] == (0, 1, 0, 1)
    assert checks["Total"] == (3, 2, 1, 6)

    # Minors: one per payment (60.00), one under 8 (30.00); the third moved to last month.
    minors_rows = body(sheet(report, "Game top-ups refused to minors"))
    assert minors_rows["Under 8: no game top-ups"] == (1, D("30.00"))
    assert minors_rows["Over the limit per payment"] == (1, D("60.00"))
    assert minors_rows["Over the limit per calendar month"] == (0, D("0.00"))
    assert minors_rows["Total"] == (2, D("90.00"))

    # Takedowns: 2 received and taken down, 1 counter-notice, 1 restored, 1 still down.
    assert report.summary["takedowns"] == {
        "received": "2",
        "taken_down": "2",
        "counter_notices": "1",
        "restored": "1",
        "upheld": "0",
        "withdrawn": "0",
        "still_down": "1",
    }
    figures = [row[1] for row in sheet(report, "Rights notices and takedowns")[3:]]
    assert figures == [2, 2, 1, 1, 0, 0, 1]
    down, back = month["notices"]
    notice_rows = body(sheet(report, "Rights notices of the period"))
    today = timezone.localdate()
    assert notice_rows[down.number][:3] == ("星辰点卡 100 元", "星辰供货", "Product taken down")
    assert notice_rows[back.number][:3] == ("月影点卡 50 元", "月影供货", "Product restored")
    assert notice_rows[back.number][3].date() == today and notice_rows[back.number][5].date() == today
    assert notice_rows[back.number][6].date() == timezone.localdate(back.restored_at)
    assert notice_rows[down.number][5] is None and notice_rows[down.number][6] is None

    reviews = body(sheet(report, "Authorisation reviews decided"))
    assert (reviews["Approved"], reviews["Rejected"], reviews["Expired"], reviews["Revoked"]) == (
        (1,),
        (1,),
        (0,),
        (0,),
    )
    assert reviews["Total"] == (2,)

    # The same figures in the PDF; never a name nor an identity number.
    text = pdf_text(report)
    sections = [
        "Real-name checks",
        "Game top-ups refused to minors",
        "Rights notices and takedowns",
        "Rights notices of the period",
        "Authorisation reviews decided",
    ]
    for title in sections:
        assert text.count(title) == 2, title  # in the contents and above its table
    # pypdf gives each cell on its own line: a row is its label and the lines after it.
    lines = [line.strip() for line in text.splitlines()]

    def row(title: str, label: str, n: int) -> list[str]:
        heading = f"{sections.index(title) + 9}. {title}"
        start = len(lines) - 1 - lines[::-1].index(heading)  # the table's heading, not the contents'
        at = lines.index(label, start)
        return lines[at + 1 : at + 1 + n]

    assert row("Real-name checks", "Match", 4) == ["2", "1", "1", "4"]
    assert row("Real-name checks", "Name and number do not match", 4) == ["1", "0", "0", "1"]
    assert row("Real-name checks", "Total", 4) == ["3", "2", "1", "6"]
    assert row("Game top-ups refused to minors", "Under 8: no game top-ups", 2) == ["1", "30.00"]
    assert row("Game top-ups refused to minors", "Over the limit per payment", 2) == ["1", "60.00"]
    assert row("Game top-ups refused to minors", "Total", 2) == ["2", "90.00"]
    assert row("Rights notices and takedowns", "Counter-notices received from the supplier", 1) == ["1"]
    assert row("Rights notices and takedowns", "Still down, awaiting the outcome", 1) == ["1"]

    # Cells may wrap onto several lines: read the row's text up to its first date.
    def text_row(title: str, label: str) -> str:
        cells = row(title, label, 8)
        return "".join(cells[: next(i for i, c in enumerate(cells) if c.startswith(str(today.year)))]).replace(" ", "")

    assert text_row("Rights notices of the period", down.number) == "星辰点卡100元星辰供货Producttakendown"
    assert text_row("Rights notices of the period", back.number) == "月影点卡50元月影供货Productrestored"
    assert row("Authorisation reviews decided", "Approved", 1) == ["1"]
    assert row("Authorisation reviews decided", "Rejected", 1) == ["1"]
    for secret in ("张小明", "李不符", "赵无记录", "星辰互娱", "legal@xingchen.example", id_for_age(15, "101")):
        assert secret not in text, secret
    xlsx_text = repr([sheet(report, t) for t in ("Real-name checks", "Game top-ups refused to minors")])
    assert "张小明" not in xlsx_text and id_for_age(15, "101") not in xlsx_text


def licence_upload() -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (600, 400), "#f5efe0").save(out, format="PNG")
    return SimpleUploadedFile("licence.png", out.getvalue(), content_type="image/png")


@pytest.mark.django_db(transaction=True)
def test_the_operator_report_lists_the_verified_identities_in_full(client, level, buyer, staff):
    _chain, order = storefront_order(level, buyer)  # an individual's storefront "shop" (tests.factories)
    seller = order.agent
    company = agent_services.agent_create(user=UserFactory(), level=level)
    identity = operator_services.operator_identity_submit(
        agent=company,
        kind="business",
        legal_name="王五",
        company_name="杭州示例数码有限公司",
        credit_code=USCC,
        address="浙江省杭州市西湖区文三路 90 号",
        phone="0571-87654321",
        licence_image=licence_upload(),
    )
    operator_services.operator_identity_verify(identity_id=identity.pk, by=staff)
    storefronts.storefront_open(agent=company, slug="firm", name="Firm")
    start, end = this_month()
    report = services.report_generate(kind=Report.Kind.OPERATORS_HALFYEAR, start=start, end=end)
    if SAMPLE_DIR:
        (Path(SAMPLE_DIR) / "operators.pdf").write_bytes(bytes(report.pdf))
        (Path(SAMPLE_DIR) / "operators.xlsx").write_bytes(bytes(report.xlsx))

    order.refresh_from_db()
    assert report.summary["operators"] == {
        "operators": "2",
        "orders": "1",
        "gross": str(order.total),
        "over_limit": "0",
    }
    rows = {row[8]: row for row in sheet(report, "Storefront operators")[3:] if row[8]}
    firm, shop = rows["Firm (Open)"], rows["Shop (Open)"]
    assert firm[:7] == (
        "Registered business",
        "杭州示例数码有限公司",
        USCC,
        "王五",
        "浙江省杭州市西湖区文三路 90 号",
        "0571-87654321",
        "Verified",
    )
    number = id_number_of(seller.operator_identity)
    assert len(number) == 18 and shop[2] == number  # the full number, not masked
    assert shop[0].startswith("Individual") and shop[3] is None
    assert (shop[11], D(str(shop[12])), shop[13]) == (1, order.total, None)
    assert (firm[11], firm[12]) == (0, D("0.00"))
    assert firm[9].endswith("/s/firm/") and firm[7].date() == timezone.localdate()
    text = pdf_text(report)
    cells = [line.strip() for line in text.splitlines()]
    assert USCC in cells and number in cells  # each whole, on one line
    assert "杭州示例数码有限公司" in text.replace("\n", "")

    # Still behind the dedicated permission, each download audited.
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_report"))
    client.force_login(clerk)
    assert client.get(reverse("admin:reports_report_download", args=[report.pk, "xlsx"])).status_code == 403
    officer = UserFactory(is_staff=True)
    officer.user_permissions.add(Permission.objects.get(codename="download_report"))
    client.force_login(officer)
    download = client.get(reverse("admin:reports_report_download", args=[report.pk, "xlsx"]))
    assert download.status_code == 200 and download.content == bytes(report.xlsx)
    audit = list(AuditEvent.objects.filter(action="report_download").order_by("pk").values_list("outcome", "actor"))
    assert audit == [(AuditEvent.Outcome.DENIED, clerk.pk), (AuditEvent.Outcome.ALLOWED, officer.pk)]
