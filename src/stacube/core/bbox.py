"""Bounding boxes: ``MINX,MINY,MAXX,MAXY`` as strings or sequences."""

from __future__ import annotations

import math
from collections.abc import Sequence

from stacube.errors import InvalidInput

BBox = tuple[float, float, float, float]


def _numbers(value) -> list[float]:
    if isinstance(value, str):
        try:
            return [float(p.strip()) for p in value.split(",")]
        except ValueError as exc:
            raise InvalidInput(f"bbox {value!r}: expected MINX,MINY,MAXX,MAXY numbers") from exc
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"bbox {value!r}: expected 4 numbers") from exc


def parse_bbox(value: str | Sequence[float], *, allow_point: bool = False) -> BBox:
    """``"minx,miny,maxx,maxy"`` (or a sequence of 4 numbers) -> a tuple of floats.

    Args:
        allow_point: accept ``min == max`` (a point or a line: reads of one pixel).

    Raises:
        InvalidInput: not 4 finite numbers, or min >= max (min > max with ``allow_point``).
    """
    numbers = _numbers(value)
    if len(numbers) != 4:
        raise InvalidInput(f"bbox {value!r}: expected 4 numbers, got {len(numbers)}")
    if not all(math.isfinite(v) for v in numbers):
        raise InvalidInput(f"bbox {value!r}: numbers must be finite")
    minx, miny, maxx, maxy = numbers
    if (minx > maxx or miny > maxy) if allow_point else (minx >= maxx or miny >= maxy):
        which = "must not exceed" if allow_point else "must be less than"
        raise InvalidInput(f"bbox {value!r}: min {which} max (MINX,MINY,MAXX,MAXY)")
    return minx, miny, maxx, maxy


def check_lonlat(bbox: BBox) -> BBox:
    """Raise when a longitude/latitude bbox leaves -180..180 / -90..90.

    Raises:
        InvalidInput: out of range.
    """
    minx, miny, maxx, maxy = bbox
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidInput(f"bbox {list(bbox)} is outside longitude/latitude range")
    return bbox
