"""The 7-day no-reason refund: unrevealed codes within the window are refunded at once to where
the money came from and go back on sale; revealed codes, day 8, or a buyer over the limit go to
staff as a dispute; a double click or two tabs make one refund; nobody sees another's request."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone, translation

from aftersales.admin import refunds as admin_refunds  # the refund requests' admin (its filters are tested here)
from aftersales.models import Kind, RefundRequest, Ticket
from aftersales.services import no_reason
from agents.models import Commission
from catalog.models import CardCode
from compliance.models import AuditEvent, CreditEvent
from compliance.services import credit_event_record
from ledger import services as ledger
from orders.models import Order
from orders.services.orders import order_place
from payments.models import Refund
from payments.services import payments as services
from tests.builders import (
    ask,
    balance_of,
    codes_of,
    delivered_order,
    reveal,
    run_concurrently,
    storefront_order,
    values_and_errors,
    wallet_balance,
)
from tests.factories import UserFactory

D = Decimal
RequestStatus = RefundRequest.Status


@pytest.mark.django_db(transaction=True)
def test_an_unrevealed_code_within_the_window_is_refunded_at_once_and_goes_back_on_sale(buyer):
    order = delivered_order(buyer)
    first = codes_of(order)[0]
    cost_before = balance_of(ledger.COST_OF_SALES)

    req = ask(buyer, order, [first])

    req.refresh_from_db()
    assert (req.status, req.quantity, req.ticket_id) == (RequestStatus.REFUNDED, 1, None)
    refund = req.refund
    refund.refresh_from_db()
    assert (refund.amount, refund.quantity, refund.status) == (D("30.00"), 1, Refund.Status.SUCCEEDED)
    assert refund.payment.gateway == "sandbox" and refund.payment.order_id == order.pk  # the original channel
    assert balance_of(ledger.clearing("sandbox")) == D("60.00")  # 90 paid, 30 back
    assert balance_of(ledger.REFUNDS_DUE) == 0
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED and order.refunded_quantity == 1
    first.refresh_from_db()
    assert first.released_at is not None  # no longer held by the order
    assert CardCode.objects.get(pk=first.code_id).status == CardCode.Status.AVAILABLE
    # Its cost is no longer a cost of sales: it was not sold.
    assert balance_of(ledger.COST_OF_SALES) == cost_before - D("90.00")
    assert CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.NO_REASON_REFUND).count() == 1

    # Somebody else can buy it: the only code in stock is the returned one.
    other = UserFactory()
    again = order_place(buyer=other, product_id=order.product_id, quantity=1, idempotency_key="again")
    services.sandbox_pay(order_number=again.number)
    again.refresh_from_db()
    assert again.status == Order.Status.DELIVERED
    assert again.codes.get().code_id == first.code_id
    assert CardCode.objects.get(pk=first.code_id).status == CardCode.Status.SOLD
    assert balance_of(ledger.COST_OF_SALES) == cost_before  # its cost, booked once, by the sale that stood


@pytest.mark.django_db(transaction=True)
def test_a_balance_payment_comes_back_to_the_wallet(buyer):
    recharge = services.recharge_create(user=buyer, amount="100")
    services.sandbox_pay(order_number=recharge.number)
    order = delivered_order(
        buyer,
        price="25.00",
        quantity=2,
        pay=lambda order_number: services.balance_pay(order_number=order_number, buyer=buyer),
    )
    assert wallet_balance(buyer) == D("50.00")
    req = ask(buyer, order, codes_of(order)[:1])
    assert req.refund.payment.gateway == "balance"
    assert wallet_balance(buyer) == D("75.00")
    assert balance_of(ledger.wallet(buyer)) == D("75.00")


@pytest.mark.django_db(transaction=True)
def test_two_of_three_then_the_last_one(buyer):
    order = delivered_order(buyer)
    a, b, c = codes_of(order)
    req = ask(buyer, order, [a, b])
    assert req.status == RequestStatus.REFUNDED and req.refund.amount == D("60.00") and req.refund.quantity == 2
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED and order.refunded_quantity == 2
    assert list(order.codes.filter(released_at__isnull=True)) == [c]
    assert CardCode.objects.filter(pk__in=[a.code_id, b.code_id], status=CardCode.Status.AVAILABLE).count() == 2

    last = ask(buyer, Order.objects.get(pk=order.pk), [c], key="key-2")
    assert last.refund.amount == D("30.00")
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED and order.refunded_quantity == 3
    assert sum(r.amount for r in Refund.objects.filter(order=order)) == order.total
    assert balance_of(ledger.clearing("sandbox")) == 0


@pytest.mark.django_db(transaction=True)
def test_a_revealed_code_goes_to_staff_as_a_dispute(buyer):
    order = delivered_order(buyer)
    a, b, _c = codes_of(order)
    reveal(a, buyer)

    with translation.override("en"):
        req = ask(buyer, order, [a, b], reason="the code says already used")

    assert req.status == RequestStatus.UNDER_REVIEW and req.refund_id is None
    assert req.review_reason == "1 code was revealed"
    ticket = req.ticket
    assert ticket.kind == Kind.REFUND and ticket.is_dispute and ticket.order_id == order.pk
    assert ticket.user_id == buyer.pk and ticket.status == Ticket.Status.OPEN
    assert ticket.first_response_due_at - ticket.created_at == pytest.approx(
        timedelta(hours=48), abs=timedelta(seconds=5)
    )
    message = ticket.messages.get()
    assert message.author_id == buyer.pk and not message.from_staff
    assert "the code says already used" in message.body and req.review_reason in message.body
    # Nothing moved: no refund, the codes are still the buyer's, nothing back in stock.
    assert not Refund.objects.exists()
    order.refresh_from_db()
    assert order.refunded_quantity == 0
    assert order.codes.filter(released_at__isnull=True).count() == 3
    assert CardCode.objects.filter(pk=a.code_id).get().status == CardCode.Status.SOLD
    assert not CreditEvent.objects.exists()
    # The codes are in a request: they cannot be asked for again meanwhile.
    with pytest.raises(no_reason.RefundRequestError):
        ask(buyer, order, [b], key="key-2")


@pytest.mark.django_db(transaction=True)
def test_day_8_goes_to_review(buyer):
    order = delivered_order(buyer)
    Order.objects.filter(pk=order.pk).update(delivered_at=timezone.now() - timedelta(days=8))
    with translation.override("en"):
        req = ask(buyer, Order.objects.get(pk=order.pk), codes_of(order)[:1])
    assert req.status == RequestStatus.UNDER_REVIEW and req.ticket.is_dispute
    assert req.review_reason.startswith("requested after the 7-day window")
    assert not Refund.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_just_inside_the_window_is_still_automatic(buyer):
    order = delivered_order(buyer)
    Order.objects.filter(pk=order.pk).update(delivered_at=timezone.now() - timedelta(days=7) + timedelta(minutes=1))
    req = ask(buyer, Order.objects.get(pk=order.pk), codes_of(order)[:1])
    assert req.status == RequestStatus.REFUNDED


@pytest.mark.django_db(transaction=True)
def test_over_the_no_reason_limit_goes_to_review(buyer, settings):
    settings.NO_REASON_REFUND_LIMIT = 2
    order = delivered_order(buyer)
    a, b, c = codes_of(order)
    assert ask(buyer, order, [a], key="1").status == RequestStatus.REFUNDED
    assert ask(buyer, order, [b], key="2").status == RequestStatus.REFUNDED
    third = ask(buyer, order, [c], key="3")
    assert third.status == RequestStatus.UNDER_REVIEW and third.ticket is not None
    assert Refund.objects.count() == 2
    # Old events fall out of the period.
    CreditEvent.objects.update(at=timezone.now() - timedelta(days=settings.NO_REASON_REFUND_LIMIT_DAYS + 1))
    other = delivered_order(buyer, quantity=1)
    assert ask(buyer, other, codes_of(other), key="4").status == RequestStatus.REFUNDED


@pytest.mark.django_db(transaction=True)
def test_the_limit_counts_events_recorded_elsewhere_too(buyer, settings):
    settings.NO_REASON_REFUND_LIMIT = 1
    credit_event_record(user=buyer, kind=CreditEvent.Kind.NO_REASON_REFUND, reference="earlier")
    order = delivered_order(buyer, quantity=1)
    assert ask(buyer, order, codes_of(order)).status == RequestStatus.UNDER_REVIEW


@pytest.mark.django_db(transaction=True)
def test_the_same_key_twice_is_one_request(buyer):
    order = delivered_order(buyer)
    a = ask(buyer, order, codes_of(order)[:1], key="same")
    b = ask(buyer, Order.objects.get(pk=order.pk), codes_of(order)[:1], key="same")
    assert a.pk == b.pk
    assert RefundRequest.objects.count() == 1 and Refund.objects.count() == 1
    order.refresh_from_db()
    assert order.refunded_quantity == 1


@pytest.mark.django_db(transaction=True)
def test_bad_requests_are_refused_with_a_message(buyer, other_buyer):
    order = delivered_order(buyer)
    mine = codes_of(order)
    elsewhere = codes_of(delivered_order(other_buyer, quantity=1))
    with pytest.raises(no_reason.RefundRequestError):
        ask(buyer, order, [])
    with pytest.raises(no_reason.RefundRequestError):
        ask(buyer, order, elsewhere)  # not this order's code
    with pytest.raises(Order.DoesNotExist):
        ask(other_buyer, order, mine)  # not their order
    with pytest.raises(no_reason.RefundRequestError):
        no_reason.refund_request_create(user=buyer, order=order, order_code_ids=["x"], idempotency_key="k")
    ask(buyer, order, mine[:1], key="ok")
    with pytest.raises(no_reason.RefundRequestError):
        ask(buyer, order, mine[:1], key="again")  # already refunded
    pending = order_place(buyer=buyer, product_id=order.product_id, quantity=1, idempotency_key="unpaid")
    with pytest.raises(no_reason.RefundRequestError):
        ask(buyer, pending, codes_of(pending), key="unpaid")
    assert RefundRequest.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_key", [True, False], ids=["double-click", "two-tabs"])
def test_concurrent_requests_for_the_same_code_make_one_refund(buyer, same_key):
    order = delivered_order(buyer)
    code = codes_of(order)[0]
    n = 8

    def click(i):
        return no_reason.refund_request_create(
            user=buyer,
            order=Order.objects.get(pk=order.pk),
            order_code_ids=[code.pk],
            idempotency_key="click" if same_key else f"tab-{i}",
        ).pk

    results, errors = values_and_errors(run_concurrently(n, click))  # anything unexpected fails below
    assert RefundRequest.objects.count() == 1 and Refund.objects.count() == 1
    if same_key:
        assert errors == [] and len(results) == n and len(set(results)) == 1
    else:
        assert len(results) == 1
        assert len(errors) == n - 1 and all(isinstance(e, no_reason.RefundRequestError) for e in errors)
    order.refresh_from_db()
    assert order.refunded_quantity == 1
    assert Refund.objects.get().status == Refund.Status.SUCCEEDED
    assert CreditEvent.objects.count() == 1
    assert CardCode.objects.get(pk=code.code_id).status == CardCode.Status.AVAILABLE


@pytest.mark.django_db(transaction=True)
def test_agents_commissions_are_reversed_for_the_refunded_codes(buyer, level):
    _chain, order = storefront_order(level, buyer)
    before = {c.agent_id: c.amount for c in Commission.objects.filter(order=order)}
    assert before and balance_of(ledger.COMMISSIONS) > 0
    ask(buyer, order, codes_of(order)[:1])
    for c in Commission.objects.filter(order=order):
        assert c.reversed_quantity == 1 and c.status == Commission.Status.PENDING
        assert c.net_amount == before[c.agent_id] - c.unit_amount == c.unit_amount * 2
        assert balance_of(ledger.commission_pending(c.agent.user)) == c.net_amount
    assert balance_of(ledger.COMMISSIONS) == sum(c.unit_amount * 2 for c in Commission.objects.filter(order=order))


# --- Pages ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_buyer_picks_unused_codes_and_follows_the_refund(client, buyer):
    order = delivered_order(buyer)
    a, b, c = codes_of(order)
    reveal(c, buyer)
    client.force_login(buyer)

    page = client.get(f"/orders/{order.number}/").content.decode()
    assert 'data-testid="refund-entry"' in page and f"/support/refunds/order/{order.number}/" in page
    assert page.count('data-testid="code-refundable"') == 2  # a and b, not the revealed c
    # The window's end, date and time, never split over two lines (it was at 1280 px in English).
    entry = page[page.index('data-testid="refund-entry"') :]
    assert re.search(r'<span class="text-nowrap">\d{4}-\d\d-\d\d \d\d:\d\d</span>', entry[:1500]), entry[:1500]

    form = client.get(f"/support/refunds/order/{order.number}/").content.decode()
    assert form.count('data-testid="refund-code"') == 3
    assert re.search(rf'value="{a.pk}"[^>]*\bchecked\b', form) and re.search(rf'value="{b.pk}"[^>]*\bchecked\b', form)
    assert not re.search(rf'value="{c.pk}"[^>]*\bchecked\b', form)  # revealed: not pre-selected
    assert 'data-testid="code-revealed"' in form
    assert 'data-testid="refund-deadline"' in form

    response = client.post(
        f"/support/refunds/order/{order.number}/", {"codes": [a.pk, b.pk], "idempotency_key": "form-1", "reason": ""}
    )
    req = RefundRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/support/refunds/{req.public_id}/"
    detail = client.get(response["Location"]).content.decode()
    assert 'data-status="refunded"' in detail and 'data-refund-status="succeeded"' in detail
    assert 'data-testid="refund-done"' in detail

    # The same form sent again (back button, double click) changes nothing.
    again = client.post(f"/support/refunds/order/{order.number}/", {"codes": [a.pk, b.pk], "idempotency_key": "form-1"})
    assert again["Location"] == f"/support/refunds/{req.public_id}/" and Refund.objects.count() == 1

    page = client.get(f"/orders/{order.number}/").content.decode()
    assert 'data-testid="refund-requests"' in page and f"/support/refunds/{req.public_id}/" in page


@pytest.mark.django_db(transaction=True)
def test_a_review_request_links_its_ticket(client, buyer):
    order = delivered_order(buyer, quantity=1)
    (code,) = codes_of(order)
    reveal(code, buyer)
    client.force_login(buyer)
    response = client.post(
        f"/support/refunds/order/{order.number}/", {"codes": [code.pk], "idempotency_key": "f", "reason": "broken"}
    )
    req = RefundRequest.objects.get()
    detail = client.get(response["Location"]).content.decode()
    assert 'data-status="under_review"' in detail
    assert f'href="/support/{req.ticket.number}/"' in detail


@pytest.mark.django_db(transaction=True)
def test_a_bad_form_is_shown_again_with_the_reason(client, buyer):
    order = delivered_order(buyer, quantity=1)
    client.force_login(buyer)
    response = client.post(f"/support/refunds/order/{order.number}/", {"idempotency_key": "f"})
    assert response.status_code == 400 and 'data-testid="refund-error"' in response.content.decode()
    assert not RefundRequest.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_after_the_window_the_order_page_offers_no_refund_entry(client, buyer):
    order = delivered_order(buyer, quantity=1)
    Order.objects.filter(pk=order.pk).update(delivered_at=timezone.now() - timedelta(days=8))
    client.force_login(buyer)
    page = client.get(f"/orders/{order.number}/").content.decode()
    assert 'data-testid="refund-entry"' not in page and 'data-testid="code-refundable"' not in page


@pytest.mark.django_db(transaction=True)
def test_another_buyers_order_and_request_are_404_and_audited(client, buyer, other_buyer):
    order = delivered_order(buyer, quantity=2)
    req = ask(buyer, order, codes_of(order)[:1])
    client.force_login(other_buyer)
    assert client.get(f"/support/refunds/order/{order.number}/").status_code == 404
    response = client.post(
        f"/support/refunds/order/{order.number}/", {"codes": [c.pk for c in codes_of(order)], "idempotency_key": "x"}
    )
    assert response.status_code == 404
    assert client.get(f"/support/refunds/{req.public_id}/").status_code == 404
    denied = AuditEvent.objects.filter(actor=other_buyer, outcome=AuditEvent.Outcome.DENIED)
    assert denied.count() == 3
    assert set(denied.values_list("action", flat=True)) == {"refund.order", "refund.request"}
    assert RefundRequest.objects.count() == 1
    assert client.get("/support/refunds/order/NOSUCHORDER/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_admin_lists_requests_and_the_overdue_filter(client, buyer, staff):
    order = delivered_order(buyer)
    a, _b, c = codes_of(order)
    reveal(c, buyer)
    done = ask(buyer, order, [a], key="done")
    review = ask(buyer, order, [c], key="review")
    old = timezone.now() - timedelta(days=5)
    RefundRequest.objects.filter(pk__in=[done.pk, review.pk]).update(created_at=old)
    overdue = RefundRequest.objects.filter(admin_refunds.money_not_back_q())
    assert list(overdue) == [review]  # the refunded one is done; the review one has no money back yet
    client.force_login(staff)
    page = client.get("/admin/aftersales/refundrequest/?money_back=overdue")
    assert page.status_code == 200
    body = page.content.decode()
    assert f"/admin/aftersales/refundrequest/{review.pk}/change/" in body
    assert f"/admin/aftersales/refundrequest/{done.pk}/change/" not in body
    assert client.get(f"/admin/aftersales/refundrequest/{done.pk}/change/").status_code == 200


def test_one_business_day_skips_the_weekend():
    business_day_ago = admin_refunds.business_day_ago
    monday = timezone.make_aware(timezone.datetime(2025, 6, 2, 10, 0))
    assert business_day_ago(monday).weekday() == 4  # Friday 10:00
    wednesday = monday + timedelta(days=2)
    assert business_day_ago(wednesday).weekday() == 1
