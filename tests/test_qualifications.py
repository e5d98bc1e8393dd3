"""The platform's qualifications (issue 14): recorded in admin with each change kept, shown on
every page's footer and on the public page (电子商务法 第十五条), expired ones marked expired,
staff warned 30 and 7 days before a validity ends, the licence image served only through its view."""

import io
import re
from datetime import date, timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from compliance import selectors, services
from compliance.models import Qualification, QualificationChange, QualificationWarning
from tests.builders import chain_of
from tests.factories import UserFactory, storefront_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
Kind = Qualification.Kind
USCC = "91330106MA2H3K7Q0C"  # the demo's fictional code: its check character is right


def png(size=(800, 560), color="#f5efe0", **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG", **save)
    return out.getvalue()


def upload(data: bytes, name="licence.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/png")


def record(kind=Kind.BUSINESS_LICENCE, *, actor=None, image=None, **values) -> Qualification:
    defaults = {
        Kind.BUSINESS_LICENCE: {
            "number": USCC,
            "company_name": "杭州卡盟数字科技有限公司",
            "scope": "技术服务；软件开发；互联网销售。",
            "valid_from": date(2021, 3, 18),
        },
        Kind.ICP_FILING: {"number": "浙ICP备2021036521号-1"},
        Kind.TELECOM_LICENCE: {"number": "浙B2-20210452", "valid_until": timezone.localdate() + timedelta(days=900)},
        Kind.PUBLIC_SECURITY_FILING: {"number": "浙公网安备33010602011876号"},
    }[kind]
    fields = {"kind": kind, "is_shown": True, **defaults, **values}
    if kind == Kind.BUSINESS_LICENCE and image is None:
        image = services.qualification_image_encode(data=png())
    return services.qualification_save(
        actor=actor, qualification_id=None, values=fields, image=services.KEEP if image is None else image
    )


# --- the check character (GB 32100-2015) ----------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "91350100M000100Y43",  # the sample the standard's commentaries cite
        "911101087877828553",
        "91110000802100433B",  # a check character that is a letter
        "914403001922038216",
        USCC,
        " 9135 0100 M000 100Y43 ",  # typed with spaces: normalised
        "91350100m000100y43",  # lower case: normalised
    ],
)
def test_valid_codes_pass_the_check_character(code):
    assert services.uscc_validate(code) == re.sub(r"\s", "", code).upper()


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("91350100M000100Y44", "check character"),  # last character wrong
        ("91350100M000100Y34", "check character"),  # two characters swapped
        ("91350100M000010Y43", "check character"),  # a transposition inside
        ("91350100M00010Y43", "18 characters"),  # one dropped
        ("91350100M000100Y430", "18 characters"),
        ("91350100MO00100Y43", "never uses I, O, S, V or Z"),  # the letter O for zero
        ("9135010OM000100Y43", "never uses"),
        ("91350I00M000100Y43", "never uses"),
        ("913501A0M000100Y43", "region"),  # the region code is six digits
        ("", "18 characters"),
    ],
)
def test_mistyped_codes_are_refused_with_what_is_wrong(code, says):
    with pytest.raises(services.QualificationError, match=says) as caught:
        services.uscc_validate(code)
    assert caught.value.field == "number"


def test_check_character_matches_the_weights_of_the_standard():
    assert services.USCC_WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    assert services.uscc_check_char("91350100M000100Y4") == "3"
    # A remainder of 0 gives the check character 0 (31 counts as 0), not an index error.
    for body in ("11111111111111111", "9133010600000000A", "12345678901234567"):
        char = services.uscc_check_char(body)
        assert char in services.USCC_CHARS
        assert services.uscc_validate(body + char)


@pytest.mark.parametrize(
    ("kind", "number", "ok"),
    [
        (Kind.ICP_FILING, "京ICP备2024012345号", True),
        (Kind.ICP_FILING, "京ICP备2024012345号-1", True),
        (Kind.ICP_FILING, "ICP2024012345", False),
        (Kind.TELECOM_LICENCE, "京B2-20240123", True),
        (Kind.TELECOM_LICENCE, "B2-20240123", True),
        (Kind.TELECOM_LICENCE, "京ICP证030173号", True),
        (Kind.TELECOM_LICENCE, "京B2-2024", False),
        (Kind.PUBLIC_SECURITY_FILING, "京公网安备 11010502000001号", True),
        (Kind.PUBLIC_SECURITY_FILING, "京公网安备110105号", False),
    ],
)
def test_each_kind_checks_the_shape_of_its_number(kind, number, ok):
    values = {"kind": kind, "number": number, "valid_until": date(2030, 1, 1)}
    if ok:
        assert services.qualification_clean(values, has_image=False)["number"] == number.replace(" ", "")
    else:
        with pytest.raises(services.QualificationError):
            services.qualification_clean(values, has_image=False)


def test_a_business_licence_needs_its_name_scope_start_and_image():
    values = {"kind": Kind.BUSINESS_LICENCE, "number": USCC, "company_name": "某公司", "scope": "软件开发"}
    with pytest.raises(services.QualificationError, match="term begins"):
        services.qualification_clean(values, has_image=True)
    values["valid_from"] = date(2021, 1, 1)
    with pytest.raises(services.QualificationError, match="image") as caught:
        services.qualification_clean(values, has_image=False)
    assert caught.value.field == "image_upload"
    with pytest.raises(services.QualificationError, match="cannot end before"):
        services.qualification_clean({**values, "valid_until": date(2020, 1, 1)}, has_image=True)


# --- admin: create and edit, every change kept --------------------------------------------


def admin_post(client, url, **fields):
    data = {
        "kind": Kind.BUSINESS_LICENCE,
        "number": USCC,
        "company_name": "杭州卡盟数字科技有限公司",
        "scope": "技术服务；软件开发。",
        "valid_from": "2021-03-18",
        "valid_until": "",
        "is_shown": "on",
        # The read-only inlines' management forms.
        "changes-TOTAL_FORMS": "0",
        "changes-INITIAL_FORMS": "0",
        "warnings-TOTAL_FORMS": "0",
        "warnings-INITIAL_FORMS": "0",
        **fields,
    }
    return client.post(url, data)


def test_staff_create_and_edit_in_admin_and_each_save_is_kept_as_history(client, staff):
    client.force_login(staff)
    add = reverse("admin:compliance_qualification_add")

    # A mistyped code is refused on the form, with the reason, and nothing is saved.
    page = admin_post(client, add, number="91330106MA2H3K7Q0D", image_upload=upload(png()))
    assert page.status_code == 200
    assert "check character does not match" in page.content.decode()
    # No image for a business licence: refused.
    page = admin_post(client, add)
    assert page.status_code == 200 and "Upload an image of the licence" in page.content.decode()
    # Not an image at all: refused.
    page = admin_post(client, add, image_upload=upload(b"%PDF-1.4 not an image", name="licence.png"))
    assert page.status_code == 200 and "not an image we can read" in page.content.decode()
    assert not Qualification.objects.exists()

    photo = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # the camera's make: metadata that must not reach the public page
    Image.new("RGB", (3000, 2000), "#ddd").save(photo, format="JPEG", exif=exif)
    response = admin_post(client, add, number="9133 0106 MA2H 3K7Q 0C", image_upload=upload(photo.getvalue(), "a.jpg"))
    assert response.status_code == 302, response.content.decode()[:2000]
    licence = Qualification.objects.get()
    assert licence.number == USCC  # spaces dropped
    # Re-encoded: a JPEG within 2000 px, without the uploaded metadata.
    with Image.open(io.BytesIO(bytes(licence.image))) as stored:
        assert stored.format == "JPEG" and max(stored.size) == 2000 and "exif" not in stored.info
    created = QualificationChange.objects.get()
    assert created.actor == staff and created.action == QualificationChange.Action.CREATED
    assert created.changes["number"] == [None, USCC]
    assert created.changes["image"][0] is None and "sha256:" in created.changes["image"][1]

    change = reverse("admin:compliance_qualification_change", args=[licence.pk])
    editor = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(editor)
    assert (
        admin_post(client, change, company_name="杭州卡盟数字科技股份有限公司", valid_until="2041-03-17").status_code
        == 302
    )
    latest = QualificationChange.objects.order_by("-pk").first()
    assert latest.actor == editor and latest.action == QualificationChange.Action.CHANGED
    assert latest.changes == {
        "company_name": ["杭州卡盟数字科技有限公司", "杭州卡盟数字科技股份有限公司"],
        "valid_until": [None, "2041-03-17"],
    }
    # A save that changes nothing writes no history.
    admin_post(client, change, company_name="杭州卡盟数字科技股份有限公司", valid_until="2041-03-17")
    assert QualificationChange.objects.count() == 2
    # The change page shows the history; there is no delete.
    page = client.get(change).content.decode()
    assert "杭州卡盟数字科技有限公司 → 杭州卡盟数字科技股份有限公司" in page
    assert client.get(reverse("admin:compliance_qualification_delete", args=[licence.pk])).status_code == 403


def test_a_staff_member_without_the_permission_cannot_change_qualifications(client):
    licence = record()
    clerk = UserFactory(is_staff=True)
    client.force_login(clerk)
    change = reverse("admin:compliance_qualification_change", args=[licence.pk])
    assert client.get(change).status_code == 403
    assert admin_post(client, change, company_name="冒名公司").status_code == 403
    assert Qualification.objects.get().company_name == "杭州卡盟数字科技有限公司"


# --- the footer on every page -------------------------------------------------------------


@pytest.fixture
def all_four():
    return {kind: record(kind) for kind in Kind.values}


def footer(html: str) -> str:
    found = re.search(r'data-testid="footer-qualifications">(.*?)</ul>', html, re.S)
    assert found, "no qualifications in the footer"
    return found.group(1)


def test_the_footer_of_platform_and_storefront_pages_shows_them_with_their_links(client, all_four, level):
    storefront_create(agent=chain_of(1, level)[0], slug="trusty", name="Trusty")
    for url in ("/", "/accounts/login/", "/s/trusty/", reverse("compliance:qualifications")):
        line = footer(client.get(url).content.decode())
        assert f"杭州卡盟数字科技有限公司 · Unified social credit code {USCC}" in line, url
        assert (
            '<a href="https://beian.miit.gov.cn/" target="_blank" rel="noopener noreferrer">浙ICP备2021036521号-1</a>'
            in line
        )
        assert "Value-added telecom business licence: 浙B2-20210452" in line  # an English colon in English
        assert (
            '<a href="https://beian.mps.gov.cn/#/query/webSearch?code=33010602011876" target="_blank" '
            'rel="noopener noreferrer">浙公网安备33010602011876号</a>' in line
        )
        assert reverse("compliance:qualifications") in line
        assert "Expired" not in line


def test_the_footer_is_read_from_the_cache_and_a_change_shows_at_once(client, all_four, staff):
    client.get("/")  # fills the cache
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selectors, "_qualifications_load", lambda: pytest.fail("read the database again"))
        assert "浙ICP备2021036521号-1" in client.get("/").content.decode()
    icp = all_four[Kind.ICP_FILING]
    services.qualification_save(
        actor=staff,
        qualification_id=icp.pk,
        values={"kind": Kind.ICP_FILING, "number": "浙ICP备2021036521号-2", "is_shown": True},
    )
    page = client.get("/").content.decode()
    assert "浙ICP备2021036521号-2" in page and "浙ICP备2021036521号-1" not in page


def test_no_qualification_no_footer_line_and_pages_without_it_do_not_read_it(client, django_assert_num_queries):
    assert 'data-testid="footer-qualifications"' not in client.get("/accounts/login/").content.decode()
    # The JSON health check renders no template: the lazy context costs nothing.
    with django_assert_num_queries(0):
        assert selectors.qualifications_context(None)["QUALIFICATIONS"] is not None


def test_expired_shows_as_expired_in_the_footer_and_on_the_page(client, all_four, staff):
    telecom = all_four[Kind.TELECOM_LICENCE]
    ended = timezone.localdate() - timedelta(days=1)
    services.qualification_save(
        actor=staff,
        qualification_id=telecom.pk,
        values={"kind": Kind.TELECOM_LICENCE, "number": telecom.number, "valid_until": ended, "is_shown": True},
    )
    line = footer(client.get("/").content.decode())
    item = re.search(r'<li data-kind="telecom_licence" data-expired="1">(.*?)</li>', line, re.S)
    assert item and "浙B2-20210452" in item.group(1) and "Expired" in item.group(1)
    page = client.get(reverse("compliance:qualifications")).content.decode()
    card = re.search(r'data-kind="telecom_licence"[^>]*data-expired="1">(.*?)</article>', page, re.S)
    assert card and f"Expired (valid until {ended:%Y-%m-%d})" in card.group(1)
    # The others stay valid; a licence without end date is never expired.
    assert page.count('data-testid="qualification" data-expired="1"') == 1
    assert "without end" in page

    # Ending today: still valid today (the last valid day), expired tomorrow.
    services.qualification_save(
        actor=staff,
        qualification_id=telecom.pk,
        values={
            "kind": Kind.TELECOM_LICENCE,
            "number": telecom.number,
            "valid_until": timezone.localdate(),
            "is_shown": True,
        },
    )
    assert 'data-expired="1"' not in client.get("/").content.decode()


def test_a_hidden_qualification_leaves_the_pages(client, all_four, staff):
    icp = all_four[Kind.ICP_FILING]
    services.qualification_save(
        actor=staff, qualification_id=icp.pk, values={"kind": Kind.ICP_FILING, "number": icp.number, "is_shown": False}
    )
    assert icp.number not in client.get("/").content.decode()
    assert QualificationChange.objects.filter(qualification=icp).latest("pk").changes == {"is_shown": [True, False]}


# --- the public page and the licence image ------------------------------------------------


def test_the_page_shows_the_licence_image_served_by_its_view_only_while_the_record_is_shown(client, staff):
    licence = record()
    page = client.get(reverse("compliance:qualifications")).content.decode()
    image_url = reverse("compliance:qualification_image", args=[licence.pk])
    assert f'src="{image_url}?v=' in page
    assert "/media/" not in page
    assert "技术服务；软件开发；互联网销售。" in page and "2021-03-18" in page

    response = client.get(image_url)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert bytes(response.content) == bytes(Qualification.objects.get().image)
    assert "public" not in response["Cache-Control"]

    assert client.get(reverse("compliance:qualification_image", args=[licence.pk + 999])).status_code == 404
    assert client.get(reverse("compliance:qualification_image", args=[record(Kind.ICP_FILING).pk])).status_code == 404

    services.qualification_save(
        actor=staff,
        qualification_id=licence.pk,
        values={**{f: getattr(licence, f) for f in services.QUALIFICATION_FIELDS}, "is_shown": False},
    )
    assert client.get(image_url).status_code == 404  # hidden: not to the public
    client.force_login(staff)
    assert client.get(image_url).status_code == 200  # staff preview it in admin
    client.force_login(UserFactory(is_staff=True))
    assert client.get(image_url).status_code == 404  # the staff flag alone is not enough


def test_the_page_says_so_when_nothing_is_recorded(client):
    page = client.get(reverse("compliance:qualifications"))
    assert page.status_code == 200 and "The qualifications are being updated." in page.content.decode()


def test_images_are_re_encoded_and_bad_files_refused():
    out = services.qualification_image_encode(data=png((400, 300)))
    with Image.open(io.BytesIO(out)) as image:
        assert image.format == "JPEG" and image.size == (400, 300)
    rgba = io.BytesIO()
    Image.new("RGBA", (50, 50), (255, 0, 0, 0)).save(rgba, format="PNG")
    with Image.open(io.BytesIO(services.qualification_image_encode(data=rgba.getvalue()))) as image:
        assert image.getpixel((10, 10)) == (255, 255, 255)  # transparent becomes white, not black
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, format="GIF")
    for data, says in [
        (b"", "empty"),
        (b"GIF89a" + b"\0" * 100, "not an image"),
        (gif.getvalue(), "PNG, JPEG or WebP"),
        (png()[:200], "not an image"),
        (b"\0" * (services.IMAGE_MAX_BYTES + 1), "at most 5 MB"),
    ]:
        with pytest.raises(services.QualificationError, match=says):
            services.qualification_image_encode(data=data)


# --- expiry warnings ----------------------------------------------------------------------


def test_staff_are_warned_30_and_7_days_before_the_end_once_each(settings, staff):
    settings.COMPLIANCE_EMAILS = ["legal@kamen.example.cn"]
    clerk = UserFactory(is_staff=True)  # may not change qualifications: not warned
    end = date(2027, 6, 30)
    telecom = record(Kind.TELECOM_LICENCE, valid_until=end)
    record(Kind.ICP_FILING)  # no end date: never warned
    mail.outbox.clear()

    def run(days_before: int) -> int:
        return services.qualification_expiry_warn(today=end - timedelta(days=days_before))

    assert run(31) == 0 and mail.outbox == []
    assert run(30) == 1
    (first,) = mail.outbox
    assert "浙B2-20210452" in first.subject and "30" in first.subject and "2027-06-30" in first.subject
    assert sorted(first.to) == sorted([staff.email, "legal@kamen.example.cn"]) and clerk.email not in first.to
    assert reverse("admin:compliance_qualification_change", args=[telecom.pk]) in first.body
    assert run(30) == 0 and run(29) == 0 and run(8) == 0  # the next days: nothing new
    assert run(7) == 1 and "7" in mail.outbox[-1].subject
    assert run(6) == 0 and run(1) == 0 and run(0) == 0  # the last day is still valid
    assert run(-1) == 1 and "expired" in mail.outbox[-1].subject.lower()
    assert run(-2) == 0
    assert len(mail.outbox) == 3
    assert list(QualificationWarning.objects.order_by("pk").values_list("stage", flat=True)) == ["30d", "7d", "expired"]

    # Renewed: a new end date is warned about afresh.
    renewed = end.replace(year=2032)
    services.qualification_save(
        actor=staff,
        qualification_id=telecom.pk,
        values={"kind": Kind.TELECOM_LICENCE, "number": telecom.number, "valid_until": renewed, "is_shown": True},
    )
    assert services.qualification_expiry_warn(today=renewed - timedelta(days=30)) == 1


def test_first_seen_inside_the_7_day_window_gets_one_warning_not_two(staff):
    end = date(2027, 6, 30)
    record(Kind.TELECOM_LICENCE, valid_until=end)
    mail.outbox.clear()
    assert services.qualification_expiry_warn(today=end - timedelta(days=5)) == 1
    assert services.qualification_expiry_warn(today=end - timedelta(days=4)) == 0
    assert len(mail.outbox) == 1 and "5" in mail.outbox[0].subject
    assert set(QualificationWarning.objects.values_list("stage", flat=True)) == {"30d", "7d"}


def test_a_failed_email_is_tried_again_on_the_next_run(staff, monkeypatch):
    end = date(2027, 6, 30)
    record(Kind.TELECOM_LICENCE, valid_until=end)

    def refuse(*args, **kwargs):
        raise OSError("mail server away")

    with monkeypatch.context() as patch:
        patch.setattr("compliance.services.EmailMessage.send", refuse)
        with pytest.raises(OSError):
            services.qualification_expiry_warn(today=end - timedelta(days=30))
    assert not QualificationWarning.objects.exists()
    mail.outbox.clear()
    assert services.qualification_expiry_warn(today=end - timedelta(days=29)) == 1
    assert len(mail.outbox) == 1


def test_the_beat_task_is_scheduled_and_runs_the_warning(staff):
    from compliance.tasks import qualifications_warn_expiring
    from marketplace.celery import app

    entry = app.conf.beat_schedule["compliance-qualifications-warn"]
    assert entry["task"] == qualifications_warn_expiring.name
    record(Kind.TELECOM_LICENCE, valid_until=timezone.localdate() + timedelta(days=3))
    mail.outbox.clear()
    assert qualifications_warn_expiring.delay().get() == 1
    assert qualifications_warn_expiring.delay().get() == 0
    assert len(mail.outbox) == 1


def test_the_demo_records_valid_qualifications(client):
    from django.core.management import call_command

    call_command("seed_demo_compliance", verbosity=0)
    call_command("seed_demo_compliance", verbosity=0)
    assert Qualification.objects.count() == 4
    licence = Qualification.objects.get(kind=Kind.BUSINESS_LICENCE)
    assert services.uscc_validate(licence.number) == licence.number and licence.image
    assert not any(q.is_expired for q in selectors.qualifications_shown())
    assert client.get(reverse("compliance:qualification_image", args=[licence.pk])).status_code == 200
