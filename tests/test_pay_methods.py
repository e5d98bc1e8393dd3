"""``{% pay_methods %}`` (payments/templatetags/pay_methods.py): the choose page's ways to pay,
drawn once per process for a sample number and token, are what the part's template draws with
each order's own values, for members (balance short or not) and guests, on a phone or not, in
both languages; one drawing serves every order showing the same values."""

import itertools
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template import engines
from django.template.loader import get_template
from django.test import RequestFactory
from django.utils import translation

from marketplace import localcache
from payments.templatetags import pay_methods

GATEWAYS = [
    SimpleNamespace(code="alipay", name="支付宝 Alipay"),
    SimpleNamespace(code="sandbox", name="Sandbox <demo>"),
]


def draw(context: dict) -> str:
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.session = {}
    return engines["django"].from_string("{% load pay_methods %}{% pay_methods %}").render(context, request)


def template_draws(context: dict) -> str:
    """The part's template with the order's own values (no sample)."""
    order, balance = context["order"], context["balance"]
    short = not order.is_guest and balance < order.total
    return get_template(pay_methods.TEMPLATE).render({**context, "balance_short": short})


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
def test_the_ways_to_pay_are_the_templates_with_each_orders_number_and_token(lang):
    pay_methods.pay_methods_forget()
    ways = itertools.product((False, True), (Decimal("5.00"), Decimal("50.00")), (False, True))
    with translation.override(lang):
        for i, (is_guest, balance, on_phone) in enumerate(ways):
            for n in range(2):
                order = SimpleNamespace(
                    number=f"2612071200PAYMETHOD{i}{n}ABCDEF1",
                    is_guest=is_guest,
                    guest_email="guest<x>@example.com" if is_guest else "",
                    total=Decimal("10.00"),
                )
                token = f"Tok{i}{n}" + "b2" * 30
                context = {
                    "order": order,
                    "balance": None if is_guest else balance,
                    "gateways": GATEWAYS,
                    "on_phone": on_phone,
                    "csrf_token": token,
                }
                ours = draw(context)
                assert ours == template_draws(context), (is_guest, balance, on_phone)
                assert order.number in ours and token in ours and localcache.SAMPLE_NUMBER not in ours
                assert ('data-testid="gateway-alipay-qr"' in ours) is not on_phone
                assert ("guest&lt;x&gt;@example.com" in ours) is is_guest
                if not is_guest:
                    assert ("disabled" in ours) is (balance < order.total)
        # Guests: one per phone or not (the balance is not shown); members: per balance and phone.
        assert len(pay_methods._drawn) == 2 + 4
        odd = {**context, "csrf_token": "not alnum"}
        assert draw(odd) == template_draws(odd) and len(pay_methods._drawn) == 6
