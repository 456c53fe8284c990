"""GeoBoxes: the JSON round trip, the native pixel grid of a collection's items, and how
outputs are aligned on it.

A GeoBox (``odc.geo.geobox.GeoBox``: shape, affine transform, CRS) is stored in job plans and
cube definitions as ``{"crs": WKT2, "affine": [a, b, c, d, e, f], "shape": [ny, nx]}``.

The *native grid* of a band is read from the STAC projection extension of the first item (in
time order) that has the band: its CRS (``proj:code`` of projection v2, ``proj:epsg`` of v1, or
``proj:wkt2`` / ``proj:projjson``), its resolution and its origin from ``proj:transform``
(asset fields first, then item properties). The *source grid* of a collection is its declared
storage CRS and resolution (``stacube:storage``, from an ODC product's ``storage``) laid on the
items' origin, else the native grid: outputs on it coincide with the source pixels (Landsat's
30 m grid has its pixel edges on x.5 of 30 m, not on multiples of 30 m).

*Anchors* (odc-geo / odc-stac ``anchor``) say where output pixel edges fall: ``native`` (the
source grid's edges: the default), ``edge`` (multiples of the resolution), ``center`` (half a
pixel off them), ``floating`` (the requested area's corner) or ``FX,FY`` (fractions of a pixel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stacube.core.crs import same_crs
from stacube.core.times import item_order_key
from stacube.errors import InvalidInput

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox


def geobox_to_doc(geobox: GeoBox) -> dict:
    """``{"crs": WKT2, "affine": [6 numbers], "shape": [ny, nx]}``."""
    return {"crs": geobox.crs.to_wkt(), "affine": list(geobox.affine)[:6],
            "shape": [geobox.shape.y, geobox.shape.x]}


def geobox_from_doc(doc: dict) -> GeoBox:
    """The inverse of :func:`geobox_to_doc`."""
    from affine import Affine
    from odc.geo.geobox import GeoBox

    return GeoBox(tuple(doc["shape"]), Affine(*doc["affine"]), doc["crs"])


@dataclass(frozen=True)
class NativeGrid:
    """A source pixel grid.

    Attributes:
        crs: ``EPSG:<code>`` or WKT2/PROJJSON text.
        resolution: ``(x, y)`` pixel size in CRS units (y negative for north-up images).
        origin: ``(x, y)`` of the upper-left pixel corner of the image it was read from; every
            pixel edge of the grid is ``origin + k * resolution``.
    """

    crs: str
    resolution: tuple[float, float]
    origin: tuple[float, float]

    @property
    def pixel_size(self) -> float:
        """The (absolute) x pixel size."""
        return abs(self.resolution[0])


def item_crs(item: dict, asset_key: str | None = None) -> str | None:
    """The CRS of an item's asset (asset fields, then item properties): ``proj:code``,
    ``proj:epsg``, ``proj:wkt2`` or ``proj:projjson``; None when none is given."""
    import json

    asset = (item.get("assets") or {}).get(asset_key) or {} if asset_key else {}
    props = item.get("properties") or {}
    for doc in (asset, props):
        if doc.get("proj:code"):
            return str(doc["proj:code"])
        if doc.get("proj:epsg"):
            return f"EPSG:{int(doc['proj:epsg'])}"
        if doc.get("proj:wkt2"):
            return str(doc["proj:wkt2"])
        if doc.get("proj:projjson"):
            return json.dumps(doc["proj:projjson"])
    return None


def native_grid(items: list[dict], asset_key: str) -> NativeGrid | None:
    """The grid of ``asset_key`` in the first item (in time order) that describes it; None when
    no item gives a CRS and a ``proj:transform``."""
    for item in sorted(items, key=item_order_key):
        asset = (item.get("assets") or {}).get(asset_key)
        if asset is None:
            continue
        props = item.get("properties") or {}
        crs = item_crs(item, asset_key)
        transform = asset.get("proj:transform") or props.get("proj:transform")
        if crs is None or not transform or len(transform) < 6:
            return None
        t = [float(v) for v in transform[:6]]
        return NativeGrid(crs, (t[0], t[4]), (t[2], t[5]))
    return None


def source_grid(collection: dict, items: list[dict], asset_key: str) -> NativeGrid | None:
    """The grid outputs of ``asset_key`` follow by default: the collection's ``stacube:storage``
    CRS and resolution when it declares both, with its pixel edges on the items' (when they are
    in that CRS; else on multiples of the resolution), else the items' own grid
    (:func:`native_grid`); None when neither is known."""
    storage = collection.get("stacube:storage") or {}
    native = native_grid(items, asset_key)
    crs, res = storage.get("crs"), storage.get("resolution")
    if not crs or not res:
        return native
    rx, ry = abs(float(res[0])), abs(float(res[-1]))
    origin = native.origin if native is not None and same_crs(native.crs, crs) else (0.0, 0.0)
    return NativeGrid(str(crs), (rx, -ry), origin)


def source_grid_in(crs: str, collection: dict, items: list[dict], asset_key: str) -> NativeGrid | None:
    """The source grid (:func:`source_grid`), else the native grid, that is in ``crs``; None
    when neither is (outputs in another CRS cannot follow the sources' pixels)."""
    for grid in (source_grid(collection, items, asset_key), native_grid(items, asset_key)):
        if grid is not None and same_crs(crs, grid.crs):
            return grid
    return None


ANCHORS = ("native", "edge", "center", "floating")


def check_anchor(value) -> str | None:
    """An ``--anchor`` value: one of :data:`ANCHORS`, or ``FX,FY`` with both in [0, 1).

    Raises:
        InvalidInput: anything else.
    """
    if value is None:
        return None
    text = str(value).strip().lower().replace("centre", "center")
    if text in ANCHORS:
        return text
    try:
        fx, fy = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput(f"anchor {value!r}: use {', '.join(ANCHORS)} or FX,FY (pixel fractions)") from None
    if not (0 <= fx < 1 and 0 <= fy < 1):
        raise InvalidInput(f"anchor {value!r}: fractions must be in [0, 1)")
    return f"{fx:g},{fy:g}"


def _fraction(coordinate: float, size: float) -> float:
    f = (coordinate / abs(size)) % 1.0
    return 0.0 if f < 1e-9 or 1.0 - f < 1e-9 else f


def output_anchor(anchor: str | None, grid: NativeGrid | None, resolution: tuple[float, float]):
    """The odc-geo ``anchor`` of ``GeoBox.from_bbox`` for an output of ``resolution`` (x, y).

    Args:
        anchor: a :func:`check_anchor` value (None means ``native``).
        grid: the source grid, when it is in the output CRS (None otherwise).

    Returns:
        ``odc.geo.XY`` pixel fractions (``native`` on a grid: pixel edges at ``origin + k * res``,
        ``FX,FY``), or ``"edge"``, ``"center"``, ``"floating"``; ``native`` with no grid in the
        output CRS is ``"edge"``.
    """
    from odc.geo import xy_

    if anchor in (None, "native"):
        if grid is None:
            return "edge"
        return xy_(_fraction(grid.origin[0], resolution[0]), _fraction(grid.origin[1], resolution[1]))
    if anchor in ("edge", "center", "floating"):
        return anchor
    fx, fy = (float(v) for v in anchor.split(","))
    return xy_(fx, fy)
