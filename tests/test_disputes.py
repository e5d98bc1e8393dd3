"""Disputes in admin: staff refund (all or some codes), reject, reissue (补发) and ask for more
information, each with a reason, an audit row, a credit event and a trace on the ticket; two
staff clicking at once make one refund or one reissue; batch and supplier defect rates."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from aftersales.admin.tickets import decision_state_key
from aftersales.models import Kind, RefundRequest, Reissue, Ticket, TicketMessage
from aftersales.services import disputes, no_reason
from aftersales.services.tickets import ticket_open
from catalog import selectors as catalog_selectors
from catalog.models import CardCode
from catalog.services import OutOfStock
from compliance.models import AuditEvent, CreditEvent
from ledger import services as ledger
from ledger.models import Line
from orders.models import Order, OrderCode
from payments.models import Refund
from tests.builders import balance_of, codes_of, delivered_order, reveal, run_concurrently, values_and_errors
from tests.factories import UserFactory

D = Decimal
RequestStatus = RefundRequest.Status
COST = D("90.00")  # add_stock's cost per code


def dispute(buyer, order, codes, key="req-1"):
    """A refund dispute: the buyer asks for revealed codes back, so staff must decide."""
    for oc in codes:
        reveal(oc, buyer)
    req = no_reason.refund_request_create(
        user=buyer, order=order, order_code_ids=[c.pk for c in codes], reason="did not work", idempotency_key=key
    )
    assert req.status == RequestStatus.UNDER_REVIEW and req.ticket.is_dispute
    return req.ticket


def invalid_ticket(buyer, order, oc):
    return ticket_open(
        user=buyer, kind=Kind.INVALID, subject="Code invalid", body="It says already used", order=order, order_code=oc
    )


def payable_of(order) -> Decimal:
    supplier = order.product.supplier
    return balance_of(ledger.supplier_payable(supplier.pk, supplier.name))


# --- Refund -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_full_refund_money_back_order_refunded_credit_audit_resolved(buyer, staff, mailoutbox):
    order = delivered_order(buyer)
    ticket = dispute(buyer, order, codes_of(order, live=True)[:1])

    refund = disputes.dispute_refund(ticket=ticket, staff=staff, reason="supplier confirmed bad batch", key="k1")

    refund.refresh_from_db()
    order.refresh_from_db()
    ticket.refresh_from_db()
    assert (refund.amount, refund.quantity, refund.status) == (D("90.00"), 3, Refund.Status.SUCCEEDED)
    assert order.status == Order.Status.REFUNDED and order.refunded_quantity == 3
    assert balance_of(ledger.clearing("sandbox")) == 0
    assert codes_of(order, live=True) == []  # every code left the order
    req = ticket.refund_requests.get()
    assert (req.status, req.refund_id, req.decided_by_id) == (RequestStatus.REFUNDED, refund.pk, staff.pk)
    assert req.decided_at is not None
    assert CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.DISPUTE_WON).count() == 1
    audit = AuditEvent.objects.get(action="dispute.refund")
    assert (audit.outcome, audit.actor_id, audit.target) == ("allowed", staff.pk, ticket.number)
    assert "supplier confirmed bad batch" in audit.detail
    assert ticket.status == Ticket.Status.RESOLVED and ticket.first_responded_at is not None
    last = TicketMessage.objects.filter(ticket=ticket).last()
    assert last.from_staff and not last.internal and "supplier confirmed bad batch" in last.body
    assert "supplier confirmed bad batch" in ticket.history.last().note
    # The same decision again (double click): the same refund, nothing more.
    again = disputes.dispute_refund(ticket=ticket, staff=staff, reason="again", key="k1")
    assert again.pk == refund.pk and Refund.objects.count() == 1
    assert CreditEvent.objects.filter(kind=CreditEvent.Kind.DISPUTE_WON).count() == 1


@pytest.mark.django_db(transaction=True)
def test_refund_some_codes_unrevealed_back_to_stock_revealed_not(buyer, staff):
    order = delivered_order(buyer)
    a, b, c = codes_of(order, live=True)
    ticket = dispute(buyer, order, [a])  # a revealed; b never revealed
    cost_before = balance_of(ledger.COST_OF_SALES)

    refund = disputes.dispute_refund(
        ticket=ticket, staff=staff, reason="approve a and b", order_code_ids=[a.pk, b.pk], key="codes"
    )

    assert (refund.amount, refund.quantity) == (D("60.00"), 2)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED and order.refunded_quantity == 2
    assert [oc.pk for oc in codes_of(order, live=True)] == [c.pk]
    assert CardCode.objects.get(pk=a.code_id).status == CardCode.Status.SOLD  # seen: never sold again
    assert CardCode.objects.get(pk=b.code_id).status == CardCode.Status.AVAILABLE  # unseen: back on sale
    assert balance_of(ledger.COST_OF_SALES) == cost_before - COST  # only b's cost is taken back
    # Those codes cannot be refunded again.
    with pytest.raises(disputes.DisputeError):
        disputes.dispute_refund(ticket=ticket, staff=staff, reason="x", order_code_ids=[a.pk], key="other")


@pytest.mark.django_db(transaction=True)
def test_reason_required_and_permission(buyer, staff):
    order = delivered_order(buyer)
    ticket = dispute(buyer, order, codes_of(order, live=True)[:1])
    for call in (
        lambda: disputes.dispute_refund(ticket=ticket, staff=staff, reason="  ", key="k"),
        lambda: disputes.dispute_reject(ticket=ticket, staff=staff, reason=""),
        lambda: disputes.dispute_reissue(
            ticket=ticket, order_code=codes_of(order, live=True)[0], staff=staff, reason=""
        ),
        lambda: disputes.dispute_request_info(ticket=ticket, staff=staff, body=""),
    ):
        with pytest.raises(disputes.DisputeError):
            call()
    clerk = UserFactory(is_staff=True)  # staff, but without the ticket change permission
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        disputes.dispute_refund(ticket=ticket, staff=clerk, reason="r", key="k")
    assert Refund.objects.count() == 0 and not AuditEvent.objects.filter(action__startswith="dispute.").exists()


# --- Reject -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_reject_credit_event_buyer_told_request_rejected(buyer, staff, mailoutbox):
    order = delivered_order(buyer)
    ticket = dispute(buyer, order, codes_of(order, live=True)[:2])
    mailoutbox.clear()
    with translation.override("en"):
        disputes.dispute_reject(ticket=ticket, staff=staff, reason="The codes were used after the reveal")
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.RESOLVED
    req = ticket.refund_requests.get()
    assert (req.status, req.decided_by_id, req.refund_id) == (RequestStatus.REJECTED, staff.pk, None)
    assert CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.DISPUTE_LOST).count() == 1
    assert AuditEvent.objects.filter(action="dispute.reject", target=ticket.number, actor=staff).exists()
    message = TicketMessage.objects.filter(ticket=ticket, from_staff=True).last()
    assert "The codes were used after the reveal" in message.body and "arbitration" in message.body
    assert any(m.to == [buyer.email] for m in mailoutbox)
    assert Refund.objects.count() == 0
    with pytest.raises(disputes.DisputeError):  # decided already
        disputes.dispute_reject(ticket=ticket, staff=staff, reason="again")


@pytest.mark.django_db(transaction=True)
def test_request_info_waits_for_the_buyer(buyer, staff):
    order = delivered_order(buyer)
    ticket = dispute(buyer, order, codes_of(order, live=True)[:1])
    disputes.dispute_request_info(ticket=ticket, staff=staff, body="Please send a screenshot of the error.")
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.AWAITING_BUYER and ticket.first_responded_at is not None
    assert AuditEvent.objects.filter(action="dispute.request_info").count() == 1


# --- Reissue ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_reissue_delivers_exactly_one_new_code(buyer, staff, mailoutbox, client):
    order = delivered_order(buyer, spare=2)
    old = codes_of(order, live=True)[1]
    ticket = invalid_ticket(buyer, order, old)
    cost_before, payable_before = balance_of(ledger.COST_OF_SALES), payable_of(order)
    mailoutbox.clear()

    reissue = disputes.dispute_reissue(ticket=ticket, order_code=old, staff=staff, reason="supplier confirmed")

    old.refresh_from_db()
    assert old.released_at is not None
    bad = CardCode.objects.get(pk=old.code_id)
    assert bad.status == CardCode.Status.DEFECTIVE and bad.defective_at and "supplier confirmed" in bad.defect_note
    new = reissue.new_code
    assert (reissue.old_code_id, reissue.ticket_id, reissue.staff_id) == (old.pk, ticket.pk, staff.pk)
    assert CardCode.objects.get(pk=new.code_id).status == CardCode.Status.SOLD
    live = codes_of(order, live=True)
    assert len(live) == 3 and new in live and old not in live
    assert OrderCode.objects.filter(order=order).count() == 4
    assert catalog_selectors.stock_count(order.product_id) == 1
    # Ledger: the new code's cost is a cost of sales, the defective one's is owed back by the supplier.
    assert balance_of(ledger.COST_OF_SALES) == cost_before
    assert payable_of(order) == payable_before
    supplier = order.product.supplier
    payable = ledger.supplier_payable(supplier.pk, supplier.name)
    back = Line.objects.filter(account__code=payable.code, entry__kind="defective_return").get()
    assert back.amount == COST  # a debit: the supplier owes it
    assert CreditEvent.objects.filter(user=buyer, kind=CreditEvent.Kind.REISSUE).count() == 1
    assert AuditEvent.objects.filter(action="dispute.reissue", target=ticket.number).count() == 1
    ticket.refresh_from_db()
    assert ticket.first_responded_at is not None and ticket.status == Ticket.Status.AWAITING_BUYER
    assert any("replacement" in m.subject.lower() or order.number in m.body for m in mailoutbox)
    # The buyer's order page shows the new code (and not the defective one).
    client.force_login(buyer)
    page = client.get(order.get_absolute_url())
    assert page.status_code == 200
    html = page.content.decode()
    assert f'id="slot-{new.pk}"' in html and f'id="slot-{old.pk}"' not in html
    # A second reissue of the same code is refused.
    with pytest.raises(disputes.DisputeError):
        disputes.dispute_reissue(ticket=ticket, order_code=old, staff=staff, reason="again")
    assert Reissue.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_reissue_out_of_stock_changes_nothing(buyer, staff):
    order = delivered_order(buyer)  # no spare stock
    old = codes_of(order, live=True)[0]
    ticket = invalid_ticket(buyer, order, old)
    with translation.override("en"), pytest.raises(OutOfStock, match="out of stock") as refused:
        disputes.dispute_reissue(ticket=ticket, order_code=old, staff=staff, reason="supplier confirmed")
    assert refused.value.code == "out_of_stock"  # the catalog's refusal, not re-labelled
    old.refresh_from_db()
    assert old.released_at is None
    assert CardCode.objects.get(pk=old.code_id).status == CardCode.Status.SOLD
    assert Reissue.objects.count() == 0 and not CreditEvent.objects.filter(kind=CreditEvent.Kind.REISSUE).exists()
    assert not AuditEvent.objects.filter(action="dispute.reissue").exists()


@pytest.mark.django_db(transaction=True)
def test_reissue_refuses_a_code_of_another_order(buyer, staff):
    order = delivered_order(buyer, spare=1)
    other = delivered_order(buyer, spare=1)
    ticket = invalid_ticket(buyer, order, codes_of(order, live=True)[0])
    with pytest.raises(disputes.DisputeError):
        disputes.dispute_reissue(ticket=ticket, order_code=codes_of(other, live=True)[0], staff=staff, reason="r")


# --- Two staff at once -------------------------------------------------------------------------


def _race(n, fn):
    return values_and_errors(run_concurrently(n, fn))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_staff_refunding_at_once_make_one_refund(buyer, staff):
    order = delivered_order(buyer)
    ticket = dispute(buyer, order, codes_of(order, live=True)[:1])
    colleague = UserFactory(is_staff=True, is_superuser=True)
    # Both looked at the same page: the admin derives the same key from what it showed.
    key = "all:" + decision_state_key(ticket, [oc.pk for oc in codes_of(order, live=True)])
    people = [staff, colleague]
    results, errors = _race(
        2, lambda i: disputes.dispute_refund(ticket=ticket, staff=people[i], reason=f"by {i}", key=key)
    )
    assert not errors, errors
    assert len({r.pk for r in results}) == 1
    assert Refund.objects.count() == 1
    assert CreditEvent.objects.filter(kind=CreditEvent.Kind.DISPUTE_WON).count() == 1
    order.refresh_from_db()
    assert order.refunded_quantity == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_staff_refunding_with_different_keys_cannot_refund_twice(buyer, staff):
    order = delivered_order(buyer)
    ticket = dispute(buyer, order, codes_of(order, live=True)[:1])
    ids = [oc.pk for oc in codes_of(order, live=True)]
    results, errors = _race(
        2, lambda i: disputes.dispute_refund(ticket=ticket, staff=staff, reason="r", order_code_ids=ids, key=f"k{i}")
    )
    assert len(results) == 1 and len(errors) == 1 and isinstance(errors[0], disputes.DisputeError)
    assert Refund.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_staff_reissuing_at_once_make_one_reissue(buyer, staff):
    order = delivered_order(buyer, spare=3)
    old = codes_of(order, live=True)[0]
    ticket = invalid_ticket(buyer, order, old)
    results, errors = _race(
        2, lambda i: disputes.dispute_reissue(ticket=ticket, order_code=old, staff=staff, reason=f"click {i}")
    )
    assert len(results) == 1 and len(errors) == 1 and isinstance(errors[0], disputes.DisputeError), errors
    assert Reissue.objects.count() == 1
    assert len(codes_of(order, live=True)) == 3
    assert CardCode.objects.filter(product_id=order.product_id, status=CardCode.Status.SOLD).count() == 3
    assert catalog_selectors.stock_count(order.product_id) == 2


# --- Defect rates -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_batch_and_supplier_defect_rates(buyer, staff, client):
    order = delivered_order(buyer, quantity=4, spare=2)
    batch_id = CardCode.objects.get(pk=codes_of(order, live=True)[0].code_id).batch_id
    ticket = invalid_ticket(buyer, order, codes_of(order, live=True)[0])
    disputes.dispute_reissue(ticket=ticket, order_code=codes_of(order, live=True)[0], staff=staff, reason="bad")
    rates = {r.id: r for r in catalog_selectors.batch_defect_rates()}
    first = rates[batch_id]
    assert (first.delivered, first.defective, first.rate) == (4, 1, D("25.0"))
    spare = next(r for r in rates.values() if r.id != batch_id)
    assert (spare.delivered, spare.defective, spare.rate) == (1, 0, D("0.0"))  # the replacement came from it
    supplier = order.product.supplier
    (by_supplier,) = catalog_selectors.supplier_defect_rates([supplier.pk])
    assert (by_supplier.delivered, by_supplier.defective, by_supplier.rate) == (5, 1, D("20.0"))
    assert catalog_selectors.defect_rate(0, 0) is None

    client.force_login(staff)
    page = client.get(reverse("admin:catalog_stockbatch_changelist")).content.decode()
    assert 'data-defect-rate="25.0"' in page and "1 / 4 (25.0%)" in page
    page = client.get(reverse("admin:catalog_supplier_changelist")).content.decode()
    assert "1 / 5 (20.0%)" in page
    page = client.get(reverse("admin:catalog_cardcode_changelist") + "?defective=yes")
    assert page.status_code == 200 and page.context["cl"].result_count == 1


# --- Admin ----------------------------------------------------------------------------------------


def _change(ticket):
    return reverse("admin:aftersales_ticket_change", args=[ticket.pk])


def _action(ticket, verb):
    return reverse(f"admin:aftersales_ticket_dispute_{verb}", args=[ticket.pk])


@pytest.mark.django_db(transaction=True)
def test_admin_decision_panel_renders_and_refunds(buyer, staff, client):
    order = delivered_order(buyer, spare=1)
    a, b, c = codes_of(order, live=True)
    ticket = dispute(buyer, order, [a])
    client.force_login(staff)
    with translation.override("en"):
        page = client.get(_change(ticket))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-testid="decision-panel"' in html
    for oc in (a, b, c):
        assert f'name="codes" value="{oc.pk}"' in html
    assert page.context["decision_stock"] == 1
    key = page.context["decision_key"]
    # No reason: refused, nothing done.
    response = client.post(_action(ticket, "refund"), {"scope": "codes", "codes": [b.pk], "reason": "", "key": key})
    assert response.status_code == 302 and Refund.objects.count() == 0
    # Some codes.
    response = client.post(
        _action(ticket, "refund"), {"scope": "codes", "codes": [b.pk], "reason": "b unused", "key": key}, follow=True
    )
    assert Refund.objects.get().quantity == 1
    assert any("Refund" in str(m) or "退款" in str(m) for m in response.context["messages"])
    # The rest, twice (a double click): one more refund.
    for _i in range(2):
        client.post(_action(ticket, "refund"), {"scope": "all", "reason": "all of it", "key": "state-2"})
    assert Refund.objects.count() == 2 and sum(r.quantity for r in Refund.objects.all()) == 3


@pytest.mark.django_db(transaction=True)
def test_admin_reject_reissue_info_and_escalate(buyer, staff, client):
    order = delivered_order(buyer, spare=1)
    old = codes_of(order, live=True)[0]
    ticket = invalid_ticket(buyer, order, old)
    client.force_login(staff)
    assert 'data-testid="decision-panel"' in client.get(_change(ticket)).content.decode()

    client.post(_action(ticket, "info"), {"body": "Which error do you see?"})
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.AWAITING_BUYER

    client.post(_action(ticket, "reissue"), {"order_code": old.pk, "reason": ""})
    assert Reissue.objects.count() == 0  # a reason is required
    client.post(_action(ticket, "reissue"), {"order_code": old.pk, "reason": "supplier confirmed"})
    assert Reissue.objects.get().old_code_id == old.pk

    client.post(_action(ticket, "reject"), {"reason": "the rest is fine"})
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.RESOLVED
    assert CreditEvent.objects.filter(kind=CreditEvent.Kind.DISPUTE_LOST).count() == 1

    response = client.post(_action(ticket, "escalate"), {"reason": "buyer insists"}, follow=True)
    assert response.status_code == 200
    assert list(response.context["messages"])  # escalated, or a clear message why not

    # The disputes queue is one click from the ticket list.
    page = client.get(reverse("admin:aftersales_ticket_changelist"))
    assert "?is_dispute__exact=1" in page.content.decode()
    assert client.get(reverse("admin:aftersales_ticket_changelist") + "?is_dispute__exact=1").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_admin_actions_need_the_change_permission(buyer, client):
    order = delivered_order(buyer, spare=1)
    ticket = dispute(buyer, order, codes_of(order, live=True)[:1])
    clerk = UserFactory(is_staff=True)
    client.force_login(clerk)
    for verb, data in (
        ("refund", {"scope": "all", "reason": "r", "key": "k"}),
        ("reject", {"reason": "r"}),
        ("reissue", {"order_code": codes_of(order, live=True)[0].pk, "reason": "r"}),
        ("info", {"body": "b"}),
        ("escalate", {"reason": "r"}),
    ):
        assert client.post(_action(ticket, verb), data).status_code == 403
    assert Refund.objects.count() == 0 and Reissue.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("english")
def test_admin_decision_form_errors_are_shown_on_the_ticket(buyer, staff, client):
    """Each decision view goes through one path: the form's errors come back on the ticket's page,
    prefixed by its number, and nothing is decided; a service's refusal likewise."""
    order = delivered_order(buyer)  # no spare stock
    old = codes_of(order, live=True)[0]
    ticket = invalid_ticket(buyer, order, old)
    client.force_login(staff)
    unknown = client.post(_action(ticket, "reissue"), {"order_code": 987654, "reason": "r"}, follow=True)
    sold_out = client.post(_action(ticket, "reissue"), {"order_code": old.pk, "reason": "r"}, follow=True)
    assert unknown.redirect_chain[-1][0] == _change(ticket)
    assert [str(m) for m in unknown.context["messages"]] == [f"{ticket.number}: Choose the code to replace."]
    assert [str(m) for m in sold_out.context["messages"]] == [
        f"{ticket.number}: {order.product_name} is out of stock: no replacement code is available. Import stock first."
    ]
    assert Reissue.objects.count() == 0
