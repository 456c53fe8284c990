"""What the analysis processes share: time ranges as parameters, the layer they read (a band
of the cube or a spectral index computed from its bands), and the composite of that layer over
a time range (stacube's own compositing kernels, :func:`stacube.algo.composite.composite`).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import xarray as xr
from pydantic import AfterValidator, Field

from stacube.algo.composite import composite
from stacube.algo.tile import COUNT_NODATA
from stacube.core.indices import get_index
from stacube.core.times import format_interval, parse_datetime_range, to_datetime64
from stacube.errors import InvalidInput

#: nodata of the uint16 counts (0 is a count).
COUNT = {"dtype": "uint16", "nodata": COUNT_NODATA}
#: A float32 output, NaN where undefined.
FLOAT = {"dtype": "float32", "nodata": None}
#: Compositing methods a single layer is reduced with over a time range (of
#: :data:`stacube.core.methods.METHODS` and the percentiles).
LAYER_METHODS = ("median", "mean", "most-recent", "least-recent", "p10", "p25", "p75", "p90")


def _closed_range(value: str) -> str:
    start, end = parse_datetime_range(value)
    if start is None or end is None:
        raise InvalidInput(f"{value!r}: give both ends (START/END)")
    return value


#: A closed time range: ``START/END`` (ISO 8601 dates or datetimes), or one year, month or day
#: (all of it); ends included.
TimeRange = Annotated[str, Field(pattern=r"^[^/]+(/[^/]+)?$"), AfterValidator(_closed_range)]


def layer_bands(band: str | None, index: str | None) -> list[str]:
    """The bands a job reads for a layer: ``[band]``, or the common names ``index`` needs."""
    return [band] if band else list(get_index(index).bands.values())


def layer(cube: xr.Dataset, band: str | None, index: str | None) -> np.ndarray:
    """The layer's ``(time, y, x)`` float32 values: the cube's ``band``, or the spyndex
    formula of ``index`` on the cube's bands (NaN where not clear or undefined).

    Raises:
        ValueError: the cube lacks the band, or a band the index needs.
    """
    if band:
        if band not in cube.data_vars:
            raise ValueError(f"the cube has no band {band!r} (it has {', '.join(map(str, cube.data_vars))})")
        return cube[band].values.astype("float32", copy=False)
    spectral = get_index(index)
    missing = [c for c in spectral.bands.values() if c not in cube.data_vars]
    if missing:
        raise ValueError(f"{spectral.name} needs the bands {', '.join(spectral.bands.values())}; the cube "
                         f"lacks {', '.join(missing)}")
    return spectral.compute({c: cube[c].values for c in spectral.bands.values()})


def in_range(cube: xr.Dataset, time_range: str) -> np.ndarray:
    """Bool ``(time,)``: the cube's observations inside ``time_range`` (ends included)."""
    start, end = parse_datetime_range(time_range)
    times = cube["time"].values.astype("datetime64[ns]")
    return (times >= to_datetime64(start)) & (times <= to_datetime64(end))


def range_composite(cube: xr.Dataset, values: np.ndarray, time_range: str, method: str,
                    min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The composite of ``values`` over the observations in ``time_range``.

    Args:
        cube: the process's cube (its ``time``, ``valid`` and ``clear``).
        values: ``(time, y, x)`` float32 layer of the cube (NaN: not clear or undefined).
        time_range: ``START/END``.
        method: a compositing method of :data:`LAYER_METHODS`.
        min_count: clear observations a pixel needs for a value (fewer: NaN).

    Returns:
        ``(value, count)``: float32 ``(y, x)`` composite (NaN where fewer than ``min_count``
        clear observations) and uint16 ``(y, x)`` clear observations used
        (:data:`COUNT_NODATA` where nothing was observed in the range).
    """
    ny, nx = values.shape[1:]
    chosen = in_range(cube, time_range)
    if not chosen.any():
        return np.full((ny, nx), np.nan, np.float32), np.full((ny, nx), COUNT_NODATA, np.uint16)
    part = values[chosen]
    clear = cube["clear"].values[chosen] & np.isfinite(part)
    result = composite({"layer": part}, cube["valid"].values[chosen], clear, method=method,
                       times=cube["time"].values[chosen])
    count = result["clear_count"].astype(np.uint16)
    value = np.where(count >= min_count, result["layer"], np.nan).astype(np.float32)
    count[result["valid_count"] == 0] = COUNT_NODATA
    return value, count


def compare(cube: xr.Dataset, values: np.ndarray, first: str, second: str, method: str,
            min_count: int = 1) -> dict[str, np.ndarray]:
    """Composites of ``values`` over two time ranges and their difference (second - first).

    Returns:
        ``first``, ``second``, ``difference`` (float32 ``(y, x)``, NaN where either composite
        is) and ``first_count``, ``second_count`` (see :func:`range_composite`).
    """
    a, a_count = range_composite(cube, values, first, method, min_count)
    b, b_count = range_composite(cube, values, second, method, min_count)
    return {"first": a, "second": b, "difference": (b - a).astype(np.float32),
            "first_count": a_count, "second_count": b_count}


def prepare_two_ranges(job: dict, ranges: dict[str, str], bands: list[str]) -> dict:
    """The job keys of a process that compares two time ranges in one run: ``bands`` when the
    job names none, ``datetime`` (the span of the ranges) when it gives none.

    Raises:
        ValueError: the job has a ``period`` (each run would see only part of the ranges), or
            its ``datetime`` does not cover a range.
    """
    if job.get("period"):
        raise ValueError("it compares its two time ranges in one run over the whole datetime: drop period")
    out = {} if job.get("bands") else {"bands": bands}
    ends = {name: parse_datetime_range(value) for name, value in ranges.items()}
    if not job.get("datetime"):
        out["datetime"] = format_interval(min(s for s, _ in ends.values()), max(e for _, e in ends.values()))
        return out
    start, end = parse_datetime_range(job["datetime"])
    for name, (s, e) in ends.items():
        if (start is not None and s < start) or (end is not None and e > end):
            raise ValueError(f"datetime {job['datetime']} does not cover {name} {ranges[name]}")
    return out
