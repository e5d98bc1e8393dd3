"""Reads for a user's money pages: their payments and their wallet's movements."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.paginator import Page, Paginator
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import SimpleLazyObject, cached_property
from django.utils.translation import gettext as _

from catalog.models import Product
from ledger import services as ledger
from ledger.models import Line
from ledger.selectors import balance_of
from marketplace.prepared import Prepared
from orders.models import Order

from .gateways import enabled_gateways
from .models import BALANCE, Payment, Refund


def user_payments(user, limit: int | None = 200):
    qs = (
        Payment.objects.filter(Q(order__buyer=user) | Q(recharge__user=user))
        .select_related("order", "recharge")
        .order_by("-created_at")
    )
    return qs[:limit] if limit else qs


def user_refunds(user, limit: int | None = 200):
    qs = (
        Refund.objects.filter(Q(payment__order__buyer=user) | Q(payment__recharge__user=user))
        .select_related("payment", "order")
        .order_by("-created_at")
    )
    return qs[:limit] if limit else qs


@dataclass(frozen=True)
class Movement:
    at: datetime
    kind: str
    reference: str
    amount: Decimal  # + into the wallet, − out of it


def wallet_movements(user, limit: int | None = 200) -> list[Movement]:
    lines = (
        Line.objects.filter(account__code=ledger.wallet(user).code)
        .select_related("entry")
        .order_by("-entry__created_at")
    )
    if limit:
        lines = lines[:limit]
    # A wallet is owed to the user: a credit (negative line) puts money in.
    return [Movement(line.entry.created_at, line.entry.kind, line.entry.reference, -line.amount) for line in lines]


PAGE_SIZE = 20


def wallet_movements_page(user, number, per_page: int = PAGE_SIZE) -> Page:
    """One page of the wallet's movements (``Movement`` rows), newest first; a page past the
    end shows the last."""
    lines = (
        Line.objects.filter(account__code=ledger.wallet(user).code)
        .select_related("entry")
        .order_by("-entry__created_at", "-pk")
    )
    page = Paginator(lines, per_page).get_page(number)
    movements = [Movement(ln.entry.created_at, ln.entry.kind, ln.entry.reference, -ln.amount) for ln in page]
    page.object_list = movements  # type: ignore[assignment]  # the page shows movements, not ledger lines
    return page


def user_payments_page(user, number, per_page: int = PAGE_SIZE) -> Page:
    return Paginator(user_payments(user, limit=None).order_by("-created_at", "-pk"), per_page).get_page(number)


def one_business_day_before(now: datetime) -> datetime:
    """The same time one working day (Monday to Friday) earlier: Monday 10:00 → Friday 10:00."""
    day = timezone.localtime(now) - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def refunds_overdue(now: datetime | None = None):
    """Refunds still on their way to the buyer one business day after they were asked for."""
    cutoff = one_business_day_before(now or timezone.now())
    return Refund.objects.filter(status__in=[Refund.Status.REQUESTED, Refund.Status.PROCESSING], created_at__lte=cutoff)


# --- The payment channels a page may name ---------------------------------------------------


@dataclass(frozen=True)
class PayChannel:
    code: str
    name: str
    # The balance's: reads what the member has in the wallet, only when a page shows it (the
    # product page names the channels; the checkout's choice shows the amount).
    balance: Callable[[], Decimal] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def available(self) -> Decimal | None:
        """The balance's: what the member has in the wallet (read once, when first shown)."""
        return self.balance() if self.balance is not None else None


def pay_channels(user=None) -> list[PayChannel]:
    """The channels a buyer can pay with now: each gateway that is configured (live), in the
    order the cashier lists them, then the balance for a member (a guest has none)."""
    channels = [PayChannel(code, str(gateway.name)) for code, gateway in enabled_gateways().items()]
    if user is not None and user.is_authenticated:
        channels.append(PayChannel(BALANCE, _("Balance"), lambda: balance_of(ledger.wallet(user))))
    return channels


def pay_channels_context(request) -> dict:
    """Context processor: ``{{ PAY_CHANNELS }}``, the live channels, computed only by a page
    that names them. Pages of lower apps (the product page and the checkout in ``orders``)
    may not import ``payments``; they read this instead of a fixed sentence."""
    return {"PAY_CHANNELS": SimpleLazyObject(lambda: pay_channels(getattr(request, "user", None)))}


def paid_from_balance(user, number: str) -> bool:
    """Whether ``user``'s order ``number`` is already paid from the balance."""
    return Payment.objects.filter(
        order__number=number, order__buyer=user, gateway=BALANCE, status=Payment.Status.SUCCEEDED
    ).exists()


def order_status_and_topup(*, order_id: int) -> tuple[str, bool]:
    """An order's status and whether its product is a direct top-up (the cashier's message
    after paying): one statement, no order or product loaded."""
    found = _status_and_kind.first(order=order_id)
    if found is None:
        raise Order.DoesNotExist(f"order {order_id}")
    status, kind = found
    return status, kind == Product.Kind.DIRECT_TOPUP


# After every payment at the cashier: compiled once per process (``marketplace.prepared``).
_status_and_kind = Prepared(
    lambda order: Order.objects.filter(pk=order).values_list("status", "product__kind"), order=987654321
)
