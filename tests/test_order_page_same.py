"""The member's order page, drawn with the page's shortcuts (issue 17), is the page Django's own
paths draw, byte for byte: ``display.value_in_context`` (a ``str``'s escaping, an ``int``'s digits)
against ``render_value_in_context``, ``i18n_kept.texts()`` (a language's fixed texts kept) against
``gettext`` each time, and ``rows.json_rows``'s plan kept per process against one worked out
afresh. Pending, delivered (codes unrevealed, one revealed, one refunded, a refund
request open), all refunded, the non-htmx and the htmx reveal's answers, in zh-hans and English.
Only the CSRF tokens differ between two answers (each is masked anew)."""

import re

import pytest
from django.conf import settings
from django.template import Context
from django.template.base import render_value_in_context
from django.test import Client, override_settings
from django.utils import translation
from django.utils.functional import lazy
from django.utils.safestring import mark_safe

from aftersales.templatetags import aftersales_order
from marketplace import rows
from marketplace.templatetags import display, i18n_kept
from orders.templatetags import order_page
from tests.builders import ask, codes_of, delivered_order, place, reveal
from tests.factories import ProductFactory, add_stock
from tests.test_order_page_parts import HOSTILE

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = re.compile(r'(csrfmiddlewaretoken" value="|X-CSRFToken": ")[A-Za-z0-9]{64}')
COUNT = re.compile(r"(Revealed |已查看 )\d+")


def masked(html: bytes) -> str:
    return TOKEN.sub(r"\1<token>", html.decode())


def django_paths(monkeypatch) -> None:
    """Django's ``render_value_in_context`` wherever the page used the shortcut, and every
    ``json_rows`` plan worked out again."""
    for module in (display, order_page, aftersales_order):
        monkeypatch.setattr(module, "value_in_context", render_value_in_context)
    for module in (order_page, aftersales_order):
        monkeypatch.setattr(module, "texts", GettextEach)
    monkeypatch.setattr(rows, "_plans", FreshPlans())


class GettextEach:
    """``texts()`` that keeps nothing: ``gettext`` on every look-up."""

    def __getitem__(self, message: str) -> str:
        return translation.gettext(message)


class FreshPlans(dict):
    """Keeps nothing: each ``json_rows`` works its plan out again."""

    def __setitem__(self, key, value) -> None:
        pass


def reveals(client: Client, path: str) -> list[str]:
    """The non-htmx reveal's page (its code shown, the count of reveals masked: each POST adds
    one) and the htmx reveal's answer."""
    page = COUNT.sub(r"\1<count>", masked(client.post(path).content))
    return [page, masked(client.post(path, HTTP_HX_REQUEST="true").content)]


def answers(client: Client, orders, lang: str) -> list[str]:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = lang
    out = []
    for order in orders:
        response = client.get(f"/orders/{order.number}/")
        assert response.status_code == 200
        out.append(masked(response.content))
    return out


def test_the_order_pages_are_djangos_byte_for_byte(client, buyer, monkeypatch):
    product = ProductFactory(name=HOSTILE)
    add_stock(product, 1)
    pending = place(buyer, product)
    fresh = delivered_order(buyer, quantity=3)
    mixed = delivered_order(buyer, price="12.30", quantity=4)
    first, second, *_ = codes_of(mixed)
    reveal(first, buyer)
    reveal(first, buyer)
    ask(buyer, mixed, [second], key="one")
    gone = delivered_order(buyer, price="7.05", quantity=2)
    ask(buyer, gone, codes_of(gone), key="all")
    client.force_login(buyer)
    orders = [pending, fresh, mixed, gone]
    x = codes_of(fresh)[0]
    reveal_path = f"/orders/{fresh.number}/codes/{x.pk}/reveal/"
    client.post(reveal_path, HTTP_HX_REQUEST="true")  # revealed once: the answers below show the same
    for lang in ("zh-hans", "en"):
        # Each POST reveals once more: the pages first (the same data), then the reveals.
        shortcut = answers(client, orders, lang)
        with monkeypatch.context() as m:
            django_paths(m)
            reference = answers(client, orders, lang)
        shortcut = reveals(client, reveal_path) + shortcut
        with monkeypatch.context() as m:
            django_paths(m)
            reference = reveals(client, reveal_path) + reference
        assert len(shortcut) == len(reference) == 6
        for mine, theirs in zip(shortcut, reference, strict=True):
            assert mine == theirs
    # The pages showed what the comparison is about: codes, counts, the offer, the requests.
    assert 'data-testid="revealed-secret"' in shortcut[0] and "Revealed <count>" in shortcut[0]
    assert 'data-testid="revealed-secret"' in shortcut[1] and 'id="refund-entry-slot"' in shortcut[1]
    assert "&lt;script&gt;" in shortcut[2] and 'data-status="pending"' in shortcut[2]
    assert 'data-testid="code-refundable"' in shortcut[3] and 'data-testid="refund-entry"' in shortcut[3]
    assert "Revealed 2 times" in shortcut[4] and 'data-testid="refunded-count"' in shortcut[4]
    assert 'data-status="refunded"' in shortcut[5]


LAZY = lazy(lambda: "<lazy> & text", str)()


@pytest.mark.parametrize(
    "value",
    [0, 7, -12, 1234567, True, False, None, "", "plain", HOSTILE, mark_safe("<b>safe</b>"), LAZY, 1.5],
)
@pytest.mark.parametrize("autoescape", [True, False])
@pytest.mark.parametrize("grouping", [False, True])
def test_value_in_context_is_render_value_in_context(value, autoescape, grouping):
    context = Context(autoescape=autoescape)
    with override_settings(USE_THOUSAND_SEPARATOR=grouping):
        for lang in ("zh-hans", "en", "de"):
            with translation.override(lang):
                assert display.value_in_context(value, context) == render_value_in_context(value, context)


def test_texts_are_each_languages_gettext_and_forgotten_with_the_catalogues():
    messages = ["Total", "Reveal", "History", "Your codes", "no such message here"]
    for lang in ("zh-hans", "en", None):
        with translation.override(lang):
            table = i18n_kept.texts()
            assert [table[m] for m in messages] == [translation.gettext(m) for m in messages]
            assert i18n_kept.texts() is table
    with translation.override("zh-hans"):
        assert i18n_kept.texts()["Total"] != "Total"  # translated: the table is the language's
        kept = i18n_kept.texts()
        with override_settings(LOCALE_PATHS=[]):
            assert i18n_kept.texts() is not kept  # the catalogues may have changed: asked again
