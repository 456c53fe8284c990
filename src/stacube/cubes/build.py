"""Building cubes: define and record one, then fill its units (tiles x time chunks).

A fill unit is computed by :func:`fill_unit`, a picklable function that runs in any process
reaching the catalog and the store (in-process, a local process pool, Dask): it fetches the
unit's items, loads them onto the tile's GeoBox with :func:`stacube.cube.load.load_stack`
(odc-stac, physical values, the product's quality rule) and writes the tile's chunks:

* masked observations: :func:`stacube.cubes.kernels.merge_observations` per solar day, plus the
  named indices computed from the merged bands;
* composites: :func:`stacube.jobs.tiles.compute_tile`, the compositing jobs' own tile function,
  per period. Best-pixel ranks scenes by their ``eo:cloud_cover`` (lower first; missing counts
  as clear), which, unlike a per-area clear share, does not depend on the tile, so neighbouring
  tiles filled at different times agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from stacube.catalog.store import Catalog
from stacube.cube.indices import get_index
from stacube.cube.load import load_stack
from stacube.cubes.definition import QUALITY, CubeDefinition, define_cube
from stacube.cubes.kernels import merge_observations
from stacube.cubes.spec import CubeSpec
from stacube.cubes.state import CubeStore, Unit
from stacube.errors import Conflict
from stacube.settings import Settings
from stacube.storage.stores import configure_gdal


def unit_items(catalog: Catalog, definition: CubeDefinition, unit: Unit) -> list[dict]:
    """The items of a unit's time steps whose footprint meets the unit's tile."""
    iy, ix, tb = unit
    ids = definition.item_ids(definition.block_steps(tb))
    if not ids:
        return []
    footprint = definition.unit_geobox(iy, ix).extent.to_crs("EPSG:4326")
    collections = [s["collection"]["id"] for s in definition.sources]
    return list(catalog.search({"collections": collections, "ids": ids, "intersects": footprint.json}))


def observations(definition: CubeDefinition, items: list[dict], geobox, steps: range,
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


def composites(definition: CubeDefinition, items: list[dict], geobox, steps: range,
               pool: int | None = None) -> dict[str, np.ndarray]:
    """Composites of ``items`` on ``geobox`` for the periods ``steps`` (compositing jobs' tile
    function); ``{variable: (len(steps), y, x)}``."""
    from stacube.jobs.plan import Plan
    from stacube.jobs.spec import CompositeSpec
    from stacube.jobs.tiles import compute_tile

    plan = Plan(
        spec=CompositeSpec.model_validate(definition.composite), job_id=definition.name,
        sources=definition.make_sources(items), bands=definition.bands, indices=definition.indices,
        load_bands=definition.load_bands, geobox=geobox, tile_shape=(geobox.shape.y, geobox.shape.x),
        periods=[], output_root="", output_collection=definition.name,
        items={i["id"]: i for i in items},
    )
    step_of = definition.step_of_item()
    used = {i["id"]: clear_ratio(i) for i in items if steps.start <= step_of.get(i["id"], -1) < steps.stop}
    period_index = {i: step_of[i] - steps.start for i in used}
    return compute_tile(plan, (0, 0), used, period_index, len(steps), pool=pool)


def compute_unit(definition: CubeDefinition, unit: Unit, catalog: Catalog,
                 pool: int | None = None) -> tuple[dict[str, np.ndarray], int]:
    """The arrays of one fill unit and the number of items read (``{}`` when none meets it)."""
    iy, ix, tb = unit
    items = unit_items(catalog, definition, unit)
    if not items:
        return {}, 0
    geobox = definition.unit_geobox(iy, ix)
    steps = definition.block_steps(tb)
    make = observations if definition.mode == "observations" else composites
    return make(definition, items, geobox, steps, pool=pool), len(items)


def fill_unit(settings: Settings, definition_doc: dict, unit: Unit, read_threads: int | None = None) -> dict:
    """Compute one unit, write its chunks and record it done (or failed, and re-raise).

    ``read_threads``: threads odc-stac reads the COGs with (None: one).

    Returns:
        ``{"unit", "items", "seconds"}``.
    """
    from stacube.cubes.store import write_block

    configure_gdal(settings)
    definition = CubeDefinition.from_doc(definition_doc)
    store = CubeStore(settings)
    started = time.perf_counter()
    unit = tuple(unit)
    try:
        arrays, n_items = compute_unit(definition, unit, Catalog(settings), pool=read_threads)
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


@dataclass
class Created:
    """A new cube and how much of it was filled."""

    definition: CubeDefinition
    fill: object | None


def create_cube(spec: CubeSpec, settings: Settings, *, fill: bool = True, replace: bool = False,
                workers: int | None = None, dask: str | None = None, progress=None) -> Created:
    """Define a cube, create its (empty) stores, register it in the catalog and, with ``fill``,
    fill every unit with parallel workers.

    Args:
        spec: validated parameters (:func:`stacube.cubes.spec.build_cube_spec`).
        settings: catalog and storage.
        fill: compute the whole cube now (else units are computed when first read).
        replace: replace a cube of the same name (its stores and bookkeeping).
        workers / dask: see :func:`stacube.jobs.executors.make_executor`.
        progress: ``progress(done, total)`` while filling.

    Raises:
        NotFound / InvalidInput / NoData: see :func:`stacube.cubes.definition.define_cube`.
        Conflict: the name is taken by a cube (without ``replace``) or by a collection that is
            not a cube.
        StorageError: the store cannot be written.
    """
    from stacube.cubes.fill import fill_units, units_for
    from stacube.cubes.register import is_cube_collection, register_cube
    from stacube.cubes.store import create_levels, delete_stores

    catalog = Catalog(settings)
    if spec.name in catalog.collection_ids() and not is_cube_collection(catalog.get_collection(spec.name)):
        raise Conflict(f"a collection named {spec.name!r} exists and is not a cube; choose another name")
    root = (spec.output or f"{settings.output_root}/cubes").rstrip("/")
    definition = define_cube(spec, catalog, root)
    store = CubeStore(settings)
    previous = None
    if replace:
        try:
            previous = CubeDefinition.from_doc(store.get(spec.name))
        except Exception:
            previous = None
    store.create(spec.name, definition.to_doc(), replace=replace)
    try:
        if previous is not None:
            delete_stores(previous, settings)
        create_levels(definition, settings)
    except BaseException:
        store.delete(spec.name)
        raise
    register_cube(catalog, definition, settings)
    report = None
    if fill:
        units = units_for(definition, slice(0, definition.geobox.shape.y), slice(0, definition.geobox.shape.x),
                          range(len(definition.steps)))
        report = fill_units(settings, definition, units, workers=workers, dask=dask, progress=progress)
    return Created(definition, report)
