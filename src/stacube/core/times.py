"""Time: request intervals, item datetimes, RFC 3339 text and numpy ``datetime64``.

* Request intervals (``--datetime``, ``datetime=``, ``time=``): ``START/END`` in ISO 8601, either
  end open (``..``); a year, a month or a date as an end covers that whole year, month or day;
  one instant or date alone is the interval of itself.
* Item datetimes (STAC): ``properties.datetime``, else ``start_datetime``: RFC 3339 with a time
  zone; an item's time is that instant in UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from stacube.errors import InvalidInput

_MONTH = re.compile(r"\d{4}-\d{2}")


def parse_instant(text: str, *, end: bool = False) -> datetime | None:
    """One end of an interval as an aware UTC datetime (None for ``..`` or empty).

    A year (``2018``), month (``2018-03``) or date (``2018-03-05``) is its first instant, or, as
    an ``end``, its last one.

    Raises:
        InvalidInput: not ISO 8601.
    """
    text = text.strip()
    if text in ("", ".."):
        return None
    try:
        if len(text) == 4 and text.isdigit():
            year = int(text)
            return (datetime(year + 1, 1, 1, tzinfo=timezone.utc) - timedelta(microseconds=1) if end
                    else datetime(year, 1, 1, tzinfo=timezone.utc))
        if _MONTH.fullmatch(text):
            y, m = map(int, text.split("-"))
            first = datetime(y, m, 1, tzinfo=timezone.utc)
            if end:
                return datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc) - timedelta(microseconds=1)
            return first
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"datetime {text!r} is not ISO 8601 (e.g. 2018-01-01 or 2018-01-01T00:00:00Z)") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    if end and len(text) == 10:  # a date as the end of a range covers that whole day
        value = value.replace(hour=23, minute=59, second=59, microsecond=999999)
    return value.astimezone(timezone.utc)


def parse_datetime_range(value: str) -> tuple[datetime | None, datetime | None]:
    """``START/END`` (either may be ``..``), or one instant/date, -> ``(start, end)`` in UTC.

    Raises:
        InvalidInput: malformed, empty, both ends open, or END before START.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("datetime is empty; expected START/END, e.g. 2018-01-01/2018-12-31")
    if value.count("/") > 1:
        raise InvalidInput(f"datetime {value!r}: expected START/END")
    if "/" in value:
        a, b = value.split("/")
        start, end = parse_instant(a), parse_instant(b, end=True)
        if start is None and end is None:
            raise InvalidInput(f"datetime {value!r}: both ends are open")
    else:
        start, end = parse_instant(value), parse_instant(value, end=True)
    if start and end and end < start:
        raise InvalidInput(f"datetime {value!r}: END is before START")
    return start, end


def parse_time(time: Any) -> tuple[datetime | None, datetime | None]:
    """``None``, ``"2020-01/2020-03"``, ``"2020-01-05"`` or a ``(start, end)`` pair (strings,
    datetimes, numpy or pandas datetimes; either may be None) -> UTC ``(start, end)``.

    Raises:
        InvalidInput: not understood, or end before start.
    """
    if time is None:
        return None, None
    if isinstance(time, str):
        return parse_datetime_range(time)
    if not isinstance(time, (tuple, list)) or len(time) != 2:
        raise InvalidInput("time must be a string or a (start, end) pair")
    ends = []
    for value, is_end in zip(time, (False, True)):
        if value is None or value == "..":
            ends.append(None)
        elif isinstance(value, str):
            ends.append(parse_instant(value, end=is_end))
        else:
            import pandas as pd  # only for numpy/pandas/datetime values

            ends.append(parse_instant(pd.Timestamp(value).isoformat(), end=is_end))
    start, end = ends
    if start and end and end < start:
        raise InvalidInput(f"time {list(time)}: end is before start")
    return start, end


def format_interval(start: datetime | None, end: datetime | None) -> str:
    """``(start, end)`` -> an RFC 3339 STAC ``datetime`` interval (``..`` for open ends)."""
    return f"{'..' if start is None else iso(start)}/{'..' if end is None else iso(end)}"


def iso(when: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``."""
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_rfc3339(value: Any) -> datetime:
    """An RFC 3339 timestamp (with a time zone) as an aware datetime.

    Raises:
        ValueError: not a string, not RFC 3339, or without a time zone (the message says which).
    """
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not RFC 3339") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed


def item_time_text(item: dict) -> str:
    """The item's ``datetime`` (else ``start_datetime``) as written."""
    props = item.get("properties") or {}
    return props.get("datetime") or props.get("start_datetime") or ""


def item_order_key(item: dict) -> tuple[str, str]:
    """Sort key of items: their time as written, then their id."""
    return item_time_text(item), item["id"]


def item_datetime(item: dict) -> datetime:
    """The item's time (``datetime``, else ``start_datetime``) as an aware UTC datetime."""
    value = datetime.fromisoformat(item_time_text(item).replace("Z", "+00:00"))
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def to_datetime64(when: datetime | str) -> np.datetime64:
    """An instant (datetime or RFC 3339 text, any offset) as a naive UTC ``datetime64[ns]``."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(when, "ns")


def solar_day(when: datetime, lon: float) -> str:
    """ISO date of the solar day of a UTC instant at longitude ``lon`` (degrees east): the UTC
    time shifted by ``lon / 15`` hours (Open Data Cube's ``group_by="solar_day"``)."""
    return (when.astimezone(timezone.utc) + timedelta(hours=lon / 15.0)).date().isoformat()
