"""Supplier connections: their secret (encrypted, write-only), their adapter, the balance and
errors staff see, and callbacks accepted once.

Fulfilment from upstream (placing supplier orders after payment) is a later part of issue 16
and is not wired yet: nothing here is called by orders or payments.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from compliance.models import AuditEvent
from compliance.services import audit_record
from marketplace import crypto
from marketplace.errors import Conflict, ServiceError

from .adapters import adapter_for
from .adapters.base import CallbackRejected, SupplierAdapter, SupplierBalance, SupplyError, VerifiedCallback
from .models import SupplierCallback, SupplierCallbackNonce, SupplierConnection

T = TypeVar("T")
MAX_SECRET_LENGTH = 500


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
