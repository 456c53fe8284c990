"""NDVI anomaly: the median NDVI of a target time range minus that of a baseline time range.

NDVI = (nir - red) / (nir + red) (Rouse et al. 1974, *Monitoring vegetation systems in the Great
Plains with ERTS*, NASA SP-351, https://ntrs.nasa.gov/citations/19740022614; formula from
spyndex), per clear observation, or read from a band that holds NDVI already (``ndvi_band``).
Each range is reduced to the per-pixel median of its clear observations (stacube's ``median``
composite), then

* ``anomaly``: float32, target median - baseline median (unitless, -2..2; NaN where either
  range has fewer than ``min_count`` clear observations);
* ``target_ndvi``, ``baseline_ndvi``: float32, the two medians (NaN likewise);
* ``target_count``, ``baseline_count``: uint16, clear observations used in each range (65535
  where the range observed nothing).

The job runs once over a datetime that covers both ranges (its span by default), without a
``period``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from stacube.apps.common import (
    COUNT,
    FLOAT,
    TimeRange,
    compare,
    layer,
    layer_bands,
    prepare_two_ranges,
)

OUTPUTS = {"anomaly": FLOAT, "target_ndvi": FLOAT, "baseline_ndvi": FLOAT,
           "target_count": COUNT, "baseline_count": COUNT}


class Parameters(BaseModel):
    """Median NDVI of the target range minus the median NDVI of the baseline range."""

    model_config = ConfigDict(extra="forbid", title="NDVI anomaly")

    baseline: TimeRange = Field(
        title="Baseline time range", examples=["2016-06-01/2016-08-31"],
        description="START/END (ISO 8601), or one year, month or day (all of it), of the reference "
                    "observations.")
    target: TimeRange = Field(
        title="Target time range", examples=["2017-06-01/2017-08-31"],
        description="START/END of the observations compared with the baseline.")
    ndvi_band: str | None = Field(
        None, title="NDVI band",
        description="A band of the collection that holds NDVI already (e.g. NDVI); default: NDVI "
                    "computed from red and nir.")
    min_count: int = Field(
        1, ge=1, le=1000, title="Minimum clear observations",
        description="Clear observations a pixel needs in each range for a median (fewer: NaN).")


def prepare_job(job: dict, parameters: dict) -> dict:
    """Read red and nir (or ``ndvi_band``); datetime: the span of both ranges; no period."""
    return prepare_two_ranges(job, {"baseline": parameters["baseline"], "target": parameters["target"]},
                              layer_bands(parameters["ndvi_band"], "NDVI"))


def execute(cube, baseline: str, target: str, ndvi_band: str | None = None,
            min_count: int = 1) -> dict[str, np.ndarray]:
    """The anomaly, both medians and both counts (see the module docstring); ``(y, x)`` arrays.

    Raises:
        ValueError: the cube lacks red or nir (or ``ndvi_band``).
    """
    result = compare(cube, layer(cube, ndvi_band, "NDVI"), baseline, target, "median", min_count)
    return {"anomaly": result["difference"], "target_ndvi": result["second"], "baseline_ndvi": result["first"],
            "target_count": result["second_count"], "baseline_count": result["first_count"]}
