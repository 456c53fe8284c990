"""Loading stacks of scenes with odc-stac, onto one GeoBox, as physical values plus masks.

Each source (a collection with its items, band mapping and quality rule) is loaded with
``odc.stac.load`` onto the same GeoBox, one time slice per item (``groupby`` by position, so
overlapping scenes of the same day stay separate and every slice maps to one item). Bands
become float32 physical values (``DN * scale + offset`` from each item's ``raster:bands``, NaN
for nodata); the quality band becomes the boolean ``observed`` and ``clear`` stacks. Sources are
concatenated along time in ``(datetime, id)`` order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stacube.algo.harmonize import harmonized_scale_offset
from stacube.catalog.quality import QualityRule
from stacube.errors import StorageError


@dataclass
class Source:
    """One collection's part of a cube.

    Attributes:
        collection: the STAC Collection document.
        items: STAC Item documents to load.
        assets: ``{output band name: asset key}`` (common names resolved per collection).
        rule: how to decode the quality asset (None: every valid pixel is clear).
    """

    collection: dict
    items: list[dict]
    assets: dict[str, str]
    rule: QualityRule | None

    @property
    def id(self) -> str:
        return self.collection["id"]


@dataclass
class Stack:
    """Loaded observations, ``(time, y, x)``, sorted by time.

    Attributes:
        bands: ``{name: float32 stack}`` physical values, NaN where missing.
        observed: bool stack: not fill in the mask and not nodata in the reference band.
        clear: bool stack: observed and clear by the quality rule.
        times: ``datetime64[ns]`` per slice.
        item_ids / collections: the item behind each slice.
    """

    bands: dict[str, np.ndarray]
    observed: np.ndarray
    clear: np.ndarray
    times: np.ndarray
    item_ids: list[str]
    collections: list[str]
    shape: tuple[int, int] = field(default=(0, 0))

    def select(self, index: np.ndarray) -> Stack:
        """The slices at ``index`` (ints or a boolean mask); the stack itself when that is all."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        if len(index) == len(self.item_ids) and np.array_equal(index, np.arange(len(index))):
            return self
        return Stack(
            {k: v[index] for k, v in self.bands.items()}, self.observed[index], self.clear[index],
            self.times[index], [self.item_ids[i] for i in index],
            [self.collections[i] for i in index], self.shape,
        )


def raster_band(item: dict, collection: dict, asset_key: str) -> dict:
    asset = item.get("assets", {}).get(asset_key) or {}
    bands = asset.get("raster:bands") or asset.get("bands") or []
    template = ((collection.get("item_assets") or {}).get(asset_key) or {}).get("raster:bands") or [{}]
    merged = dict(template[0]) if template else {}
    if bands:
        merged.update({k: v for k, v in bands[0].items() if v is not None})
    return merged


def band_scaling(item: dict, collection: dict, asset_key: str, meta: dict | None = None) -> tuple[float, float]:
    """``(scale, offset)`` with ``physical = DN * scale + offset`` for one item's asset: the
    ``raster:bands`` values (item over collection ``item_assets``), Sentinel-2 reflectance put
    on one scale across processing baseline 04.00 (:mod:`stacube.algo.harmonize`)."""
    meta = raster_band(item, collection, asset_key) if meta is None else meta
    scale = float(meta.get("scale", 1.0) or 1.0)
    offset = float(meta.get("offset", 0.0) or 0.0)
    return harmonized_scale_offset(item, asset_key, scale, offset, collection)


def _nodata_value(value):
    if value is None:
        return None
    if isinstance(value, str):
        return float(value)
    return value


def item_order_key(item: dict) -> tuple[str, str]:
    props = item.get("properties", {})
    return (props.get("datetime") or props.get("start_datetime") or "", item["id"])


def _odc_load(items: list[dict], assets: list[str], geobox, pool):
    import odc.stac
    import pystac
    import rasterio

    stac_items = [pystac.Item.from_dict(dict(i), preserve_dict=False) for i in items]
    try:
        return odc.stac.load(
            stac_items, bands=assets, geobox=geobox,
            groupby=lambda item, parsed, idx: idx, pool=pool, fail_on_error=True,
            resampling="nearest",
        )
    except (rasterio.errors.RasterioIOError, rasterio.errors.RasterioError, OSError) as exc:
        raise StorageError(f"cannot read an asset: {str(exc).splitlines()[0]}") from exc


def load_stack(sources: list[Source], geobox, bands: list[str], *, quality: bool = True,
               pool: int | None = None) -> Stack:
    """Load sources onto ``geobox``.

    Args:
        sources: collections, their items, band mappings and quality rules.
        geobox: an ``odc.geo.geobox.GeoBox`` (CRS, resolution, extent) of the output.
        bands: output band names to load (the first is the reference band for observations).
        quality: also load and decode the quality asset.
        pool: threads odc-stac reads with.

    Returns:
        A :class:`Stack`; empty (zero slices) when no item is given.

    Raises:
        StorageError: an asset cannot be read.
    """
    ny, nx = geobox.shape.y, geobox.shape.x
    parts = []
    for src in sources:
        items = sorted(src.items, key=item_order_key)
        if not items:
            continue
        keys = [src.assets[b] for b in bands]
        mask_key = src.rule.asset if (quality and src.rule) else None
        to_load = list(dict.fromkeys(keys + ([mask_key] if mask_key else [])))
        ds = _odc_load(items, to_load, geobox, pool)
        n = len(items)
        out_bands = {}
        for name, key in zip(bands, keys):
            raw = ds[key].values
            values = np.empty(raw.shape, dtype=np.float32)
            for i, item in enumerate(items):
                meta = raster_band(item, src.collection, key)
                nodata = _nodata_value(meta.get("nodata", ds[key].attrs.get("nodata")))
                scale, offset = band_scaling(item, src.collection, key, meta)
                sl = raw[i]
                np.multiply(sl, np.float32(scale), out=values[i], casting="unsafe")
                if offset:
                    values[i] += np.float32(offset)
                if nodata is not None:
                    missing = np.isnan(sl) if (isinstance(nodata, float) and np.isnan(nodata)) else sl == nodata
                    values[i][missing] = np.nan
            out_bands[name] = values
        ref = out_bands[bands[0]]
        valid = np.isfinite(ref)
        if mask_key:
            observed, clear = src.rule.decode(ds[mask_key].values)
            observed &= valid
            clear &= observed
        else:
            observed, clear = valid, valid.copy()
        times = np.array([_datetime64(item_order_key(i)[0]) for i in items], dtype="datetime64[ns]")
        del ds
        parts.append((out_bands, observed, clear, times, [i["id"] for i in items], [src.id] * n))
    if not parts:
        empty = np.zeros((0, ny, nx), dtype=np.float32)
        return Stack({b: empty for b in bands}, empty.astype(bool), empty.astype(bool),
                     np.array([], dtype="datetime64[ns]"), [], [], (ny, nx))
    if len(parts) == 1:  # already in (datetime, id) order: no copy
        out_bands, observed, clear, times, ids, collections = parts[0]
        return Stack(out_bands, observed, clear, times, ids, collections, (ny, nx))
    times = np.concatenate([p[3] for p in parts])
    ids = [i for p in parts for i in p[4]]
    collections = [c for p in parts for c in p[5]]
    order = np.lexsort((np.array(ids, dtype=object).astype(str), times))
    return Stack(
        {b: _merge([p[0][b] for p in parts], order) for b in bands},
        _merge([p[1] for p in parts], order), _merge([p[2] for p in parts], order),
        times[order], [ids[i] for i in order], [collections[i] for i in order], (ny, nx),
    )


def _merge(arrays: list[np.ndarray], order: np.ndarray) -> np.ndarray:
    """Concatenate along time in ``order`` with one allocation (slice by slice)."""
    total = sum(a.shape[0] for a in arrays)
    out = np.empty((total, *arrays[0].shape[1:]), dtype=arrays[0].dtype)
    position = np.empty(total, dtype=np.intp)
    position[order] = np.arange(total)
    k = 0
    for a in arrays:
        for i in range(a.shape[0]):
            out[position[k]] = a[i]
            k += 1
    return out


def _datetime64(text: str) -> np.datetime64:
    """An RFC 3339 timestamp (any offset) as a naive UTC ``datetime64[ns]``."""
    from datetime import datetime, timezone

    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(value, "ns")


def load_masks(sources: list[Source], geobox, *, pool: int | None = None) -> dict[str, np.ndarray]:
    """The raw quality (mask) values of every item of ``sources`` that has a rule, on ``geobox``.

    Returns:
        ``{item id: (y, x) array}`` in the mask asset's dtype (nodata where not covered).

    Raises:
        StorageError: a mask cannot be read.
    """
    out: dict[str, np.ndarray] = {}
    for src in sources:
        if src.rule is None or not src.items:
            continue
        items = sorted(src.items, key=item_order_key)
        values = _odc_load(items, [src.rule.asset], geobox, pool)[src.rule.asset].values
        out.update({item["id"]: values[i] for i, item in enumerate(items)})
    return out
