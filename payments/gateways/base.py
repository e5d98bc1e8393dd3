"""The contract every gateway adapter fulfils. Money crosses it as Decimal yuan (CNY); each
adapter converts to its gateway's unit (Alipay: yuan string, WeChat Pay: integer fen) itself.

Adapters talk to the gateway and verify what it says; they never touch the database. The
pipeline in payments.services decides what a verified fact changes.
"""

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.http import HttpResponse

from marketplace.errors import ServiceError

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class NotificationRejected(Exception):
    """A notification that proves nothing; the message is the reason we log."""


class GatewayError(ServiceError):
    """The gateway could not be reached, or answered with an error (message says which).
    Shown to the buyer or staff as it is; the API answers it 502."""

    code = "gateway_error"
    status = 502


@dataclass(frozen=True)
class VerifiedNotification:
    order_number: str
    trade_no: str
    amount: Decimal
    currency: str
    paid: bool  # False for notifications about other states (closed, refunding ...)
    state: str
    paid_at: datetime | None = None
    # Refund notifications (WeChat Pay sends them separately): the refund's own numbers.
    refund_no: str = ""
    refund_amount: Decimal | None = None


class Device(enum.Enum):
    DESKTOP = "desktop"  # a computer's browser: cashier page, or a QR code to scan
    MOBILE = "mobile"  # a phone's browser: the gateway's mobile web cashier (Alipay wap, WeChat H5)
    QR = "qr"  # the buyer scans a code shown on our page with the gateway's app


@dataclass(frozen=True)
class PaymentStart:
    """How the buyer pays: go to ``redirect_url``, or scan ``qr_text`` shown on our page."""

    redirect_url: str = ""
    qr_text: str = ""


@dataclass(frozen=True)
class TradeStatus:
    """An active query's answer. ``exists`` is False when the gateway has no such trade."""

    exists: bool
    paid: bool = False
    closed: bool = False
    trade_no: str = ""
    amount: Decimal | None = None
    state: str = ""
    paid_at: datetime | None = None


@dataclass(frozen=True)
class RefundResult:
    """``done`` when the money is back with the buyer; otherwise still processing (query later)."""

    refund_no: str
    done: bool
    amount: Decimal
    gateway_refund_id: str = ""
    state: str = ""


@dataclass(frozen=True)
class BillLine:
    """One line of a gateway's daily bill, as the reconciliation compares it with ours."""

    kind: str  # "payment" or "refund"
    order_number: str
    trade_no: str
    amount: Decimal  # positive, yuan
    refund_no: str = ""
    at: datetime | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


class Gateway(ABC):
    code: str = ""
    name: "StrOrPromise" = ""  # a lazily translated label

    @classmethod
    def is_enabled(cls) -> bool:
        """A channel without credentials is hidden everywhere."""
        return False

    @abstractmethod
    def verify(self, *, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        """Check the signature and the merchant, return what the notification says."""

    @abstractmethod
    def reply(self, *, ok: bool) -> HttpResponse:
        """The answer the gateway expects; anything else makes it resend."""


class RemoteGateway(Gateway):
    """A real gateway: beyond notifications, we ask it to start, query, close and refund."""

    @abstractmethod
    def start_payment(
        self,
        *,
        order_number: str,
        amount: Decimal,
        subject: str,
        device: Device,
        client_ip: str,
        notify_url: str,
        return_url: str,
        expires_at: datetime,
    ) -> PaymentStart: ...

    @abstractmethod
    def query(self, *, order_number: str) -> TradeStatus: ...

    @abstractmethod
    def close(self, *, order_number: str) -> None:
        """Close an unpaid trade so it cannot be paid late; closing an unknown trade is fine."""

    @abstractmethod
    def refund(
        self, *, order_number: str, refund_no: str, amount: Decimal, total: Decimal, reason: str, notify_url: str
    ) -> RefundResult:
        """Idempotent on ``refund_no``: asking twice refunds once."""

    @abstractmethod
    def refund_query(self, *, order_number: str, refund_no: str) -> RefundResult: ...

    @abstractmethod
    def bill(self, *, day: date) -> list[BillLine]:
        """Download and parse the day's trade bill (payments and refunds)."""
