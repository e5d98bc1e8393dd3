"""The wording the two languages keep consistent (h-walk's findings):

- English is written in sentence case; django-allauth's titles, buttons and labels come in Title
  Case ("Sign In", "Change Password"). ``locale/en`` overrides each of them for English readers
  (and says "Log in" / "Log out" as the site's menu does) without forking allauth's templates;
  zh-hans keeps allauth's own translations.
- zh-hans names the no-reason refund "7天" everywhere, the figure the pages draw from
  ``REFUND_WINDOW_DAYS`` ("%(days)s天"), never "七天" beside it. The legal texts keep the
  statute's own words (七日: 消费者权益保护法 第二十五条, 《网络购买商品七日无理由退货暂行办法》),
  the same seven days.
"""

import re
from pathlib import Path

import allauth
import pytest
from django.test import Client
from django.utils import translation

ROOT = Path(__file__).resolve().parent.parent
ALLAUTH = Path(allauth.__file__).resolve().parent
TRANS = re.compile(r"""\{% trans(?:late)? (?:"([^"]+)"|'([^']+)')""")
LABEL = re.compile(r'_\(\s*"([^"]+)"\s*\)')


def title_cased(text: str) -> bool:
    """A word after the first in capitals ("Sign In", "Trust this Browser?"), but "I" and a
    proper name the site spells so (Alipay, WeChat, JavaScript)."""
    words = re.findall(r"[A-Za-z][\w'-]*", text)
    proper = {"I", "Alipay", "WeChat", "JavaScript", "TOTP", "API"}
    return any(w[0].isupper() and w not in proper for w in words[1:])


def allauth_title_case() -> set[str]:
    """allauth's Title Case messages that reach our pages: its account and mfa templates' (short
    ones: titles, buttons, headings) and its forms' labels."""
    found = set()
    for template in [
        *(ALLAUTH / "templates" / "account").rglob("*.html"),
        *(ALLAUTH / "templates" / "mfa").rglob("*.html"),
    ]:
        found.update(a or b for a, b in TRANS.findall(template.read_text(encoding="utf-8")) if len(a or b) < 40)
    for module in [ALLAUTH / "account" / "forms.py", *(ALLAUTH / "mfa").rglob("forms.py")]:
        found.update(m for m in LABEL.findall(module.read_text(encoding="utf-8")) if len(m) < 40)
    return {m for m in found if title_cased(m)} | ({"Signup"} & found)  # a head_title, one word


def test_every_allauth_title_case_message_reads_in_sentence_case_in_english():
    messages = allauth_title_case()
    assert {"Sign In", "Change Password", "Remember Me", "Two-Factor Authentication"} <= messages  # the scan works
    with translation.override("en"):
        shown = {m: translation.gettext(m) for m in messages}
    assert [f"{m!r} -> {s!r}" for m, s in shown.items() if title_cased(s)] == []
    assert shown["Sign In"] == "Log in" and shown["Sign Out"] == "Log out" and shown["Sign Up"] == "Sign up"
    assert shown["Signup"] == "Sign up" and shown["Reset My Password"] == "Reset my password"
    with translation.override("zh-hans"):  # allauth's own Chinese, untouched
        assert translation.gettext("Sign In") == "登录" and translation.gettext("Change Password") == "修改密码"


@pytest.mark.django_db
def test_the_login_page_in_english_says_log_in_as_the_menu_does():
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.cookies["django_language"] = "en"
    html = client.get("/accounts/login/").content.decode()
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert title.strip().startswith("Log in"), title
    signup = Client(HTTP_ACCEPT_LANGUAGE="en").get("/accounts/signup/").content.decode()
    assert re.search(r"<title>\s*Sign up", signup)
    assert "Sign In" not in html and "Remember Me" not in html
    zh = Client(HTTP_ACCEPT_LANGUAGE="zh-hans").get("/accounts/login/").content.decode()
    assert re.search(r"<title>\s*登录", zh)


def _zh_messages() -> list[str]:
    return re.findall(r'^msgstr(?:\[\d\])? "(.*)"$', (ROOT / "locale/zh_Hans/LC_MESSAGES/django.po").read_text(), re.M)


def test_zh_hans_names_the_no_reason_refund_7天_and_never_七天():
    texts = {"locale": (ROOT / "locale/zh_Hans/LC_MESSAGES/django.po").read_text(encoding="utf-8")}
    for folder in ("templates", "legal", "catalog", "agents", "orders", "aftersales"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".html", ".txt", ".py", ".md"}:
                texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    assert [where for where, text in texts.items() if "七天" in text] == []
    refunds = [m for m in _zh_messages() if "无理由退款" in m and "天" in m]
    assert refunds and all(re.search(r"(7|%\(days\)[sd]) ?天", m) for m in refunds), refunds
    # The legal texts' 七日 is the same figure the pages show.
    from django.conf import settings

    assert settings.REFUND_WINDOW_DAYS == 7
    assert "七日无理由退款" in (ROOT / "legal/management/commands/seed_demo_legal.py").read_text(encoding="utf-8")
