"""Building cubes: define and record one, create its stores, register it, and fill it.

Filling runs :func:`stacube.cubes.units.fill_unit` over every fill unit with parallel workers
(:func:`stacube.cubes.fill.fill_units`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stacube.algo.load import Gate
from stacube.catalog.pgstac import Catalog
from stacube.cubes.arrays import create_levels, delete_stores
from stacube.cubes.definition import CubeDefinition, define_cube
from stacube.cubes.fill import FillReport, all_units, fill_units
from stacube.cubes.records import CubeRecords
from stacube.cubes.register import is_cube_collection, register_cube
from stacube.cubes.spec import CubeSpec
from stacube.errors import Conflict
from stacube.settings import Settings


@dataclass
class Created:
    """A new cube and how much of it was filled."""

    definition: CubeDefinition
    fill: FillReport | None


def create_cube(spec: CubeSpec, settings: Settings, *, fill: bool = True, replace: bool = False,
                workers: int | None = None, dask: str | None = None, progress=None,
                gate: Gate | None = None) -> Created:
    """Define a cube, create its (empty) stores, register it in the catalog and, with ``fill``,
    fill every unit with parallel workers.

    Args:
        spec: validated parameters (:func:`stacube.cubes.spec.build_cube_spec`).
        settings: catalog and storage.
        fill: compute the whole cube now (else units are computed when first read).
        replace: replace a cube of the same name (its stores and bookkeeping).
        workers / dask: see :func:`stacube.jobs.executors.make_executor`.
        progress: ``progress(done, total)`` while filling.
        gate: the read gate of the source hrefs (see :mod:`stacube.algo.load`).

    Raises:
        NotFound / InvalidInput / NoData: see :func:`stacube.cubes.definition.define_cube`.
        Conflict: the name is taken by a cube (without ``replace``) or by a collection that is
            not a cube.
        StorageError: the store cannot be written.
    """
    catalog = Catalog(settings)
    if spec.name in catalog.collection_ids() and not is_cube_collection(catalog.get_collection(spec.name)):
        raise Conflict(f"a collection named {spec.name!r} exists and is not a cube; choose another name")
    root = (spec.output or f"{settings.output_root}/cubes").rstrip("/")
    definition = define_cube(spec, catalog, root)
    store = CubeRecords(settings)
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
        report = fill_units(settings, definition, all_units(definition), workers=workers, dask=dask, progress=progress, gate=gate)
    return Created(definition, report)
