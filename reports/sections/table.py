"""What a report section returns: one small table. The renderers (``reports.render``) know only
this shape, so a new section needs no change to them."""

from dataclasses import dataclass, field
from typing import Any


class Unit:
    TEXT = "text"
    COUNT = "count"
    MONEY = "money"  # yuan, Decimal with two places
    SHARE = "share"  # a fraction (0.875 is 87.5%); None: nothing to count
    HOURS = "hours"  # Decimal hours, one place
    DATE = "date"


@dataclass(frozen=True)
class Column:
    label: str
    unit: str = Unit.TEXT
    width: int = 12  # relative width (characters in the spreadsheet)


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[list[Any]]
    totals: list[Any] | None = None  # a last row in bold, same columns
    note: str = ""  # what the figures count, said once under the table
    # The section's totals as text for Report.summary ({figure: value}); tests read them too.
    summary: dict[str, str] = field(default_factory=dict)
