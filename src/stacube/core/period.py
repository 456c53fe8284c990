"""Output periods: ISO 8601 durations ``P<n>D``, ``P<n>W``, ``P<n>M``, ``P<n>Y`` cutting a time
range into consecutive steps (per-period composites and cubes)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from stacube.errors import InvalidInput

PERIOD_PATTERN = re.compile(r"^P(\d+)([DWMY])$")


@dataclass(frozen=True)
class Period:
    """One output time step: ``[start, end]`` (UTC); ``label`` (``YYYYMMDD`` of the start, or
    ``START_END`` for a single period) names it in item ids and paths."""

    start: datetime
    end: datetime
    label: str

    def contains(self, when: datetime) -> bool:
        return self.start <= when <= self.end


def check_period(value: str | None) -> str | None:
    """Normalise a period (``p1m`` -> ``P1M``); None stays None.

    Raises:
        InvalidInput: not ``P<n>D|W|M|Y`` with n > 0.
    """
    if value is None:
        return None
    text = str(value).strip().upper()
    match = PERIOD_PATTERN.match(text)
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"period {value!r}: expected P<n>D, P<n>W, P<n>M or P<n>Y (e.g. P16D, P1M, P1Y)")
    return text


def _add_months(when: datetime, months: int) -> datetime:
    total = when.month - 1 + months
    year, month = when.year + total // 12, total % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def make_periods(period: str | None, start: datetime, end: datetime) -> list[Period]:
    """The periods covering ``[start, end]``: one (labelled ``START_END``) without ``period``,
    else consecutive steps of that length from ``start`` (months and years keep the day of the
    month; the last step ends at ``end``)."""
    if period is None:
        return [Period(start, end, start.strftime("%Y%m%d") + "_" + end.strftime("%Y%m%d"))]
    match = PERIOD_PATTERN.match(check_period(period))
    n, unit = int(match.group(1)), match.group(2)
    periods = []
    cursor = start
    while cursor <= end:
        if unit in "DW":
            nxt = cursor + timedelta(days=n * (7 if unit == "W" else 1))
        else:
            nxt = _add_months(cursor, n * (12 if unit == "Y" else 1))
        periods.append(Period(cursor, min(end, nxt - timedelta(microseconds=1)), cursor.strftime("%Y%m%d")))
        cursor = nxt
    return periods
