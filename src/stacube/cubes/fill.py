"""Procedural fill and reads: ``open_cube(name, bbox=..., time=...)``.

As in the DARTS project's procedural datacubes, the store is a cache of the catalog: a request
finds the fill units (tiles x time chunks) it intersects, computes only those not in the store
yet (claimed in ``stacube.cube_chunks`` so concurrent requests never compute one twice, run by
an executor: in-process, a process pool or Dask), updates the pyramid above them, and returns
the requested region from the store. A second identical request reads only the Zarr store:
no catalog search for items, no source COG.
"""

from __future__ import annotations

import math
import os
import time as _time
from contextlib import closing
from dataclasses import asdict, dataclass

from odc.geo.geom import BoundingBox

from stacube.algo.load import Gate
from stacube.core.bbox import parse_bbox
from stacube.core.times import parse_rfc3339, parse_time
from stacube.cubes.arrays import open_level
from stacube.cubes.definition import CubeDefinition
from stacube.cubes.pyramid import update_levels
from stacube.cubes.records import CubeRecords, Unit, worker_id
from stacube.cubes.units import fill_unit
from stacube.errors import InvalidInput, NoData, StacubeError
from stacube.jobs.executors import SerialExecutor, make_executor
from stacube.jobs.stages import JobCancelled
from stacube.settings import Settings

POLL_SECONDS = 0.5


@dataclass
class FillReport:
    """What a request needed and what it computed.

    Attributes:
        units: fill units the request intersects.
        computed: units this call computed.
        reused: units already in the store.
        waited: units another process was computing (this call waited for them).
        items: items read by the computed units.
        levels_written: pyramid blocks recomputed.
        seconds: wall time of the fill.
    """

    units: int = 0
    computed: int = 0
    reused: int = 0
    waited: int = 0
    items: int = 0
    levels_written: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def steps_for(definition: CubeDefinition, time) -> range:
    """The contiguous range of time steps overlapping ``time`` (see :func:`parse_time`).

    Raises:
        NoData: no step of the cube in that range.
    """
    start, end = parse_time(time)
    if start is None and end is None:
        return range(len(definition.steps))
    hits = [n for n, s in enumerate(definition.steps)
            if (end is None or parse_rfc3339(s["start"]) <= end) and (start is None or parse_rfc3339(s["end"]) >= start)]
    if not hits:
        first, last = definition.steps[0]["start"], definition.steps[-1]["end"]
        raise NoData(f"cube {definition.name} has no time step in {time!r} (it spans {first} .. {last})")
    return range(hits[0], hits[-1] + 1)


def window_for(definition: CubeDefinition, bbox, bbox_crs: str = "EPSG:4326", level: int = 0) -> tuple[slice, slice]:
    """Rows and columns of level ``level`` covering ``bbox`` (None: the whole cube); a bbox
    thinner than a pixel (or a point) gives the pixel under it.

    Raises:
        InvalidInput: a malformed bbox.
        NoData: the bbox does not meet the cube.
    """
    geobox = definition.level_geobox(level)
    ny, nx = geobox.shape.y, geobox.shape.x
    if bbox is None:
        return slice(0, ny), slice(0, nx)
    values = parse_bbox(bbox, allow_point=True)
    box = BoundingBox(*values, crs=bbox_crs).to_crs(geobox.crs)
    inv = ~geobox.affine
    xs, ys = zip(*[inv * (x, y) for x, y in ((box.left, box.top), (box.right, box.bottom),
                                             (box.left, box.bottom), (box.right, box.top))])
    fx0, fx1, fy0, fy1 = min(xs), max(xs), min(ys), max(ys)
    if not all(math.isfinite(v) for v in (fx0, fx1, fy0, fy1)) or fx1 < 0 or fy1 < 0 or fx0 >= nx or fy0 >= ny:
        bounds = [round(v, 6) for v in definition.bbox_lonlat]
        raise NoData(f"bbox {list(values)} is outside cube {definition.name} (lon/lat bounds {bounds})")
    c0, r0 = max(0, math.floor(fx0 + 1e-9)), max(0, math.floor(fy0 + 1e-9))
    c1 = min(nx, max(math.ceil(fx1 - 1e-9), c0 + 1))
    r1 = min(ny, max(math.ceil(fy1 - 1e-9), r0 + 1))
    return slice(r0, r1), slice(c0, c1)


def units_for(definition: CubeDefinition, rows: slice, cols: slice, steps: range, level: int = 0) -> list[Unit]:
    """Fill units under a window of level ``level``, ``(tile_y, tile_x, time_block)``."""
    f = 2 ** level
    tile, tchunk = definition.tile, definition.chunks[0]
    ty0, ty1 = rows.start * f // tile, math.ceil(rows.stop * f / tile)
    tx0, tx1 = cols.start * f // tile, math.ceil(cols.stop * f / tile)
    ny, nx = definition.tiles_shape
    if not len(steps):
        return []
    blocks = range(steps.start // tchunk, (steps.stop - 1) // tchunk + 1)
    return [(iy, ix, tb) for tb in blocks for iy in range(ty0, min(ty1, ny)) for ix in range(tx0, min(tx1, nx))]


def _executor(n_units: int, workers: int | None, dask: str | None, settings: Settings):
    if dask:
        return make_executor(None, dask)
    if n_units <= 1:
        return SerialExecutor()
    n = workers if workers is not None else (settings.workers or None)
    return make_executor(min(n, n_units) if n else None, kind=settings.executor)


def fill_units(settings: Settings, definition: CubeDefinition, units: list[Unit], *,
               workers: int | None = None, dask: str | None = None, executor=None,
               progress=None, wait_seconds: float = 3600.0, gate: Gate | None = None,
               cancelled=None) -> FillReport:
    """Make sure every unit is in the store: compute the missing ones, wait for those another
    process is computing, then update the pyramid above what this call computed.

    Args:
        units: fill units (see :func:`units_for`).
        workers / dask / executor: where units run (default: in-process for one unit, else
            ``settings.workers`` (or one per core) threads or worker processes, as
            ``settings.executor`` says).
        progress: ``progress(done, total)`` as units finish.
        wait_seconds: longest wait for units computed elsewhere.
        gate: the read gate of the source hrefs (see :mod:`stacube.algo.load`).
        cancelled: ``cancelled() -> bool``, asked after each unit: when True the fill stops
            there (the units computed so far are kept, with their pyramid levels).

    Returns:
        A :class:`FillReport`.

    Raises:
        StorageError / StacubeError: a unit failed (recorded as failed; a later request retries it).
        JobCancelled: ``cancelled()`` answered True.
    """
    started = _time.perf_counter()
    store = CubeRecords(settings)
    report = FillReport(units=len(units))
    states = store.states(definition.name, units)
    pending = [u for u in units if states.get(u) != "done"]
    report.reused = len(units) - len(pending)
    if not pending:
        report.seconds = round(_time.perf_counter() - started, 3)
        return report
    me = worker_id()
    doc = definition.to_doc()
    computed: list[Unit] = []
    done = report.reused
    tick = progress or (lambda d, t: None)
    tick(done, len(units))
    own = executor is None
    deadline = _time.monotonic() + wait_seconds
    waited: set[Unit] = set()
    stopped = False
    try:
        while pending:
            claimed = store.claim(definition.name, pending, me)
            if claimed:
                if executor is None:
                    executor = _executor(len(claimed), workers, dask, settings)
                # one unit at a time in this process: let odc-stac read with a thread per core
                threads = (os.cpu_count() or 1) if getattr(executor, "workers", 1) == 1 else None
                errors: list[BaseException] = []
                try:
                    with closing(executor.map_unordered(
                            fill_unit, [(settings, doc, u, threads, gate) for u in claimed])) as outcomes:
                        for (_, _, unit, *_), outcome in outcomes:
                            if isinstance(outcome, BaseException):
                                errors.append(outcome)
                                continue
                            computed.append(tuple(unit))
                            report.items += outcome["items"]
                            done += 1
                            tick(done, len(units))
                            if cancelled is not None and done < len(units) and cancelled():
                                stopped = True
                                break
                except BaseException:
                    store.release(definition.name, claimed, me)
                    raise
                if errors:
                    store.release(definition.name, claimed, me)  # units whose worker died unrecorded
                    exc = errors[0]
                    if isinstance(exc, StacubeError):
                        raise exc
                    raise StacubeError(f"cube {definition.name}: a tile failed: {type(exc).__name__}: {exc}") from exc
                if stopped:
                    store.release(definition.name, claimed, me)  # the claims not computed
                    break
            others = [u for u in pending if u not in claimed]
            waited.update(others)
            if not others:
                break
            if _time.monotonic() > deadline:
                raise StacubeError(f"cube {definition.name}: gave up waiting for {len(others)} tile(s) "
                                   "being filled by another process")
            _time.sleep(POLL_SECONDS)
            states = store.states(definition.name, others)
            finished = [u for u in others if states.get(u) == "done"]
            done += len(finished)
            if finished:
                tick(done, len(units))
            pending = [u for u in others if states.get(u) != "done"]
    finally:
        if own and executor is not None:
            executor.close()
    report.computed = len(computed)
    report.waited = len(waited)
    report.levels_written = update_levels(definition, settings, computed)
    report.seconds = round(_time.perf_counter() - started, 3)
    if stopped:
        raise JobCancelled(f"cube {definition.name}: the fill was cancelled after {done} of {len(units)} units")
    return report


def load_definition(settings: Settings, name: str) -> CubeDefinition:
    """The cube's definition.

    Raises:
        NotFound: no such cube.
    """
    return CubeDefinition.from_doc(CubeRecords(settings).get(name))


def select_variables(definition: CubeDefinition, variables) -> list[str]:
    """Validate requested variable names (None: all).

    Raises:
        InvalidInput: an unknown variable.
    """
    if variables is None:
        return list(definition.variables)
    if isinstance(variables, str):
        variables = [v.strip() for v in variables.split(",") if v.strip()]
    unknown = [v for v in variables if v not in definition.variables]
    if unknown:
        raise InvalidInput(f"cube {definition.name} has no variable {unknown[0]!r}; it has "
                           f"{', '.join(definition.variables)}")
    return list(dict.fromkeys(variables))


def fill_region(name: str, bbox=None, time=None, *, bbox_crs: str = "EPSG:4326", level: int = 0,
                settings: Settings | None = None, workers: int | None = None, dask: str | None = None,
                progress=None, gate: Gate | None = None) -> tuple[CubeDefinition, FillReport, range, tuple[slice, slice]]:
    """Fill what a request needs; returns the definition, the report, and the request's steps
    and window (rows, columns of ``level``). See :func:`open_cube`."""
    settings = settings or Settings()
    definition = load_definition(settings, name)
    if not 0 <= level < definition.levels:
        raise InvalidInput(f"cube {name} has levels 0..{definition.levels - 1}, not {level}")
    steps = steps_for(definition, time)
    rows, cols = window_for(definition, bbox, bbox_crs, level)
    units = units_for(definition, rows, cols, steps, level)
    report = fill_units(settings, definition, units, workers=workers, dask=dask, progress=progress, gate=gate)
    return definition, report, steps, (rows, cols)


def open_cube(name: str, bbox=None, time=None, *, bbox_crs: str = "EPSG:4326", variables=None,
              level: int = 0, fill: bool = True, load: bool = True, settings: Settings | None = None,
              workers: int | None = None, dask: str | None = None, gate: Gate | None = None):
    """A region of a Zarr cube, computing the parts of it that are not in the store yet.

    Args:
        name: the cube (``stacube cube create``).
        bbox: ``MINX,MINY,MAXX,MAXY`` (string or 4 numbers) in ``bbox_crs`` (default lon/lat);
            None: the whole cube.
        time: ``"2020-01/2020-06"``, a date, or a ``(start, end)`` pair; None: every step.
        variables: names (bands, indices, ``quality``...); None: all.
        level: pyramid level (0: full resolution; ``k``: pixels ``2**k`` larger).
        fill: compute missing units (False: read what is there; missing parts are NaN / 0).
        load: read the values now (False: a lazily indexed Dataset over the store).
        workers / dask: where missing units are computed (see :func:`fill_units`).
        gate: the read gate of the source hrefs (see :mod:`stacube.algo.load`).
        cancelled: ``cancelled() -> bool``, asked after each unit: when True the fill stops
            there (the units computed so far are kept, with their pyramid levels).

    Returns:
        ``xarray.Dataset`` with ``(time, y, x)`` variables in the cube's CRS (``spatial_ref``
        grid mapping: ``.rio.crs`` / ``.odc.geobox`` work); float32 physical values, NaN where
        missing (bands stored as integers are decoded; with ``load=False`` xarray's CF decoding
        gives them as float64); attributes ``stacube:units``, ``stacube:units_computed`` and
        ``stacube:units_reused`` tell what the fill did.

    Raises:
        NotFound: unknown cube. InvalidInput: bad bbox, time, level or variable.
        NoData: the request does not meet the cube. StorageError: a store or source is unreadable.
    """
    settings = settings or Settings()
    if fill:
        definition, report, steps, (rows, cols) = fill_region(
            name, bbox, time, bbox_crs=bbox_crs, level=level, settings=settings, workers=workers, dask=dask,
            gate=gate)
    else:
        definition = load_definition(settings, name)
        if not 0 <= level < definition.levels:
            raise InvalidInput(f"cube {name} has levels 0..{definition.levels - 1}, not {level}")
        steps = steps_for(definition, time)
        rows, cols = window_for(definition, bbox, bbox_crs, level)
        report = FillReport()
    names = select_variables(definition, variables)
    ds = open_level(definition, settings, level)[names].isel(
        time=slice(steps.start, steps.stop), y=rows, x=cols)
    if load:
        ds = ds.load()
        for var in set(names) & set(definition.encodings):  # CF decoding of scaled integers gives float64
            ds[var] = ds[var].astype("float32")
    ds.attrs = {**ds.attrs, "stacube:units": report.units, "stacube:units_computed": report.computed,
                "stacube:units_reused": report.reused}
    return ds


def all_units(definition: CubeDefinition) -> list[Unit]:
    """Every fill unit of the cube (level 0, all steps)."""
    return units_for(definition, slice(0, definition.geobox.shape.y), slice(0, definition.geobox.shape.x),
                     range(len(definition.steps)))


def fill_state(settings: Settings, definition: CubeDefinition) -> dict:
    """How much of the cube is in the store: ``{"units", "done", "running", "failed"}`` (fill units;
    a stale claim counts as not running)."""
    states = CubeRecords(settings).states(definition.name)
    counts = {s: sum(1 for v in states.values() if v == s) for s in ("done", "running", "failed")}
    n_tiles = definition.tiles_shape[0] * definition.tiles_shape[1]
    return {"units": n_tiles * definition.n_blocks, **counts}


def filled_regions(settings: Settings, definition: CubeDefinition, *, limit: int = 10_000) -> dict:
    """The recorded fill units as a GeoJSON FeatureCollection (WGS 84 lon/lat polygons of the
    units' tiles, one feature per unit).

    Each feature has ``tile_y``, ``tile_x``, ``time_block``, ``state`` (``done``, ``running``,
    ``stale``: a claim whose process died, ``failed``), ``start`` / ``end`` (the first and last
    time step of the unit). At most ``limit`` units, in tile order; ``truncated`` says when
    more were recorded.
    """
    states = CubeRecords(settings).states(definition.name)
    units = sorted(states)[:limit]
    features = []
    for iy, ix, tb in units:
        steps = definition.block_steps(tb)
        if not len(steps):
            continue
        outline = definition.unit_geobox(iy, ix).extent.to_crs("EPSG:4326")
        features.append({
            "type": "Feature", "id": f"{iy}-{ix}-{tb}", "geometry": outline.json,
            "properties": {"tile_y": iy, "tile_x": ix, "time_block": tb, "state": states[(iy, ix, tb)],
                           "start": definition.steps[steps.start]["start"],
                           "end": definition.steps[steps.stop - 1]["end"]},
        })
    return {"type": "FeatureCollection", "features": features, "numberMatched": len(states),
            "numberReturned": len(features), "truncated": len(states) > len(units)}


def fill_bounded(settings: Settings, definition: CubeDefinition, bbox, steps: range, *, level: int = 0,
                 bbox_crs: str = "EPSG:4326", max_units: int = 4, gate: Gate | None = None) -> FillReport | None:
    """Fill the units under ``bbox`` and ``steps`` of level ``level`` when they are at most
    ``max_units`` (a map tile's request: its cost stays bounded at coarse zooms); None when they
    are more (nothing is computed) or the bbox does not meet the cube."""
    try:
        rows, cols = window_for(definition, bbox, bbox_crs, level)
    except NoData:
        return None
    units = units_for(definition, rows, cols, steps, level)
    if len(units) > max_units:
        return None
    return fill_units(settings, definition, units, workers=1, gate=gate)
