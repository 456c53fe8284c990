"""Water frequency: the share of clear observations classified as water, per period.

Each clear observation is water where its water index exceeds a threshold: the Modified
Normalized Difference Water Index, MNDWI = (green - swir16) / (green + swir16) (Xu 2006,
*Modification of normalised difference water index (NDWI) to enhance open water features in
remotely sensed imagery*, International Journal of Remote Sensing 27(14), 3025-3033,
doi:10.1080/01431160600589179), or, without a short-wave infrared band, McFeeters' NDWI =
(green - nir) / (green + nir) (McFeeters 1996, International Journal of Remote Sensing 17(7),
1425-1432, doi:10.1080/01431169608948714); both formulas from spyndex (Awesome Spectral
Indices). Water in both where the index is above 0 (the authors' threshold).

Per period (the job's ``period``, or its whole time range) and pixel:

* ``frequency``: float32, wet / clear observations, 0..1 (NaN where no clear observation);
* ``wet_count``: uint16, clear observations classified as water (65535 where none is clear);
* ``clear_count``: uint16, clear observations with a defined index (65535 where nothing was
  observed).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from stacube.algo.tile import COUNT_NODATA
from stacube.apps.common import COUNT, FLOAT, layer, layer_bands

OUTPUTS = {"frequency": FLOAT, "wet_count": COUNT, "clear_count": COUNT}


class Parameters(BaseModel):
    """Water classification of each clear observation by a water index above a threshold."""

    model_config = ConfigDict(extra="forbid", title="Water frequency")

    index: Literal["auto", "MNDWI", "NDWI"] = Field(
        "auto", title="Water index",
        description="MNDWI (Xu 2006): (green - swir16) / (green + swir16); NDWI (McFeeters 1996): "
                    "(green - nir) / (green + nir); auto: MNDWI when the cube has swir16, else NDWI. "
                    "A job that names no bands reads green and swir16 (NDWI: green and nir).")
    threshold: float = Field(
        0.0, ge=-1, le=1, title="Water threshold",
        description="An observation is water where the index is above this value (unitless, -1..1; "
                    "0 in both papers; raise it to keep only the most certain water).")


def index_of(index: str, bands) -> str:
    """The index a run uses: ``index``, or for ``auto`` MNDWI when ``swir16`` is among
    ``bands``, else NDWI."""
    if index != "auto":
        return index
    return "MNDWI" if "swir16" in bands else "NDWI"


def prepare_job(job: dict, parameters: dict) -> dict:
    """Read green and swir16 (NDWI: green and nir) when the job names no bands."""
    if job.get("bands"):
        return {}
    return {"bands": layer_bands(None, "NDWI" if parameters["index"] == "NDWI" else "MNDWI")}


def execute(cube, index: str = "auto", threshold: float = 0.0) -> dict[str, np.ndarray]:
    """Water frequency, wet and clear counts of the cube's observations (see the module
    docstring); ``(y, x)`` arrays.

    Raises:
        ValueError: the cube lacks a band the index needs.
    """
    values = layer(cube, None, index_of(index, cube.data_vars))
    clear = cube["clear"].values & np.isfinite(values)
    clear_n = clear.sum(axis=0)
    wet_n = (clear & (values > threshold)).sum(axis=0)
    any_clear = clear_n > 0
    return {
        "frequency": np.where(any_clear, wet_n / np.maximum(clear_n, 1), np.nan).astype(np.float32),
        "wet_count": np.where(any_clear, wet_n, COUNT_NODATA).astype(np.uint16),
        "clear_count": np.where(cube["valid"].values.any(axis=0), clear_n, COUNT_NODATA).astype(np.uint16),
    }
