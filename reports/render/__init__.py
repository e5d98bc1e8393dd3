"""Render a report's tables as PDF (``pdf``) and XLSX (``xlsx``). The renderers know only
``Document`` and ``reports.sections.Table``: any section registered is drawn the same way."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ..sections.table import Table, Unit


@dataclass(frozen=True)
class Document:
    title: str  # the report's kind, e.g. "Monthly compliance report"
    company: str  # the platform's company name (its business licence); "" when none recorded
    credit_code: str  # its unified social credit code
    period: str  # "2026-11-01 to 2026-11-30"
    generated_at: datetime
    generated_by: str  # "the schedule" or the staff's account
    tables: list[Table]


def cell_text(value: Any, unit: str) -> str:
    """A value as the PDF prints it: money with thousands separators and two places, a share as
    a percentage to one place, nothing to count as "—"."""
    if value is None:
        return "—"
    if value == "":
        return ""
    if unit == Unit.MONEY:
        return f"{Decimal(value):,.2f}"
    if unit == Unit.SHARE:
        return f"{Decimal(value) * 100:.1f}%"
    if unit == Unit.HOURS:
        return f"{Decimal(value):.1f}"
    if unit == Unit.COUNT and isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, date):
        return f"{value:%Y-%m-%d}"
    return str(value)
