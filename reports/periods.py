"""A report's period: whole days in Beijing time (TIME_ZONE), the last day included, and the
instants that bound it ([start_at, end_at), end_at the midnight after the last day)."""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.errors import ServiceError


class PeriodError(ServiceError):
    code = "report_period_invalid"


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # the last day, included
    now: datetime  # when the figures are read (a ticket's first answer is known by then or not)

    @property
    def start_at(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.start, time.min))

    @property
    def end_at(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.end + timedelta(days=1), time.min))


def month_of(day: date) -> tuple[date, date]:
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following - timedelta(days=1)


def half_year_of(day: date) -> tuple[date, date]:
    """January–June or July–December."""
    if day.month <= 6:
        return date(day.year, 1, 1), date(day.year, 6, 30)
    return date(day.year, 7, 1), date(day.year, 12, 31)


def previous_month(today: date) -> tuple[date, date]:
    return month_of(today.replace(day=1) - timedelta(days=1))


def previous_half_year(today: date) -> tuple[date, date]:
    start, _end = half_year_of(today)
    return half_year_of(start - timedelta(days=1))


_MONTH = re.compile(r"(\d{4})-(\d{1,2})")
_HALF = re.compile(r"(\d{4})-[Hh]([12])")


def period_parse(text: str, *, half_year: bool) -> tuple[date, date]:
    """ "2026-11" (a month) or "2026-H2" (a half year)."""
    text = (text or "").strip()
    if half_year:
        match = _HALF.fullmatch(text)
        if match is None:
            raise PeriodError(_("Give the half year as YYYY-H1 or YYYY-H2, e.g. 2026-H2."))
        return half_year_of(date(int(match[1]), 1 if match[2] == "1" else 7, 1))
    match = _MONTH.fullmatch(text)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise PeriodError(_("Give the month as YYYY-MM, e.g. 2026-11."))
    return month_of(date(int(match[1]), int(match[2]), 1))
