"""GeoBoxes: the JSON round trip, and the native pixel grid of a collection's items.

A GeoBox (``odc.geo.geobox.GeoBox``: shape, affine transform, CRS) is stored in job plans and
cube definitions as ``{"crs": WKT2, "affine": [a, b, c, d, e, f], "shape": [ny, nx]}``.

The *native grid* of a band is read from the STAC projection extension of the first item (in
time order) that has the band: its CRS (``proj:code`` of projection v2, ``proj:epsg`` of v1, or
``proj:wkt2`` / ``proj:projjson``), its resolution and its origin from ``proj:transform``
(asset fields first, then item properties).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stacube.core.times import item_order_key

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
