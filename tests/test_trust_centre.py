"""The public trust centre (issue 14): the figures on /trust/ against a hand computation over a
fixture of known tickets, refunds, refund requests, arbitration cases and ledger entries; the
snapshot replaced by a recompute; empty periods said in words, never 0%; the certificate lookup
(found, not found, throttled); the footer links."""

import re
from datetime import datetime, timedelta
from decimal import Decimal
from html import unescape as html_unescape
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse

from aftersales.models import ArbitrationCase, Kind, RefundRequest, RefundRequestStatusChange, Ticket
from compliance.models import AuditEvent
from ledger import services as ledger
from payments.models import Payment, Recharge, Refund
from tests.builders import place
from tests.factories import ProductFactory, SupplierFactory, add_stock, storefront_create
from trust import services
from trust.models import TrustFigure
from trust.views import CERTIFICATE_THROTTLED_ACTION

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
D = Decimal
BEIJING = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 18, 12, 0, tzinfo=BEIJING)  # a Wednesday
H = timedelta(hours=1)
DAY = timedelta(days=1)


def at(year, month, day, hour, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=BEIJING)


def ticket(user, created, *, answered_after=None):
    t = Ticket.objects.create(
        user=user,
        kind=Kind.OTHER,
        subject="fixture",
        first_response_due_at=created + 48 * H,
        warn_at=created + 36 * H,
        resolution_due_at=created + 7 * DAY,
    )
    Ticket.objects.filter(pk=t.pk).update(
        created_at=created, first_responded_at=created + answered_after if answered_after is not None else None
    )
    return t


def refund(payment, created, *, back=None, status=None):
    r = Refund.objects.create(payment=payment, amount=D("1.00"), reason="fixture", idempotency_key=f"r{created}")
    status = status or (Refund.Status.SUCCEEDED if back else Refund.Status.PROCESSING)
    Refund.objects.filter(pk=r.pk).update(created_at=created, succeeded_at=back, status=status)
    return r


def refund_request(order, created, status, *, came_from=None):
    r = RefundRequest.objects.create(order=order, quantity=1, status=status, idempotency_key=f"q{created}")
    RefundRequest.objects.filter(pk=r.pk).update(created_at=created)
    if came_from:
        RefundRequestStatusChange.objects.create(request=r, from_status=came_from, to_status=status)
    return r


def case(on_ticket, created, outcome):
    c = ArbitrationCase.objects.create(ticket=on_ticket, outcome=outcome)
    ArbitrationCase.objects.filter(pk=c.pk).update(created_at=created)
    return c


@pytest.fixture
def records(buyer):
    """Known records around NOW; the expected figures are worked out by hand in each test."""
    # Tickets: (opened, first answer after); the first answer is due 48 h after opening.
    ticket(buyer, NOW - 2 * DAY, answered_after=3 * H)  # on time, 3 h
    t2 = ticket(buyer, NOW - 5 * DAY, answered_after=50 * H)  # late, 50 h
    t3 = ticket(buyer, NOW - 10 * DAY)  # never answered, due long ago: late
    ticket(buyer, NOW - 1 * H)  # not answered, not yet due: not counted
    t5 = ticket(buyer, NOW - 60 * DAY, answered_after=1 * H)  # on time, 1 h (90 days only)
    ticket(buyer, NOW - 100 * DAY, answered_after=1 * H)  # outside both periods

    recharge = Recharge.objects.create(user=buyer, amount=D("100.00"), expires_at=NOW)
    payment = Payment.objects.create(
        recharge=recharge, gateway="sandbox", trade_no="T1", amount=D("100.00"), status=Payment.Status.SUCCEEDED
    )
    # Refunds: approved (the row is made) → back; one business day = Mon–Fri, same clock time.
    refund(payment, at(2026, 3, 16, 10), back=at(2026, 3, 16, 10, 5))  # Mon: 5 min, in time
    refund(payment, at(2026, 3, 13, 15), back=at(2026, 3, 16, 14))  # Fri 15:00 → Mon 14:00: 71 h, in time
    refund(payment, at(2026, 3, 7, 9), back=at(2026, 3, 10, 9))  # Sat → due Mon's end; Tue: 72 h, late
    refund(payment, at(2026, 3, 17, 9))  # Tue, still processing past Wed 09:00: late
    refund(payment, at(2026, 3, 18, 11), status=Refund.Status.REQUESTED)  # due Thu: not counted yet
    refund(payment, at(2026, 1, 20, 10), back=at(2026, 1, 20, 10, 30))  # 57 days ago: 30 min, in time

    add_stock(product := ProductFactory(), 1)
    order = place(buyer, product)
    S = RefundRequest.Status
    refund_request(order, NOW - 3 * DAY, S.REFUNDED, came_from=S.APPROVED)  # automatic
    refund_request(order, NOW - 4 * DAY, S.APPROVED)  # automatic
    refund_request(order, NOW - 6 * DAY, S.UNDER_REVIEW)  # a dispute
    refund_request(order, NOW - 8 * DAY, S.REJECTED, came_from=S.UNDER_REVIEW)  # a dispute
    refund_request(order, NOW - 45 * DAY, S.REFUNDED, came_from=S.UNDER_REVIEW)  # a dispute (90 days only)

    Outcome = ArbitrationCase.Outcome
    case(t2, NOW - 5 * DAY, Outcome.BUYER)
    case(t3, NOW - 9 * DAY, Outcome.PENDING)
    case(t5, NOW - 50 * DAY, Outcome.PLATFORM)

    ledger.transfer(debit=ledger.clearing("alipay"), credit=ledger.wallet(buyer), amount=D("100.00"), kind="t")
    ledger.transfer(debit=ledger.clearing("alipay"), credit=ledger.HELD, amount=D("30.00"), kind="t")
    ledger.transfer(debit=ledger.clearing("wechat"), credit=ledger.REFUNDS_DUE, amount=D("20.00"), kind="t")
    ledger.transfer(debit=ledger.clearing("wechat"), credit=ledger.SALES, amount=D("45.50"), kind="t")


def figure(key, days):
    return TrustFigure.objects.get(key=key, period_days=days)


def shown(html: str, days: int, key: str) -> str:
    """The value of one figure in one period's card, tags stripped and spaces collapsed."""
    card = re.search(rf'data-testid="trust-period" data-days="{days}">(.*?)</dl>', html, re.S).group(1)
    item = re.search(rf'data-key="{key}"[^>]*>.*?<dd>(.*?)</dd>', card, re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>", " ", item).split())


def test_the_beat_task_computes_the_figures_of_a_hand_computation(records):
    services.trust_figures_compute(now=NOW)
    # Tickets decided in 30 days: t1 on time, t2 late, t3 late (t4 not due yet) → 1/3.
    assert figure("tickets_on_time", 30).value == D("0.3333") and figure("tickets_on_time", 30).sample == 3
    # 90 days adds t5, on time → 2/4.
    assert figure("tickets_on_time", 90).value == D("0.5") and figure("tickets_on_time", 90).sample == 4
    # First answers: 3 h and 50 h → 26.5 h; with t5's 1 h → 3 h.
    assert figure("first_response_median", 30).value == 26.5 * 3600
    assert figure("first_response_median", 90).value == 3 * 3600
    # Refunds back in 30 days: 5 min, 71 h, 72 h → 71 h; with 30 min → (30 min + 71 h) / 2 = 35 h 45 min.
    assert figure("refund_median", 30).value == 71 * 3600 and figure("refund_median", 30).sample == 3
    assert figure("refund_median", 90).value == 35.75 * 3600 and figure("refund_median", 90).sample == 4
    # Within one business day: 2 of 4 known (the Wednesday one is not due yet); with the January one 3 of 5.
    assert figure("refunds_in_business_day", 30).value == D("0.5") and figure("refunds_in_business_day", 30).sample == 4
    assert figure("refunds_in_business_day", 90).value == D("0.6") and figure("refunds_in_business_day", 90).sample == 5
    # Requests approved automatically: 2 of 4, then 2 of 5.
    assert figure("requests_automatic", 30).value == D("0.5")
    assert figure("requests_automatic", 90).value == D("0.4")
    # Arbitration: 2 in 30 days (one for the buyer, one pending), 3 in 90 (plus one for the platform).
    assert [figure(k, 30).sample for k in ("arbitration_cases", "arbitration_buyer", "arbitration_pending")] == [
        2,
        1,
        1,
    ]
    assert figure("arbitration_platform", 30).sample == 0
    assert [figure(k, 90).sample for k in ("arbitration_cases", "arbitration_platform")] == [3, 1]
    # Funds: owed 100 + 30 + 20 = 150; held: Alipay 130, WeChat Pay 20 + 45.50 = 65.50.
    assert figure("funds_owed", 0).value == D("150.00")
    assert figure("funds_held_alipay", 0).value == D("130.00")
    assert figure("funds_held_wechat", 0).value == D("65.50")
    assert figure("funds_held", 0).value == D("195.50")
    assert {f.computed_at for f in TrustFigure.objects.all()} == {NOW}


def test_the_page_shows_the_hand_computed_figures_with_period_and_time(client, records):
    services.trust_figures_compute(now=NOW)
    html = client.get(reverse("trust:index")).content.decode()
    assert shown(html, 30, "tickets_on_time") == "33.3% over 3 tickets"
    assert shown(html, 90, "tickets_on_time") == "50% over 4 tickets"
    assert shown(html, 30, "first_response_median") == "26 h 30 min over 2 answered tickets"
    assert shown(html, 90, "first_response_median") == "3 h over 3 answered tickets"
    assert shown(html, 30, "refund_median") == "2 d 23 h over 3 refunds"
    assert shown(html, 90, "refund_median") == "35 h 45 min over 4 refunds"
    assert shown(html, 30, "refunds_in_business_day") == "50% over 4 refunds"
    assert shown(html, 90, "refunds_in_business_day") == "60% over 5 refunds"
    assert shown(html, 30, "requests_automatic") == "50% over 4 requests"
    assert shown(html, 90, "requests_automatic") == "40% over 5 requests"
    assert "Last 30 days" in html and "Last 90 days" in html
    assert "Computed from our records at 2026-03-18 12:00 (Beijing time)" in html
    arbitration = re.search(r'data-days="30">.*?data-key="arbitration_cases"[^>]*>(.*?)</dd>', html, re.S).group(1)
    assert " ".join(re.sub(r"<[^>]+>", " ", html_unescape(arbitration)).split()) == (
        "Arbitration cases and how they ended 2 Pending 1 · In the buyer's favour 1"
    )
    funds = re.search(r'data-testid="trust-funds">(.*?)</section>', html, re.S).group(1)
    assert re.search(r'data-testid="trust-owed-total">¥\s*150\.00<', funds)
    assert re.search(r'data-testid="trust-held-total">¥\s*195\.50<', funds)
    assert "Alipay" in funds and "WeChat Pay" in funds and "covered" in funds


def test_a_recompute_replaces_the_snapshot(records):
    services.trust_figures_compute(now=NOW)
    first = TrustFigure.objects.count()
    Ticket.objects.filter(first_responded_at__isnull=True).update(first_responded_at=NOW)  # late answers
    later = NOW + H
    services.trust_figures_compute(now=later)
    assert TrustFigure.objects.count() == first  # replaced, not added to
    assert set(TrustFigure.objects.values_list("computed_at", flat=True)) == {later}
    # t3 is still late; the one opened an hour before NOW is answered (on time): 2 of 4.
    assert figure("tickets_on_time", 30).value == D("0.5")


def test_empty_periods_are_said_in_words_never_as_zero(client, settings):
    html = client.get(reverse("trust:index")).content.decode()
    assert "The figures have not been computed yet." in html
    services.trust_figures_compute()
    html = client.get(reverse("trust:index")).content.decode()
    for days in (30, 90):
        assert shown(html, days, "tickets_on_time") == "No tickets in this period."
        assert shown(html, days, "refund_median") == "No refund completed in this period."
        assert shown(html, days, "requests_automatic") == "No refund requests in this period."
    assert "No arbitration cases in this period." in html
    assert "0%" not in html
    assert TrustFigure.objects.get(key="tickets_on_time", period_days=30).value is None


def test_business_day_deadline_reads_one_business_day_before_forwards():
    from payments.selectors import one_business_day_before

    for start in (at(2026, 3, 19, 10), at(2026, 3, 20, 10), at(2026, 3, 21, 10), at(2026, 3, 22, 23)):
        deadline = services.business_day_deadline(start)
        assert one_business_day_before(deadline) >= start > one_business_day_before(deadline - timedelta(minutes=1))
    assert services.business_day_deadline(at(2026, 3, 20, 10)) == at(2026, 3, 23, 10)  # Fri → Mon
    assert services.business_day_deadline(at(2026, 3, 21, 10)) == at(2026, 3, 24, 0)  # Sat → Monday's end


@pytest.fixture
def authorised(db):
    supplier = SupplierFactory(
        name="星云数卡",
        is_authorised=True,
        authorisation_cert_no="AUTH-2026-0042",
        authorised_until=datetime(2027, 6, 30).date(),
    )
    ProductFactory(supplier=supplier, name="Steam wallet 100")
    ProductFactory(supplier=supplier, name="Old card", is_active=False)
    return supplier


def test_certificate_lookup_answers_supplier_products_and_until_when(client, authorised):
    response = client.get(reverse("trust:certificate_lookup"), {"number": "  auth-2026-0042 "})
    html = response.content.decode()
    assert response.status_code == 200 and 'data-testid="certificate-found"' in html
    assert "星云数卡" in html and "Steam wallet 100" in html and "Old card" not in html
    assert re.search(r'data-testid="certificate-until">2027-06-30<', html)


def test_certificate_lookup_says_when_nobody_holds_the_number(client, authorised):
    html = client.get(reverse("trust:certificate_lookup"), {"number": "FAKE-1"}).content.decode()
    assert 'data-testid="certificate-not-found"' in html and "FAKE-1" in html and "星云数卡" not in html
    # An unauthorised supplier's number is not an authorisation.
    SupplierFactory(name="无授权", is_authorised=False, authorisation_cert_no="NOPE-1")
    html = client.get(reverse("trust:certificate_lookup"), {"number": "NOPE-1"}).content.decode()
    assert 'data-testid="certificate-not-found"' in html


def test_certificate_lookup_is_limited_per_client(settings, authorised):
    settings.TRUST_CERTIFICATE_LOOKUP_LIMIT = 3
    client = Client(REMOTE_ADDR="198.51.100.7")
    statuses = [client.get(reverse("trust:certificate_lookup"), {"number": f"N{i}"}).status_code for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    response = client.get(reverse("trust:certificate_lookup"), {"number": "AUTH-2026-0042"})
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 600
    assert AuditEvent.objects.filter(action=CERTIFICATE_THROTTLED_ACTION).count() == 3
    # Another network is not held back; the empty form is not a lookup and is never limited.
    assert (
        Client(REMOTE_ADDR="203.0.113.9").get(reverse("trust:certificate_lookup"), {"number": "X"}).status_code == 200
    )
    assert client.get(reverse("trust:certificate_lookup")).status_code == 200


def test_every_page_and_storefront_footer_links_the_trust_centre(client, level):
    from tests.builders import chain_of

    storefront_create(agent=chain_of(1, level)[0], slug="lucky", name="Lucky")
    for url in ("/", "/s/lucky/", reverse("trust:index")):
        html = client.get(url).content.decode()
        assert f'href="{reverse("trust:index")}"' in html, url


def test_the_page_lists_suppliers_channels_and_the_payee(client, settings, authorised):
    from django.core.management import call_command

    settings.PAYMENTS_SANDBOX_ENABLED = True
    call_command("seed_demo_compliance", verbosity=0)
    SupplierFactory(name="无授权供货商")  # no product on sale: not listed
    html = client.get(reverse("trust:index")).content.decode()
    suppliers = re.search(r'data-testid="trust-suppliers">(.*?)</section>', html, re.S).group(1)
    assert "星云数卡" in suppliers and "AUTH-2026-0042" in suppliers and "2027-06-30" in suppliers
    assert "无授权供货商" not in suppliers
    assert re.search(r'data-testid="trust-channels">.*data-channel="sandbox"', html)
    assert "杭州卡盟数字科技有限公司" in re.search(r'data-testid="trust-payee">(.*?)</dd>', html, re.S).group(1)
    assert f'href="{reverse("compliance:qualifications")}"' in html


def test_beat_runs_the_computation_hourly(records):
    from marketplace.celery import app
    from trust.tasks import figures_compute

    entry = app.conf.beat_schedule["trust-figures-compute"]
    assert entry["task"] == figures_compute.name == "trust.tasks.figures_compute"
    assert len(entry["schedule"].hour) == 24  # every hour (at least daily, as the issue asks)
    assert figures_compute.delay().get() == TrustFigure.objects.count() > 0
