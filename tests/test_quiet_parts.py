"""The order pages' parts that are often empty (issue 17): ``{% order_alerts %}``, ``{% topup_info %}``
(orders.templatetags.order_page) and ``{% refund_requests %}`` (aftersales) draw their templates
only when they show something, and otherwise the text the template drew when it showed nothing
(``marketplace.templatetags.kept.include_unless_quiet``); ``{% reveal_confirm %}`` draws its
template once per language and refund days. Each is compared with Django's ``{% include %}`` of
the same template over every status and value its condition reads, so a condition that forgets
a case fails here."""

import itertools
import re
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template import engines
from django.test import RequestFactory
from django.utils import timezone, translation

from marketplace import localcache
from orders.models import Order
from orders.templatetags import order_page

LANGUAGES = ("zh-hans", "en")


def render(text: str, context: dict) -> str:
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.session = {}
    html = engines["django"].from_string("{% load order_page aftersales_order %}" + text).render(context, request)
    return re.sub(r'(name="csrfmiddlewaretoken" value=")[^"]+', r"\1X", html)  # each render masks its own


def fake_order(status: str, topup=None):
    return SimpleNamespace(
        status=status,
        topup=topup,
        number="261206ABCD1234",
        buyer_id=1,
        expires_at=timezone.now() + timedelta(minutes=15),
        product=SimpleNamespace(get_absolute_url=lambda: "/p/bench-card/"),
    )


TOPUP = SimpleNamespace(state="waiting", label="Waiting", rows=[("account", "Account", "12345")], note="")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_alerts_are_what_their_include_draws_for_every_status(lang):
    shown = 0
    with translation.override(lang):
        for status, confirming in itertools.product(Order.Status.values, (False, True)):
            context = {"order": fake_order(status), "confirming": confirming}
            ours = render('{% order_alerts "orders:cancel" %}', context)
            theirs = render('{% include "orders/_order_alerts.html" with cancel_url_name="orders:cancel" %}', context)
            assert ours == theirs, (status, confirming)
            shown += "alert" in ours
    assert 0 < shown < 2 * len(Order.Status.values)  # both ways were drawn


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_pending_orders_alerts_are_kept_markup_with_its_own_number_token_and_time(lang):
    """Drawn once for a sample number and token, per time, language, cancel link and
    ``confirming``: each order still shows its own number, token and time, exactly as the include
    drew them (tokens not masked here); a token of other characters goes to the include."""
    order_page.order_alerts_forget()
    start = timezone.now().replace(second=30)
    with translation.override(lang):
        for i, (cancel, confirming) in enumerate(
            itertools.product(("orders:cancel", "orders:guest_cancel"), (False, True))
        ):
            for n, minutes in enumerate((15, 15, 16)):  # the same time for two orders: one part kept
                order = fake_order("pending")
                order.number = f"2612071200ABCDEF{i}{n}XYZ0123456"
                order.expires_at = start + timedelta(minutes=minutes)
                token = f"Tok{i}{n}" + "a1" * 30
                context = {"order": order, "confirming": confirming, "csrf_token": token}
                ours = render_raw(f'{{% order_alerts "{cancel}" %}}', context)
                include = f'{{% include "orders/_order_alerts.html" with cancel_url_name="{cancel}" %}}'
                theirs = render_raw(include, context)
                assert ours == theirs, (cancel, confirming, minutes)
                assert order.number in ours and token in ours
                assert timezone.localtime(order.expires_at).strftime("%H:%M") in ours
                assert localcache.SAMPLE_NUMBER not in ours and localcache.SAMPLE_TOKEN not in ours
        assert len(order_page._pending) == 8  # 4 ways x 2 times, not one per order
        odd = {"order": fake_order("pending"), "csrf_token": "not-alnum<>"}
        assert render_raw('{% order_alerts "orders:cancel" %}', odd) == render_raw(
            '{% include "orders/_order_alerts.html" with cancel_url_name="orders:cancel" %}', odd
        )
    assert len(order_page._pending) == 8


def render_raw(text: str, context: dict) -> str:
    """``render`` without masking the token (the context's own)."""
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.session = {}
    return engines["django"].from_string("{% load order_page aftersales_order %}" + text).render(context, request)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_topup_card_is_what_its_include_draws(lang):
    with translation.override(lang):
        for topup in (None, TOPUP):
            context = {"order": fake_order("delivered", topup)}
            assert render("{% topup_info %}", context) == render('{% include "orders/_topup_info.html" %}', context)
    assert 'data-testid="topup-card"' in render("{% topup_info %}", {"order": fake_order("paid", TOPUP)})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_refund_requests_are_what_their_include_draws(lang):
    request = SimpleNamespace(
        public_id=uuid.uuid4(),
        quantity=2,
        created_at=timezone.now(),
        refund=None,
        status="under_review",
        get_status_display=lambda: "<Under review>",
    )
    with translation.override(lang):
        for refund in (None, "", SimpleNamespace(requests=[]), SimpleNamespace(requests=[request])):
            context = {"order": fake_order("delivered"), "refund": refund}
            ours = render("{% refund_requests %}", context)
            assert ours == render('{% include "orders/_refund_requests.html" %}', context)
    assert 'data-testid="refund-requests"' in ours and "&lt;Under review&gt;" in ours


def test_the_reveal_confirmation_is_kept_per_language_and_refund_days():
    order_page._drawn.clear()

    def drawn(lang: str, days: int) -> str:
        with translation.override(lang):
            return render("{% reveal_confirm %}", {"PROMISES": {"refund_days": days}})

    chinese, english = drawn("zh-hans", 7), drawn("en", 7)
    assert 'id="reveal-confirm"' in chinese and "Reveal this code?" in english and "Reveal this code?" not in chinese
    assert "within 7 days" in english and "within 9 days" in drawn("en", 9)  # the days are in its key
    assert drawn("en", 7) == english and drawn("zh-hans", 7) == chinese
    with translation.override("en"):
        theirs = render('{% include "orders/_reveal_confirm.html" %}', {"PROMISES": {"refund_days": 7}})
    assert english == theirs
