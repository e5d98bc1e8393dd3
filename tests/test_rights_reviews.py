"""The authorisation review ledger (issue 14): the review's state machine, no activation without an
approved review, the beat that expires reviews and takes products off sale, the warnings, the
purchase rule, and the XLSX ledger."""

import io
from datetime import date, timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from catalog import selectors as catalog_selectors
from compliance.models import AuditEvent
from marketplace.transitions import IllegalTransition
from orders.selectors import orders as order_selectors
from orders.services.orders import OrderError, order_place
from rights import selectors, services
from rights.models import REVIEW_FLOW, AuthorisationReview, ReviewWarning
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = pytest.mark.usefixtures("english")
S = AuthorisationReview.Status
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(autouse=True)
def private_root(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"
    return settings.PRIVATE_MEDIA_ROOT


def document(name="authorisation.pdf", data=PDF):
    return services.document_check(name=name, data=data)


def submit(product, *, by=None, products=None):
    by = by or UserFactory(is_staff=True)
    return services.review_submit(
        supplier_id=product.supplier_id,
        product_ids=[p.pk for p in (products or [product])],
        certificate_no="AUTH-2024-001",
        rights_holder="Brand Owner Ltd",
        documents=[document()],
        by=by,
    )


def approve(review, *, until, reviewer=None, today=None):
    return services.review_approve(
        review_id=review.pk, by=reviewer or UserFactory(is_staff=True), valid_until=until, today=today
    )


# --- the state machine -------------------------------------------------------------------------

ALL = list(S.values)
MOVES = [(a, b) for a in ALL for b in ALL if a != b]
ALLOWED = {(S.SUBMITTED, S.APPROVED), (S.SUBMITTED, S.REJECTED), (S.APPROVED, S.EXPIRED), (S.APPROVED, S.REVOKED)}


@pytest.mark.parametrize(("src", "dst"), MOVES, ids=[f"{a}->{b}" for a, b in MOVES])
def test_review_transitions_table(src, dst):
    assert REVIEW_FLOW.can(src, dst) is ((src, dst) in ALLOWED)


@pytest.mark.django_db
@pytest.mark.parametrize(("src", "dst"), sorted(set(MOVES) - ALLOWED), ids=lambda v: str(v))
def test_a_forbidden_review_move_is_refused_and_changes_nothing(src, dst):
    from django.db import transaction

    review = submit(ProductFactory())
    AuthorisationReview.objects.filter(pk=review.pk).update(status=src, valid_until=date(2030, 1, 1))
    with pytest.raises(IllegalTransition), transaction.atomic():
        locked = AuthorisationReview.objects.select_for_update().get(pk=review.pk)
        REVIEW_FLOW.apply(locked, dst)
    assert AuthorisationReview.objects.get(pk=review.pk).status == src


# --- submission, approval, activation ----------------------------------------------------------


@pytest.mark.django_db
def test_submission_stores_the_documents_privately_with_history_and_audit(private_root):
    product = ProductFactory()
    review = submit(product)
    doc = review.documents.get()
    stored = private_root / doc.path
    assert stored.read_bytes() == PDF and doc.content_type == "application/pdf"
    assert "media" not in str(stored)
    assert list(review.history.values_list("from_status", "to_status")) == [("", S.SUBMITTED)]
    assert AuditEvent.objects.filter(action="rights.review_submitted", target=f"review:{review.pk}").exists()


@pytest.mark.django_db
def test_a_document_that_is_neither_pdf_nor_image_is_refused():
    with pytest.raises(services.RightsError, match="not a PDF"):
        services.document_check(name="letter.exe", data=b"MZ\x90\x00" * 10)


@pytest.mark.django_db
def test_products_of_another_supplier_are_refused():
    product, other = ProductFactory(), ProductFactory()
    with pytest.raises(services.RightsError, match="another supplier"):
        submit(product, products=[product, other])


@pytest.mark.django_db
def test_a_product_without_an_approved_authorisation_cannot_be_activated():
    staff = UserFactory(is_staff=True)
    product = ProductFactory(is_active=False)
    with pytest.raises(services.RightsError, match="No approved authorisation review"):
        services.product_activate(product_id=product.pk, by=staff)
    review = submit(product)
    with pytest.raises(services.RightsError):  # submitted, not yet approved
        services.product_activate(product_id=product.pk, by=staff)
    product.refresh_from_db()
    assert product.is_active is False
    assert AuditEvent.objects.filter(action="rights.product_activation_refused").count() == 2

    until = timezone.localdate() + timedelta(days=90)
    approve(review, until=until)
    product.refresh_from_db()
    assert product.sale_authorised_until == until
    services.product_activate(product_id=product.pk, by=staff)
    product.refresh_from_db()
    assert product.is_active is True


@pytest.mark.django_db
def test_the_submitter_cannot_approve_their_own_review_nor_a_past_validity():
    staff = UserFactory(is_staff=True)
    review = submit(ProductFactory(), by=staff)
    with pytest.raises(services.RightsError, match="Another reviewer"):
        approve(review, until=timezone.localdate() + timedelta(days=5), reviewer=staff)
    with pytest.raises(services.RightsError, match="today or later"):
        approve(review, until=timezone.localdate() - timedelta(days=1))
    assert AuthorisationReview.objects.get(pk=review.pk).status == S.SUBMITTED


@pytest.mark.django_db
def test_admin_refuses_turning_a_product_on_sale_without_approval(client):
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    product = ProductFactory(is_active=False)
    url = reverse("admin:catalog_product_change", args=[product.pk])
    page = client.get(url)
    assert page.status_code == 200 and "No authorisation review yet" in page.content.decode()
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(category=product.category_id, supplier=product.supplier_id, is_active="on")
    response = client.post(url, data)
    assert response.status_code == 200
    assert "No approved authorisation review covers it" in response.content.decode()
    product.refresh_from_db()
    assert product.is_active is False

    approve(submit(product), until=timezone.localdate() + timedelta(days=30))
    response = client.post(url, data)
    assert response.status_code == 302
    product.refresh_from_db()
    assert product.is_active is True
    assert AuditEvent.objects.filter(action="rights.product_activated", target=f"product:{product.pk}").exists()


@pytest.mark.django_db
def test_admin_decision_pages_approve_and_reject(client):
    reviewer = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(reviewer)
    review = submit(ProductFactory(is_active=False))
    change = client.get(reverse("admin:rights_authorisationreview_change", args=[review.pk])).content.decode()
    assert reverse("admin:rights_authorisationreview_approve", args=[review.pk]) in change
    until = timezone.localdate() + timedelta(days=60)
    response = client.post(
        reverse("admin:rights_authorisationreview_approve", args=[review.pk]),
        {"valid_until": until.isoformat(), "note": "Letter checked with the brand"},
    )
    assert response.status_code == 302
    review.refresh_from_db()
    assert (review.status, review.valid_until, review.reviewer) == (S.APPROVED, until, reviewer)

    other = submit(ProductFactory())
    client.post(reverse("admin:rights_authorisationreview_reject", args=[other.pk]), {"note": "Letter unsigned"})
    other.refresh_from_db()
    assert other.status == S.REJECTED and other.decision_note == "Letter unsigned"


# --- expiry by beat ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_expiring_authorisation_leaves_sale_by_beat():
    product = ProductFactory(is_active=False)
    add_stock(product, 2)
    today = timezone.localdate()
    review = submit(product)
    approve(review, until=today + timedelta(days=3))
    services.product_activate(product_id=product.pk, by=UserFactory(is_staff=True))
    assert services.reviews_expire_due(today=today + timedelta(days=3)) == 0  # the last valid day
    product.refresh_from_db()
    assert product.is_active and order_selectors.purchase_info(product=product).can_buy

    assert services.reviews_expire_due(today=today + timedelta(days=4)) == 1
    review.refresh_from_db()
    product.refresh_from_db()
    assert review.status == S.EXPIRED and review.expired_at is not None
    assert product.is_active is False
    assert list(review.history.values_list("to_status", flat=True)) == [S.SUBMITTED, S.APPROVED, S.EXPIRED]
    assert AuditEvent.objects.filter(action="rights.review_expired").exists()
    assert AuditEvent.objects.filter(action="rights.product_off_sale", target=f"product:{product.pk}").exists()
    assert services.reviews_expire_due(today=today + timedelta(days=5)) == 0  # safe to run twice


@pytest.mark.django_db
def test_another_approved_review_keeps_the_product_on_sale():
    product = ProductFactory()
    today = timezone.localdate()
    approve(submit(product), until=today + timedelta(days=1))
    approve(submit(product), until=today + timedelta(days=100))
    services.reviews_expire_due(today=today + timedelta(days=2))
    product.refresh_from_db()
    assert product.is_active and product.sale_authorised_until == today + timedelta(days=100)


@pytest.mark.django_db
def test_a_lapsed_authorisation_refuses_the_purchase_and_unlists_the_product(buyer):
    product = ProductFactory()
    add_stock(product, 2)
    type(product).objects.filter(pk=product.pk).update(sale_authorised_until=timezone.localdate() - timedelta(days=1))
    product.refresh_from_db()
    info = order_selectors.purchase_info(product=product)
    assert info.reason.code == "authorisation_lapsed" and not info.listed
    assert "supply authorisation has ended" in info.reason.message
    assert product not in catalog_selectors.products_on_sale()
    with pytest.raises(OrderError, match="supply authorisation has ended"):
        order_place(buyer=buyer, product=product, quantity=1, idempotency_key="k1")


@pytest.mark.django_db
def test_legacy_products_without_a_date_stay_on_sale():
    product = ProductFactory()
    assert product.sale_authorised_until is None
    assert product in catalog_selectors.products_on_sale()
    assert order_selectors.product_refusal(product) is None


@pytest.mark.django_db
def test_staff_are_warned_30_and_7_days_before_once_each():
    UserFactory(is_staff=True, is_superuser=True, email="officer@example.com")
    today = date(2030, 1, 1)
    review = submit(ProductFactory())
    AuthorisationReview.objects.filter(pk=review.pk).update(status=S.APPROVED, valid_until=today + timedelta(days=30))
    assert services.review_expiry_warn(today=today - timedelta(days=1)) == 0
    assert services.review_expiry_warn(today=today) == 1
    assert services.review_expiry_warn(today=today) == 0
    assert services.review_expiry_warn(today=today + timedelta(days=23)) == 1  # 7 days left
    assert len(mail.outbox) == 2 and "officer@example.com" in mail.outbox[0].to
    assert "AUTH-2024-001" in mail.outbox[0].subject
    assert set(ReviewWarning.objects.values_list("stage", flat=True)) == {"30d", "7d"}


# --- the ledger ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_ledger_exports_to_xlsx_with_every_review(client):
    officer = UserFactory(is_staff=True, is_superuser=True)
    first = submit(ProductFactory(name="Steam Wallet 100"))
    approve(first, until=date(2031, 6, 30))
    second = submit(ProductFactory(name="Apple Gift Card"))
    services.review_reject(review_id=second.pk, by=officer, note="Expired certificate")

    client.force_login(officer)
    changelist = client.get(reverse("admin:rights_authorisationreview_changelist")).content.decode()
    assert reverse("admin:rights_authorisationreview_export") in changelist
    response = client.get(reverse("admin:rights_authorisationreview_export"))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="authorisation-ledger-')
    sheet = load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:4] == ("No.", "Products", "Supplier", "Certificate no.")
    assert len(rows) == 3
    assert rows[1][1] == "Steam Wallet 100" and rows[1][5] == 1 and rows[1][11] == "2031-06-30"
    assert rows[1][12] == "Approved"
    assert rows[2][1] == "Apple Gift Card" and rows[2][10] == "Expired certificate" and rows[2][12] == "Rejected"
    assert rows[2][9] == officer.email
    assert AuditEvent.objects.filter(action="rights.ledger_exported").exists()


@pytest.mark.django_db
def test_the_export_needs_its_permission(client):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:rights_authorisationreview_export")).status_code == 403


@pytest.mark.django_db
def test_documents_are_served_only_to_staff_who_may_view_reviews(client):
    review = submit(ProductFactory())
    url = reverse("rights:document", args=[review.documents.get().pk])
    assert client.get(url).status_code == 404
    client.force_login(UserFactory(is_staff=True))  # staff without the permission
    assert client.get(url).status_code == 404
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_selector_ledger_rows_match_the_reviews():
    review = submit(ProductFactory(name="Xbox 50"))
    rows = selectors.ledger_rows()
    assert rows[0][0] == review.pk and rows[0][1] == "Xbox 50" and rows[0][12] == "Submitted, awaiting review"


@pytest.mark.django_db
def test_demo_data_puts_every_demo_product_under_an_approved_review(settings):
    from django.core.management import call_command

    from catalog.models import Product

    settings.PAYMENTS_SANDBOX_ENABLED = True
    call_command("seed_demo", "--quiet")
    call_command("seed_demo_rights", verbosity=0)
    products = Product.objects.all()
    assert products.exists()
    for product in products:
        assert product.sale_authorised_until and product.sale_authorised_until > timezone.localdate()
        assert services.product_sale_refusal(product=product) is None
    count = AuthorisationReview.objects.count()
    call_command("seed_demo_rights", verbosity=0)  # again: nothing new
    assert AuthorisationReview.objects.count() == count
    assert not AuthorisationReview.objects.exclude(status=S.APPROVED).exists()
