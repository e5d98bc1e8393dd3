"""The order pages' parts drawn in Python (issue 17): orders.templatetags.order_page (head,
details, history, status badge), aftersales.templatetags.aftersales_order (codes card, refund
offer) and catalog.templatetags.catalog_kinds (a kind's tile). Each drew a template until
2026-12-06 and was checked byte for byte against it then, in both languages; here: what they
show, for members and guests, and that every value of the page's data is escaped."""

import re
from decimal import Decimal

import pytest
from django.template import engines
from django.test import RequestFactory
from django.utils import translation

from aftersales.services import no_reason
from catalog.templatetags.catalog_kinds import kind_icon_html
from orders.selectors import orders as selectors
from orders.selectors.orders import TimelineEntry
from orders.templatetags.order_page import status_badge_html
from orders.views.polling import StatusOnly
from tests.builders import ask, codes_of, delivered_order, reveal

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = '<script>alert("x")</script> & co'


def render(text: str, context: dict, user) -> str:
    request = RequestFactory().get("/")
    request.user = user
    request.session = {}
    return engines["django"].from_string(text).render(context, request)


def codes_card(order, user, *, name="orders:reveal", can=True, after=True, refund=True, **extra) -> str:
    context = {"order": order, **extra}
    if refund:
        context["refund"] = no_reason.refund_options(order=order, user=user)
    return render(
        "{% load aftersales_order %}{% order_codes_list name can_reveal=can aftersales=after %}",
        {**context, "name": name, "can": can, "after": after},
        user,
    )


def test_the_codes_card_shows_each_code_its_forms_badges_and_links(buyer):
    order = delivered_order(buyer, quantity=4)
    a, b, c, d = codes_of(order)
    reveal(a, buyer)
    reveal(a, buyer)
    ask(buyer, order, [a])  # a revealed code: under review, the request holds it
    ask(buyer, order, [c], key="k2")  # refunded at once: no longer shown
    page = selectors.order_for_buyer(buyer, order.number)
    with translation.override("en"):
        html = codes_card(page, buyer)
    assert html.count('data-testid="code-row"') == 3 and f'id="slot-{c.pk}"' not in html
    # Numbered by their places on the order (#3 was refunded and keeps its number).
    assert re.findall(r'code-index align-self-start mt-1">(\d+)<', html) == ["1", "2", "4"]
    for code in (a, b, d):
        url = f"/orders/{order.number}/codes/{code.pk}/reveal/"
        assert f'action="{url}" hx-post="{url}" hx-target="#slot-{code.pk}" hx-swap="innerHTML"' in html
        assert f"/support/new/?order={order.number}&amp;code={code.pk}&amp;kind=invalid" in html
    assert html.count('name="csrfmiddlewaretoken"') == 3
    assert "Revealed 2 times" in html
    assert "refund requested · Under review (dispute)</a>" in html
    assert f'id="refundable-{b.pk}"' in html and f'id="refundable-{d.pk}"' in html
    assert f'id="refundable-{a.pk}"' not in html
    with translation.override("zh-hans"):
        zh = codes_card(page, buyer)
    assert "查看" in zh and "Revealed" not in zh and "Your codes" not in zh


def test_a_guest_before_the_proof_sees_masked_codes_without_forms_or_links(buyer):
    order = delivered_order(buyer, quantity=2)
    page = selectors.order_for_buyer(buyer, order.number)
    html = codes_card(page, buyer, name="orders:guest_reveal", can=False, after=False, refund=False)
    assert html.count('data-testid="code-row"') == 2 and html.count("masked") == 2
    assert "<form" not in html and "csrfmiddlewaretoken" not in html and "/support/" not in html
    proved = codes_card(page, buyer, name="orders:guest_reveal", guest_number=page.number)
    code = page.live_codes[0].pk
    assert f'action="/orders/guest/{page.number}/codes/{code}/reveal/"' in proved
    assert f'href="/orders/guest/{page.number}/tickets/new/?order={page.number}&amp;code={code}&amp;kind=invalid"' in (
        proved
    )
    assert "/support/" not in proved


def test_a_code_revealed_without_htmx_is_shown_escaped(buyer):
    order = delivered_order(buyer, quantity=1)
    page = selectors.order_for_buyer(buyer, order.number)
    page.live_codes[0].revealed = {"card_number": HOSTILE, "secret": HOSTILE}
    html = codes_card(page, buyer)
    assert "<script>" not in html
    assert html.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co") == 2
    assert "<form" not in html  # revealed: no reveal form


def test_the_refund_offer_counts_the_codes_in_both_languages_and_keeps_its_slot(buyer):
    order = delivered_order(buyer, quantity=3)
    reveal(codes_of(order)[0], buyer)
    page = selectors.order_for_buyer(buyer, order.number)
    context = {"order": page, "refund": no_reason.refund_options(order=page, user=buyer)}
    text = "{% load aftersales_order %}{% refund_entry %}"
    with translation.override("en"):
        html = render(text, context, buyer)
    assert 'data-count="2">2 unrevealed codes can be refunded now.' in html
    assert f'href="/support/refunds/order/{order.number}/"' in html
    with translation.override("zh-hans"):
        zh = render(text, context, buyer)
    assert 'data-count="2">2 张' in zh
    oob = render("{% load aftersales_order %}{% refund_entry oob=True %}", context, buyer)
    assert oob.startswith('\n<div id="refund-entry-slot" hx-swap-oob="true">')
    # Nothing to offer: the slot stays, empty (a reveal's answer can fill or empty it).
    assert render(text, {"order": page}, buyer) == '\n<div id="refund-entry-slot">\n\n</div>\n'


def test_head_details_and_history_escape_what_they_show(buyer):
    order = delivered_order(buyer, quantity=2)
    page = selectors.order_for_buyer(buyer, order.number)
    page.product_name = HOSTILE
    page.discount = Decimal("1.50")
    page.timeline = [*page.timeline, TimelineEntry(at=page.timeline[-1].at, label=HOSTILE, reissue=True)]
    with translation.override("en"):
        head = render('{% load order_page %}{% order_head "orders:status" %}', {"order": page}, buyer)
        info = render("{% load order_page %}{% order_info %}", {"order": page}, buyer)
        history = render("{% load order_page %}{% order_history %}", {"order": page}, buyer)
    assert "<script>" not in head + info + history
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co</h1>" in head
    assert "2 items · Total" in head and 'data-status="delivered"' in head and "hx-get" not in head
    assert 'Discount</dt><dd class="col-8">−¥1.50</dd>' in info and 'data-testid="order-total"' in info
    assert 'data-testid="history-reissue"><span>&lt;script&gt;' in history
    assert history.count("<li ") == len(page.timeline)


def test_a_paid_order_head_polls_its_status(buyer):
    order = delivered_order(buyer, quantity=1)
    page = selectors.order_for_buyer(buyer, order.number)
    page.status = "paid"
    page.fulfilment = "manual"
    head = render('{% load order_page %}{% order_head "orders:status" %}', {"order": page}, buyer)
    assert f'hx-get="/orders/{order.number}/status/?seen=paid" hx-trigger="every 10s" hx-swap="innerHTML"' in head
    confirming = render(
        '{% load order_page %}{% order_head "orders:guest_status" %}', {"order": page, "confirming": True}, buyer
    )
    assert 'hx-trigger="every 2s"' in confirming


def test_the_status_badge_and_the_kind_tile():
    with translation.override("en"):
        badge = status_badge_html(StatusOnly("pending"))
    assert badge == (
        '<span class="badge rounded-pill fw-semibold fs-6 text-bg-warning" data-testid="order-status"'
        ' data-status="pending"><i class="bi bi-hourglass-split"></i> Awaiting payment</span>\n'
    )
    assert 'fw-semibold  text-bg-light border" data-testid="order-status" data-status="&lt;x&gt;">&lt;x&gt;</span>' in (
        status_badge_html(type("Odd", (), {"status": "<x>", "get_status_display": lambda self: "<x>"})(), compact=True)
    )
    assert kind_icon_html("game_card", large=True) == (
        '<span class="kind-tile kind-game_card kind-tile-lg" aria-hidden="true">'
        '<i class="bi bi-controller kind-icon"></i></span>\n'
    )
    assert 'kind-&lt;b&gt;"' in kind_icon_html("<b>") and "bi-gem" in kind_icon_html("<b>")
