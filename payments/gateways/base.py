from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.http import HttpResponse


class NotificationRejected(Exception):
    """A notification that proves nothing; the message is the reason we log."""


@dataclass(frozen=True)
class VerifiedNotification:
    order_number: str
    trade_no: str
    amount: Decimal
    currency: str
    paid: bool  # False for notifications about other states (closed, refunding ...)
    state: str
    paid_at: datetime | None = None


class Gateway(ABC):
    code: str = ""
    name: str = ""

    @abstractmethod
    def verify(self, *, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        """Check the signature and the merchant, return what the notification says."""

    @abstractmethod
    def reply(self, *, ok: bool) -> HttpResponse:
        """The answer the gateway expects; anything else makes it resend."""
