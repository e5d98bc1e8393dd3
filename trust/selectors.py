"""Reads for the public trust centre: the stored figures as the page shows them, the live payment
channels and who receives the money, the suppliers' authorisations and the certificate lookup."""

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from aftersales.models import ArbitrationCase
from catalog.models import Product, Supplier
from compliance.models import Qualification
from compliance.selectors import ShownQualification, qualifications_shown
from payments.models import CHANNEL_NAMES
from payments.selectors import PayChannel, pay_channels

from .models import TrustFigure
from .services import FUNDS_PERIOD, PERIODS


def duration_text(seconds: Decimal | int | float) -> str:
    """A duration as people say it: "under 1 min", "45 min", "3 h 20 min", "2 d 5 h"."""
    if float(seconds) < 60:
        return _("under 1 min")
    total = round(float(seconds) / 60)  # minutes
    if total < 60:
        return _("%(m)d min") % {"m": total}
    hours, minutes = divmod(total, 60)
    if hours < 48:
        return _("%(h)d h %(m)d min") % {"h": hours, "m": minutes} if minutes else _("%(h)d h") % {"h": hours}
    days, hours = divmod(hours, 24)
    return _("%(d)d d %(h)d h") % {"d": days, "h": hours} if hours else _("%(d)d d") % {"d": days}


def percent_text(share: Decimal) -> str:
    """0.875 → "87.5%", 1 → "100%"."""
    shown = (share * 100).quantize(Decimal("0.1"))
    return f"{shown.normalize():f}%" if shown != shown.to_integral() else f"{int(shown)}%"


@dataclass(frozen=True)
class FigureRow:
    key: str
    label: str
    shown: str  # the value as words, or the sentence saying there was nothing to count
    note: str  # what it is over ("over 12 tickets")
    empty: bool


@dataclass(frozen=True)
class ArbitrationRow:
    total: int
    outcomes: list[tuple[str, str, int]]  # (outcome code, label, count), only those that occurred


@dataclass
class PeriodFigures:
    days: int
    rows: list[FigureRow] = field(default_factory=list)
    arbitration: ArbitrationRow | None = None


@dataclass(frozen=True)
class FundsStatement:
    owed: list[tuple[str, Decimal]]  # (label, amount): what customers are owed
    owed_total: Decimal
    held: list[tuple[str, Decimal]]  # (channel name, amount) the payment channels hold for us
    held_total: Decimal

    @property
    def covered(self) -> bool:
        return self.held_total >= self.owed_total


@dataclass(frozen=True)
class TrustFigures:
    computed_at: datetime | None  # None: never computed yet
    periods: list[PeriodFigures]
    funds: FundsStatement | None


# Each period figure: (key, label, how a value is shown, what its records are, the sentence when there are none)
_PERIOD_FIGURES = [
    (
        "tickets_on_time",
        gettext_lazy("Tickets answered within the promised time"),
        "share",
        ("over %(n)d ticket", "over %(n)d tickets"),
        gettext_lazy("No tickets in this period."),
    ),
    (
        "first_response_median",
        gettext_lazy("Median time to the first answer"),
        "duration",
        ("over %(n)d answered ticket", "over %(n)d answered tickets"),
        gettext_lazy("No ticket answered in this period."),
    ),
    (
        "refund_median",
        gettext_lazy("Median time from refund approval to money back"),
        "duration",
        ("over %(n)d refund", "over %(n)d refunds"),
        gettext_lazy("No refund completed in this period."),
    ),
    (
        "refunds_in_business_day",
        gettext_lazy("Refunds back within one business day"),
        "share",
        ("over %(n)d refund", "over %(n)d refunds"),
        gettext_lazy("No refunds in this period."),
    ),
    (
        "requests_automatic",
        gettext_lazy("Refund requests approved automatically (no-reason refund)"),
        "share",
        ("over %(n)d request", "over %(n)d requests"),
        gettext_lazy("No refund requests in this period."),
    ),
]
_FUNDS_OWED_LABELS = {
    "funds_owed_wallets": gettext_lazy("Customers' balances"),
    "funds_owed_orders_held": gettext_lazy("Paid orders not yet delivered"),
    "funds_owed_refunds_due": gettext_lazy("Refunds approved, on their way back"),
}


def _note(plural: tuple[str, str], n: int) -> str:
    return ngettext(plural[0], plural[1], n) % {"n": n}


def trust_figures() -> TrustFigures:
    """The stored snapshot as the page shows it; an empty one when never computed."""
    rows = list(TrustFigure.objects.all())
    if not rows:
        return TrustFigures(computed_at=None, periods=[], funds=None)
    by_key = {(row.key, row.period_days): row for row in rows}
    periods = []
    for days in PERIODS:
        period = PeriodFigures(days=days)
        for key, label, unit, plural, empty_text in _PERIOD_FIGURES:
            row = by_key.get((key, days))
            if row is None or row.value is None:
                period.rows.append(FigureRow(key, str(label), str(empty_text), "", True))
                continue
            shown = percent_text(row.value) if unit == "share" else duration_text(row.value)
            period.rows.append(FigureRow(key, str(label), shown, _note(plural, row.sample or 0), False))
        total = by_key.get(("arbitration_cases", days))
        if total is not None:
            outcomes = [
                (code, str(label), by_key[(f"arbitration_{code}", days)].sample or 0)
                for code, label in ArbitrationCase.Outcome.choices
                if (f"arbitration_{code}", days) in by_key and by_key[(f"arbitration_{code}", days)].sample
            ]
            period.arbitration = ArbitrationRow(total=total.sample or 0, outcomes=outcomes)
        periods.append(period)
    funds = None
    if ("funds_owed", FUNDS_PERIOD) in by_key:
        owed = [
            (str(label), by_key[(key, FUNDS_PERIOD)].value or Decimal(0))
            for key, label in _FUNDS_OWED_LABELS.items()
            if (key, FUNDS_PERIOD) in by_key
        ]
        held = [
            (str(CHANNEL_NAMES.get(key.removeprefix("funds_held_"), key.removeprefix("funds_held_"))), row.value or 0)
            for (key, days), row in sorted(by_key.items())
            if days == FUNDS_PERIOD and key.startswith("funds_held_")
        ]
        funds = FundsStatement(
            owed=owed,
            owed_total=by_key[("funds_owed", FUNDS_PERIOD)].value or Decimal(0),
            held=[(name, Decimal(amount)) for name, amount in held],
            held_total=by_key[("funds_held", FUNDS_PERIOD)].value or Decimal(0),
        )
    return TrustFigures(computed_at=min(row.computed_at for row in rows), periods=periods, funds=funds)


# --- who receives the money, the channels, the qualifications ---------------------------------


def live_channels() -> list[PayChannel]:
    """The payment channels a buyer can pay with now (the balance is not a channel money comes in by)."""
    return pay_channels()


def payee() -> ShownQualification | None:
    """The company that receives the money: the one named on the shown business licence."""
    return next(
        (q for q in qualifications_shown() if q.kind == Qualification.Kind.BUSINESS_LICENCE and q.company_name), None
    )


# --- suppliers and their authorisations -------------------------------------------------------


@dataclass(frozen=True)
class SupplierShown:
    name: str
    is_authorised: bool
    cert_no: str
    lookup_url: str
    authorised_until: date | None
    products_on_sale: int

    @property
    def is_expired(self) -> bool:
        return self.authorised_until is not None and self.authorised_until < timezone.localdate()


def suppliers_shown() -> list[SupplierShown]:
    """The suppliers of the goods on sale, each with its authorisation as recorded (none recorded
    says so): read live, they are records, not figures."""
    rows = (
        Supplier.objects.annotate(on_sale=Count("products", filter=Q(products__is_active=True)))
        .filter(on_sale__gt=0)
        .order_by("-is_authorised", "name")
    )
    return [
        SupplierShown(
            name=s.name,
            is_authorised=s.is_authorised and bool(s.authorisation_cert_no),
            cert_no=s.authorisation_cert_no if s.is_authorised else "",
            lookup_url=s.authorisation_lookup_url if s.is_authorised else "",
            authorised_until=s.authorised_until if s.is_authorised else None,
            products_on_sale=s.on_sale,
        )
        for s in rows
    ]


@dataclass(frozen=True)
class CertificateAnswer:
    number: str
    supplier: str
    products: list[str]  # the products on sale it covers
    authorised_until: date | None  # None: without end date recorded
    lookup_url: str

    @property
    def is_expired(self) -> bool:
        return self.authorised_until is not None and self.authorised_until < timezone.localdate()


CERTIFICATE_MAX_LENGTH = 100  # catalog.Supplier.authorisation_cert_no's


def certificate_normalise(number: str) -> str:
    """What a buyer typed, as certificates are compared: no spaces around, case ignored later."""
    return " ".join((number or "").split())[:CERTIFICATE_MAX_LENGTH]


def certificate_find(*, number: str) -> CertificateAnswer | None:
    """Which supplier holds authorisation certificate ``number`` (case and surrounding spaces
    ignored), which products on sale it covers, and until when; None if no supplier holds it."""
    number = certificate_normalise(number)
    if not number:
        return None
    supplier = Supplier.objects.filter(is_authorised=True, authorisation_cert_no__iexact=number).first()
    if supplier is None:
        return None
    products = list(
        Product.objects.filter(supplier=supplier, is_active=True)
        .order_by("sort_order", "id")
        .values_list("name", flat=True)
    )
    return CertificateAnswer(
        number=supplier.authorisation_cert_no,
        supplier=supplier.name,
        products=products,
        authorised_until=supplier.authorised_until,
        lookup_url=supplier.authorisation_lookup_url,
    )
