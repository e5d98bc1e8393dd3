"""The monthly compliance report's rights sections: the rights holders' notices received in the
period and what became of them (电子商务法 第四十二条 notice and takedown, 第四十三条
counter-notice and restoring after 15 days, 第四十四条 publication), the notices themselves, and
the suppliers' authorisation reviews decided in the period.

The rows carry the notice's reference, product and dates, never the rights holder's name, email
or evidence (the same minimisation as the public register, ``rights.selectors``)."""

from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from rights.models import AuthorisationReview, AuthorisationReviewStatusChange
from rights.selectors import takedowns_in_period

from ..periods import Period
from .table import Column, Table, Unit


def _day(value):
    return timezone.localdate(value) if value is not None else None


def takedowns(period: Period) -> Table:
    """Notices received in the period: how many, how many took their product down, drew a
    counter-notice, and how they stand now (restored, kept down, withdrawn, still down)."""
    found = takedowns_in_period(period.start_at, period.end_at)
    taken_down = sum(1 for n in found.rows if n.taken_down_at is not None)
    countered = sum(1 for n in found.rows if n.counter_received_at is not None)
    figures = [
        ("received", _("Notices received"), found.received),
        ("taken_down", _("Products taken down on receipt"), taken_down),
        ("counter_notices", _("Counter-notices received from the supplier"), countered),
        ("restored", _("Products restored after the 15 days (no complaint or lawsuit reported)"), found.restored),
        ("upheld", _("Kept down: complaint or lawsuit reported"), found.upheld),
        ("withdrawn", _("Withdrawn by the rights holder"), found.withdrawn),
        ("still_down", _("Still down, awaiting the outcome"), found.still_down),
    ]
    return Table(
        title=_("Rights notices and takedowns"),
        columns=[Column(_("Figure"), width=60), Column(_("Notices"), Unit.COUNT)],
        rows=[[label, n] for _key, label, n in figures],
        note=_(
            "Notices received in the period (E-Commerce Law articles 42 to 44), by how they stood when the "
            "report was generated. Every notice takes its product off sale on receipt."
        ),
        summary={key: str(n) for key, _label, n in figures},
    )


def takedown_notices(period: Period) -> Table:
    """One row per notice received in the period: reference, product, status and its dates."""
    found = takedowns_in_period(period.start_at, period.end_at)
    rows = [
        [
            n.number,
            n.product.name,
            n.product.supplier.name,
            str(n.get_status_display()),
            _day(n.received_at),
            _day(n.taken_down_at),
            _day(n.counter_received_at),
            _day(n.restored_at or n.complaint_reported_at or n.withdrawn_at),
        ]
        for n in found.rows
    ]
    return Table(
        title=_("Rights notices of the period"),
        columns=[
            # Widths as millimetres of the A4 page: a reference and a date fit on one line.
            Column(_("Reference"), width=32),
            Column(_("Product"), width=22),
            Column(_("Supplier"), width=18),
            Column(_("Status"), width=24),
            Column(_("Received"), Unit.DATE, 18),
            Column(_("Taken down"), Unit.DATE, 18),
            Column(_("Counter-notice"), Unit.DATE, 24),
            Column(_("Closed"), Unit.DATE, 18),
        ],
        rows=rows,
        note=_("Closed: the day the product was restored, the complaint reported or the notice withdrawn."),
        summary={"notices": str(len(rows))},
    )


DECIDED = (
    AuthorisationReview.Status.APPROVED,
    AuthorisationReview.Status.REJECTED,
    AuthorisationReview.Status.EXPIRED,
    AuthorisationReview.Status.REVOKED,
)


def authorisation_reviews(period: Period) -> Table:
    """Authorisation reviews that reached a decision in the period (their status history): approved,
    rejected, expired, revoked."""
    found = dict(
        AuthorisationReviewStatusChange.objects.filter(
            at__gte=period.start_at, at__lt=period.end_at, to_status__in=DECIDED
        )
        .values("to_status")
        .annotate(n=Count("review", distinct=True))
        .values_list("to_status", "n")
    )
    labels = dict(AuthorisationReview.Status.choices)
    rows = [[str(labels[status]), found.get(status, 0)] for status in DECIDED]
    total = sum(row[1] for row in rows)
    summary = {str(status): str(found.get(status, 0)) for status in DECIDED}
    summary["decided"] = str(total)
    return Table(
        title=_("Authorisation reviews decided"),
        columns=[Column(_("Decision"), width=40), Column(_("Reviews"), Unit.COUNT)],
        rows=rows,
        totals=[_("Total"), total],
        note=_(
            "Suppliers' authorisations to sell (the brand or rights holder's licence) approved or rejected by "
            "staff in the period, and approved ones that expired or were revoked in it."
        ),
        summary=summary,
    )
