"""Rights holders' notices (电子商务法 第四十二条 to 第四十五条, issue 14): the notice's state machine,
the takedown on filing with the notice forwarded to the supplier, the counter-notice and the
15-day restore by beat (not at 14 days, not after a reported complaint), the public form."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from catalog import selectors as catalog_selectors
from compliance.models import AuditEvent
from marketplace.transitions import IllegalTransition
from orders.selectors import orders as order_selectors
from rights import selectors, services
from rights.models import NOTICE_FLOW, RightsNotice
from tests.factories import ProductFactory, SupplierFactory, UserFactory, add_stock

S = RightsNotice.Status
EVIDENCE = "We own the registered trademark 星辰 (No. 12345678); this card is not from our channel."


@pytest.fixture(autouse=True)
def private_root(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"
    return settings.PRIVATE_MEDIA_ROOT


@pytest.fixture
def product(db):
    product = ProductFactory(supplier=SupplierFactory(contact_email="supplier@example.com"), slug="xingchen-100")
    add_stock(product, 2)
    return product


def file_notice(reference="xingchen-100", **kwargs):
    values = {
        "product_reference": reference,
        "notifier_name": "星辰互娱有限公司",
        "notifier_email": "legal@xingchen.example",
        "right_claimed": "trademark",
        "evidence": EVIDENCE,
        "declaration": True,
        **kwargs,
    }
    return services.notice_file(**values)


def counter(notice, staff):
    return services.notice_counter_record(
        notice_id=notice.pk, by=staff, text="We buy from the brand's authorised distributor; invoice No. 889 attached."
    )


ALL = list(S.values)
MOVES = [(a, b) for a in ALL for b in ALL if a != b]
ALLOWED = {
    (S.RECEIVED, S.TAKEN_DOWN),
    (S.TAKEN_DOWN, S.COUNTER_NOTICED),
    (S.TAKEN_DOWN, S.UPHELD),
    (S.TAKEN_DOWN, S.WITHDRAWN),
    (S.COUNTER_NOTICED, S.RESTORED),
    (S.COUNTER_NOTICED, S.UPHELD),
    (S.COUNTER_NOTICED, S.WITHDRAWN),
}


@pytest.mark.parametrize(("src", "dst"), MOVES, ids=[f"{a}->{b}" for a, b in MOVES])
def test_notice_transitions_table(src, dst):
    assert NOTICE_FLOW.can(src, dst) is ((src, dst) in ALLOWED)


@pytest.mark.django_db
@pytest.mark.usefixtures("english")
def test_a_notice_takes_the_product_down_and_forwards_it_to_the_supplier(product, buyer):
    assert order_selectors.purchase_info(product=product).can_buy
    notice = file_notice(reference=f"https://shop.example/p/{product.slug}/")
    product.refresh_from_db()
    notice.refresh_from_db()
    assert notice.status == S.TAKEN_DOWN and notice.taken_down_at is not None
    assert notice.number in product.sale_hold
    info = order_selectors.purchase_info(product=product)
    assert info.reason.code == "sale_held" and not info.listed
    assert "rights holder's notice" in info.reason.message
    assert product not in catalog_selectors.products_on_sale()
    # Forwarded to the supplier's contact, a receipt to the rights holder.
    to_supplier = [m for m in mail.outbox if m.to == ["supplier@example.com"]]
    assert len(to_supplier) == 1 and notice.number in to_supplier[0].subject and EVIDENCE in to_supplier[0].body
    assert any(m.to == ["legal@xingchen.example"] for m in mail.outbox)
    assert notice.forwarded_to == "supplier@example.com" and notice.forwarded_at is not None
    history = list(notice.history.values_list("from_status", "to_status"))
    assert history == [("", S.RECEIVED), (S.RECEIVED, S.TAKEN_DOWN)]
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"rights.notice_received", "rights.product_held", "rights.notice_forwarded"} <= actions


@pytest.mark.django_db
def test_a_product_comes_back_15_days_after_the_counter_notice_reached_the_rights_holder(product):
    staff = UserFactory(is_staff=True)
    notice = file_notice()
    mail.outbox.clear()
    counter(notice, staff)
    notice.refresh_from_db()
    assert notice.status == S.COUNTER_NOTICED
    assert [m.to for m in mail.outbox] == [["legal@xingchen.example"]]  # forwarded to the notifier
    assert "invoice No. 889" in mail.outbox[0].body
    delivered = notice.counter_delivered_at
    assert notice.restore_due_at == delivered + timedelta(days=15)

    assert services.notices_restore_due(now=delivered + timedelta(days=14)) == 0
    product.refresh_from_db()
    assert product.sale_hold
    assert services.notices_restore_due(now=delivered + timedelta(days=14, hours=23, minutes=59)) == 0
    assert services.notices_restore_due(now=delivered + timedelta(days=15)) == 1
    product.refresh_from_db()
    notice.refresh_from_db()
    assert product.sale_hold == "" and notice.status == S.RESTORED and notice.restored_at is not None
    assert order_selectors.purchase_info(product=product).can_buy
    assert AuditEvent.objects.filter(action="rights.notice_restored").exists()
    assert AuditEvent.objects.filter(action="rights.product_hold_lifted", target=f"product:{product.pk}").exists()
    assert services.notices_restore_due(now=delivered + timedelta(days=16)) == 0  # safe to run twice


@pytest.mark.django_db
def test_a_reported_complaint_keeps_the_product_down(product):
    staff = UserFactory(is_staff=True)
    notice = file_notice()
    counter(notice, staff)
    note = "Lawsuit filed, 杭州互联网法院 (2025)浙0192民初1号"
    services.notice_complaint_report(notice_id=notice.pk, by=staff, note=note)
    notice.refresh_from_db()
    assert notice.status == S.UPHELD and notice.complaint_reported_at is not None
    assert services.notices_restore_due(now=timezone.now() + timedelta(days=30)) == 0
    product.refresh_from_db()
    assert product.sale_hold


@pytest.mark.django_db
def test_a_withdrawn_notice_lifts_its_hold_unless_another_holds_the_product(product):
    staff = UserFactory(is_staff=True)
    first, second = file_notice(), file_notice(notifier_email="other@example.net")
    services.notice_withdraw(notice_id=first.pk, by=staff, note="Withdrawn by letter of 3 May")
    product.refresh_from_db()
    assert second.number in product.sale_hold
    services.notice_withdraw(notice_id=second.pk, by=staff, note="Withdrawn by email")
    product.refresh_from_db()
    assert product.sale_hold == ""


@pytest.mark.django_db
def test_a_counter_notice_on_a_closed_notice_is_refused(product):
    staff = UserFactory(is_staff=True)
    notice = file_notice()
    services.notice_withdraw(notice_id=notice.pk, by=staff, note="Withdrawn")
    with pytest.raises(IllegalTransition):
        counter(notice, staff)
    assert RightsNotice.objects.get(pk=notice.pk).status == S.WITHDRAWN


@pytest.mark.django_db
def test_an_unknown_product_or_no_declaration_is_refused(product):
    with pytest.raises(services.RightsError):
        file_notice(reference="no-such-product")
    with pytest.raises(services.RightsError):
        file_notice(declaration=False)
    assert not RightsNotice.objects.exists()


@pytest.mark.django_db
def test_takedowns_in_period_counts_and_rows(product):
    staff = UserFactory(is_staff=True)
    first = file_notice()
    second = file_notice(notifier_email="b@example.net")
    services.notice_withdraw(notice_id=second.pk, by=staff, note="w")
    now = timezone.now()
    found = selectors.takedowns_in_period(now - timedelta(days=1), now + timedelta(minutes=1))
    assert (found.received, found.withdrawn, found.still_down, found.restored) == (2, 1, 1, 0)
    assert [n.pk for n in found.rows] == [first.pk, second.pk]
    assert selectors.takedowns_in_period(now + timedelta(minutes=1), now + timedelta(days=1)).received == 0


@pytest.mark.django_db
def test_the_public_form_renders_in_chinese_and_files_a_notice(client, product):
    page = client.get(reverse("rights:notice_new"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "侵权" in html and 'name="declaration"' in html
    evidence_file = SimpleUploadedFile("trademark.pdf", b"%PDF-1.4\n%%EOF\n", content_type="application/pdf")
    response = client.post(
        reverse("rights:notice_new"),
        {
            "notifier_name": "星辰互娱有限公司",
            "notifier_email": "legal@xingchen.example",
            "product_reference": f"/p/{product.slug}/",
            "right_claimed": "trademark",
            "right_detail": "第12345678号",
            "evidence": EVIDENCE,
            "files": [evidence_file],
            "declaration": "on",
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("rights:notice_filed")
    notice = RightsNotice.objects.get()
    assert notice.documents.get().content_type == "application/pdf"
    receipt = client.get(response["Location"]).content.decode()
    assert notice.number in receipt
    product.refresh_from_db()
    assert product.sale_hold


@pytest.mark.django_db
def test_the_public_form_refuses_without_the_declaration(client, product):
    response = client.post(
        reverse("rights:notice_new"),
        {
            "notifier_name": "A",
            "notifier_email": "a@example.net",
            "product_reference": product.slug,
            "right_claimed": "copyright",
            "evidence": EVIDENCE,
        },
    )
    assert response.status_code == 200 and not RightsNotice.objects.exists()


@pytest.mark.django_db
def test_the_public_form_is_rate_limited(client, product, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "rights_notice": {"subject": (2, 3600), "network": (10, 3600)}}
    data = {"notifier_name": "A", "notifier_email": "a@example.net", "product_reference": "x", "evidence": "short"}
    codes = [client.post(reverse("rights:notice_new"), data).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


@pytest.mark.django_db
def test_admin_records_a_counter_notice_and_the_pages_render(client, product):
    officer = UserFactory(is_staff=True, is_superuser=True)
    notice = file_notice()
    client.force_login(officer)
    change = client.get(reverse("admin:rights_rightsnotice_change", args=[notice.pk])).content.decode()
    assert reverse("admin:rights_rightsnotice_counter", args=[notice.pk]) in change
    url = reverse("admin:rights_rightsnotice_counter", args=[notice.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"text": "No infringement: authorised distributor, invoice No. 889 attached."})
    assert response.status_code == 302
    notice.refresh_from_db()
    assert notice.status == S.COUNTER_NOTICED and notice.counter_recorded_by == officer
    assert client.get(reverse("admin:rights_rightsnotice_changelist")).status_code == 200
