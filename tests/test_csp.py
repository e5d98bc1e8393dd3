"""Content-Security-Policy (issue 13): production enforces a policy without inline scripts, and
the pages live up to it: no <script> without src (JSON data blocks aside), no on*= handler
attributes, no htmx hx-on (htmx evaluates those as code, which the policy forbids).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from tests.test_deploy_check import BASE_DIR, production_env
from tests.test_pages_display import client_for, demo_shop, english_fragments, main_pages, visible_text

__all__ = ["demo_shop"]  # a fixture used below

ROOT = Path(__file__).resolve().parent.parent
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
HANDLER = re.compile(r"<[a-z][^>]*\s(on[a-z]+|hx-on[:\w-]*)\s*=", re.I)


def inline_code(page: str) -> list[str]:
    return [m.group(0)[:120] for m in INLINE_SCRIPT.finditer(page)] + [m.group(0)[-80:] for m in HANDLER.finditer(page)]


def test_the_checks_can_fail():
    page = (
        '<script>alert(1)</script><script src="/a.js"></script><script type="application/json">{}</script>'
        '<button onclick="x()">b</button><form hx-on::after-request="this.remove()"></form>'
    )
    assert len(inline_code(page)) == 3


def template_files() -> list[Path]:
    dirs = [ROOT / "templates", *ROOT.glob("*/templates")]
    return [p for d in dirs for p in d.rglob("*.html") if ".venv" not in p.parts]


def test_no_template_has_inline_code():
    """Every template, rendered by a test below or not."""
    found = {str(p.relative_to(ROOT)): inline_code(p.read_text()) for p in template_files()}
    assert len(found) > 100
    assert {path: bad for path, bad in found.items() if bad} == {}


ENFORCED = override_settings(
    CONTENT_SECURITY_POLICY=settings.CONTENT_SECURITY_POLICY_REPORT_ONLY
    if hasattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY")
    else settings.CONTENT_SECURITY_POLICY,
    CONTENT_SECURITY_POLICY_REPORT_ONLY=None,
)


def script_src(header: str) -> str:
    return next(d for d in header.split(";") if d.strip().startswith("script-src")).strip()


@ENFORCED
@pytest.mark.django_db
def test_main_pages_send_the_policy_and_pass_it(demo_shop):
    from catalog.models import Product
    from orders.models import Order

    pages = main_pages()
    product = Product.objects.filter(is_active=True).order_by("id").first()
    order = Order.objects.filter(buyer__email="buyer@demo.local").order_by("-id").first()
    pages["buyer@demo.local"] += [reverse("orders:checkout", args=[product.slug]), order.get_absolute_url()]
    pages["admin@demo.local"] += ["/accounts/2fa/", "/admin/mfa/authenticator/", "/admin/compliance/auditevent/"]
    seen = 0
    for email, urls in pages.items():
        client = client_for(email)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, (email, url)
            header = response["Content-Security-Policy"]
            assert script_src(header) == "script-src 'self'", url
            assert "frame-ancestors 'none'" in header and "object-src 'none'" in header
            assert inline_code(response.content.decode()) == [], url
            seen += 1
    assert seen > 30


@pytest.mark.django_db
def test_two_factor_pages_are_in_chinese(demo_shop):
    """allauth's own pages and ours, as a staff member meets them."""
    fragments = english_fragments()
    client = client_for("admin@demo.local")
    client.post("/accounts/reauthenticate/", {"password": "demo-pass-2026"})
    english = []
    for url in ("/accounts/2fa/", "/accounts/2fa/totp/activate/"):
        response = client.get(url)
        assert response.status_code == 200, url
        english += [(url, f) for f in fragments if f in visible_text(response.content.decode())]
    with override_settings(STAFF_MFA_REQUIRED=True):
        refused = client.get("/admin/")
        assert refused.status_code == 403
        english += [("/admin/", f) for f in fragments if f in visible_text(refused.content.decode())]
        assert "需要双因素身份认证" in refused.content.decode()
    assert english == []


def settings_in_production(tmp_path, code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; {code}"],
        cwd=BASE_DIR,
        env=production_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_enforces_the_policy_and_staff_two_factor(tmp_path):
    result = settings_in_production(
        tmp_path,
        "print(settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['script-src'], "
        "hasattr(settings, 'CONTENT_SECURITY_POLICY_REPORT_ONLY'), settings.STAFF_MFA_REQUIRED)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[\"'self'\"]", "False", "True"]


@pytest.mark.parametrize(("name", "message"), [("STAFF_MFA_REQUIRED", "STAFF_MFA_REQUIRED"), ("CSP_REPORT_ONLY", "")])
def test_production_refuses_to_weaken_them(tmp_path, name, message):
    value = "0" if name == "STAFF_MFA_REQUIRED" else "1"
    result = settings_in_production(tmp_path, "pass", **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr
