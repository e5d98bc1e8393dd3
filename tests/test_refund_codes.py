"""One way to refund codes: ``payments.refunds.order_refund`` with the order's side in
``orders.services.order_codes_refund``. Named codes leave the order, the unrevealed ones go back
on sale with their cost taken back from the supplier (revealed ones stay sold), the agents'
shares of them are reversed; the same key is one refund however often or concurrently asked,
and a code already refunded is refused."""

from decimal import Decimal

import pytest
from django.db import transaction

from agents.models import Commission
from catalog.models import CardCode
from ledger import services as ledger
from ledger.models import Entry
from marketplace.errors import ServiceError
from orders.models import Order
from orders.services import orders as order_services
from payments.models import Refund
from payments.services import refunds
from tests.builders import (
    balance_of,
    codes_of,
    delivered_order,
    reveal,
    run_concurrently,
    storefront_order,
    values_and_errors,
)

D = Decimal
STOCK_COST = D("90.00")  # what tests.factories.add_stock pays per code


def status_of(order_code) -> str:
    return CardCode.objects.get(pk=order_code.code_id).status


@pytest.mark.django_db(transaction=True)
def test_a_partial_refund_by_code_releases_those_codes_and_restocks_only_the_unseen(level, buyer, staff):
    _chain, order = storefront_order(level, buyer)  # 3 codes
    seen, unseen, kept = codes_of(order)
    reveal(seen, buyer)
    commissions_before = {c.pk: c.amount for c in Commission.objects.filter(order=order)}
    cost_before = balance_of(ledger.COST_OF_SALES)

    refund = refunds.order_refund(
        order=order, order_code_ids=[unseen.pk, seen.pk], reason="two codes", requested_by=staff, key="k1"
    )

    assert (refund.quantity, refund.amount) == (2, order.unit_price * 2)
    order.refresh_from_db()
    assert order.refunded_quantity == 2 and order.status == Order.Status.DELIVERED
    assert [c.pk for c in codes_of(order, live=True)] == [kept.pk]
    assert status_of(unseen) == CardCode.Status.AVAILABLE  # nobody saw it: back on sale
    assert status_of(seen) == CardCode.Status.SOLD  # revealed: never sold again
    assert status_of(kept) == CardCode.Status.SOLD
    # Only the restocked code's cost goes back to its supplier, once, under the default key.
    entry = Entry.objects.get(kind="stock_returned")
    assert entry.idempotency_key == f"stock_return:refund:{refund.number}"
    assert entry.memo == f"refund {refund.number}: 1 unrevealed code(s) back in stock"
    assert entry.reference == order.number
    assert balance_of(ledger.COST_OF_SALES) == cost_before - STOCK_COST
    # Each agent gives back the share of two codes out of three.
    for c in Commission.objects.filter(order=order):
        assert c.reversed_quantity == 2
        assert c.net_amount == commissions_before[c.pk] / 3


@pytest.mark.django_db(transaction=True)
def test_the_caller_names_the_cost_reversal_key_and_memo(buyer, staff):
    order = delivered_order(buyer)
    first = codes_of(order)[0]
    restock = order_services.Restock(key="stock_return:test:{refund}", memo="test {refund}: {n} back")
    refund = refunds.order_refund(order=order, order_code_ids=[first.pk], reason="x", key="k1", restock=restock)
    entry = Entry.objects.get(kind="stock_returned")
    assert (entry.idempotency_key, entry.memo) == (
        f"stock_return:test:{refund.number}",
        f"test {refund.number}: 1 back",
    )


@pytest.mark.django_db(transaction=True)
def test_the_order_service_alone_refunds_named_codes_in_the_callers_transaction(buyer):
    order = delivered_order(buyer)
    a, b, c = codes_of(order)
    with pytest.raises(RuntimeError):  # never on its own: the refund's transaction holds it together
        order_services.order_codes_refund(order=order, quantity=1, refund_number="RF1", order_code_ids=[a.pk])
    with transaction.atomic():
        restocked = order_services.order_codes_refund(
            order=order, quantity=2, refund_number="RF1", order_code_ids=[c.pk, a.pk]
        )
    assert sorted(restocked) == sorted([a.code_id, c.code_id])
    assert [x.pk for x in codes_of(order, live=True)] == [b.pk]
    assert Order.objects.get(pk=order.pk).refunded_quantity == 2
    assert Entry.objects.get(kind="stock_returned").idempotency_key == "stock_return:refund:RF1"


@pytest.mark.django_db(transaction=True)
def test_a_refund_by_count_keeps_the_codes_on_the_order(buyer, staff):
    order = delivered_order(buyer)
    cost_before = balance_of(ledger.COST_OF_SALES)
    refunds.order_refund(order=order, quantity=2, reason="two did not work", requested_by=staff)
    order.refresh_from_db()
    assert order.refunded_quantity == 2
    assert len(codes_of(order, live=True)) == 3  # staff refunded money, not particular codes
    assert all(status_of(c) == CardCode.Status.SOLD for c in codes_of(order))
    assert not Entry.objects.filter(kind="stock_returned").exists()
    assert balance_of(ledger.COST_OF_SALES) == cost_before


@pytest.mark.django_db(transaction=True)
def test_the_same_key_again_is_the_same_refund_and_changes_nothing(buyer, staff):
    order = delivered_order(buyer)
    first = codes_of(order)[0]
    a = refunds.order_refund(order=order, order_code_ids=[first.pk], reason="x", requested_by=staff, key="click")
    entries = Entry.objects.count()
    b = refunds.order_refund(order=order, order_code_ids=[first.pk], reason="x", requested_by=staff, key="click")
    assert a.pk == b.pk and Refund.objects.count() == 1
    assert Entry.objects.count() == entries
    assert Order.objects.get(pk=order.pk).refunded_quantity == 1
    assert status_of(first) == CardCode.Status.AVAILABLE


@pytest.mark.django_db(transaction=True)
def test_a_code_refunded_twice_is_refused_and_nothing_is_kept(buyer, staff):
    order = delivered_order(buyer)
    first, second, _third = codes_of(order)
    refunds.order_refund(order=order, order_code_ids=[first.pk], reason="x", requested_by=staff, key="one")
    entries, cost = Entry.objects.count(), balance_of(ledger.COST_OF_SALES)
    with pytest.raises(ServiceError) as refused:  # with a new key: another decision, on a code gone
        refunds.order_refund(
            order=order, order_code_ids=[second.pk, first.pk], reason="x", requested_by=staff, key="two"
        )
    assert refused.value.code == "codes_not_on_order"
    assert Refund.objects.count() == 1 and Entry.objects.count() == entries
    assert balance_of(ledger.COST_OF_SALES) == cost
    order.refresh_from_db()
    assert order.refunded_quantity == 1
    assert [c.pk for c in codes_of(order, live=True)] == [second.pk, _third.pk]
    assert status_of(second) == CardCode.Status.SOLD


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_staff_refunding_one_code_make_one_refund(buyer, staff):
    order = delivered_order(buyer)
    first = codes_of(order)[0]

    def click(i):
        # Six colleagues, each their own decision (their own key) about the same code.
        return refunds.order_refund(
            order=Order.objects.get(pk=order.pk),
            order_code_ids=[first.pk],
            reason="did not work",
            requested_by=staff,
            key=f"staff-{i}",
        ).pk

    done, errors = values_and_errors(run_concurrently(6, click))
    assert len(done) == 1 and len(errors) == 5
    assert all(isinstance(e, ServiceError) for e in errors), errors
    assert Refund.objects.count() == 1
    assert Entry.objects.filter(kind="stock_returned").count() == 1
    assert Order.objects.get(pk=order.pk).refunded_quantity == 1
    assert status_of(first) == CardCode.Status.AVAILABLE


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_clicks_with_one_key_make_one_refund(buyer, staff):
    order = delivered_order(buyer)
    first, second, _third = codes_of(order)

    def click(_i):
        return refunds.order_refund(
            order=Order.objects.get(pk=order.pk),
            order_code_ids=[first.pk, second.pk],
            reason="x",
            requested_by=staff,
            key="one-decision",
        ).pk

    done, errors = values_and_errors(run_concurrently(8, click))
    assert errors == [] and len(set(done)) == 1
    assert Refund.objects.get().quantity == 2
    assert Entry.objects.filter(kind="stock_returned").count() == 1
    assert Order.objects.get(pk=order.pk).refunded_quantity == 2
