"""Reports to regulators (issue 14): the monthly compliance report over a fixture of real sales
(orders paid through the site and a storefront, a no-reason refund, a dispute refund, a defective
code refunded, an arbitration decided for the buyer, tickets, a risk alert, qualifications)
renders a PDF and an XLSX whose totals are the hand-computed ones and equal the ledger's; only
staff with the dedicated permission list and download them, each download audited; the beat
task is idempotent and a failed run is retried; the half-yearly operator report lists the
storefronts. The real-name, minors' and rights sections: tests/test_reports_compliance_sections.py."""

import io
import os
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from celery.schedules import crontab
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook
from pypdf import PdfReader

from aftersales.models import ArbitrationCase, Kind, Ticket
from aftersales.selectors import RefundKind
from aftersales.services import arbitration, disputes, tickets
from compliance.models import AuditEvent, Qualification
from ledger import services as ledger
from ledger.selectors import movements_total
from marketplace.celery import app as celery_app
from orders.models import CodeReveal, Order
from reports import sections, services, tasks
from reports.models import Report
from reports.periods import month_of, period_parse, previous_half_year, previous_month
from risk.models import Action, Alert, Rule
from tests.builders import ask, codes_of, delivered_order, storefront_order
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("english")
D = Decimal
COMPANY = "杭州卡盟数字科技有限公司"
USCC = "91330106MA2KXXXX0X"
MONTHLY = Report.Kind.MONTHLY_COMPLIANCE
SAMPLE_DIR = os.environ.get("REPORTS_SAMPLE_DIR", "")  # set to keep the rendered files and look at them


def this_month():
    return month_of(timezone.localdate())


def qualifications():
    today = timezone.localdate()
    Qualification.objects.create(
        kind=Qualification.Kind.BUSINESS_LICENCE, number=USCC, company_name=COMPANY, valid_until=None
    )
    Qualification.objects.create(
        kind=Qualification.Kind.ICP_FILING, number="浙ICP备2024012345号-1", valid_until=today - timedelta(days=400)
    )


@pytest.fixture
def sales(buyer, staff, level):
    """Known sales of this month, each through the real services (so the ledger has them)."""
    qualifications()
    # A: 3 × 30.00 through the site; one code asked back unrevealed: a no-reason refund of 30.00.
    a = delivered_order(buyer, price="30.00", quantity=3)
    ask(buyer, a, codes_of(a)[:1], key="a")
    # B: 3 × 20.00; one revealed code asked back: a dispute staff refund (20.00).
    b = delivered_order(buyer, price="20.00", quantity=3)
    CodeReveal.objects.create(order_code=codes_of(b)[0], user=buyer, ip="203.0.113.7")
    dispute_ticket = ask(buyer, b, codes_of(b)[:1], key="b").ticket
    disputes.dispute_refund(
        ticket=dispute_ticket,
        staff=staff,
        reason="Checked with the supplier.",
        key="b",
        order_code_ids=[codes_of(b)[0].pk],
    )
    # C: 2 × 25.00; a rejected dispute the buyer takes to arbitration and wins: 50.00 back.
    c = delivered_order(buyer, price="25.00", quantity=2)
    CodeReveal.objects.create(order_code=codes_of(c)[0], user=buyer, ip="203.0.113.7")
    rejected = ask(buyer, c, codes_of(c)[:1], key="c").ticket
    disputes.dispute_reject(ticket=rejected, staff=staff, reason="The code was redeemed.")
    case = arbitration.arbitration_open(ticket=rejected, user=buyer, statement="I never used it.")
    arbitration.arbitration_submit(case=case, staff=staff, third_party="Shanghai Consumer Council", case_number="1")
    arbitration.arbitration_decide(case=case, staff=staff, outcome=ArbitrationCase.Outcome.BUYER, note="Refund.")
    # D: 2 × 15.00; a code reported invalid, refunded by staff from the ticket: defective, 15.00.
    d = delivered_order(buyer, price="15.00", quantity=2)
    invalid = tickets.ticket_open(
        user=buyer, kind=Kind.INVALID, subject="Code invalid", body="It says used.", order=d, is_dispute=True
    )
    disputes.dispute_refund(
        ticket=invalid, staff=staff, reason="Defective code.", key="d", order_code_ids=[codes_of(d)[1].pk]
    )
    # E: a storefront sale (3 codes of a 40.00 product, marked up along a chain of 3 agents).
    _chain, e = storefront_order(level, buyer)
    # A question answered within the promised time.
    question = tickets.ticket_open(user=buyer, kind=Kind.OTHER, subject="Hours?", body="When are you open?")
    Ticket.objects.filter(pk=question.pk).update(first_responded_at=question.created_at + timedelta(hours=2))
    Alert.objects.create(rule=Rule.ORDER_BURST_IP, action=Action.CAPTCHA, ip="203.0.113.9")
    Alert.objects.create(rule=Rule.ORDER_BURST_IP, action=Action.CAPTCHA, ip="203.0.113.10", status="dismissed")
    return {"orders": [a, b, c, d, e]}


def pdf_text(report: Report) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(bytes(report.pdf))).pages)


def sheet_rows(report: Report, prefix: str) -> list[tuple]:
    book = load_workbook(io.BytesIO(bytes(report.xlsx)))
    sheet = next(book[name] for name in book.sheetnames if name.startswith(prefix))
    return [row for row in sheet.iter_rows(values_only=True)]


@pytest.mark.django_db(transaction=True)
def test_the_monthly_report_renders_its_totals_and_they_equal_the_ledger(sales):
    start, end = this_month()
    report = services.report_generate(kind=MONTHLY, start=start, end=end)
    assert report.status == Report.Status.READY and report.generated_by is None
    if SAMPLE_DIR:
        (Path(SAMPLE_DIR) / "monthly.pdf").write_bytes(bytes(report.pdf))
        (Path(SAMPLE_DIR) / "monthly.xlsx").write_bytes(bytes(report.xlsx))

    a, b, c, d, e = (Order.objects.get(pk=o.pk) for o in sales["orders"])
    gross = a.total + b.total + c.total + d.total + e.total
    assert (a.total, b.total, c.total, d.total) == (D("90.00"), D("60.00"), D("50.00"), D("30.00"))
    assert e.channel == Order.Channel.STOREFRONT
    orders = report.summary["orders"]
    assert (orders["orders"], orders["codes"], D(orders["gross"])) == ("5", "13", gross)

    # Refunds by kind, by hand: no-reason 30.00, dispute 20.00, arbitration 50.00, defective 15.00.
    refunds = report.summary["refunds"]
    assert D(refunds[f"{RefundKind.NO_REASON}_amount"]) == D("30.00")
    assert D(refunds[f"{RefundKind.DISPUTE}_amount"]) == D("20.00")
    assert D(refunds[f"{RefundKind.ARBITRATION}_amount"]) == D("50.00")
    assert D(refunds[f"{RefundKind.DEFECTIVE}_amount"]) == D("15.00")
    assert (refunds["count"], D(refunds["amount"])) == ("4", D("115.00"))
    assert D(refunds["back"]) == D("115.00")  # refunds run inline here: all back with the buyer

    # The report's money against the journal, and the journal against the hand computation.
    rec = report.summary["ledger"]
    assert rec["balanced"] == "True"
    for key in ("payments", "refunds_decided", "unused", "refunds_paid"):
        assert rec[f"{key}_report"] == rec[f"{key}_ledger"], key
    assert D(rec["payments_ledger"]) == gross
    assert D(rec["refunds_decided_ledger"]) == D(rec["refunds_paid_ledger"]) == D("115.00")
    period_start, period_end = timezone.now() - timedelta(days=40), timezone.now() + timedelta(days=1)
    held = movements_total(kinds=["payment"], start=period_start, end=period_end, account=ledger.HELD)
    assert held.amount == gross and held.entries == 5

    assert report.summary["complaints"]["opened"] == str(Ticket.objects.count()) == "4"
    assert report.summary["complaints"]["answered"] == str(
        Ticket.objects.filter(first_responded_at__isnull=False).count()
    )
    assert report.summary["arbitration"] == {"cases": "1", "refunded": "50.00"}
    assert report.summary["qualifications"] == {"qualifications": "2", "expired": "1"}
    assert report.summary["risk"] == {"alerts": "2", "actioned": "0"}

    # The PDF: the company on the cover, the period, and the totals as printed.
    text = pdf_text(report)
    assert COMPANY in text and f"{start:%Y-%m-%d}" in text
    assert f"{gross:,.2f}" in text and "115.00" in text
    assert "Page 1 of 5" in text and "Page 5 of 5" in text
    # The XLSX: the orders sheet's totals row and the reconciliation sheet's pairs.
    orders_rows = sheet_rows(report, "1 ")
    total_row = orders_rows[-1]
    assert (total_row[1], total_row[2], D(str(total_row[3]))) == (5, 13, gross)
    ledger_rows = [r for r in sheet_rows(report, "4 ")[3:] if r[0]]
    assert len(ledger_rows) == 4 and all(D(str(r[1])) == D(str(r[2])) and D(str(r[3])) == 0 for r in ledger_rows)
    assert D(str(ledger_rows[0][2])) == gross


@pytest.mark.django_db(transaction=True)
def test_the_operator_report_lists_every_storefront_with_its_sales(buyer, level):
    _chain, order = storefront_order(level, buyer)
    start, end = this_month()
    report = services.report_generate(kind=Report.Kind.OPERATORS_HALFYEAR, start=start, end=end)
    order.refresh_from_db()
    assert report.summary["operators"] == {
        "operators": "1",
        "orders": "1",
        "gross": str(order.total),
        "over_limit": "0",
    }
    rows = sheet_rows(report, "1 ")
    assert rows[3][8] == "Shop (Open)" and rows[3][11] == 1
    assert "/s/shop/" in pdf_text(report)


# --- permission and audit --------------------------------------------------------------------------


@pytest.fixture
def ready(db):
    qualifications()
    start, end = previous_month(timezone.localdate())
    return services.report_generate(kind=MONTHLY, start=start, end=end)


def test_staff_without_the_permission_can_neither_list_nor_download(client, ready):
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_report"))  # "view" alone is not enough
    client.force_login(clerk)
    assert client.get(reverse("admin:reports_report_changelist")).status_code == 403
    assert client.get(reverse("admin:reports_report_change", args=[ready.pk])).status_code == 403
    download = reverse("admin:reports_report_download", args=[ready.pk, "pdf"])
    assert client.get(download).status_code == 403
    denied = AuditEvent.objects.get(action="report_download")
    assert denied.outcome == AuditEvent.Outcome.DENIED and denied.actor == clerk
    assert reverse("admin:reports_report_changelist") not in client.get(reverse("admin:index")).content.decode()


def test_staff_with_the_permission_list_and_download_each_audited(client, ready):
    officer = UserFactory(is_staff=True)
    officer.user_permissions.add(Permission.objects.get(codename="download_report"))
    client.force_login(officer)
    listing = client.get(reverse("admin:reports_report_changelist"))
    assert listing.status_code == 200 and ready.period_label in listing.content.decode()
    page = client.get(reverse("admin:reports_report_change", args=[ready.pk]))
    assert page.status_code == 200
    assert "balanced = True" in page.content.decode() and "Generating" in page.content.decode()  # totals, history
    assert reverse("admin:reports_report_changelist") in client.get(reverse("admin:index")).content.decode()

    pdf = client.get(reverse("admin:reports_report_download", args=[ready.pk, "pdf"]), REMOTE_ADDR="198.51.100.4")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and "attachment" in pdf["Content-Disposition"]
    xlsx = client.get(reverse("admin:reports_report_download", args=[ready.pk, "xlsx"]))
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    rows = list(AuditEvent.objects.filter(action="report_download").order_by("pk"))
    assert [(r.outcome, r.actor, r.target) for r in rows] == [
        (AuditEvent.Outcome.ALLOWED, officer, f"report {ready.pk}")
    ] * 2
    assert rows[0].ip == "198.51.100.4" and rows[0].detail.endswith("pdf") and rows[1].detail.endswith("xlsx")
    assert client.get(reverse("admin:reports_report_download", args=[ready.pk, "exe"])).status_code == 404
    # Nobody adds, edits or deletes a report in admin.
    assert client.get(reverse("admin:reports_report_add")).status_code == 403
    assert client.post(reverse("admin:reports_report_delete", args=[ready.pk])).status_code == 403


# --- the schedule ----------------------------------------------------------------------------------


def test_the_beat_task_is_idempotent(db):
    qualifications()
    first = Report.objects.get(pk=tasks.monthly_compliance_generate.apply().get())
    again = Report.objects.get(pk=tasks.monthly_compliance_generate.apply().get())
    assert first.pk == again.pk and Report.objects.count() == 1
    assert again.generated_at == first.generated_at and again.attempts == 1
    assert (first.period_start, first.period_end) == previous_month(timezone.localdate())
    assert bytes(again.pdf) == bytes(first.pdf)


def test_a_failed_run_is_marked_and_retried_in_place(db, monkeypatch):
    start, end = previous_month(timezone.localdate())

    def broken(period):
        raise RuntimeError("database went away")

    monkeypatch.setitem(sections.MONTHLY_COMPLIANCE, "risk", broken)
    with pytest.raises(RuntimeError):
        services.report_generate(kind=MONTHLY, start=start, end=end)
    failed = Report.objects.get()
    assert failed.status == Report.Status.FAILED and "database went away" in failed.last_error and not failed.pdf
    monkeypatch.undo()
    report = services.report_generate(kind=MONTHLY, start=start, end=end)
    assert report.pk == failed.pk and report.status == Report.Status.READY and report.attempts == 2
    assert report.last_error == "" and bytes(report.pdf).startswith(b"%PDF")
    S = Report.Status
    assert list(report.history.order_by("pk").values_list("from_status", "to_status")) == [
        (S.GENERATING, S.FAILED),
        (S.FAILED, S.GENERATING),
        (S.GENERATING, S.READY),
    ]


def test_the_schedule_runs_monthly_and_in_january_and_july():
    schedule = celery_app.conf.beat_schedule
    monthly = schedule["reports-monthly-compliance"]
    assert monthly["task"] == "reports.tasks.monthly_compliance_generate"
    assert monthly["schedule"] == crontab(day_of_month=1, hour=2, minute=0)
    half = schedule["reports-operators-halfyear"]["schedule"]
    assert half.month_of_year == {1, 7} and half.day_of_month == {1}
    assert celery_app.conf.timezone == "Asia/Shanghai"


def test_periods():
    assert previous_month(date(2026, 1, 1)) == (date(2025, 12, 1), date(2025, 12, 31))
    assert previous_month(date(2026, 3, 1)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert previous_half_year(date(2026, 7, 1)) == (date(2026, 1, 1), date(2026, 6, 30))
    assert previous_half_year(date(2027, 1, 1)) == (date(2026, 7, 1), date(2026, 12, 31))
    assert period_parse("2026-11", half_year=False) == (date(2026, 11, 1), date(2026, 11, 30))
    assert period_parse("2026-H1", half_year=True) == (date(2026, 1, 1), date(2026, 6, 30))


def test_the_command_generates_once(db, staff):
    out = io.StringIO()
    call_command("report_generate", "--kind", MONTHLY, "--period", "2026-02", "--staff", staff.email, stdout=out)
    call_command("report_generate", "--kind", MONTHLY, "--period", "2026-02", stdout=out)
    report = Report.objects.get()
    assert (report.period_start, report.period_end, report.generated_by) == (date(2026, 2, 1), date(2026, 2, 28), staff)
    assert out.getvalue().count("[ready]") == 2
