"""catalog.importing.parse, catalog.services.batch_create / batch_import_run, key rotation,
and the admin pages around stock: import, batch progress, card codes and the audited reveal."""

import re
import secrets
import uuid
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from catalog import importing, selectors, services
from catalog.importing import Line, Problem, decode_upload, parse
from catalog.models import CardCode, StaffReveal, StockBatch
from marketplace import crypto
from orders.services import orders as order_services
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = pytest.mark.usefixtures("english")

IMPORT_URL = "/admin/catalog/stockbatch/import/"
CodeStatus = CardCode.Status


DUPLICATE = "duplicate: already in stock or earlier in the list"


def token() -> str:
    return secrets.token_hex(8).upper()


def run_import(product, text, *, user, csv_format=False, run_now=True) -> StockBatch:
    return services.batch_create(
        request=services.ImportRequest(
            product=product,
            supplier=product.supplier,
            cost_price=Decimal("90.00"),
            text=text,
            source_name="test",
            csv_format=csv_format,
        ),
        user=user,
        run_now=run_now,
    )


def plaintexts(product) -> list[tuple[str, str]]:
    return sorted(services.code_plaintext(c) for c in CardCode.objects.filter(product=product))


def grant(user, codename: str):
    user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="catalog"))


# --- the parser -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["CARD1----SECRET1", "CARD1\tSECRET1", "CARD1,SECRET1", "CARD1 SECRET1", "CARD1   SECRET1", "CARD1\u3000SECRET1"],
    ids=["dashes", "tab", "comma", "space", "spaces", "full-width-space"],
)
def test_separators(line):
    assert parse(line) == ([Line(1, "CARD1", "SECRET1")], [])


def test_separator_whitespace_around_fields_is_trimmed():
    assert parse("  CARD1 ---- SECRET1  \nCARD2 , SECRET2\n") == (
        [Line(1, "CARD1", "SECRET1"), Line(2, "CARD2", "SECRET2")],
        [],
    )


def test_secret_alone():
    assert parse("ONLYSECRET") == ([Line(1, "", "ONLYSECRET")], [])


@pytest.mark.parametrize("header", ["卡号----卡密", "card_number,secret", "CardNo\tPassword", "code", "卡密"])
def test_header_line_is_skipped(header):
    lines, problems = parse(f"{header}\nC1----S1\nC2----S2")
    assert problems == []
    assert lines == [Line(2, "C1", "S1"), Line(3, "C2", "S2")]


def test_blank_lines_are_skipped_and_numbers_kept():
    lines, problems = parse("S1\n\n   \n\t\nS2\r\n\r\nS3\n")
    assert problems == []
    assert [(line.number, line.secret) for line in lines] == [(1, "S1"), (5, "S2"), (7, "S3")]


def test_three_fields_is_malformed_with_its_line_number():
    lines, problems = parse("C1----S1\nA----B----C\nC3,S3\nX,Y,Z")
    assert [line.number for line in lines] == [1, 3]
    assert [p.number for p in problems] == [2, 4]
    assert all("3 fields" in p.problem for p in problems)


def test_too_long_secret_and_card_number():
    ok = "x" * importing.MAX_SECRET
    lines, problems = parse(f"{ok}\n{ok}y\nC1----{'n' * 129}\n{'c' * 129}----S4")
    assert lines == [Line(1, "", ok), Line(3, "C1", "n" * 129)]
    assert [p.number for p in problems] == [2, 4]
    assert "longer than 256" in problems[0].problem
    assert "card number" in problems[1].problem


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u200b"])
def test_control_characters_are_reported_on_their_line(char):
    """A control character is reported, never taken as a line break or separator."""
    lines, problems = parse(f"C1----S1\nC2----SEC{char}RET\nC3----S3\nSEC{char}RET4")
    assert lines == [Line(1, "C1", "S1"), Line(3, "C3", "S3")]
    assert problems == [
        Problem(2, "contains spaces or control characters"),
        Problem(4, "contains spaces or control characters"),
    ]


def test_empty_secret():
    assert parse("C1----\nC2,") == ([], [Problem(1, "the secret is empty"), Problem(2, "the secret is empty")])


def test_csv_with_quotes():
    text = 'card_number,secret\n"CARD,1","SE""CRET"\n"C2",S2\n\nC3,"S3"\r\n'
    lines, problems = parse(text, csv_format=True)
    assert problems == []
    assert lines == [Line(2, "CARD,1", 'SE"CRET'), Line(3, "C2", "S2"), Line(5, "C3", "S3")]


def test_csv_line_numbers_follow_the_file_after_a_multiline_field():
    text = 'C1,S1\n"C2","BROKEN\nSECRET"\nC4,S4\nC5,S5,EXTRA\n'
    lines, problems = parse(text, csv_format=True)
    assert lines == [Line(1, "C1", "S1"), Line(4, "C4", "S4")]
    assert [p.number for p in problems] == [2, 5]


def test_decode_upload():
    text = "卡号,卡密\nC1,密码一\n"
    assert decode_upload(text.encode("utf-8")) == text
    assert decode_upload(b"\xef\xbb\xbf" + text.encode("utf-8")) == text  # BOM dropped
    assert decode_upload(text.encode("gb18030")) == text
    with pytest.raises(UnicodeDecodeError):
        text.encode("gb18030").decode("utf-8")  # the GB18030 path above is really taken
    with pytest.raises(ValueError):
        decode_upload(b"\xff\xfe\xff\xff")
    lines, _ = parse(decode_upload(b"\xef\xbb\xbf" + text.encode()), csv_format=True)
    assert lines == [Line(2, "C1", "密码一")]  # the header is recognised after the BOM


# --- the import service ---------------------------------------------------------------


@pytest.fixture
def importer(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def product(db):
    return ProductFactory()


def test_malformed_lines_reject_the_whole_list(product, importer):
    text = "\n".join(["GOOD1", "A----B----C", "GOOD3", "x" * 300, "GOOD5"])
    batch = run_import(product, text, user=importer)

    assert batch.status == StockBatch.Status.REJECTED
    assert CardCode.objects.filter(product=product).count() == 0
    assert [row["line"] for row in batch.report] == [2, 4]
    assert batch.malformed_count == 2
    assert batch.imported_count == 0
    assert batch.payload == ""
    assert "2" in batch.error
    assert "GOOD" not in str(batch.report) + batch.error  # line numbers, never the codes


def test_duplicates_are_skipped_and_reported(product, importer):
    existing = add_stock(product, 2, user=importer)
    new = [token() for _ in range(3)]
    text = "\n".join([new[0], f"OTHERCARD----{existing[0]}", new[1], new[0], new[2], existing[1]])
    batch = run_import(product, text, user=importer)

    assert batch.status == StockBatch.Status.DONE
    assert batch.imported_count == 3
    assert batch.duplicate_count == 3
    assert batch.report == [
        {"line": 2, "problem": DUPLICATE},
        {"line": 4, "problem": DUPLICATE},
        {"line": 6, "problem": DUPLICATE},
    ]
    assert sorted(s for _, s in plaintexts(product)) == sorted(existing + new)
    assert selectors.stock_count(product.pk) == 5


def test_same_secret_is_not_a_duplicate_for_another_product(product, importer):
    shared = token()
    run_import(product, shared, user=importer)
    other = ProductFactory()
    batch = run_import(other, shared, user=importer)
    assert (batch.imported_count, batch.duplicate_count) == (1, 0)
    again = run_import(other, shared, user=importer)
    assert (again.imported_count, again.duplicate_count) == (0, 1)


def test_codes_are_encrypted_at_rest(product, importer):
    pairs = [(f"CN{token()}", token()) for _ in range(4)]
    batch = run_import(product, "\n".join(f"{n}----{s}" for n, s in pairs), user=importer)
    assert batch.status == StockBatch.Status.DONE

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM catalog_cardcode")
        raw_rows = repr(cursor.fetchall())
        cursor.execute("SELECT * FROM catalog_stockbatch")
        raw_rows += repr(cursor.fetchall())
    for number, secret in pairs:
        assert secret not in raw_rows
        assert number not in raw_rows
    assert plaintexts(product) == sorted(pairs)
    # Equal secrets give equal keyed hashes although their ciphertexts differ.
    code = CardCode.objects.filter(product=product).first()
    _, secret = services.code_plaintext(code)
    assert code.secret_hash == crypto.keyed_digest(secret)
    assert crypto.encrypt(secret) != code.secret_enc


def test_the_queued_payload_is_encrypted(product, importer):
    secret = token()
    batch = run_import(product, f"CARD----{secret}", user=importer, run_now=False)
    batch.refresh_from_db()
    assert batch.status == StockBatch.Status.QUEUED
    assert batch.payload
    assert secret not in batch.payload
    assert secret in crypto.decrypt(batch.payload)


def test_running_a_finished_batch_again_does_nothing(product, importer):
    batch = run_import(product, "\n".join(token() for _ in range(3)), user=importer)
    before = plaintexts(product)
    assert services.batch_import_run(batch_id=batch.pk) == "nothing to do"
    assert plaintexts(product) == before
    batch.refresh_from_db()
    assert (batch.status, batch.imported_count, batch.duplicate_count) == (StockBatch.Status.DONE, 3, 0)


def test_a_killed_run_is_rerun_cleanly(product, importer):
    codes = [token() for _ in range(6)]
    batch = run_import(product, "\n".join(codes), user=importer, run_now=False)
    # A worker wrote the first chunk as "importing", then died: status running, payload kept.
    CardCode.objects.bulk_create(
        [
            CardCode(
                product=product,
                batch=batch,
                secret_enc=crypto.encrypt(s),
                secret_hash=crypto.keyed_digest(s),
                status=CodeStatus.IMPORTING,
            )
            for s in codes[:3]
        ]
    )
    StockBatch.objects.filter(pk=batch.pk).update(status=StockBatch.Status.RUNNING, processed_lines=3)
    assert selectors.stock_count(product.pk) == 0  # half an import is not stock

    assert services.batch_import_run(batch_id=batch.pk) == "done"

    batch.refresh_from_db()
    assert (batch.status, batch.imported_count, batch.duplicate_count) == (StockBatch.Status.DONE, 6, 0)
    assert batch.report == []
    assert batch.payload == ""
    assert sorted(s for _, s in plaintexts(product)) == sorted(codes)
    assert set(CardCode.objects.filter(product=product).values_list("status", flat=True)) == {CodeStatus.AVAILABLE}
    assert selectors.stock_count(product.pk) == 6


def test_codes_are_not_for_sale_until_the_batch_finishes(product, importer, monkeypatch):
    add_stock(product, 2, user=importer)
    seen = {}
    real_write = services._write_codes

    def write_then_look(batch, lines):
        result = real_write(batch, lines)
        seen["importing"] = CardCode.objects.filter(batch=batch, status=CodeStatus.IMPORTING).count()
        seen["stock"] = selectors.stock_count(product.pk)
        seen["counts"] = selectors.stock_counts([product.pk])
        return result

    monkeypatch.setattr(services, "_write_codes", write_then_look)
    run_import(product, "\n".join(token() for _ in range(5)), user=importer)

    assert seen == {"importing": 5, "stock": 2, "counts": {product.pk: 2}}
    assert selectors.stock_count(product.pk) == 7


def test_import_needs_the_permission(product, db):
    clerk = UserFactory(is_staff=True)
    with pytest.raises(PermissionDenied):
        run_import(product, token(), user=clerk)
    assert StockBatch.objects.count() == 0


# --- key rotation ---------------------------------------------------------------------


@pytest.fixture
def fresh_key_cache(settings):
    crypto.reset_key_cache()
    yield settings
    crypto.reset_key_cache()


def test_key_rotation(product, importer, fresh_key_cache):
    settings = fresh_key_cache
    pairs = [(f"CN{token()}", token()) for _ in range(3)] + [("", token())]
    run_import(product, "\n".join(f"{n}----{s}" if n else s for n, s in pairs), user=importer)
    old_keys = list(settings.CARD_CODE_KEYS)
    before = {c.pk: (c.secret_enc, c.card_number_enc, c.secret_hash) for c in CardCode.objects.all()}
    new_key = Fernet.generate_key().decode()

    # The control: with only the new key, the old tokens cannot be read.
    settings.CARD_CODE_KEYS = [new_key]
    crypto.reset_key_cache()
    with pytest.raises(ValueError):
        services.code_plaintext(CardCode.objects.first())

    settings.CARD_CODE_KEYS = [new_key, *old_keys]
    crypto.reset_key_cache()
    assert crypto.rotate_all(chunk=2)["catalog.CardCode"] == 4

    settings.CARD_CODE_KEYS = [new_key]
    crypto.reset_key_cache()
    assert plaintexts(product) == sorted(pairs)
    for code in CardCode.objects.all():
        secret_enc, number_enc, secret_hash = before[code.pk]
        assert code.secret_enc != secret_enc
        assert (code.card_number_enc != number_enc) == bool(number_enc)
        assert code.secret_hash == secret_hash  # the keyed hash does not depend on the Fernet keys
    # Duplicate detection still works after the rotation.
    again = run_import(product, pairs[0][1], user=importer)
    assert (again.imported_count, again.duplicate_count) == (0, 1)


# --- admin ----------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def _import_form(product, **data):
    return {"product": product.pk, "supplier": product.supplier_id, "cost_price": "12.50", "text": "", **data}


@pytest.mark.django_db(transaction=True)
def test_admin_import_pasted_list_and_csv_upload(admin_client, staff):
    product = ProductFactory()
    assert admin_client.get(IMPORT_URL).status_code == 200

    pasted = [(f"CN{token()}", token()) for _ in range(3)]
    text = "\n".join(f"{n}----{s}" for n, s in pasted) + f"\n{pasted[0][0]}----{pasted[0][1]}"
    response = admin_client.post(IMPORT_URL, _import_form(product, text=text))
    batch = StockBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/catalog/stockbatch/{batch.pk}/change/"
    batch.refresh_from_db()
    assert (batch.status, batch.imported_count, batch.duplicate_count) == (StockBatch.Status.DONE, 3, 1)
    assert batch.created_by == staff
    assert batch.cost_price == Decimal("12.50")

    page = admin_client.get(response["Location"]).content.decode()
    assert 'data-testid="import-progress"' in page
    assert 'value="100"' in page
    assert "4 / 4" in page
    assert f"<td>4</td><td>{DUPLICATE}</td>" in page

    uploaded = [(f"CN{token()}", f"密{token()}") for _ in range(2)]
    csv_text = "卡号,卡密\r\n" + "".join(f'"{n}","{s}"\r\n' for n, s in uploaded) + f"X,{pasted[1][1]}\r\n"
    upload = SimpleUploadedFile("codes.csv", csv_text.encode("gb18030"), content_type="text/csv")
    response = admin_client.post(IMPORT_URL, {**_import_form(product), "file": upload})
    assert response.status_code == 302
    second = StockBatch.objects.exclude(pk=batch.pk).get()
    assert (second.status, second.imported_count, second.duplicate_count) == (StockBatch.Status.DONE, 2, 1)
    assert second.source_name == "codes.csv"
    assert second.report == [{"line": 4, "problem": DUPLICATE}]
    assert sorted(plaintexts(product)) == sorted(pasted + uploaded)

    everything = [v for pair in pasted + uploaded for v in pair]
    pages = [
        admin_client.get("/admin/catalog/stockbatch/"),
        admin_client.get(f"/admin/catalog/stockbatch/{batch.pk}/change/"),
        admin_client.get(f"/admin/catalog/stockbatch/{second.pk}/change/"),
        admin_client.get("/admin/catalog/cardcode/"),
        admin_client.get(f"/admin/catalog/cardcode/?product__id__exact={product.pk}"),
        *(
            admin_client.get(f"/admin/catalog/cardcode/{pk}/change/")
            for pk in CardCode.objects.values_list("pk", flat=True)
        ),
    ]
    for response in pages:
        assert response.status_code == 200
        html = response.content.decode()
        assert not [v for v in everything if v in html]
    assert "/reveal/" in pages[3].content.decode()


def test_admin_import_form_errors(admin_client, product):
    response = admin_client.post(IMPORT_URL, _import_form(product))
    assert response.status_code == 200
    assert "Paste the codes or choose a file" in response.content.decode()
    upload = SimpleUploadedFile("codes.xlsx", b"PK\x03\x04", content_type="application/octet-stream")
    response = admin_client.post(IMPORT_URL, {**_import_form(product), "file": upload})
    assert response.status_code == 200
    assert StockBatch.objects.count() == 0


def test_admin_rejected_batch_page_lists_the_lines(admin_client, product, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(IMPORT_URL, _import_form(product, text="GOOD1\nA,B,C\nGOOD3\nD,E,F"))
    batch = StockBatch.objects.get()
    assert batch.status == StockBatch.Status.REJECTED
    page = admin_client.get(response["Location"]).content.decode()
    assert "<td>2</td>" in page
    assert "<td>4</td>" in page
    assert "errornote" in page
    assert "GOOD1" not in page


def test_a_huge_import_is_queued_not_run_in_the_request(admin_client, product, django_capture_on_commit_callbacks):
    lines = 100_000
    body = "\n".join(f"{i:08d}{secrets.token_hex(6)}" for i in range(lines)).encode()
    upload = SimpleUploadedFile("big.txt", body, content_type="text/plain")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(IMPORT_URL, {**_import_form(product), "file": upload})
    assert response.status_code == 302
    assert len(callbacks) == 1  # the Celery task, queued for after the commit
    batch = StockBatch.objects.get()
    assert (batch.status, batch.total_lines, batch.processed_lines) == (StockBatch.Status.QUEUED, lines, 0)
    assert CardCode.objects.count() == 0


def test_batch_create_without_run_now_queues_one_task(product, importer, django_capture_on_commit_callbacks):
    text = "\n".join(f"C{i}----{i:06d}SECRET" for i in range(100_000))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch = run_import(product, text, user=importer, run_now=False)
    assert len(callbacks) == 1
    batch.refresh_from_db()
    assert (batch.status, batch.total_lines, batch.imported_count) == (StockBatch.Status.QUEUED, 100_000, 0)
    assert CardCode.objects.count() == 0


def test_reveal_needs_a_reason_shows_the_secret_and_is_logged(admin_client, staff, product):
    number, secret = f"CN{token()}", token()
    run_import(product, f"{number}----{secret}", user=staff)
    code = CardCode.objects.get(product=product)
    url = f"/admin/catalog/cardcode/{code.pk}/reveal/"

    page = admin_client.get(url)
    assert page.status_code == 200
    assert secret not in page.content.decode()
    assert "no-store" in page["Cache-Control"]

    refused = admin_client.post(url, {"reason": "  "})
    assert refused.status_code == 200
    assert secret not in refused.content.decode()
    assert StaffReveal.objects.count() == 0

    shown = admin_client.post(
        url,
        {"reason": "ticket 42: buyer says code invalid"},
        HTTP_USER_AGENT="pytest-agent/1.0",
        REMOTE_ADDR="10.1.2.3",
    )
    assert shown.status_code == 200
    html = shown.content.decode()
    assert f'<code data-testid="staff-secret">{secret}</code>' in html
    assert number in html
    assert "no-store" in shown["Cache-Control"]
    reveal = StaffReveal.objects.get()
    assert (reveal.code_id, reveal.user_id, reveal.ip, reveal.user_agent) == (
        code.pk,
        staff.pk,
        "10.1.2.3",
        "pytest-agent/1.0",
    )
    assert reveal.reason == "ticket 42: buyer says code invalid"
    # The log of reveals shows who and why, never the secret again.
    later = admin_client.get(url).content.decode()
    assert "ticket 42" in later
    assert secret not in later


def test_reveal_is_forbidden_without_the_permission(client, product, importer):
    secret = token()
    run_import(product, secret, user=importer)
    code = CardCode.objects.get(product=product)
    clerk = UserFactory(is_staff=True)
    grant(clerk, "view_cardcode")
    client.force_login(clerk)
    url = f"/admin/catalog/cardcode/{code.pk}/reveal/"

    assert client.get("/admin/catalog/cardcode/").status_code == 200
    assert client.get(url).status_code == 403
    response = client.post(url, {"reason": "curious"})
    assert response.status_code == 403
    assert secret not in response.content.decode()
    assert StaffReveal.objects.count() == 0

    grant(clerk, "reveal_cardcode")  # the control: with the permission, the page opens
    assert client.get(url).status_code == 200


def test_import_page_is_forbidden_without_the_permission(client, product):
    clerk = UserFactory(is_staff=True)
    grant(clerk, "view_stockbatch")
    client.force_login(clerk)
    assert client.get("/admin/catalog/stockbatch/").status_code == 200
    assert client.get(IMPORT_URL).status_code == 403
    assert client.post(IMPORT_URL, _import_form(product, text=token())).status_code == 403
    assert StockBatch.objects.count() == 0

    grant(clerk, "import_stock")
    assert client.get(IMPORT_URL).status_code == 200


# --- stock shown to buyers ------------------------------------------------------------


BUY_DISABLED = re.compile(r"<button[^>]*type=\"submit\"[^>]*\bdisabled\b")


def shown_stock(client, product) -> int:
    html = client.get(product.get_absolute_url()).content.decode()
    paragraph = re.search(r'data-testid="stock"[^>]*>(.*?)</p>', html, re.S).group(1)
    found = re.search(r"\d+", paragraph)
    return int(found.group()) if found else 0


def test_product_page_counts_available_codes_only(client, product, importer, buyer):
    add_stock(product, 5, user=importer)
    assert shown_stock(client, product) == 5
    assert not BUY_DISABLED.search(client.get(product.get_absolute_url()).content.decode())

    order_services.order_place(buyer=buyer, product_id=product.pk, quantity=2, idempotency_key=uuid.uuid4().hex)
    assert shown_stock(client, product) == 3

    # Codes of an import still running are not stock.
    queued = run_import(product, "\n".join(token() for _ in range(4)), user=importer, run_now=False)
    CardCode.objects.bulk_create(
        [
            CardCode(product=product, batch=queued, secret_enc=crypto.encrypt(s), secret_hash=crypto.keyed_digest(s))
            for s in (token(), token())
        ]
    )
    CardCode.objects.filter(batch=queued).update(status=CodeStatus.IMPORTING)
    assert shown_stock(client, product) == 3

    order_services.order_place(buyer=buyer, product_id=product.pk, quantity=3, idempotency_key=uuid.uuid4().hex)
    html = client.get(product.get_absolute_url()).content.decode()
    assert shown_stock(client, product) == 0
    assert BUY_DISABLED.search(html)
