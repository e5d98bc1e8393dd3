"""The contract every supplier adapter fulfils, in the style of payments.gateways.base.

Adapters talk to the supplier and verify what it says; they never touch the database (the
services in supply.services record balances, errors and seen callbacks). Money crosses as
Decimal yuan. Every call has a timeout (the connection's ``timeout_seconds``).

Errors tell the caller what it may do next:
- ``SupplyUnavailable``: the request never reached the supplier (connection refused, connect
  timeout). Nothing was placed; safe to try again.
- ``SupplyOutcomeUnknown``: the request may have been received (read timeout, a 5xx, a reply we
  cannot read or whose signature is wrong). An order may exist: query it (``order_query``) before
  any retry.
- ``SupplyRefused``: the supplier said no (insufficient balance, out of stock, a bad product).
  Nothing was placed.
- ``CallbackRejected``: a callback that proves nothing (forged, tampered, stale, replayed).
"""

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _

from marketplace.errors import ServiceError


class SupplyError(ServiceError):
    """A supplier call that did not give an answer we can act on (API: 502)."""

    code = "supply_error"
    status = 502

    @classmethod
    def default_message(cls) -> str:
        return _("The supplier's system could not carry out the request.")


class SupplyUnavailable(SupplyError):
    code = "supply_unavailable"


class SupplyOutcomeUnknown(SupplyError):
    code = "supply_outcome_unknown"


class SupplyRefused(SupplyError):
    code = "supply_refused"
    status = 409


class CallbackRejected(SupplyError):
    code = "supply_callback_rejected"
    status = 400


class OrderState(enum.StrEnum):
    PENDING = "pending"  # accepted, not finished (query again, or wait for the callback)
    DONE = "done"  # delivered: codes returned, or the top-up credited
    FAILED = "failed"  # will not be delivered: nothing owed


@dataclass(frozen=True)
class SupplierProduct:
    ref: str  # the supplier's product id
    name: str
    cost: Decimal  # what we pay per unit
    available: int | None  # units available now; None when the supplier does not say


@dataclass(frozen=True)
class SupplierCode:
    secret: str
    card_number: str = ""


@dataclass(frozen=True)
class SupplierOrder:
    """An order at the supplier, found by our own number. ``exists`` False: no such order."""

    our_number: str
    exists: bool = True
    state: OrderState = OrderState.PENDING
    supplier_order_no: str = ""
    codes: tuple[SupplierCode, ...] = ()
    cost: Decimal | None = None  # the total charged by the supplier
    message: str = ""


@dataclass(frozen=True)
class SupplierBalance:
    amount: Decimal
    currency: str = "CNY"


@dataclass(frozen=True)
class VerifiedCallback:
    """What a callback proves. ``nonce`` must be recorded (a replay reuses it); ``event_id``
    names the event, so the same event sent again is recognised as a duplicate."""

    event_id: str
    nonce: str
    order: SupplierOrder
    raw: Mapping[str, Any] = field(default_factory=dict)


class SupplierAdapter(ABC):
    kind: str = ""

    @abstractmethod
    def products(self) -> list[SupplierProduct]: ...

    @abstractmethod
    def order_place(
        self, *, our_number: str, product_ref: str, quantity: int, fields: Mapping[str, str] | None = None
    ) -> SupplierOrder:
        """Idempotent on ``our_number``: placing it again returns the same order, charged once."""

    @abstractmethod
    def order_query(self, *, our_number: str) -> SupplierOrder: ...

    @abstractmethod
    def callback_verify(self, *, headers: Mapping[str, str], body: bytes, path: str = "") -> VerifiedCallback:
        """Check the signature (and freshness) of a callback; raise ``CallbackRejected`` if it
        proves nothing. ``path`` is the path (and query) it was posted to, for adapters that sign it."""

    @abstractmethod
    def balance(self) -> SupplierBalance: ...
