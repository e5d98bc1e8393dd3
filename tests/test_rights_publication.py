"""The public register of rights notices (电子商务法 第四十四条, issue 14): every notice with its
public fields, steps and outcome, never the rights holder's email, IP, name or evidence nor the
counter-notice's text; filters and search; paging; the detail's timeline; no writes on GET."""

import html
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from rights import selectors, services
from rights.models import RightsNotice
from tests.factories import ProductFactory, SupplierFactory, UserFactory, add_stock
from tests.test_get_no_writes import WriteRecorder

S = RightsNotice.Status
EVIDENCE = "We own the registered trademark 星辰 (No. 12345678); this card is not from our channel."
COUNTER = "We buy from the brand's authorised distributor; invoice No. 889 attached."
COMPLAINT = "Lawsuit filed, 杭州互联网法院 (2025)浙0192民初1号"
LIST = reverse("rights:notice_list")


@pytest.fixture(autouse=True)
def private_root(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"


@pytest.fixture
def product(db):
    supplier = SupplierFactory(name="星辰供货商", contact_email="supplier@example.com")
    product = ProductFactory(supplier=supplier, name="星辰点卡 100 元", slug="xingchen-100")
    add_stock(product, 2)
    return product


def file_notice(reference="xingchen-100", **kwargs):
    values = {
        "product_reference": reference,
        "notifier_name": "张三",
        "notifier_email": "zhangsan@xingchen.example",
        "right_claimed": "trademark",
        "right_detail": "TM-12345678",
        "evidence": EVIDENCE,
        "declaration": True,
        "ip": "203.0.113.77",
        **kwargs,
    }
    return services.notice_file(**values)


def text_of(response) -> str:
    assert response.status_code == 200
    body = response.content.decode()
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def ours(queries) -> list[str]:
    """The queries of the register itself (the footer's, cached, come and go)."""
    return [q["sql"] for q in queries.captured_queries if '"rights_' in q["sql"] or '"catalog_' in q["sql"]]


def rows(response) -> list[str]:
    return re.findall(r'data-testid="register-notice" data-number="([^"]+)"', response.content.decode())


@pytest.mark.django_db
def test_the_list_shows_the_public_fields_and_nothing_private(client, product):
    staff = UserFactory(is_staff=True)
    notice = file_notice()
    services.notice_counter_record(notice_id=notice.pk, by=staff, text=COUNTER)
    services.notice_complaint_report(notice_id=notice.pk, by=staff, note=COMPLAINT)
    body = client.get(LIST).content.decode()
    text = text_of(client.get(LIST))
    for shown in (notice.number, "星辰点卡 100 元", "星辰供货商", "商标", "TM-12345678", "权利人已提交通知"):
        assert shown in text, shown
    assert "已登记投诉或起诉：继续下架" in text  # the status in words
    private_bits = (
        *("zhangsan", "xingchen.example", "203.0.113.77", "张三"),  # the notifier
        *("12345678)", "invoice No. 889", "杭州互联网法院"),  # the evidence, the counter-notice, the note
    )
    for private in private_bits:
        assert private not in body, private
    # The product as the notifier typed it is theirs too: the catalogue's name is shown instead.
    assert "xingchen-100" not in body


@pytest.mark.django_db
@pytest.mark.usefixtures("english")
def test_each_status_shows_its_dates_and_outcome(client, product):
    staff = UserFactory(is_staff=True)
    down = file_notice()
    restored = file_notice()
    services.notice_counter_record(notice_id=restored.pk, by=staff, text=COUNTER)
    restored.refresh_from_db()
    assert services.notices_restore_due(now=restored.restore_due_at) == 1
    restored.refresh_from_db()
    countered = file_notice()
    services.notice_counter_record(notice_id=countered.pk, by=staff, text=COUNTER)
    withdrawn = file_notice()
    services.notice_withdraw(notice_id=withdrawn.pk, by=staff, note="Withdrawn by letter of 3 May")
    countered.refresh_from_db()
    body = client.get(LIST).content.decode()
    cards = dict(re.findall(r'data-number="([^"]+)"(.*?)</li>', body, flags=re.S))

    def steps(number):
        return set(re.findall(r'data-step="([a-z_]+)"', cards[number]))

    def status(number):
        return re.search(r'data-status="([a-z_]+)"', cards[number]).group(1)

    assert status(down.number) == S.TAKEN_DOWN and "Product taken down" in cards[down.number]
    assert steps(down.number) == {"received", "taken_down", "forwarded"}
    assert "waiting for the supplier" in cards[down.number]

    assert status(countered.number) == S.COUNTER_NOTICED
    assert steps(countered.number) == {"received", "taken_down", "forwarded", "counter_delivered", "restore_due"}
    due = timezone.localtime(countered.restore_due_at)
    assert f"comes back on {due:%Y-%m-%d %H:%M}" in cards[countered.number]

    # Restored by beat 15 days after its counter-notice: its counter-notice date is kept.
    assert status(restored.number) == S.RESTORED
    assert steps(restored.number) == {"received", "taken_down", "forwarded", "counter_delivered", "restored"}
    assert "Product back on sale" in cards[restored.number]
    assert f"{timezone.localtime(restored.counter_delivered_at):%Y-%m-%d}" in cards[restored.number]

    assert status(withdrawn.number) == S.WITHDRAWN
    assert steps(withdrawn.number) == {"received", "taken_down", "forwarded", "withdrawn"}
    assert "withdrew the notice" in cards[withdrawn.number]
    assert "3 May" not in body  # staff's note is not published
    # Newest first.
    assert rows(client.get(LIST)) == [withdrawn.number, countered.number, restored.number, down.number]


@pytest.mark.django_db
def test_filter_by_status_and_search_by_reference_or_product(client, product):
    staff = UserFactory(is_staff=True)
    other = ProductFactory(name="月光礼品卡", slug="moon-50")
    add_stock(other, 1)
    first = file_notice()
    second = file_notice(reference="moon-50")
    services.notice_withdraw(notice_id=second.pk, by=staff, note="w")

    assert rows(client.get(LIST, {"status": S.WITHDRAWN})) == [second.number]
    assert rows(client.get(LIST, {"status": S.TAKEN_DOWN})) == [first.number]
    assert rows(client.get(LIST, {"status": S.RESTORED})) == []
    assert "没有符合筛选条件的通知" in text_of(client.get(LIST, {"status": S.RESTORED}))
    assert len(rows(client.get(LIST, {"status": "<script>"}))) == 2  # not a status: ignored, no error
    assert rows(client.get(LIST, {"q": first.number.lower()})) == [first.number]
    assert rows(client.get(LIST, {"q": first.number[-6:]})) == [first.number]
    assert rows(client.get(LIST, {"q": "月光"})) == [second.number]
    assert rows(client.get(LIST, {"q": "月光", "status": S.TAKEN_DOWN})) == []
    assert rows(client.get(LIST, {"q": "x" * 5000})) == []
    # The form keeps what was asked.
    body = client.get(LIST, {"q": "月光", "status": S.WITHDRAWN}).content.decode()
    assert body.count('value="月光"') == 1  # in the register's form, not the site's product search
    assert f'<option value="{S.WITHDRAWN}" selected>' in body


@pytest.mark.django_db
def test_the_list_is_paged_30_a_page_newest_first(client, product):
    now = timezone.now()
    RightsNotice.objects.bulk_create(
        RightsNotice(
            number=f"RN20260101{i:06d}",
            product=product,
            product_reference="xingchen-100",
            notifier_name="n",
            notifier_email="n@example.com",
            right_claimed="copyright",
            evidence=EVIDENCE,
            declaration_accepted_at=now,
            received_at=now - timedelta(hours=i),
            status=S.TAKEN_DOWN,
            taken_down_at=now - timedelta(hours=i),
        )
        for i in range(31)
    )
    first = rows(client.get(LIST))
    assert len(first) == 30 and first[0] == "RN20260101000000" and first[-1] == "RN20260101000029"
    assert rows(client.get(LIST, {"page": 2})) == ["RN20260101000030"]
    assert rows(client.get(LIST, {"page": "abc"})) == first
    assert rows(client.get(LIST, {"page": 99})) == ["RN20260101000030"]
    body = client.get(LIST, {"page": 1, "status": S.TAKEN_DOWN}).content.decode()
    assert "1 / 2" in body and "page=2" in body and "status=taken_down" in body  # the filter is kept


@pytest.mark.django_db
def test_the_pages_query_a_fixed_number_of_times(client, product):
    """No N+1: the product and its supplier come with the notice."""
    file_notice()
    with CaptureQueriesContext(connection) as one:
        client.get(LIST)
    for _ in range(4):
        file_notice(reference=ProductFactory().slug)
    with CaptureQueriesContext(connection) as five:
        assert len(rows(client.get(LIST))) == 5
    assert len(ours(five)) == len(ours(one)) == 2  # the count and the page


@pytest.mark.django_db
@pytest.mark.usefixtures("english")
def test_the_detail_shows_the_timeline_with_timestamps(client, product):
    staff = UserFactory(is_staff=True)
    notice = file_notice()
    services.notice_counter_record(notice_id=notice.pk, by=staff, text=COUNTER)
    services.notice_complaint_report(notice_id=notice.pk, by=staff, note=COMPLAINT)
    url = reverse("rights:notice_detail", args=[notice.number])
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert len(ours(queries)) == 2  # the notice with its product and supplier, its history
    body = response.content.decode()
    history = list(notice.history.order_by("at", "pk"))
    assert [h.to_status for h in history] == [S.RECEIVED, S.TAKEN_DOWN, S.COUNTER_NOTICED, S.UPHELD]
    assert re.findall(r'<li data-status="([a-z_]+)">', body) == [h.to_status for h in history]
    shown = re.findall(r'data-testid="step-at">([^<]+)<', body)
    assert shown == [f"{timezone.localtime(h.at):%Y-%m-%d %H:%M:%S}" for h in history]
    for text in ("Complaint or lawsuit reported: kept down", "Product kept off sale", "TM-12345678", "Trademark"):
        assert text in body, text
    for private in ("zhangsan", "203.0.113.77", "张三", "invoice No. 889", "杭州互联网法院", "public form"):
        assert private not in body, private
    # The reference in lower case finds it too (typed by hand from the receipt).
    assert client.get(reverse("rights:notice_detail", args=[notice.number.lower()])).status_code == 200


@pytest.mark.django_db
def test_an_unknown_reference_is_404(client, product):
    file_notice()
    for number in ("RN20260101ZZZZZZ", "x" * 300, "new2"):
        assert client.get(reverse("rights:notice_detail", args=[number])).status_code == 404
    assert selectors.notice_public(number="") is None


@pytest.mark.django_db
def test_reading_the_register_writes_nothing(client, product):
    notice = file_notice()
    urls = [
        LIST,
        LIST + "?status=taken_down&q=星辰&page=2",
        reverse("rights:notice_detail", args=[notice.number]),
        reverse("rights:notice_detail", args=["RN00000000NOPE00"]),
    ]
    recorder = WriteRecorder()
    with connection.execute_wrapper(recorder):
        for url in urls:
            client.get(url)
    assert recorder.writes == []
    assert client.post(LIST).status_code == 405


@pytest.mark.django_db
def test_the_register_is_linked_from_the_footer_the_receipt_and_the_trust_centre(client, product):
    register = reverse("rights:notice_list")
    home = client.get("/").content.decode()
    assert f'href="{register}" data-testid="footer-rights-register"' in home and "知识产权通知公示" in home
    trust = client.get(reverse("trust:index")).content.decode()
    assert f'href="{register}" data-testid="trust-rights-register"' in trust
    response = client.post(
        reverse("rights:notice_new"),
        {
            "notifier_name": "星辰互娱有限公司",
            "notifier_email": "legal@xingchen.example",
            "product_reference": "xingchen-100",
            "right_claimed": "copyright",
            "evidence": EVIDENCE,
            "declaration": "on",
        },
        follow=True,
    )
    notice = RightsNotice.objects.get()
    detail = reverse("rights:notice_detail", args=[notice.number])
    assert f'href="{detail}" data-testid="rights-notice-public-link"' in response.content.decode()
    assert client.get(detail).status_code == 200
