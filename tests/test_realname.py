"""Real-name verification (issue 14): the HTTP provider adapter against a fake provider on
127.0.0.1 that checks the Alibaba Cloud API Gateway signature for real; the sandbox provider
refused in production; the number encrypted at rest, shown masked, revealed only with the
dedicated permission and audited; the buyer's verify page."""

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.urls import reverse

from compliance import realname
from compliance.checks import realname_provider_check
from compliance.identity import IdNumberError, id_check_char
from compliance.models import AuditEvent, RealNameVerification
from compliance.realname import HttpProvider, RealNameError, RealNameUnavailable, Result, Subject
from marketplace.crypto import keyed_digest
from marketplace.text import mask_ends
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("english")

APP_KEY = "203751234"
APP_SECRET = "s3cr3t-of-the-provider"


def id_number(born: date, seq: str = "123", region: str = "110101") -> str:
    first17 = f"{region}{born:%Y%m%d}{seq}"
    return first17 + id_check_char(first17)


ADULT = id_number(date(1990, 5, 17))  # 11010119900517123?
NO_RECORD = id_number(date(1985, 1, 2), seq="999")


# --- the fake provider ------------------------------------------------------------------------


def expected_signature(method: str, headers, path: str, form: dict, secret: str) -> str:
    """The spec's string to sign, written out again here (not the module's function)."""
    signed_names = headers["X-Ca-Signature-Headers"].split(",")
    text = "\n".join(
        [
            method,
            headers.get("Accept", ""),
            headers.get("Content-MD5", ""),
            headers.get("Content-Type", ""),
            headers.get("Date", ""),
        ]
    )
    text += "\n"
    for name in sorted(signed_names):
        text += f"{name}:{headers[name]}\n"
    query = "&".join(f"{k}={v}" if v else k for k, v in sorted(form.items()))
    text += f"{path}?{query}" if query else path
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


class FakeProvider(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def _answer(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
        FakeProvider.calls.append({"path": self.path, "form": form, "headers": dict(self.headers)})
        if self.path == "/slow":
            time.sleep(1.5)
        if self.path == "/broken":
            return self._answer(500, {"code": "500", "message": "internal error"})
        if self.headers.get("X-Ca-Key") != APP_KEY:
            return self._answer(403, {"code": "invalid_app_key"})
        signed = set(self.headers.get("X-Ca-Signature-Headers", "").split(","))
        if not {"x-ca-key", "x-ca-nonce", "x-ca-timestamp", "x-ca-signature-method"} <= signed:
            return self._answer(400, {"code": "signature_headers_missing"})
        if abs(int(self.headers["X-Ca-Timestamp"]) - time.time() * 1000) > 15 * 60 * 1000:
            return self._answer(400, {"code": "timestamp_expired"})
        want = expected_signature("POST", self.headers, self.path, form, APP_SECRET)
        if not hmac.compare_digest(want, self.headers.get("X-Ca-Signature", "")):
            return self._answer(400, {"code": "signature_invalid"})
        if form.get("idCard") == NO_RECORD:
            res = "3"
        elif form.get("name") == "张三" and form.get("idCard") == ADULT:
            res = "1"
        else:
            res = "2"
        return self._answer(200, {"code": "0", "message": "成功", "result": {"res": res, "description": "..."}})


@pytest.fixture
def provider_url():
    FakeProvider.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def http_provider(url: str, *, secret: str = APP_SECRET, timeout: float = 5) -> HttpProvider:
    return HttpProvider(url=url, app_key=APP_KEY, app_secret=secret, timeout=timeout)


# --- the adapter against the fake provider ----------------------------------------------------


def test_the_http_provider_signs_its_request_and_reads_the_three_answers(provider_url):
    provider = http_provider(provider_url + "/idcard/verify")
    assert provider.check(name="张三", id_number=ADULT) == Result.MATCH
    assert provider.check(name="李四", id_number=ADULT) == Result.MISMATCH
    assert provider.check(name="张三", id_number=NO_RECORD) == Result.NO_RECORD
    call = FakeProvider.calls[0]
    assert call["form"] == {"name": "张三", "idCard": ADULT}
    assert call["headers"]["X-Ca-Signature-Method"] == "HmacSHA256"
    # Each request has its own nonce (a replayed one would be refused by the gateway).
    assert len({c["headers"]["X-Ca-Nonce"] for c in FakeProvider.calls}) == 3


def test_a_wrong_secret_is_refused_by_the_provider_and_is_try_later(provider_url):
    """The control: the fake provider really checks the signature."""
    with pytest.raises(RealNameUnavailable) as refused:
        http_provider(provider_url + "/idcard/verify", secret="not-the-secret").check(name="张三", id_number=ADULT)
    assert "try again later" in str(refused.value)
    assert refused.value.status == 503


@pytest.mark.django_db
@pytest.mark.parametrize("path,timeout", [("/broken", 5), ("/slow", 0.5)])
def test_provider_error_or_timeout_is_try_later_and_nothing_is_verified(provider_url, path, timeout, settings):
    settings.REALNAME_PROVIDER = "http"
    settings.REALNAME_URL = provider_url + path
    settings.REALNAME_APP_KEY, settings.REALNAME_APP_SECRET, settings.REALNAME_TIMEOUT = APP_KEY, APP_SECRET, timeout
    user = UserFactory()
    with pytest.raises(RealNameUnavailable, match="try again later"):
        realname.realname_verify(subject=Subject(user=user), name="张三", id_number=ADULT)
    assert not RealNameVerification.objects.exists()
    assert realname.realname_of(user=user) is None


@pytest.mark.django_db
def test_verify_through_the_http_provider_records_match_and_mismatch(provider_url, settings):
    settings.REALNAME_PROVIDER = "http"
    settings.REALNAME_URL = provider_url + "/idcard/verify"
    settings.REALNAME_APP_KEY, settings.REALNAME_APP_SECRET = APP_KEY, APP_SECRET
    user = UserFactory()
    with pytest.raises(RealNameError, match="do not match"):
        realname.realname_verify(subject=Subject(user=user), name="李四", id_number=ADULT)
    assert realname.realname_of(user=user) is None
    row = realname.realname_verify(subject=Subject(user=user), name="张三", id_number=ADULT)
    assert row.result == Result.MATCH and row.provider == "http" and row.birth_date == date(1990, 5, 17)
    # Verified once: asking again reuses the match, the provider is not asked again.
    calls = len(FakeProvider.calls)
    assert realname.realname_verify(subject=Subject(user=user), name="张三", id_number=ADULT) == row
    assert len(FakeProvider.calls) == calls


# --- sandbox refused in production ------------------------------------------------------------


def test_the_sandbox_provider_is_a_check_error_without_debug(settings):
    settings.REALNAME_PROVIDER = "sandbox"
    settings.DEBUG = True
    settings.PRODUCTION = False
    assert realname_provider_check() == []
    settings.DEBUG = False
    assert [e.id for e in realname_provider_check()] == ["compliance.E001"]
    settings.DEBUG, settings.PRODUCTION = False, True
    assert [e.id for e in realname_provider_check()] == ["compliance.E001"]
    settings.REALNAME_PROVIDER = "http"
    settings.REALNAME_URL, settings.REALNAME_APP_KEY, settings.REALNAME_APP_SECRET = "https://p.example/v", "k", "s"
    assert realname_provider_check() == []
    settings.REALNAME_URL = "http://p.example/v"
    assert [e.id for e in realname_provider_check()] == ["compliance.E003"]


def test_the_sandbox_provider_is_refused_at_run_time_in_production(settings):
    settings.REALNAME_PROVIDER = "sandbox"
    settings.PRODUCTION = True
    with pytest.raises(ImproperlyConfigured, match="sandbox"):
        realname.realname_provider()
    settings.PRODUCTION = False
    assert realname.realname_provider().name == "sandbox"


# --- storage, masking, reveal -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_number_and_name_are_encrypted_at_rest_and_found_by_digest():
    user = UserFactory()
    row = realname.realname_verify(subject=Subject(user=user), name="张三丰", id_number=ADULT.lower())
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT name_encrypted, id_number_encrypted, id_digest FROM {RealNameVerification._meta.db_table} "
            "WHERE id = %s",
            [row.pk],
        )
        raw_name, raw_number, digest = cursor.fetchone()
    assert ADULT not in raw_number and ADULT[6:14] not in raw_number and "张三丰" not in raw_name
    assert digest == keyed_digest(ADULT) and ADULT not in digest
    fresh = RealNameVerification.objects.get(pk=row.pk)
    assert fresh.id_number == ADULT and fresh.name == "张三丰"


@pytest.mark.parametrize(
    "text,masked",
    [
        ("110101199005171230", "1****************0"),
        ("11010119900517123X", "1****************X"),
        ("张三丰", "张*丰"),
        ("张三", "张*"),
        ("", ""),
    ],
)
def test_masks_keep_the_first_and_last_character(text, masked):
    assert mask_ends(text) == masked


@pytest.mark.django_db
def test_local_check_refuses_a_bad_number_before_the_provider():
    user = UserFactory()
    bad = ADULT[:17] + ("0" if ADULT[17] != "0" else "1")
    with pytest.raises(IdNumberError, match="last character"):
        realname.realname_verify(subject=Subject(user=user), name="张三", id_number=bad)
    assert not RealNameVerification.objects.exists()


@pytest.mark.django_db
def test_sandbox_answers_and_failed_checks_are_recorded_but_not_verified():
    user = UserFactory()
    with pytest.raises(RealNameError, match="do not match"):
        realname.realname_verify(subject=Subject(user=user), name="不符的人", id_number=ADULT)
    with pytest.raises(RealNameError, match="No record"):
        realname.realname_verify(subject=Subject(user=user), name="无记录", id_number=ADULT)
    assert list(RealNameVerification.objects.values_list("result", flat=True).order_by("pk")) == [
        Result.MISMATCH,
        Result.NO_RECORD,
    ]
    assert realname.realname_of(user=user) is None


@pytest.mark.django_db
def test_one_number_verifies_one_account():
    realname.realname_verify(subject=Subject(user=UserFactory()), name="张三", id_number=ADULT)
    with pytest.raises(realname.Conflict, match="another account"):
        realname.realname_verify(subject=Subject(user=UserFactory()), name="张三", id_number=ADULT)


@pytest.mark.django_db
def test_too_many_failed_checks_a_day_are_refused():
    user = UserFactory()
    for _ in range(realname.FAILED_CHECKS_PER_DAY):
        with pytest.raises(RealNameError):
            realname.realname_verify(subject=Subject(user=user), name="不符", id_number=ADULT)
    with pytest.raises(RealNameError, match="Too many"):
        realname.realname_verify(subject=Subject(user=user), name="张三", id_number=ADULT)


@pytest.mark.django_db
def test_admin_shows_masked_values_and_reveal_needs_the_permission_and_is_audited(client):
    from django.contrib.auth.models import Permission

    row = realname.realname_verify(subject=Subject(user=UserFactory()), name="张三丰", id_number=ADULT)
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_realnameverification"))
    client.force_login(clerk)
    listing = client.get(reverse("admin:compliance_realnameverification_changelist")).content.decode()
    assert "1****************" + ADULT[-1] in listing and ADULT not in listing and "张三丰" not in listing
    change = client.get(reverse("admin:compliance_realnameverification_change", args=[row.pk])).content.decode()
    assert ADULT not in change and "张*丰" in change

    url = reverse("admin:compliance_realnameverification_reveal", args=[row.pk])
    assert client.get(url).status_code == 403
    refused = client.post(url)
    assert refused.status_code == 403 and ADULT not in refused.content.decode()
    assert AuditEvent.objects.filter(action="realname.reveal", outcome="denied", actor=clerk).count() == 1

    clerk.user_permissions.add(Permission.objects.get(codename="reveal_id_number"))
    client.force_login(clerk)
    confirm = client.get(url)
    assert confirm.status_code == 200 and ADULT not in confirm.content.decode()
    assert not AuditEvent.objects.filter(action="realname.reveal", outcome="allowed").exists()  # a GET shows nothing
    shown = client.post(url)
    assert shown.status_code == 200
    assert ADULT in shown.content.decode() and "张三丰" in shown.content.decode()
    audit = AuditEvent.objects.get(action="realname.reveal", outcome="allowed")
    assert audit.actor == clerk and audit.target == f"realname:{row.pk}" and audit.ip


# --- the buyer's page -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_verify_page_shows_local_errors_then_the_masked_verification(client):
    user = UserFactory()
    client.force_login(user)
    url = reverse("realname")
    assert url == "/accounts/realname/"
    page = client.get(url)
    assert page.status_code == 200 and 'data-testid="realname-form"' in page.content.decode()
    short = client.post(url, {"real_name": "张三", "id_number": "12345"})
    assert short.status_code == 400 and "18 characters (this has 5)" in short.content.decode()
    mismatch = client.post(url, {"real_name": "不符", "id_number": ADULT})
    assert mismatch.status_code == 400 and "do not match" in mismatch.content.decode()
    done = client.post(url, {"real_name": "张三丰", "id_number": ADULT, "next": "/p/some-product/"})
    assert done.status_code == 302 and done["Location"] == "/p/some-product/"
    shown = client.get(url).content.decode()
    assert "1****************" + ADULT[-1] in shown and "张*丰" in shown and ADULT not in shown
    # Offsite next is ignored.
    assert 'href="https://evil.example/"' not in client.get(url + "?next=https://evil.example/").content.decode()
    assert 'href="/p/x/" data-testid="realname-back"' in client.get(url + "?next=/p/x/").content.decode()


def test_the_verify_page_needs_a_login(client):
    response = client.get("/accounts/realname/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
