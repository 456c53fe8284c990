"""The parameters of a compositing job, validated.

One model serves the CLI (``stacube composite``), the Python API and the HTTP jobs API, so a
parameter means the same everywhere and bad input fails the same way (:class:`InvalidInput`
with one line naming the parameter).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stacube.errors import InvalidInput

Method = Literal["most-recent", "least-recent", "best-pixel", "median", "mean", "geomedian", "max-ndvi",
                 "medoid"]
METHODS: tuple[str, ...] = ("most-recent", "least-recent", "best-pixel", "median", "mean", "geomedian",
                            "max-ndvi", "medoid")
SELECTION_METHODS = ("most-recent", "least-recent", "best-pixel", "max-ndvi", "medoid")
#: Percentile methods: ``p0``..``p100`` (``p25``: the 25th percentile of the clear observations).
PERCENTILE_PATTERN = re.compile(r"^p(100|\d{1,2})$")
PERIOD_PATTERN = re.compile(r"^P(\d+)([DWMY])$")


def parse_bbox(value) -> tuple[float, float, float, float]:
    """``"minx,miny,maxx,maxy"`` (or a sequence of 4 numbers) -> a tuple of floats.

    Raises:
        InvalidInput: not 4 finite numbers, or min >= max.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        try:
            numbers = [float(p) for p in parts]
        except ValueError as exc:
            raise InvalidInput(f"bbox {value!r}: expected MINX,MINY,MAXX,MAXY numbers") from exc
    else:
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"bbox {value!r}: expected 4 numbers") from exc
    if len(numbers) != 4:
        raise InvalidInput(f"bbox {value!r}: expected 4 numbers, got {len(numbers)}")
    if not all(math.isfinite(v) for v in numbers):
        raise InvalidInput(f"bbox {value!r}: numbers must be finite")
    minx, miny, maxx, maxy = numbers
    if minx >= maxx or miny >= maxy:
        raise InvalidInput(f"bbox {value!r}: min must be less than max (MINX,MINY,MAXX,MAXY)")
    return minx, miny, maxx, maxy


def _parse_instant(text: str, *, end: bool) -> datetime | None:
    text = text.strip()
    if text in ("", ".."):
        return None
    try:
        if len(text) == 4 and text.isdigit():
            value = datetime(int(text), 12 if end else 1, 31 if end else 1, tzinfo=timezone.utc)
        elif re.fullmatch(r"\d{4}-\d{2}", text):
            y, m = map(int, text.split("-"))
            if end:
                nxt = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc)
                return datetime.fromtimestamp(nxt.timestamp() - 1e-6, tz=timezone.utc)
            value = datetime(y, m, 1, tzinfo=timezone.utc)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"datetime {text!r} is not ISO 8601 (e.g. 2018-01-01 or 2018-01-01T00:00:00Z)") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    if end and len(text) == 10:  # a date as the end of a range covers that whole day
        value = value.replace(hour=23, minute=59, second=59, microsecond=999999)
    if end and len(text) == 4:
        value = value.replace(hour=23, minute=59, second=59, microsecond=999999)
    return value


def parse_datetime_range(value: str) -> tuple[datetime | None, datetime | None]:
    """``START/END`` (either may be ``..``), or one instant/date, -> ``(start, end)`` in UTC.

    Raises:
        InvalidInput: malformed, empty, or END before START.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("datetime is empty; expected START/END, e.g. 2018-01-01/2018-12-31")
    if value.count("/") > 1:
        raise InvalidInput(f"datetime {value!r}: expected START/END")
    if "/" in value:
        a, b = value.split("/")
        start, end = _parse_instant(a, end=False), _parse_instant(b, end=True)
        if start is None and end is None:
            raise InvalidInput(f"datetime {value!r}: both ends are open")
    else:
        start, end = _parse_instant(value, end=False), _parse_instant(value, end=True)
    if start and end and end < start:
        raise InvalidInput(f"datetime {value!r}: END is before START")
    return start, end


def format_interval(start: datetime | None, end: datetime | None) -> str:
    """``(start, end)`` -> an RFC 3339 STAC ``datetime`` interval (``..`` for open ends)."""

    def fmt(d):
        return ".." if d is None else d.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")

    return f"{fmt(start)}/{fmt(end)}"


def check_crs(value: str) -> str:
    """Normalise a CRS (``EPSG:32633``, ``32633``, WKT, PROJ string).

    Raises:
        InvalidInput: unknown CRS.
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    text = str(value).strip()
    if text.isdigit():
        text = f"EPSG:{text}"
    try:
        crs = CRS.from_user_input(text)
    except CRSError as exc:
        raise InvalidInput(f"unknown CRS {value!r}") from exc
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


class CompositeSpec(BaseModel):
    """Parameters of ``stacube composite`` (and ``POST /jobs``)."""

    model_config = ConfigDict(extra="forbid")

    collections: list[str] = Field(min_length=1, description="Collection ids; bands match by common name.")
    bbox: tuple[float, float, float, float] = Field(description="MINX,MINY,MAXX,MAXY in bbox_crs.")
    bbox_crs: str = "EPSG:4326"
    datetime: str = Field(description="START/END (ISO 8601; either end may be '..').")
    method: str = Field(description="One of METHODS, or pNN (a percentile, e.g. p25).")
    bands: list[str] = Field(default_factory=list, description="Common names or asset keys.")
    indices: list[str] = Field(default_factory=list, description="Index presets (NDVI, EVI...).")
    max_cloud: float | None = Field(None, ge=0, le=100, description="Percent; scene filter.")
    mask_asset: str | None = None
    clear: list[int] | None = None
    period: str | None = Field(None, description="P<n>D, P<n>W, P<n>M or P<n>Y.")
    crs: str | None = None
    resolution: float | None = Field(None, gt=0)
    grid: str | None = Field(
        None, description="Named grid: native, webmercator[-z<N>], equal-area-<R>m|km; "
                          "outputs cover its whole tiles (instead of --crs/--resolution).")
    output: str | None = Field(None, description="Root URI of the outputs.")
    output_collection: str | None = Field(None, description="Collection of the results.")
    tile_size: int | None = Field(
        None, ge=16, le=16384,
        description="Tile edge in output pixels (default: the largest that fits STACUBE_TILE_MEMORY).")
    mask_cleanup: tuple[int, int] | None = Field(
        None, description="OPEN,DILATE pixels: opening then dilation of the cloud mask (e.g. 2,3).")

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value in METHODS or PERCENTILE_PATTERN.match(str(value)):
            return value
        raise ValueError(f"unknown method {value!r}; choose one of {', '.join(METHODS)} or pNN (a percentile, e.g. p25)")

    @field_validator("mask_cleanup", mode="before")
    @classmethod
    def _mask_cleanup(cls, value):
        from stacube.cube.masking import parse_mask_cleanup

        return parse_mask_cleanup(value)

    @field_validator("bbox", mode="before")
    @classmethod
    def _bbox(cls, value):
        return parse_bbox(value)

    @field_validator("datetime")
    @classmethod
    def _datetime(cls, value: str) -> str:
        parse_datetime_range(value)
        return value

    @field_validator("bbox_crs", "crs")
    @classmethod
    def _crs(cls, value):
        return None if value is None else check_crs(value)

    @field_validator("period")
    @classmethod
    def _period(cls, value):
        if value is None:
            return None
        value = value.strip().upper()
        m = PERIOD_PATTERN.match(value)
        if not m or int(m.group(1)) == 0:
            raise ValueError(f"period {value!r}: expected P<n>D, P<n>W, P<n>M or P<n>Y (e.g. P16D, P1M, P1Y)")
        return value

    @field_validator("indices")
    @classmethod
    def _indices(cls, value: list[str]) -> list[str]:
        from stacube.cube.indices import get_index

        return [get_index(v).name for v in value]

    @field_validator("collections")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("grid")
    @classmethod
    def _grid(cls, value):
        if value is None:
            return None
        from stacube.cubes.grids import EQUAL_AREA, WEBMERCATOR

        text = value.strip().lower()
        if text != "native" and not WEBMERCATOR.match(text) and not EQUAL_AREA.match(text):
            raise ValueError(f"unknown grid {value!r}; use native, webmercator, webmercator-z<N>, "
                             "equal-area-<R>m or equal-area-<R>km")
        return text

    @model_validator(mode="after")
    def _mask(self) -> CompositeSpec:
        if self.grid and (self.crs or self.resolution):
            raise ValueError("--grid sets the CRS and resolution: drop --crs/--resolution")
        if (self.mask_asset is None) != (self.clear is None):
            raise ValueError("--mask-asset and --clear go together")
        if self.bbox_crs == "EPSG:4326":
            minx, miny, maxx, maxy = self.bbox
            if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
                raise ValueError(f"bbox {list(self.bbox)} is outside longitude/latitude range")
        return self

    @property
    def time_range(self) -> tuple[datetime | None, datetime | None]:
        return parse_datetime_range(self.datetime)

    def job_id(self) -> str:
        """A stable id: the same parameters give the same job (re-running is idempotent)."""
        doc = self.model_dump(mode="json", exclude={"output", "tile_size"})
        if doc.get("mask_cleanup") is None:  # jobs without cleanup keep their ids
            doc.pop("mask_cleanup", None)
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.method}-{digest}"


def build_spec(**params) -> CompositeSpec:
    """Validate parameters into a :class:`CompositeSpec`.

    Raises:
        InvalidInput: one line naming the first bad parameter.
    """
    try:
        return CompositeSpec(**params)
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
