"""marketplace.text: the guest checkout's "did you mean" for a misspelt mail provider."""

import pytest

from marketplace.text import MAIL_DOMAINS, email_domain_suggestion


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("a@qq.con", "a@qq.com"),
        ("a@qq.cm", "a@qq.com"),
        ("a@qqq.com", "a@qq.com"),
        ("A.B@163.CON ", "a.b@163.com"),
        ("a@163.cm", "a@163.com"),
        ("a@gmial.com", "a@gmail.com"),
        ("a@gmai.com", "a@gmail.com"),
        ("a@hotmial.com", "a@hotmail.com"),
        ("a@hotmial.con", "a@hotmail.com"),  # two slips, a long name
        ("a@foxmail.cm", "a@foxmail.com"),
        ("a@outlok.com", "a@outlook.com"),
        ("a@sina.con", "a@sina.com"),
    ],
)
def test_a_likely_misspelling_of_a_provider_gets_its_address(typed, suggested):
    assert email_domain_suggestion(typed) == suggested


@pytest.mark.parametrize(
    "typed",
    [
        *(f"a@{domain}" for domain in MAIL_DOMAINS),  # the providers themselves
        "a@example.com",
        "a@example.net",
        "a@company.com.cn",
        "a@tsinghua.edu.cn",
        "a@qq.cn",  # two edits from a short name: too far to guess
        "a@mail.163.com",
        "not-an-address",
        "",
    ],
)
def test_a_provider_or_an_unrelated_domain_gets_none(typed):
    assert email_domain_suggestion(typed) is None


def test_an_address_confirmed_as_typed_gets_none():
    """Submitted again after it was pointed out (``confirmed``: what the form sent back)."""
    assert email_domain_suggestion("a@qq.con", confirmed=" A@QQ.con") is None
    assert email_domain_suggestion("b@qq.con", confirmed="a@qq.con") == "b@qq.com"
