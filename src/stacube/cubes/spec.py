"""The parameters of a Zarr cube (``stacube cube create``), validated.

One model serves the CLI and the Python API, so bad input fails the same way everywhere
(:class:`~stacube.errors.InvalidInput` with one line naming the parameter).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stacube.errors import InvalidInput
from stacube.jobs.spec import METHODS, PERIOD_PATTERN, Method, check_crs, parse_bbox, parse_datetime_range

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
#: Default chunk shape (time, y, x); see :mod:`stacube.cubes.store` for why.
TIME_CHUNK = 32
CHUNK = 128
TILE = 512


class CubeSpec(BaseModel):
    """Parameters of a cube.

    Without ``method`` the cube holds masked observations: one time step per solar day, the
    values of clear pixels (NaN elsewhere) and a ``quality`` flag per pixel. With ``method``
    (and usually ``period``) it holds one composite per period.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Cube name: lowercase letters, digits, '.', '_' and '-'.")
    collections: list[str] = Field(min_length=1)
    grid: str = Field("native", description="native | webmercator[-z<N>] | equal-area-<R>m|km.")
    datetime: str = Field(description="START/END (ISO 8601).")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="Domain MINX,MINY,MAXX,MAXY in bbox_crs (default: the items' extent).")
    bbox_crs: str = "EPSG:4326"
    bands: list[str] = Field(default_factory=list, description="Common names or asset keys.")
    indices: list[str] = Field(default_factory=list)
    method: Method | None = None
    period: str | None = None
    max_cloud: float | None = Field(None, ge=0, le=100, description="Drop items above this eo:cloud_cover.")
    tile_size: int = Field(TILE, description="Edge (px) of the fill tiles: whole chunks, written by one worker.")
    chunk: int = Field(CHUNK, ge=16, le=4096, description="Spatial chunk edge (px).")
    time_chunk: int = Field(TIME_CHUNK, ge=1, le=4096, description="Time steps per chunk.")
    levels: int | None = Field(None, ge=1, le=24, description="Pyramid levels including full resolution.")
    output: str | None = Field(None, description="Root URI of cubes (default <output root>/cubes).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"name {value!r}: use lowercase letters, digits, '.', '_' and '-' (max 63)")
        return value

    @field_validator("bbox", mode="before")
    @classmethod
    def _bbox(cls, value):
        return None if value is None else parse_bbox(value)

    @field_validator("datetime")
    @classmethod
    def _datetime(cls, value: str) -> str:
        start, end = parse_datetime_range(value)
        if start is None or end is None:
            raise ValueError(f"datetime {value!r}: a cube needs both ends (START/END)")
        return value

    @field_validator("bbox_crs")
    @classmethod
    def _crs(cls, value: str) -> str:
        return check_crs(value)

    @field_validator("period")
    @classmethod
    def _period(cls, value):
        if value is None:
            return None
        value = value.strip().upper()
        m = PERIOD_PATTERN.match(value)
        if not m or int(m.group(1)) == 0:
            raise ValueError(f"period {value!r}: expected P<n>D, P<n>W, P<n>M or P<n>Y (e.g. P16D, P1M)")
        return value

    @field_validator("indices")
    @classmethod
    def _indices(cls, value: list[str]) -> list[str]:
        from stacube.cube.indices import get_index

        return list(dict.fromkeys(get_index(v).name for v in value))

    @field_validator("collections", "bands")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @property
    def mode(self) -> str:
        """``observations`` or ``composite``."""
        return "composite" if self.method else "observations"


def _check_after(spec: CubeSpec) -> None:
    from stacube.cubes.grids import EQUAL_AREA, WEBMERCATOR

    grid = spec.grid.strip().lower()
    if grid != "native" and not WEBMERCATOR.match(grid) and not EQUAL_AREA.match(grid):
        from stacube.cubes.grids import GRID_NAMES

        raise InvalidInput(f"grid: unknown grid {spec.grid!r}; use one of: {', '.join(GRID_NAMES)}")
    if spec.period and not spec.method:
        raise InvalidInput(f"period: --period needs --method ({', '.join(METHODS)})")
    if spec.tile_size % spec.chunk:
        raise InvalidInput(f"tile-size: {spec.tile_size} is not a multiple of the chunk edge {spec.chunk}")
    if not spec.chunk <= spec.tile_size <= 8192:
        raise InvalidInput(f"tile-size: {spec.tile_size} must be between the chunk edge and 8192")
    if spec.bbox and spec.bbox_crs == "EPSG:4326":
        minx, miny, maxx, maxy = spec.bbox
        if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
            raise InvalidInput(f"bbox: {list(spec.bbox)} is outside longitude/latitude range")


def build_cube_spec(**params) -> CubeSpec:
    """Validate parameters into a :class:`CubeSpec` (``None`` values take the defaults).

    Raises:
        InvalidInput: one line naming the first bad parameter.
    """
    params = {k: v for k, v in params.items() if v is not None}
    try:
        spec = CubeSpec(**params)
    except InvalidInput:
        raise
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error" and loc == "method":
            msg = f"unknown method {err['input']!r}; choose one of {', '.join(METHODS)}"
        elif err.get("ctx", {}).get("error") and isinstance(err["ctx"]["error"], InvalidInput):
            msg = str(err["ctx"]["error"])
        raise InvalidInput(f"{loc.replace('_', '-')}: {msg}" if loc else msg) from exc
    _check_after(spec)
    return spec
