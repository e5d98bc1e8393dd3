"""The sections of each kind of report: a registry, name → function(period) → ``Table``.

The renderers (``reports.render``) draw whatever tables the registry lists, in its order. To add
a section, write a function of the period
returning a ``Table`` in its own module and add one line to the kind's dict below; nothing else
changes."""

from collections.abc import Callable

from ..models import Report
from ..periods import Period
from . import monthly, operators, realname, takedowns
from .table import Column, Table, Unit

Section = Callable[[Period], Table]

MONTHLY_COMPLIANCE: dict[str, Section] = {
    "orders": monthly.orders,
    "payment_methods": monthly.payment_methods,
    "refunds": monthly.refunds,
    "ledger": monthly.ledger_reconciliation,
    "complaints": monthly.complaints,
    "arbitration": monthly.arbitration,
    "qualifications": monthly.qualifications,
    "risk": monthly.risk,
    "realname": realname.realname_checks,
    "minors": realname.minors_refused,
    "takedowns": takedowns.takedowns,
    "takedown_notices": takedowns.takedown_notices,
    "authorisation_reviews": takedowns.authorisation_reviews,
}

OPERATORS_HALFYEAR: dict[str, Section] = {
    "operators": operators.operators,
}

SECTIONS: dict[str, dict[str, Section]] = {
    Report.Kind.MONTHLY_COMPLIANCE: MONTHLY_COMPLIANCE,
    Report.Kind.OPERATORS_HALFYEAR: OPERATORS_HALFYEAR,
}

__all__ = ["SECTIONS", "Column", "Section", "Table", "Unit"]
