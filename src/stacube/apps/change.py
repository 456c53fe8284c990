"""Change: the difference of two composites of a band or spectral index between two time ranges.

Each range is reduced per pixel by a compositing method over its clear observations
(:func:`stacube.algo.composite.composite`: median, mean, most or least recent, percentiles) of
one layer: a band (physical values, ``DN * scale + offset``) or a spectral index computed per
observation with its spyndex formula (Montero et al. 2023, Scientific Data 10, 197,
doi:10.1038/s41597-023-02096-0). Then

* ``difference``: float32, after - before, in the layer's units (NaN where either composite is);
* ``changed``: uint8, 1 where ``|difference| > threshold``, 0 where not, 255 where the
  difference is NaN;
* ``before``, ``after``: float32, the two composites (NaN where fewer than ``min_count`` clear
  observations);
* ``before_count``, ``after_count``: uint16, clear observations used (65535 where the range
  observed nothing).

The job runs once over a datetime that covers both ranges (its span by default), without a
``period``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from stacube.apps.common import (
    COUNT,
    FLOAT,
    LAYER_METHODS,
    TimeRange,
    compare,
    layer,
    layer_bands,
    prepare_two_ranges,
)
from stacube.core.indices import get_index

CHANGED_NODATA = 255
OUTPUTS = {"difference": FLOAT, "changed": {"dtype": "uint8", "nodata": CHANGED_NODATA},
           "before": FLOAT, "after": FLOAT, "before_count": COUNT, "after_count": COUNT}


class Parameters(BaseModel):
    """Composites of a band or index over two time ranges, their difference and a change mask."""

    model_config = ConfigDict(extra="forbid", title="Change between two time ranges")

    before: TimeRange = Field(
        title="Before", examples=["2015-07-01/2015-07-31"],
        description="START/END (ISO 8601), or one year, month or day (all of it), of the first composite.")
    after: TimeRange = Field(
        title="After", examples=["2015-08-15/2015-09-30"],
        description="START/END of the second composite (difference: after - before).")
    index: str = Field(
        "NDVI", title="Spectral index", examples=["NDVI", "NDWI", "MNDWI", "NBR", "NDBI", "EVI"],
        description="A spyndex index computed per observation from the bands it needs (common names); "
                    "ignored when band is set.")
    band: str | None = Field(
        None, title="Band",
        description="A band (common name or asset key) compared instead of the index, in its physical "
                    "values.")
    method: Literal[LAYER_METHODS] = Field(
        "median", title="Compositing method",
        description="How each range's clear observations are reduced per pixel: median, mean, the most "
                    "or least recent, or a percentile (p10..p90).")
    threshold: float = Field(
        0.1, ge=0, title="Change threshold",
        description="changed is 1 where |after - before| exceeds it (the layer's units: unitless for "
                    "indices and reflectance).")
    min_count: int = Field(
        1, ge=1, le=1000, title="Minimum clear observations",
        description="Clear observations a pixel needs in each range for a composite (fewer: NaN).")

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        return get_index(value).name


def prepare_job(job: dict, parameters: dict) -> dict:
    """Read the band (or the index's bands); datetime: the span of both ranges; no period."""
    return prepare_two_ranges(job, {"before": parameters["before"], "after": parameters["after"]},
                              layer_bands(parameters["band"], parameters["index"]))


def execute(cube, before: str, after: str, index: str = "NDVI", band: str | None = None,
            method: str = "median", threshold: float = 0.1, min_count: int = 1) -> dict[str, np.ndarray]:
    """The difference, change mask, both composites and both counts (see the module
    docstring); ``(y, x)`` arrays.

    Raises:
        ValueError: the cube lacks the band, or a band the index needs.
    """
    result = compare(cube, layer(cube, band, index), before, after, method, min_count)
    difference = result["difference"]
    changed = np.where(np.isfinite(difference), np.abs(difference) > threshold, CHANGED_NODATA)
    return {"difference": difference, "changed": changed.astype(np.uint8), "before": result["first"],
            "after": result["second"], "before_count": result["first_count"], "after_count": result["second_count"]}
