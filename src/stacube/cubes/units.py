"""One fill unit of a Zarr cube (a tile of whole chunks times one time chunk): find its items,
compute its arrays, write its chunks, record it.

:func:`fill_unit` is a picklable function that runs in any process reaching the catalog and the
store (in-process, a local process pool, Dask). It loads the unit's items onto the tile's GeoBox
with :func:`stacube.algo.load.load_stack` (odc-stac, physical values, the product's quality rule)
and writes the tile's chunks:

* masked observations: :func:`stacube.algo.observations.merge_observations` per solar day, plus
  the named indices computed from the merged bands;
* composites: :func:`stacube.algo.tile.compute_tile`, the compositing jobs' own tile function,
  per period. Best-pixel ranks scenes by their ``eo:cloud_cover`` (lower first; missing counts
  as clear), which, unlike a per-area clear share, does not depend on the tile, so neighbouring
  tiles filled at different times agree.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from stacube.algo.load import Gate, gate_items, load_stack
from stacube.algo.observations import merge_observations
from stacube.algo.tile import compute_tile
from stacube.catalog.pgstac import Catalog
from stacube.core.indices import get_index
from stacube.cubes.arrays import write_block
from stacube.cubes.definition import QUALITY, CubeDefinition
from stacube.cubes.records import CubeRecords, Unit
from stacube.settings import Settings
from stacube.storage.objects import configure_gdal

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox


def unit_items(catalog: Catalog, definition: CubeDefinition, unit: Unit) -> list[dict]:
    """The items of a unit's time steps whose footprint meets the unit's tile."""
    iy, ix, tb = unit
    ids = definition.item_ids(definition.block_steps(tb))
    if not ids:
        return []
    footprint = definition.unit_geobox(iy, ix).extent.to_crs("EPSG:4326")
    collections = [s["collection"]["id"] for s in definition.sources]
    return list(catalog.search({"collections": collections, "ids": ids, "intersects": footprint.json}))


def observations(definition: CubeDefinition, items: list[dict], geobox: GeoBox, steps: range,
                 pool: int | None = None) -> dict[str, np.ndarray]:
    """Masked observations of ``items`` on ``geobox`` for ``steps``.

    Returns:
        ``{variable: (len(steps), y, x)}``: float32 bands and indices (NaN unless clear) and the
        uint8 ``quality`` flag.
    """
    stack = load_stack(definition.make_sources(items), geobox, definition.load_bands, pool=pool)
    step_of = definition.step_of_item()
    slice_steps = np.array([step_of.get(i, -1) - steps.start for i in stack.item_ids], dtype=np.int64)
    slice_steps[(slice_steps < 0) | (slice_steps >= len(steps))] = -1
    merged, quality = merge_observations(stack.bands, stack.observed, stack.clear, slice_steps, len(steps))
    out = {b: merged[b] for b in definition.bands}
    for name in definition.indices:
        index = get_index(name)
        out[name] = index.compute({c: merged[c] for c in index.bands.values()})
    out[QUALITY] = quality
    return out


def clear_ratio(item: dict) -> float:
    """``1 - eo:cloud_cover / 100`` (1 when the item does not say)."""
    cover = (item.get("properties") or {}).get("eo:cloud_cover")
    return 1.0 if cover is None else max(0.0, 1.0 - float(cover) / 100.0)


def composites(definition: CubeDefinition, items: list[dict], geobox: GeoBox, steps: range,
               pool: int | None = None) -> dict[str, np.ndarray]:
    """Composites of ``items`` on ``geobox`` for the periods ``steps`` (compositing jobs' tile
    function); ``{variable: (len(steps), y, x)}``."""
    step_of = definition.step_of_item()
    used = {i["id"]: clear_ratio(i) for i in items if steps.start <= step_of.get(i["id"], -1) < steps.stop}
    period_index = {i: step_of[i] - steps.start for i in used}
    return compute_tile(definition.composite_inputs(items), geobox, used, period_index, len(steps), pool=pool)


def compute_unit(definition: CubeDefinition, unit: Unit, catalog: Catalog,
                 pool: int | None = None, gate: Gate | None = None) -> tuple[dict[str, np.ndarray], int]:
    """The arrays of one fill unit and the number of items read (``{}`` when none meets it);
    every href read goes through ``gate`` first (see :mod:`stacube.algo.load`)."""
    iy, ix, tb = unit
    items = unit_items(catalog, definition, unit)
    if not items:
        return {}, 0
    keys = {k for src in definition.make_sources(items) for k in src.loaded_keys(definition.load_bands)}
    items = gate_items(items, keys, gate)
    geobox = definition.unit_geobox(iy, ix)
    steps = definition.block_steps(tb)
    make = observations if definition.mode == "observations" else composites
    return make(definition, items, geobox, steps, pool=pool), len(items)


def fill_unit(settings: Settings, definition_doc: dict, unit: Unit, read_threads: int | None = None,
              gate: Gate | None = None) -> dict:
    """Compute one unit, write its chunks and record it done (or failed, and re-raise).

    ``read_threads``: threads odc-stac reads the COGs with (None: one). ``gate``: the read gate
    of the source hrefs (a picklable callable; None: hrefs opened as they are).

    Returns:
        ``{"unit", "items", "seconds"}``.
    """
    configure_gdal(settings)
    definition = CubeDefinition.from_doc(definition_doc)
    store = CubeRecords(settings)
    started = time.perf_counter()
    unit = tuple(unit)
    try:
        arrays, n_items = compute_unit(definition, unit, Catalog(settings), pool=read_threads, gate=gate)
        if arrays:
            iy, ix, tb = unit
            write_block(definition, settings, 0, definition.block_steps(tb).start, iy * definition.tile,
                        ix * definition.tile, arrays)
    except BaseException as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        store.finish(definition.name, unit, error=message)
        raise
    store.finish(definition.name, unit, items=n_items)
    return {"unit": list(unit), "items": n_items, "seconds": round(time.perf_counter() - started, 3)}
