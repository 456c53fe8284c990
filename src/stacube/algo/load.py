"""Loading stacks of scenes with odc-stac, onto one GeoBox, as physical values plus masks.

Each source (a collection with its items, band mapping and quality rule) is loaded with
``odc.stac.load`` onto the same GeoBox, one time slice per item (``groupby`` by position, so
overlapping scenes of the same day stay separate and every slice maps to one item). Bands
become float32 physical values (``DN * scale + offset`` from each item's ``raster:bands``, NaN
for nodata); the quality band becomes the boolean ``observed`` and ``clear`` stacks. Sources are
concatenated along time in ``(datetime, id)`` order.

Every href a stack reads can go through a *read gate* first: a callable ``gate(href,
collection) -> href`` that refuses what may not be read and returns the href to open (the
server builds it from its read prefixes, :class:`stacube.access.gate.ReadGate`; the kernels
only call it). :func:`gate_items` applies it, and the loader opens what it returns.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from stacube.algo import buffers
from stacube.algo.blocks import run_blocks
from stacube.algo.files import open_raster
from stacube.algo.harmonize import harmonized_scale_offset
from stacube.algo.reduce import compiled, flat
from stacube.catalog.quality import QualityRule
from stacube.core.crs import same_crs
from stacube.errors import StorageError


#: ``gate(href, collection id) -> href to open``; raises when the href may not be read.
Gate = Callable[[str, str | None], str]


@dataclass
class Source:
    """One collection's part of a cube.

    Attributes:
        collection: the STAC Collection document.
        items: STAC Item documents to load.
        assets: ``{output band name: asset key}`` (common names resolved per collection).
        rule: how to decode the quality asset (None: every valid pixel is clear).
        resampling: ``{output band name: method}`` (rasterio's names: ``nearest``, ``bilinear``,
            ``cubic``, ``average``...) used when the files are not on the output grid; bands
            not named, and the quality asset, are read with ``nearest``.
    """

    collection: dict
    items: list[dict]
    assets: dict[str, str]
    rule: QualityRule | None
    resampling: dict[str, str] | None = None

    def with_items(self, items: list[dict]) -> Source:
        """The same source over other items."""
        return replace(self, items=items)

    def asset_resampling(self) -> dict[str, str] | None:
        """``{asset key: method}`` of the bands that are not read with ``nearest``."""
        out = {self.assets[b]: m for b, m in (self.resampling or {}).items() if b in self.assets and m != "nearest"}
        if self.rule is not None:
            out.pop(self.rule.asset, None)
        return out or None

    @property
    def id(self) -> str:
        return self.collection["id"]

    def loaded_keys(self, bands: list[str], quality: bool = True) -> list[str]:
        """The asset keys a load of ``bands`` opens (the quality asset too, with ``quality``)."""
        keys = [self.assets[b] for b in bands if b in self.assets]
        if quality and self.rule is not None:
            keys.append(self.rule.asset)
        return list(dict.fromkeys(keys))


def gate_items(items: list[dict], keys: Iterable[str], gate: Gate | None) -> list[dict]:
    """``items`` with the hrefs of their ``keys`` assets replaced by what ``gate`` says to open
    (the items themselves when ``gate`` is None).

    Raises:
        whatever ``gate`` raises for an href that may not be read (nothing has been opened).
    """
    if gate is None:
        return items
    keys = list(keys)
    out = []
    for item in items:
        assets = dict(item.get("assets") or {})
        for key in keys:
            asset = assets.get(key)
            if isinstance(asset, dict) and asset.get("href") is not None:
                assets[key] = {**asset, "href": gate(asset["href"], item.get("collection"))}
        out.append({**item, "assets": assets})
    return out


def gated_sources(sources: list[Source], bands: list[str], gate: Gate | None,
                  quality: bool = True) -> list[Source]:
    """``sources`` whose items' loaded assets went through ``gate`` (see :func:`gate_items`)."""
    if gate is None:
        return sources
    return [s.with_items(gate_items(s.items, s.loaded_keys(bands, quality), gate)) for s in sources]


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


def _odc_load(items: list[dict], assets: list[str], geobox, pool, resampling: dict[str, str] | None = None):
    import odc.stac
    import pystac
    import rasterio

    stac_items = [pystac.Item.from_dict(dict(i), preserve_dict=False) for i in items]
    try:
        with warnings.catch_warnings():
            # odc-loader warps into arrays it georeferences itself; rasterio's warning says nothing
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = odc.stac.load(
                stac_items, bands=assets, geobox=geobox,
                groupby=lambda item, parsed, idx: idx, pool=pool, fail_on_error=True,
                resampling={"*": "nearest", **(resampling or {})},
            )
    except (rasterio.errors.RasterioIOError, rasterio.errors.RasterioError, OSError) as exc:
        raise StorageError(f"cannot read an asset: {str(exc).splitlines()[0]}") from exc
    return ds


def _pixel_offset(src_transform, geobox) -> tuple[int, int] | None:
    """``(col, row)`` of the GeoBox's first pixel in the file's grid when both grids share the
    pixel size and the pixel edges (no resampling is needed), else None."""
    a, g = src_transform, geobox.affine
    if a.b or a.d or g.b or g.d or abs(a.a - g.a) > 1e-9 * abs(g.a) or abs(a.e - g.e) > 1e-9 * abs(g.e):
        return None
    col, row = (g.c - a.c) / a.a, (g.f - a.f) / a.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(col), round(row)


class _OffGrid(Exception):
    """A file is not on the output grid, or differs in dtype or nodata from the first item's."""


def _same_nodata(a, b) -> bool:
    return a == b or (a is not None and b is not None and np.isnan(a) and np.isnan(b))


def _direct_load(items: list[dict], assets: list[str], geobox, pool) -> dict[str, tuple[np.ndarray, object]] | None:
    """Read the assets straight into ``(item, y, x)`` arrays when every file is on the GeoBox's
    grid (same CRS, pixel size and pixel edges): a windowed read per file, no resampling, the
    pixels odc-stac's nearest-neighbour load gives; files are read on ``pool`` threads (GDAL
    decodes without the GIL), each opened, checked and closed by its task (open files stay
    bounded by the threads). Outside a file: its nodata, else NaN (float) or 0.

    Returns:
        ``{asset: (array, nodata)}``, or None when a file is not on the grid or not of the
        first item's dtype and nodata (odc-stac then loads the source).

    Raises:
        StorageError: a file cannot be read.
    """
    import rasterio
    from rasterio.windows import Window

    ny, nx = geobox.shape.y, geobox.shape.x
    try:
        hrefs = [[item["assets"][key]["href"] for key in assets] for item in items]
    except KeyError:
        return None
    errors = (rasterio.errors.RasterioIOError, rasterio.errors.RasterioError, OSError)
    out = {}
    try:
        for j, key in enumerate(assets):
            with open_raster(hrefs[0][j]) as src:
                out[key] = (buffers.empty((len(items), ny, nx), src.dtypes[0]), src.nodata)
    except errors as exc:
        raise StorageError(f"cannot read an asset: {str(exc).splitlines()[0]}") from exc

    crs_checked: dict[str, bool] = {}  # a stack's files share a few CRSs: compared once each

    def on_crs(crs) -> bool:
        wkt = crs.to_wkt() if crs is not None else ""
        same = crs_checked.get(wkt)
        if same is None:
            same = crs_checked[wkt] = crs is not None and same_crs(crs, geobox.crs)
        return same

    def read(task: tuple[int, int]) -> None:
        i, j = task
        array, nodata = out[assets[j]]
        with open_raster(hrefs[i][j]) as src:
            offset = _pixel_offset(src.transform, geobox) if src.count == 1 and on_crs(src.crs) else None
            if offset is None or np.dtype(src.dtypes[0]) != array.dtype or not _same_nodata(src.nodata, nodata):
                raise _OffGrid(hrefs[i][j])
            col, row = offset
            dst = array[i]
            c0, r0 = max(0, -col), max(0, -row)
            c1, r1 = min(nx, src.width - col), min(ny, src.height - row)
            if (c0, r0, c1, r1) != (0, 0, nx, ny):
                dst[...] = _fill_value(dst.dtype, nodata)
            if c1 > c0 and r1 > r0:
                src.read(1, window=Window(col + c0, row + r0, c1 - c0, r1 - r0), out=dst[r0:r1, c0:c1])

    tasks = [(i, j) for i in range(len(items)) for j in range(len(assets))]
    try:
        if (pool or 1) > 1 and len(tasks) > 1:
            threads = ThreadPoolExecutor(pool)
            try:
                list(threads.map(read, tasks))
            finally:  # a file off the grid or unreadable: the reads not started are dropped
                threads.shutdown(wait=True, cancel_futures=True)
        else:
            for task in tasks:
                read(task)
    except _OffGrid:
        return None
    except errors as exc:
        raise StorageError(f"cannot read an asset: {str(exc).splitlines()[0]}") from exc
    return out


def _fill_value(dtype: np.dtype, nodata):
    if nodata is not None:
        return nodata
    return np.nan if dtype.kind == "f" else 0


def read_assets(items: list[dict], assets: list[str], geobox, pool: int | None = None,
                resampling: dict[str, str] | None = None) -> dict[str, tuple[np.ndarray, object]]:
    """The assets of ``items`` on ``geobox``, one slice per item: ``{asset: ((item, y, x) array in
    the files' dtype, the nodata the reader reports)}``. Files on the GeoBox's grid are read
    directly (:func:`_direct_load`: every resampling method gives the source pixels there),
    others through ``odc.stac.load`` (nearest neighbour, or ``resampling[asset]``).

    Raises:
        StorageError: an asset cannot be read.
    """
    pool = pool if pool is not None else (os.cpu_count() or 1)
    direct = _direct_load(items, assets, geobox, pool)
    if direct is not None:
        return direct
    ds = _odc_load(items, assets, geobox, pool, resampling)
    return {key: (ds[key].values, ds[key].attrs.get("nodata")) for key in assets}


def load_stack(sources: list[Source], geobox, bands: list[str], *, quality: bool = True,
               pool: int | None = None, gate: Gate | None = None) -> Stack:
    """Load sources onto ``geobox``.

    Args:
        sources: collections, their items, band mappings and quality rules.
        geobox: an ``odc.geo.geobox.GeoBox`` (CRS, resolution, extent) of the output.
        bands: output band names to load (the first is the reference band for observations);
            none: only the quality asset is read (observations are what the mask says).
        quality: also load and decode the quality asset.
        pool: threads odc-stac reads with.
        gate: the read gate every href goes through first (None: hrefs are opened as they are).

    Returns:
        A :class:`Stack`; empty (zero slices) when no item is given.

    Raises:
        StorageError: an asset cannot be read.
        AssetNotAllowed (from ``gate``): an href may not be read; nothing has been opened.
    """
    sources = gated_sources(sources, bands, gate, quality)
    ny, nx = geobox.shape.y, geobox.shape.x
    parts = []
    for src in sources:
        items = sorted(src.items, key=item_order_key)
        if not items:
            continue
        keys = [src.assets[b] for b in bands]
        mask_key = src.rule.asset if (quality and src.rule) else None
        to_load = list(dict.fromkeys(keys + ([mask_key] if mask_key else [])))
        arrays = read_assets(items, to_load, geobox, pool, src.asset_resampling())
        n = len(items)
        out_bands = {}
        for name, key in zip(bands, keys):
            raw, reported = arrays[key]
            metas = [raster_band(i, src.collection, key) for i in items]
            scaling = [band_scaling(i, src.collection, key, m) for i, m in zip(items, metas)]
            out_bands[name] = physical_values(raw, metas, scaling, reported)
        reference = out_bands[bands[0]] if bands else None
        if mask_key:
            observed, clear = decode_quality(src.rule, arrays[mask_key][0], reference, pool)
        elif reference is not None:
            observed = np.isfinite(reference)
            clear = observed.copy()
        else:
            raise ValueError(f"{src.id}: no quality rule and no band to load")
        times = np.array([_datetime64(item_order_key(i)[0]) for i in items], dtype="datetime64[ns]")
        # the files' raw arrays not kept as a band (converted values, the quality codes): their
        # memory serves the next arrays of a job (stacube.algo.buffers)
        buffers.give_back(*(raw for raw, _ in arrays.values()), keep=(*out_bands.values(), observed, clear))
        del arrays
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


def decode_quality(rule: QualityRule, mask: np.ndarray, reference: np.ndarray | None = None,
                   threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(observed, clear)`` bool stacks from a quality stack: the rule's decoding, and where
    ``reference`` (the first band, float) is not finite, no observation.

    8/16-bit masks go through the rule's lookup table in one compiled pass that writes both
    stacks (no temporary arrays); other dtypes through :meth:`QualityRule.decode`.
    """
    if mask.dtype.kind not in "ui" or mask.dtype.itemsize > 2 or mask.ndim != 3:
        observed, clear = rule.decode(mask)
        if reference is not None:
            observed &= np.isfinite(reference)
        clear &= observed
        return observed, clear
    jit = compiled()
    table = rule.lookup_table(mask.dtype)
    low = int(np.iinfo(mask.dtype).min)
    codes = flat(mask)
    ref = flat(reference) if reference is not None else np.zeros((1, 1), dtype=np.float32)
    observed = buffers.empty(mask.shape, bool)
    clear = buffers.empty(mask.shape, bool)
    seen, ok = observed.reshape(codes.shape), clear.reshape(codes.shape)
    run_blocks(lambda p0, p1: jit.decode(codes, table, low, ref, reference is not None, seen, ok, p0, p1),
               codes.shape[1], 1 << 16, threads)
    return observed, clear


def physical_values(raw: np.ndarray, metas: list[dict], scaling: list[tuple[float, float]],
                    reported=None) -> np.ndarray:
    """float32 physical values ``DN * scale + offset`` of a ``(item, y, x)`` stack, NaN where a
    slice holds its nodata (the item's ``raster:bands`` nodata, else the reader's).

    float32 slices with scale 1 and offset 0 are used as they are (no copy).
    """
    identity = raw.dtype == np.float32
    values = raw if identity else buffers.empty(raw.shape, np.float32)
    for i, (meta, (scale, offset)) in enumerate(zip(metas, scaling)):
        nodata = _nodata_value(meta.get("nodata", reported))
        sl = raw[i]
        missing = None
        if nodata is not None:
            missing = np.isnan(sl) if (isinstance(nodata, float) and np.isnan(nodata)) else sl == nodata
        if not (identity and scale == 1.0 and not offset):
            np.multiply(sl, np.float32(scale), out=values[i], casting="unsafe")
            if offset:
                values[i] += np.float32(offset)
        if missing is not None and missing.any():
            values[i][missing] = np.nan
    return values


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


def load_masks(sources: list[Source], geobox, *, pool: int | None = None,
               gate: Gate | None = None) -> dict[str, np.ndarray]:
    """The raw quality (mask) values of every item of ``sources`` that has a rule, on ``geobox``
    (every href through ``gate`` first, see :func:`gate_items`).

    Returns:
        ``{item id: (y, x) array}`` in the mask asset's dtype (nodata where not covered).

    Raises:
        StorageError: a mask cannot be read.
    """
    out: dict[str, np.ndarray] = {}
    for src in gated_sources(sources, [], gate):
        if src.rule is None or not src.items:
            continue
        items = sorted(src.items, key=item_order_key)
        values = _odc_load(items, [src.rule.asset], geobox, pool)[src.rule.asset].values
        out.update({item["id"]: values[i] for i, item in enumerate(items)})
    return out
