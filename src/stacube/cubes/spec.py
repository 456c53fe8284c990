"""The parameters of a Zarr cube (``stacube cube create``), validated.

One model serves the CLI and the Python API, so bad input fails the same way everywhere
(:class:`~stacube.errors.InvalidInput` with one line naming the parameter). The shared fields
and checks are :class:`stacube.core.spec.SpecModel`'s.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from stacube.core.methods import METHODS
from stacube.core.spec import SpecModel
from stacube.core.times import parse_datetime_range

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
#: Default chunk shape (time, y, x); see :mod:`stacube.cubes.arrays` for why.
TIME_CHUNK = 32
CHUNK = 128
TILE = 512
#: Resampling methods of a band (rasterio's names, which odc-stac and Open Data Cube take).
#: Storage dtypes of a band: float32 (physical values, NaN nodata) or an integer type holding the
#: source's DN (``round((value - add_offset) / scale_factor)``, a nodata value where NaN).
BAND_DTYPES = ("float32", "int8", "uint8", "int16", "uint16", "int32", "uint32")
RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
              "min", "max", "med", "q1", "q3", "sum", "rms")


class CubeSpec(SpecModel):
    """Parameters of a cube.

    Without ``method`` the cube holds masked observations: one time step per solar day, the
    values of clear pixels (NaN elsewhere) and a ``quality`` flag per pixel. With ``method``
    (and usually ``period``) it holds one composite per period.
    """

    name: str = Field(description="Cube name: lowercase letters, digits, '.', '_' and '-'.")
    grid: str = Field("native", description="native | webmercator[-z<N>] | equal-area-<R>m|km | epsg:<code>/<R>[@X,Y].")
    datetime: str = Field(description="START/END (ISO 8601).")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="Domain MINX,MINY,MAXX,MAXY in bbox_crs (default: the items' extent).")
    method: str | None = None
    max_cloud_cover: float | None = Field(
        None, ge=0, le=100,
        description="Percent: leave out items whose eo:cloud_cover (scene metadata) exceeds it.")
    tile_size: int = Field(TILE, description="Edge (px) of the fill tiles: whole chunks, written by one worker.")
    chunk: int = Field(CHUNK, ge=16, le=4096, description="Spatial chunk edge (px).")
    time_chunk: int = Field(TIME_CHUNK, ge=1, le=4096, description="Time steps per chunk.")
    levels: int | None = Field(None, ge=1, le=24, description="Pyramid levels including full resolution.")
    resampling: dict[str, str] = Field(
        default_factory=dict,
        description="Per band: how sources off the cube's grid are resampled (default nearest).")
    dtypes: dict[str, str] = Field(
        default_factory=dict,
        description="Per band: storage dtype (float32 default; an integer dtype stores DN with CF scale_factor).")
    nodata: dict[str, float] = Field(
        default_factory=dict, description="Per band with an integer dtype: its nodata value (CF _FillValue).")
    description: str | None = Field(None, max_length=4000, description="Description of the cube's collection.")
    global_attributes: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Global attributes written to the cube's Zarr stores.")

    @field_validator("resampling")
    @classmethod
    def _resampling(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for band, method in value.items():
            method = str(method).strip().lower()
            if method not in RESAMPLING:
                raise ValueError(f"{band}: unknown resampling method {method!r}; use one of {', '.join(RESAMPLING)}")
            out[band] = method
        return out

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"name {value!r}: use lowercase letters, digits, '.', '_' and '-' (max 63)")
        return value

    @field_validator("datetime")
    @classmethod
    def _closed(cls, value: str) -> str:
        start, end = parse_datetime_range(value)
        if start is None or end is None:
            raise ValueError(f"datetime {value!r}: a cube needs both ends (START/END)")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> CubeSpec:
        if self.period and not self.method:
            raise ValueError(f"--period needs --method ({', '.join(METHODS)})")
        if self.tile_size % self.chunk:
            raise ValueError(f"--tile-size {self.tile_size} is not a multiple of the chunk edge {self.chunk}")
        if not self.chunk <= self.tile_size <= 8192:
            raise ValueError(f"--tile-size {self.tile_size} must be between the chunk edge and 8192")
        unknown = [b for b in self.resampling if self.bands and b not in self.bands]
        if unknown:
            raise ValueError(f"--resampling names {', '.join(unknown)}, which is not among the bands")
        check_band_dtypes(self.dtypes, self.nodata, self.bands)
        return self

    @property
    def mode(self) -> str:
        """``observations`` or ``composite``."""
        return "composite" if self.method else "observations"


def check_band_dtypes(dtypes: dict[str, str], nodata: dict[str, float], bands: list[str]) -> None:
    """Check per-band storage dtypes and nodata values.

    Raises:
        ValueError: a dtype not in :data:`BAND_DTYPES`, a band not among ``bands`` (when given), an
            integer dtype without a whole nodata value in its range, a nodata for a float32 band
            other than NaN.
    """
    import math

    import numpy as np

    for band in [*dtypes, *nodata]:
        if bands and band not in bands:
            raise ValueError(f"dtype/nodata of {band!r}, which is not among the bands")
    for band, dtype in dtypes.items():
        if dtype not in BAND_DTYPES:
            raise ValueError(f"{band}: dtype {dtype!r}; use one of {', '.join(BAND_DTYPES)}")
    for band in set(dtypes) | set(nodata):
        dtype = dtypes.get(band, "float32")
        value = nodata.get(band)
        if dtype == "float32":
            if value is not None and not math.isnan(value):
                raise ValueError(f"{band}: nodata {value:g}; a float32 band's nodata is nan")
            continue
        if value is None or not math.isfinite(value) or not float(value).is_integer():
            raise ValueError(f"{band}: a {dtype} band needs a whole nodata value (e.g. -999)")
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise ValueError(f"{band}: nodata {value:g} is outside the {dtype} range {info.min}..{info.max}")


def build_cube_spec(**params) -> CubeSpec:
    """Validate parameters into a :class:`CubeSpec` (``None`` values take the defaults).

    Raises:
        InvalidInput: one line naming the first bad parameter.
    """
    return CubeSpec.build(**params)
