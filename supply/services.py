"""Supplier connections: their secret (encrypted, write-only), their adapter, the balance and
errors staff see, and callbacks accepted once.

Upstream availability: the supplier's word on how many units it can sell, cached on
``UpstreamProduct`` for at most ``AVAILABILITY_MAX_AGE`` (a beat task refreshes it every 30 s, so
pages rarely wait on a supplier). Placing supplier orders after payment is orders' fulfilment
(``orders.services.upstream``), which calls the adapters through ``connection_call``.

What we owe or prepaid each supplier is one ledger account, ``ledger.supplier_payable``
(a liability: deliveries of goods bought from the supplier credit it; a prepayment, our bank
transfer topping up our balance at the supplier, debits it, so a negative figure is money the
supplier holds for us). Staff record prepayments here (``supplier_prepayment_record``) and
compare our book figure with the balance the supplier reports (``connection_balance_refresh``).
"""

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from catalog.models import Supplier
from compliance.models import AuditEvent
from compliance.services import audit_record
from ledger import selectors as ledger_selectors
from ledger import services as ledger
from ledger.models import Entry
from marketplace import crypto
from marketplace.errors import Conflict, Forbidden, ServiceError
from marketplace.money import quantize

from .adapters import adapter_for
from .adapters.base import CallbackRejected, SupplierAdapter, SupplierBalance, SupplyError, VerifiedCallback
from .models import SupplierCallback, SupplierCallbackNonce, SupplierConnection, SupplyMismatch, UpstreamProduct

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_SECRET_LENGTH = 500
# Displayed stock for upstream goods is never older than this; older, it is read again.
AVAILABILITY_MAX_AGE = timedelta(seconds=60)
# A page or a checkout waits at most this long for the supplier's product list.
AVAILABILITY_TIMEOUT_SECONDS = 3
# After a failed read, pages wait this long before asking that supplier again (beat still asks).
FAILED_PAUSE_SECONDS = 15
FAILED_KEY = "supply:availability-failed:"


def connection_secret(connection: SupplierConnection) -> str:
    """The decrypted secret, for the adapter only (never shown, never logged)."""
    if not connection.secret_encrypted:
        raise ServiceError(_("This connection has no secret yet."), code="supply_no_secret")
    return crypto.decrypt(connection.secret_encrypted)


def connection_secret_set(*, connection: SupplierConnection, secret: str, actor=None, request=None) -> None:
    """Store a new secret, encrypted with the key ring; the old one is gone. Audited (who and
    when, never the value)."""
    secret = secret.strip()
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        raise ServiceError(_("Enter the secret the supplier gave you (1 to 500 characters)."), code="supply_secret")
    replaced = bool(connection.secret_encrypted)
    connection.secret_encrypted = crypto.encrypt(secret)
    connection.secret_set_at = timezone.now()
    connection.save(update_fields=["secret_encrypted", "secret_set_at"])
    audit_record(
        action="supply.secret_replaced" if replaced else "supply.secret_set",
        outcome=AuditEvent.Outcome.ALLOWED,
        actor=actor,
        request=request,
        target=f"supplier_connection:{connection.pk}",
        detail=f"{connection.name} ({connection.kind}, app id {connection.app_id})",
    )


def connection_adapter(connection: SupplierConnection) -> SupplierAdapter:
    return adapter_for(connection, connection_secret(connection))


def connection_call(*, connection: SupplierConnection, call: Callable[[SupplierAdapter], T]) -> T:
    """Run one adapter call; a supplier error is recorded on the connection (staff see it) and
    raised on."""
    try:
        return call(connection_adapter(connection))
    except SupplyError as exc:
        connection.last_error, connection.last_error_at = str(exc)[:300], timezone.now()
        SupplierConnection.objects.filter(pk=connection.pk).update(
            last_error=connection.last_error, last_error_at=connection.last_error_at
        )
        raise


def connection_balance_refresh(*, connection_id: int) -> SupplierBalance:
    """Read our balance with the supplier and keep it (and when) on the connection."""
    connection = SupplierConnection.objects.get(pk=connection_id)
    result = connection_call(connection=connection, call=lambda adapter: adapter.balance())
    SupplierConnection.objects.filter(pk=connection_id).update(balance=result.amount, balance_at=timezone.now())
    return result


@dataclass(frozen=True)
class AcceptedCallback:
    callback: VerifiedCallback
    duplicate: bool  # the same event was accepted before: nothing new to do


def callback_accept(
    *, connection: SupplierConnection, headers: Mapping[str, str], body: bytes, path: str = ""
) -> AcceptedCallback:
    """Verify a supplier's callback and accept it once: a forged, tampered or stale one raises
    ``CallbackRejected``, a replay (a nonce seen before) too; the same event under a new nonce
    (the supplier sending again) is a duplicate, answered but changing nothing."""
    if connection.state != SupplierConnection.State.ENABLED:
        raise CallbackRejected(_("This supplier connection is disabled."))
    try:
        verified = connection_adapter(connection).callback_verify(headers=headers, body=body, path=path)
    except CallbackRejected as exc:
        audit_record(
            action="supply.callback",
            outcome=AuditEvent.Outcome.DENIED,
            target=f"supplier_connection:{connection.pk}",
            detail=f"{exc.code}: {exc}",
        )
        raise
    with transaction.atomic():
        try:
            with transaction.atomic():
                SupplierCallbackNonce.objects.create(connection=connection, nonce=verified.nonce)
        except IntegrityError:
            raise CallbackRejected(_("This callback was replayed (its nonce has been used).")) from None
        seen, created = SupplierCallback.objects.get_or_create(
            connection=connection,
            event_id=verified.event_id,
            defaults={
                "nonce": verified.nonce,
                "our_number": verified.order.our_number,
                "state": str(verified.order.state),
            },
        )
        if not created:
            SupplierCallback.objects.filter(pk=seen.pk).update(times_seen=F("times_seen") + 1)
    return AcceptedCallback(callback=verified, duplicate=not created)


def connection_state_set(*, connection: SupplierConnection, enabled: bool, actor=None, request=None) -> None:
    if enabled and not connection.secret_encrypted:
        raise Conflict(_("Set the connection's secret before enabling it."), code="supply_no_secret")
    connection.state = SupplierConnection.State.ENABLED if enabled else SupplierConnection.State.DISABLED
    connection.save(update_fields=["state"])
    audit_record(
        action="supply.enabled" if enabled else "supply.disabled",
        outcome=AuditEvent.Outcome.ALLOWED,
        actor=actor,
        request=request,
        target=f"supplier_connection:{connection.pk}",
        detail=connection.name,
    )


# --- Availability -------------------------------------------------------------------------


@dataclass(frozen=True)
class Availability:
    """What the supplier can sell of one of our products now. ``available`` None: unknown (no
    connection, the connection disabled or unreachable, the product not in its list): not
    purchasable, and ``reason`` says why (for staff and logs; buyers see "sold out")."""

    available: int | None
    read_at: object = None  # datetime of the supplier's answer
    reason: str = ""

    @property
    def known(self) -> bool:
        return self.available is not None


def upstream_products_refresh(*, connection_id: int, timeout: int | None = None) -> int:
    """Read the supplier's product list (one call) and store cost and availability on every
    ``UpstreamProduct`` of the connection. A product the supplier no longer lists is stored as 0
    available. Raises ``SupplyError`` (recorded on the connection) when the supplier cannot
    answer. Returns how many upstream products were updated."""
    connection = SupplierConnection.objects.get(pk=connection_id)
    if connection.state != SupplierConnection.State.ENABLED:
        raise SupplyError(_("This supplier connection is disabled."))
    if timeout is not None:  # this call only: not saved
        connection.timeout_seconds = max(1, min(connection.timeout_seconds, timeout))
    listed = {p.ref: p for p in connection_call(connection=connection, call=lambda adapter: adapter.products())}
    now = timezone.now()
    rows = list(UpstreamProduct.objects.filter(connection_id=connection_id))
    for row in rows:
        found = listed.get(row.supplier_ref)
        row.available_at = now
        if found is None:
            row.available = 0
        else:
            row.cost = found.cost
            # A supplier that does not say how many: sellable, one order at a time within the
            # product's limits (its refusal then fails the order and refunds it).
            row.available = max(0, found.available) if found.available is not None else 10**6
    UpstreamProduct.objects.bulk_update(rows, ["cost", "available", "available_at"])
    cache.delete(f"{FAILED_KEY}{connection_id}")
    return len(rows)


def upstream_availability(product_ids: Iterable[int], *, refresh: bool = True) -> dict[int, Availability]:
    """The supplier's availability of each upstream product among ``product_ids`` (products
    without an ``UpstreamProduct`` are left out), at most ``AVAILABILITY_MAX_AGE`` old: older
    figures are read again from the supplier (one call per connection, a short timeout) unless
    ``refresh`` is False. A failed read leaves the figure unknown, with the reason."""
    rows = list(UpstreamProduct.objects.filter(product_id__in=list(product_ids)).select_related("connection"))
    if not rows:
        return {}
    now = timezone.now()
    failures: dict[int, str] = {}
    stale = {
        r.connection_id
        for r in rows
        if r.connection.state == SupplierConnection.State.ENABLED
        and (r.available_at is None or now - r.available_at > AVAILABILITY_MAX_AGE)
    }
    if refresh and stale:
        for connection_id in stale:
            # A supplier that just failed is not asked again by every page view for a while.
            failed = cache.get(f"{FAILED_KEY}{connection_id}")
            if failed is not None:
                failures[connection_id] = failed
                continue
            try:
                upstream_products_refresh(connection_id=connection_id, timeout=AVAILABILITY_TIMEOUT_SECONDS)
            except SupplyError as exc:
                log.warning("availability of connection %s unknown: %s", connection_id, exc)
                failures[connection_id] = str(exc)[:200]
                cache.set(f"{FAILED_KEY}{connection_id}", failures[connection_id], FAILED_PAUSE_SECONDS)
        rows = list(UpstreamProduct.objects.filter(pk__in=[r.pk for r in rows]).select_related("connection"))
        now = timezone.now()
    out = {}
    for r in rows:
        if r.connection.state != SupplierConnection.State.ENABLED:
            out[r.product_id] = Availability(None, reason=_("The supplier connection is disabled."))
        elif r.connection_id in failures:
            out[r.product_id] = Availability(
                None, reason=_("The supplier could not be reached: %(e)s") % {"e": failures[r.connection_id]}
            )
        elif r.available_at is None or r.available is None or now - r.available_at > AVAILABILITY_MAX_AGE:
            out[r.product_id] = Availability(
                None, read_at=r.available_at, reason=_("The supplier's stock is not known.")
            )
        else:
            out[r.product_id] = Availability(r.available, read_at=r.available_at)
    return out


def upstream_connections_refresh() -> int:
    """Beat: every enabled connection with upstream products, its availability read again (so
    pages rarely find it older than a minute). Returns how many connections answered."""
    ids = (
        SupplierConnection.objects.filter(state=SupplierConnection.State.ENABLED, products__isnull=False)
        .values_list("pk", flat=True)
        .distinct()
    )
    answered = 0
    for connection_id in ids:
        try:
            upstream_products_refresh(connection_id=connection_id, timeout=AVAILABILITY_TIMEOUT_SECONDS)
            answered += 1
        except SupplyError as exc:
            log.warning("availability refresh of connection %s failed: %s", connection_id, exc)
    return answered


def upstream_available_take(*, product_id: int, quantity: int) -> bool:
    """An order placed for ``quantity`` units (in the caller's transaction): the cached figure
    goes down at once (the next read from the supplier corrects it), so a burst of orders is not
    all accepted against the same number. False when the figure does not cover ``quantity``."""
    return bool(
        UpstreamProduct.objects.filter(product_id=product_id, available__gte=quantity).update(
            available=F("available") - quantity
        )
    )


# --- what we owe or prepaid each supplier (the ledger) -----------------------------------------

PREPAYMENT_KIND = "supplier_prepayment"
# Recording money paid out takes both: managing the supplier's connections and posting to the journal.
PREPAYMENT_PERMISSIONS = ("supply.change_supplierconnection", "ledger.add_entry")
MAX_PREPAYMENT = Decimal("10000000.00")


def supplier_payable(supplier: Supplier) -> ledger.AccountSpec:
    return ledger.supplier_payable(supplier.pk, supplier.name)


def supplier_book_balances(suppliers) -> dict[int, Decimal]:
    """What our ledger says we owe each supplier (negative: prepaid, the supplier holds our
    money), by supplier id, in one query. Reads only."""
    specs = {s.pk: supplier_payable(s) for s in suppliers}
    found = ledger_selectors.balances_of(*specs.values()) if specs else {}
    return {pk: found[spec.code] for pk, spec in specs.items()}


def _prepayment_key(supplier_id: int, reference: str) -> str:
    return f"supply:prepayment:{supplier_id}:{reference}"


def supplier_prepayment_record(
    *, connection: SupplierConnection, amount, reference: str, memo: str = "", actor, request=None
) -> Entry:
    """We topped up our balance at the connection's supplier by bank transfer: the supplier
    payable is debited (less owed, or more prepaid) and the bank credited. ``reference`` is the
    bank transfer's reference and makes the record idempotent: the same reference and amount
    again returns the first entry; the same reference with another amount is refused.
    Needs ``PREPAYMENT_PERMISSIONS``; audited."""
    target = f"supplier_connection:{connection.pk}"
    if actor is None or not actor.has_perms(PREPAYMENT_PERMISSIONS):
        audit_record(
            action="supply.prepayment",
            outcome=AuditEvent.Outcome.DENIED,
            actor=actor,
            request=request,
            target=target,
            detail="no permission",
        )
        raise Forbidden(_("You may not record payments to suppliers."))
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value != quantize(value) or not Decimal("0") < value <= MAX_PREPAYMENT:
        raise ServiceError(
            _("Enter the amount transferred, in yuan with at most two decimals (above 0)."), code="supply_amount"
        )
    value = quantize(value)
    reference = (reference or "").strip()
    if not reference or len(reference) > 60:
        raise ServiceError(_("Enter the bank transfer's reference (1 to 60 characters)."), code="supply_reference")
    memo = (memo or "").strip()[:200]
    supplier = connection.supplier
    key = _prepayment_key(supplier.pk, reference)
    with transaction.atomic():
        earlier = Entry.objects.filter(idempotency_key=key).first()
        if earlier is None:
            try:
                with transaction.atomic():
                    entry = ledger.transfer(
                        debit=supplier_payable(supplier),
                        credit=ledger.BANK,
                        amount=value,
                        kind=PREPAYMENT_KIND,
                        reference=reference,
                        memo=memo or f"prepayment to {supplier.name}",
                        idempotency_key=key,
                    )
            except IntegrityError:  # recorded at the same moment by someone else
                earlier = Entry.objects.get(idempotency_key=key)
        if earlier is not None:
            recorded = earlier.lines.filter(amount__gt=0).values_list("amount", flat=True).first()
            if recorded != value:
                raise Conflict(
                    _("Reference %(ref)s was already recorded for this supplier with %(amount)s.")
                    % {"ref": reference, "amount": recorded},
                    code="supply_prepayment_reference",
                )
            return earlier
        audit_record(
            action="supply.prepayment",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=actor,
            request=request,
            target=target,
            detail=f"{supplier.name}: {value} by bank transfer {reference}",
        )
    return entry


def connection_test(*, connection_id: int) -> SupplierBalance:
    """Staff's "test connection": one signed call (the balance), which also refreshes the
    balance shown and, on failure, the last error."""
    return connection_balance_refresh(connection_id=connection_id)


def connection_balances_refresh() -> dict[int, str]:
    """Beat: every enabled connection's balance read again; one supplier down does not stop the
    others (its error is recorded on its connection). Returns what happened, by connection id."""
    outcome: dict[int, str] = {}
    enabled = SupplierConnection.objects.filter(state=SupplierConnection.State.ENABLED).exclude(secret_encrypted="")
    for pk in enabled.order_by("pk").values_list("pk", flat=True):
        try:
            outcome[pk] = str(connection_balance_refresh(connection_id=pk).amount)
        except ServiceError as exc:
            outcome[pk] = f"error: {exc}"
    return outcome


# --- the daily reconciliation's findings (the run itself reads our orders: orders.services) ---


def mismatch_resolve(*, mismatch_ids, user, note: str) -> int:
    """Staff say what was done about these supplier mismatches; those already resolved stay as they were."""
    note = (note or "").strip()
    if not note:
        raise ServiceError(_("Say what was done: a note is required."), code="supply_note")
    return SupplyMismatch.objects.filter(pk__in=list(mismatch_ids), resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=user, resolution_note=note[:300]
    )
