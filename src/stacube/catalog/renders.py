"""A collection's default rendering (STAC ``renders`` extension), derived from its assets and items.

So that TileJSON, WMTS and map viewers show a collection without being told which assets to
draw, stacube gives every collection that declares no ``renders`` one rendering:

* ``true-color``: the ``red``, ``green`` and ``blue`` assets (common names), each stretched
  over its own range (top-of-atmosphere blue is much brighter than red: one range for the three
  draws a blue haze);
* else ``<asset>``: the first data asset, rescaled, with the ``viridis`` colormap.

The rescale range comes from the data: the items' ``raster:bands`` statistics (per item
``mean ± 2 stddev`` clipped to its minimum and maximum; the median over the items), else from
the band's encoding (reflectance 0..0.3 through ``scale``/``offset``, the range of an 8-bit
type, 0..1 for floats). ``minmax_zoom`` comes from the resolution (the zoom whose Web Mercator
pixel is just finer than the data's) and the extent (a few zooms out from where the extent
fills a tile). Pure functions over documents.
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any

from stacube.catalog.bands import COMMON_NAMES, asset_common_name, band_map, data_bands

RENDERS_EXTENSION = "https://stac-extensions.github.io/render/v2.0.0/schema.json"
#: items whose statistics are looked at
MAX_ITEMS = 50
#: Web Mercator pixel size at zoom 0 on the equator, metres (256-pixel tiles)
ZOOM0_PIXEL = 2 * math.pi * 6378137 / 256
MAX_ZOOM = 22
REFLECTANCE = (0.0, 0.3)


def _band(asset: dict) -> dict:
    bands = asset.get("raster:bands") or asset.get("bands") or [{}]
    return bands[0] if isinstance(bands, list) and bands and isinstance(bands[0], dict) else {}


def _stats_range(items: list[dict], key: str) -> tuple[float, float] | None:
    lows, highs = [], []
    for item in items[:MAX_ITEMS]:
        asset = (item.get("assets") or {}).get(key) or {}
        stats = _band(asset).get("statistics") or asset.get("statistics") or {}
        try:
            lo, hi = float(stats["minimum"]), float(stats["maximum"])
        except (KeyError, TypeError, ValueError):
            continue
        mean, std = stats.get("mean"), stats.get("stddev")
        if isinstance(mean, (int, float)) and isinstance(std, (int, float)):
            lo, hi = max(lo, mean - 2 * std), min(hi, mean + 2 * std)
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
            lows.append(lo)
            highs.append(hi)
    if not lows:
        return None
    return statistics.median(lows), statistics.median(highs)


def _encoding_range(asset: dict, optical: bool) -> tuple[float, float]:
    band = _band(asset)
    dtype = str(band.get("data_type") or asset.get("data_type") or "")
    scale, offset = band.get("scale"), band.get("offset") or 0.0
    if optical and isinstance(scale, (int, float)) and scale:
        return tuple(sorted(((v - offset) / scale for v in REFLECTANCE)))  # type: ignore[return-value]
    if dtype in ("uint8", "int8"):
        return (0.0, 255.0)
    if dtype.startswith("float"):
        return REFLECTANCE if optical else (0.0, 1.0)
    if optical:
        return (0.0, 3000.0)  # reflectance x 10,000 without a declared scale
    return (0.0, 10000.0)


def _rescale(collection: dict, items: list[dict], keys: list[str], optical: bool) -> list[float]:
    assets = collection.get("item_assets") or {}
    ranges = [_stats_range(items, k) or _encoding_range(assets.get(k) or {}, optical) for k in keys]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    digits = 4 if hi - lo < 10 else 0
    return [round(lo, digits), round(hi, digits)]


def _resolution_m(collection: dict, items: list[dict], keys: list[str], lat: float) -> float | None:
    assets = collection.get("item_assets") or {}
    for key in keys:
        for doc in [assets.get(key) or {}, *((i.get("assets") or {}).get(key) or {} for i in items[:5])]:
            res = doc.get("gsd") or _band(doc).get("spatial_resolution")
            if isinstance(res, (int, float)) and res > 0:
                return float(res)
            transform = doc.get("proj:transform")
            code = str(doc.get("proj:code") or doc.get("proj:epsg") or "")
            if isinstance(transform, list) and len(transform) >= 6 and transform[0]:
                size = abs(float(transform[0]))
                geographic = code in ("EPSG:4326", "4326") or size < 0.01
                return size * 111320 * math.cos(math.radians(lat)) if geographic else size
    for item in items[:5]:
        gsd = (item.get("properties") or {}).get("gsd")
        if isinstance(gsd, (int, float)) and gsd > 0:
            return float(gsd)
    return None


def _bbox(collection: dict, items: list[dict]) -> list[float] | None:
    boxes = [i["bbox"][:2] + i["bbox"][-2:] for i in items if isinstance(i.get("bbox"), list)
             and len(i["bbox"]) in (4, 6)]
    if boxes:
        return [min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes)]
    try:
        box = collection["extent"]["spatial"]["bbox"][0]
        return box[:2] + box[-2:]
    except (KeyError, IndexError, TypeError):
        return None


def zoom_range(resolution_m: float | None, bbox: list[float] | None) -> list[int] | None:
    """``[minzoom, maxzoom]`` in Web Mercator for data of this resolution over this extent."""
    if resolution_m is None or bbox is None:
        return None
    lat = max(-85.0, min(85.0, (bbox[1] + bbox[3]) / 2))
    maxzoom = math.ceil(math.log2(ZOOM0_PIXEL * math.cos(math.radians(lat)) / resolution_m))
    maxzoom = max(0, min(MAX_ZOOM, maxzoom))
    span = max(bbox[2] - bbox[0], (bbox[3] - bbox[1]) / max(math.cos(math.radians(lat)), 0.1), 1e-9)
    fits = max(0, math.floor(math.log2(360.0 / span)))
    return [max(0, min(fits, maxzoom) - 2), maxzoom]


_NOT_PICTURES = re.compile(r"cloud|mask|qa|quality|prob|count|snow|shadow|aot|wvp|angle", re.I)


def _drawable(asset: dict) -> bool:
    """A raster asset titiler can draw (a GeoTIFF / JPEG 2000, or untyped)."""
    kind = str(asset.get("type") or "image/tiff").lower()
    return "tiff" in kind or "jp2" in kind


def _rank(key: str, asset: dict) -> tuple:
    """Order of preference of a single data band to draw: not a quality-like band, then one
    with a common name, then by key (item_assets keep no order in pgSTAC)."""
    words = " ".join([key, str(asset.get("title") or ""), *map(str, asset.get("stacube:aliases") or [])])
    return (bool(_NOT_PICTURES.search(words)), asset_common_name(asset) is None, key)


def default_renders(collection: dict, items: list[dict]) -> dict[str, dict[str, Any]] | None:
    """``renders`` for a collection that declares none (see the module docstring); None when it
    has no data asset to draw."""
    mapping = band_map(collection)
    rgb = [mapping.get(name) for name in ("red", "green", "blue")]
    render: dict[str, Any]
    if all(rgb):
        keys = list(rgb)
        name = "true-color"
        render = {"title": "True colour (red, green, blue)", "assets": keys,
                  "rescale": [_rescale(collection, items, [k], True) for k in keys]}
    else:
        assets = collection.get("item_assets") or {}
        data = sorted((k for k in data_bands(collection) if _drawable(assets.get(k) or {})),
                      key=lambda k: _rank(k, assets.get(k) or {}))
        if not data:
            return None
        keys = data[:1]
        name = keys[0]
        optical = asset_common_name((collection.get("item_assets") or {}).get(keys[0]) or {}) in COMMON_NAMES
        render = {"title": f"{keys[0]} (viridis)", "assets": keys,
                  "rescale": [_rescale(collection, items, keys, optical)], "colormap_name": "viridis"}
    bbox = _bbox(collection, items)
    lat = (bbox[1] + bbox[3]) / 2 if bbox else 0.0
    zooms = zoom_range(_resolution_m(collection, items, keys, lat), bbox)
    if zooms:
        render["minmax_zoom"] = zooms
    return {name: render}


def default_render(collection: dict) -> dict | None:
    """The collection's ``renders`` entry named ``default``, else its first; None without one."""
    renders = collection.get("renders")
    if not isinstance(renders, dict) or not renders:
        return None
    render = renders.get("default") or next(iter(renders.values()))
    return render if isinstance(render, dict) and render.get("assets") else None


def render_query(render: dict) -> list[tuple[str, str]]:
    """A rendering (STAC ``renders`` entry) as titiler query parameters: ``assets`` (repeated),
    ``rescale`` as ``"min,max"`` per band, ``colormap_name``, ``color_formula``, ``expression``,
    ``nodata``, ``resampling`` (``minmax_zoom`` is not a tile parameter: see the callers)."""
    out = [("assets", str(a)) for a in render.get("assets") or []]
    for rescale in render.get("rescale") or []:
        out.append(("rescale", ",".join(str(v) for v in rescale) if isinstance(rescale, list) else str(rescale)))
    for key in ("colormap_name", "color_formula", "expression", "nodata", "resampling"):
        if render.get(key) is not None:
            out.append((key, str(render[key])))
    return out


def render_zooms(render: dict) -> tuple[int, int] | None:
    """``(minzoom, maxzoom)`` of a rendering (``minmax_zoom``), or None."""
    zooms = render.get("minmax_zoom")
    if isinstance(zooms, list) and len(zooms) == 2 and all(isinstance(z, int) for z in zooms):
        return zooms[0], zooms[1]
    return None
