"""Named output grids: a CRS, a square pixel size and an anchor, cut into square tiles.

A grid is infinite; a cube on a grid (and a job with ``--grid-tiles``) covers the whole tiles of
it that intersect its domain, so the pixel edges and the tile (and chunk) boundaries of every
output on a grid coincide, and two workers writing two tiles never touch the same Zarr chunk; a
job covers its area in whole pixels of the grid (:meth:`Grid.domain` with ``tile=1``). Names
accepted by ``--grid``:

* ``native``: the first collection's CRS and pixel size (``stacube:storage``, else the first
  item's ``proj:transform``), anchored on the source pixel edges
  (:func:`stacube.core.geobox.source_grid`): a cube in the scenes' own UTM zone reads them
  without resampling.
* ``webmercator`` or ``webmercator-z<N>``: EPSG:3857 at the pixel size of WebMercatorQuad zoom
  ``N`` (default: the coarsest zoom whose ground pixel at the domain's centre latitude is at least
  as fine as the native one), anchored at the tile matrix origin: a 512-px tile is exactly one
  WebMercatorQuad tile of zoom ``N - 1``.
* ``equal-area-<R>`` (``equal-area-10m``, ``equal-area-30m``, ``equal-area-1km``,
  ``equal-area-10km``...): EPSG:6933, WGS 84 / NSIDC EASE-Grid 2.0 Global (Lambert cylindrical
  equal-area, the CRS Digital Earth Africa uses for its 10 m / 30 m products), ``R`` metres per
  pixel, anchored at the lower-left corner of the EASE-Grid 2.0 global extent
  (-17 367 530.45 m, -7 314 540.83 m). Equal-area pixels make per-pixel counts and means area
  weighted for free.
* ``epsg:<code>/<R>`` or ``epsg:<code>/<R>@<X>,<Y>`` (``epsg:5070/30``, ``epsg:3577/25``): any CRS
  with an EPSG code, ``R`` CRS units per pixel, anchored at ``(X, Y)`` (default ``(0, 0)``, the
  CRS origin): the grid of an Open Data Cube ``GridSpec`` / ingestion ``storage`` section
  (``crs``, ``resolution``, ``origin``), whose tiles start at the origin as these do.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stacube.core.geobox import NativeGrid
from stacube.errors import InvalidInput

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

EARTH_RADIUS = 6378137.0
#: Pixel size (m) of WebMercatorQuad zoom 0 (256 px over the equator).
WEBMERCATOR_RES0 = 2 * math.pi * EARTH_RADIUS / 256
WEBMERCATOR_ORIGIN = (-math.pi * EARTH_RADIUS, math.pi * EARTH_RADIUS)
EASE2_LOWER_LEFT = (-17367530.44516138, -7314540.830638504)
EQUAL_AREA = re.compile(r"^equal-area-(\d+(?:\.\d+)?)(m|km)$")
WEBMERCATOR = re.compile(r"^webmercator(?:-z(\d{1,2}))?$")
_NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
CRS_GRID = re.compile(rf"^epsg:(\d{{4,6}})/({_NUMBER})(?:@({_NUMBER}),({_NUMBER}))?$")
GRID_NAMES = ("native", "webmercator", "webmercator-z<N>", "equal-area-<R>m", "equal-area-<R>km",
              "epsg:<code>/<R>[@<X>,<Y>]")


@dataclass(frozen=True)
class Grid:
    """A regular grid of square pixels.

    Attributes:
        name: the ``--grid`` name it was made from.
        crs: ``EPSG:<code>`` or WKT.
        resolution: pixel edge in CRS units (positive; rows go down).
        anchor: ``(x, y)`` of one pixel corner; every pixel edge is ``anchor + k * resolution``.
    """

    name: str
    crs: str
    resolution: float
    anchor: tuple[float, float]

    def to_doc(self) -> dict:
        return {"name": self.name, "crs": self.crs, "resolution": self.resolution,
                "anchor": list(self.anchor)}

    @classmethod
    def from_doc(cls, doc: dict) -> Grid:
        return cls(doc["name"], doc["crs"], float(doc["resolution"]), tuple(doc["anchor"]))

    def domain(self, bbox: tuple[float, float, float, float], bbox_crs: str, tile: int) -> GeoBox:
        """The GeoBox made of the whole ``tile`` x ``tile`` px tiles that intersect ``bbox``.

        Returns:
            ``odc.geo.geobox.GeoBox`` in this grid's CRS; its shape is a multiple of ``tile``.

        Raises:
            InvalidInput: the bbox cannot be projected to the grid's CRS.
        """
        from affine import Affine
        from odc.geo.geobox import GeoBox
        from odc.geo.geom import BoundingBox

        try:
            box = BoundingBox(*bbox, crs=bbox_crs).to_crs(self.crs)
        except Exception as exc:  # pyproj raises several types
            raise InvalidInput(f"bbox {list(bbox)} cannot be projected to {self.crs}: {exc}") from exc
        if not all(math.isfinite(v) for v in box):
            raise InvalidInput(f"bbox {list(bbox)} is outside the valid area of {self.crs}")
        size = self.resolution * tile
        ax, ay = self.anchor
        col0 = _floor((box.left - ax) / size)
        col1 = _ceil((box.right - ax) / size)
        row_top = _ceil((box.top - ay) / size)
        row_bottom = _floor((box.bottom - ay) / size)
        col1, row_top = max(col1, col0 + 1), max(row_top, row_bottom + 1)
        affine = Affine(self.resolution, 0.0, ax + col0 * size, 0.0, -self.resolution, ay + row_top * size)
        shape = ((row_top - row_bottom) * tile, (col1 - col0) * tile)
        return GeoBox(shape, affine, self.crs)


def _floor(v: float) -> int:
    r = round(v)
    return int(r) if abs(v - r) < 1e-9 else math.floor(v)


def _ceil(v: float) -> int:
    r = round(v)
    return int(r) if abs(v - r) < 1e-9 else math.ceil(v)


def webmercator_zoom(native_metres: float, latitude: float) -> int:
    """The coarsest WebMercatorQuad zoom whose ground pixel at ``latitude`` is at most
    ``native_metres`` (capped to 0..24)."""
    ground0 = WEBMERCATOR_RES0 * math.cos(math.radians(max(-85.0, min(85.0, latitude))))
    return max(0, min(24, math.ceil(math.log2(ground0 / native_metres) - 1e-9)))


def parse_grid(name: str, *, native: NativeGrid | None = None,
               centre: tuple[float, float] | None = None) -> Grid:
    """Build a grid from its ``--grid`` name.

    Args:
        name: see the module docstring.
        native: the sources' pixel grid (``native`` and the default webmercator zoom need it).
        centre: ``(lon, lat)`` of the domain (default webmercator zoom).

    Raises:
        InvalidInput: unknown name, or a name the source cannot resolve.
    """
    text = str(name).strip().lower()
    if text == "native":
        if native is None:
            raise InvalidInput("grid native: the collection declares no CRS and resolution")
        res = native.pixel_size
        return Grid("native", native.crs, res, (native.origin[0] % res, native.origin[1] % res))
    m = WEBMERCATOR.match(text)
    if m:
        if m.group(1) is not None:
            zoom = int(m.group(1))
            if zoom > 24:
                raise InvalidInput(f"grid {name!r}: zoom must be 0..24")
        else:
            if native is None:
                raise InvalidInput("grid webmercator: name a zoom (webmercator-z14) for this collection")
            zoom = webmercator_zoom(_metres(native), (centre or (0.0, 0.0))[1])
        return Grid(f"webmercator-z{zoom}", "EPSG:3857", WEBMERCATOR_RES0 / 2 ** zoom, WEBMERCATOR_ORIGIN)
    m = EQUAL_AREA.match(text)
    if m:
        res = float(m.group(1)) * (1000.0 if m.group(2) == "km" else 1.0)
        if res <= 0:
            raise InvalidInput(f"grid {name!r}: the resolution must be positive")
        return Grid(text, "EPSG:6933", res, EASE2_LOWER_LEFT)
    m = CRS_GRID.match(text)
    if m:
        res = float(m.group(2))
        if not math.isfinite(res) or res <= 0:
            raise InvalidInput(f"grid {name!r}: the resolution must be positive")
        anchor = (float(m.group(3)), float(m.group(4))) if m.group(3) is not None else (0.0, 0.0)
        return Grid(text, f"EPSG:{m.group(1)}", res, anchor)
    raise InvalidInput(f"unknown grid {name!r}; use one of: {', '.join(GRID_NAMES)}")


def _metres(native: NativeGrid) -> float:
    """The native pixel size in metres (degrees converted at the equator)."""
    from pyproj import CRS

    axes = CRS.from_user_input(native.crs).axis_info
    unit = axes[0].unit_name if axes else "metre"
    return native.pixel_size * (111320.0 if "degree" in unit else 1.0)


def check_grid_name(value: str) -> str:
    """A ``--grid`` name, lower-cased.

    Raises:
        InvalidInput: not one of :data:`GRID_NAMES`.
    """
    text = str(value).strip().lower()
    if text != "native" and not WEBMERCATOR.match(text) and not EQUAL_AREA.match(text):
        m = CRS_GRID.match(text)
        if m:
            _check_epsg(int(m.group(1)), value)
            return text
        raise InvalidInput(f"unknown grid {value!r}; use one of: {', '.join(GRID_NAMES)}")
    return text


def crs_grid_name(epsg: int, resolution: float, anchor: tuple[float, float] = (0.0, 0.0)) -> str:
    """The ``epsg:<code>/<R>[@<X>,<Y>]`` name of a grid (the anchor is left out when at 0, 0)."""
    name = f"epsg:{epsg}/{_number(resolution)}"
    if any(anchor):
        name += f"@{_number(anchor[0])},{_number(anchor[1])}"
    return name


def _number(value: float) -> str:
    """Shortest text of a float that reads back to it (integers without ``.0``)."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _check_epsg(code: int, name: str) -> None:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_epsg(code)
    except CRSError as exc:
        raise InvalidInput(f"grid {name!r}: EPSG:{code} is not a known CRS") from exc
