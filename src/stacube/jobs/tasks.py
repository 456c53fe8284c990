"""The steps of a compositing job, each runnable in any process that reaches the catalog.

``start`` plans the job, stores the plan as a document in object storage (read once per process
by whoever runs a tile: :func:`load_plan`) and creates the ``scenes`` tiles; :func:`execute_tile`
runs one tile of any tile stage and records it (the same function serves the local executors,
Dask and the Lambda worker); :func:`finish_stage` moves a job whose stage is complete on (the
stage machine of :mod:`stacube.jobs.stages`: after ``scenes`` it chooses the scenes and creates
the staging cube, :func:`prepare_composite`); ``finalize`` writes the COGs (in parallel, per
variable and period) and the report, commits the outputs and registers the items, and may run
again after a commit (it then only registers). Tiles are idempotent: a retried or resumed tile
rewrites its own region and nothing else.

The engine knows nothing of workspaces: the caller gives the job's id (scoped as it likes) when
it submits, and an ``on_register(collection_id, job)`` callback that :func:`finalize` calls
before the output collection is written (the HTTP and SQS callers claim it for the job's
workspace there).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from stacube import __version__
from stacube.algo.load import Gate, gated_sources
from stacube.algo.process import ProcessFailed, probe_outputs, process_tile
from stacube.algo.tile import composite_tile, tile_stats
from stacube.catalog.pgstac import Catalog
from stacube.core.cf import variable_attrs
from stacube.core.crs import crs_text
from stacube.core.times import item_datetime, iso
from stacube.errors import InvalidInput, NoData, StacubeError
from stacube.jobs import outputs
from stacube.jobs.plan import Plan, make_plan, plan_from_doc, plan_to_doc
from stacube.jobs.processes import process_of
from stacube.jobs.register import derived_collection, derived_items
from stacube.jobs.spec import CompositeSpec, spec_from_doc
from stacube.jobs.stages import JobCancelled, Stage
from stacube.jobs.state import JobStore, tile_index, tile_key
from stacube.settings import Settings
from stacube.storage.objects import LocalStore, Staging, configure_gdal, open_store, read_document

if TYPE_CHECKING:
    from stacube.jobs.pyramid import Render

#: ``on_register(output collection id, job row)``: called by :func:`finalize` before the output
#: collection is written.
OnRegister = Callable[[str, dict], None]
#: The key of a process tile's result that holds the process's error and traceback.
PROCESS_ERROR = "process_error"
#: Process errors a report lists (the count is always complete).
MAX_REPORTED_ERRORS = 100
_PLANS: dict[str, Plan] = {}
_DOCUMENTS: dict[str, dict] = {}


def load_plan(settings: Settings, job_id: str, job: dict | None = None, *, uri: str | None = None) -> Plan:
    """The job's plan, read from its document once per process and run.

    Args:
        job: the job's row (``plan_uri``); read when neither it nor ``uri`` is given.
        uri: the plan document (a tile message carries it).

    Raises:
        StacubeError: the job has not been planned.
        StorageError: the document cannot be read.
    """
    if uri is None:
        job = job or JobStore(settings).get(job_id, full=False)
        uri = job.get("plan_uri")
        if not uri:
            raise StacubeError(f"job {job_id} has not been planned yet")
    if uri not in _PLANS:
        if len(_PLANS) >= 4:
            _PLANS.clear()
        _PLANS[uri] = plan_from_doc(read_document(uri, settings))
    return _PLANS[uri]


def selection_uri(plan_uri: str) -> str:
    """Where the scene selection of the run whose plan is ``plan_uri`` is stored."""
    return plan_uri.rsplit("/", 1)[0] + "/selection.json"


def load_selection(settings: Settings, plan_uri: str, uri: str | None = None) -> dict:
    """The scene selection (``used``, ``period_index``, ``steps``), read once per process."""
    uri = uri or selection_uri(plan_uri)
    if uri not in _DOCUMENTS:
        if len(_DOCUMENTS) >= 4:
            _DOCUMENTS.clear()
        _DOCUMENTS[uri] = read_document(uri, settings)
    return _DOCUMENTS[uri]


def output_root(spec: CompositeSpec, settings: Settings) -> str:
    return (spec.output or settings.output_root).rstrip("/")


def staging_of(settings: Settings, plan: Plan, job: dict) -> Staging:
    """The staging area of the job's current run."""
    return open_store(plan.output_root, settings).staging(job["id"], job["run"])


def start(settings: Settings, job_id: str, *, gate: Gate | None = None, plan: Plan | None = None) -> Plan:
    """Plan a queued job (or return the plan of a running one) and create its scene tiles (a
    job without a scene pass has none: :func:`skip_scene_pass` moves it on).

    Args:
        gate: the read gate (:data:`stacube.algo.load.Gate`) every input href goes through at
            planning; the plan keeps the hrefs it returns, so tiles open exactly what was
            checked. None: the hrefs are kept as they are.
        plan: the plan :func:`stacube.jobs.runner.check` made from the job's parameters just
            before it was submitted (the catalog is not searched again); None: made here.

    Raises:
        NotFound / InvalidInput / NoData: the job fails with that reason (and it is re-raised);
            so does an href the gate refuses.
        JobCancelled: the job ended (was cancelled) while it was planned.
    """
    store = JobStore(settings)
    job = store.get(job_id, full=False)
    if job["state"] == "running" and job.get("plan_uri"):
        return load_plan(settings, job_id, job)
    spec = spec_from_doc(job["parameters"])
    try:
        if plan is None:
            plan = make_plan(spec, Catalog(settings), output_root(spec, settings), job_id=job_id)
        else:
            plan = replace(plan, job_id=job_id)
        if gate is not None:
            sources = gated_sources(plan.inputs.sources, plan.inputs.load_bands, gate)
            plan.inputs = replace(plan.inputs, sources=sources)
            plan.items = {i["id"]: i for src in sources for i in src.items}
        if plan.is_process and plan.outputs is None:
            plan.outputs = _probe(plan)
        check_pyramid(plan)
    except StacubeError as exc:
        store.update(job_id, state="failed", error=exc.message)
        raise
    staging = staging_of(settings, plan, job)
    uri = staging.write_document("plan", plan_to_doc(plan))
    if scene_pass(plan):
        store.add_tiles(job_id, Stage.SCENES, [tile_key(t) for t in plan.tile_indices()])
    if not store.update(job_id, plan=plan_summary(plan, uri), plan_uri=uri, state="running", stage=Stage.SCENES):
        staging.discard()  # cancelled while it was planned: it stays cancelled
        raise JobCancelled(f"job {job_id} is {store.state(job_id)}")
    return load_plan(settings, job_id, uri=uri)


def pyramid_render(plan: Plan) -> Render | None:
    """How the job's tile pyramid is drawn (:func:`stacube.jobs.pyramid.resolve_render`), None
    without one. Composite bands are reflectance.

    Raises:
        InvalidInput: the pyramid's bands or ranges do not fit the job's outputs.
    """
    if plan.spec.pyramid is None:
        return None
    from stacube.jobs import pyramid  # lazy: rio-tiler, only for jobs with a pyramid

    return pyramid.resolve_render(plan.spec.pyramid, plan.variables, {v: plan.dtype_of(v) for v in plan.variables},
                                  set() if plan.is_process else set(plan.bands))


def check_pyramid(plan: Plan) -> None:
    """What the job's pyramid would fail on, found when it is planned: its bands and ranges
    (process outputs only once they are known) and its size (:func:`stacube.jobs.pyramid.check_size`).

    Raises:
        InvalidInput: as :func:`pyramid_render` and :func:`stacube.jobs.pyramid.check_size`.
    """
    if plan.spec.pyramid is None:
        return
    from stacube.jobs import pyramid  # lazy: rio-tiler, only for jobs with a pyramid

    pyramid.check_size(pyramid.lonlat_bounds(plan.geobox), plan.spec.pyramid, len(plan.periods))
    if not plan.is_process or plan.outputs is not None:
        pyramid_render(plan)


def _probe(plan: Plan):
    """The outputs of a process that declares none (:func:`stacube.algo.process.probe_outputs`).

    Raises:
        ProcessFailed: the process raised on the probe window (with that error).
    """
    try:
        return probe_outputs(plan.inputs, plan.geobox, process_of(plan.spec).execute, plan.spec.parameters,
                             margin=plan.spec.halo)
    except ProcessFailed as exc:
        raise ProcessFailed(f"the process failed where its outputs are probed (declare them to skip the "
                            f"probe): {exc.message}", exc.traceback) from exc


def plan_summary(plan: Plan, uri: str) -> dict:
    """What the job's row keeps of its plan (the document itself is in object storage)."""
    return {"uri": uri, "output_root": plan.output_root, "output_collection": plan.output_collection,
            "tiles": len(plan.tile_indices()), "items": len(plan.items), "variables": plan.variables,
            "tile_shape": list(plan.tile_shape), "shape": [plan.geobox.shape.y, plan.geobox.shape.x]}


def scene_pass(plan: Plan) -> bool:
    """Whether the job needs the ``scenes`` pass before compositing: the cloud filter
    (``max_cloud``) drops scenes, and best-pixel ranks scenes by their clear share of the whole
    area, which a job of several tiles knows only after reading every tile. Otherwise each
    composite tile counts its scenes' pixels from the read it composites
    (:func:`stacube.algo.tile.composite_tile`) and the report is made from those counts
    (:func:`final_selection`)."""
    return plan.spec.max_cloud is not None or (plan.spec.method == "best-pixel" and len(plan.tile_indices()) > 1)


def skip_scene_pass(settings: Settings, job_id: str, plan: Plan) -> Stage | None:
    """Move a job without a scene pass (it has no ``scenes`` tiles) from ``scenes`` on to
    ``composite``: :func:`finish_stage` does it (the selection without counts, the staging
    cube, the composite tiles); None when the job needs its scene pass, is past ``scenes``, or
    another caller moved it.

    Raises:
        NoData: no scene passes the filters (the job is failed).
    """
    if scene_pass(plan):
        return None
    if JobStore(settings).get(job_id, full=False)["stage"] != Stage.SCENES:
        return None
    return finish_stage(settings, job_id, Stage.SCENES)


def cog_units(plan: Plan, steps: list[dict]) -> list[str]:
    """The COGs of a job as tile keys ``<step>_<variable index>`` (the ``cogs`` stage's tiles)."""
    return [f"{step['index']}_{v}" for step in steps for v in range(len(plan.variables))]


def execute_tile(settings: Settings, job_id: str, stage: str, tile: str, *, job: dict | None = None,
                 plan_uri: str | None = None, selection: str | None = None) -> bool:
    """Run one tile of a stage and record it (constant database work, whatever the job's size).

    Args:
        job: the job's summary row, when the caller read it already.
        plan_uri, selection: the run's documents (a tile message carries them).

    Returns:
        True when this tile was the stage's last one not done.

    Raises:
        JobCancelled: the job is no longer running.
        StacubeError / OSError...: the tile failed (recorded with its reason).
    """
    configure_gdal(settings)
    store = JobStore(settings)
    job = job or store.get(job_id, full=False)
    if job["state"] != "running":
        raise JobCancelled(f"job {job_id} is {job['state']}")
    plan = load_plan(settings, job_id, job, uri=plan_uri)
    try:
        result = _run_unit(settings, plan, job, stage, tile, selection)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        try:
            store.finish_tile(job_id, stage, tile, run=job["run"], error=reason[:1000])
        except StacubeError:  # the database is down too: the tile's own error is the one to raise
            pass
        raise
    counted = store.finish_tile(job_id, stage, tile, run=job["run"], result=result)
    return counted is not None and counted[0] >= counted[1]


def _run_unit(settings: Settings, plan: Plan, job: dict, stage: str, tile: str, selection_doc: str | None):
    index = tile_index(tile)
    if stage == Stage.SCENES:
        stats = tile_stats(plan.inputs, plan.tiles[index])
        return {"valid": stats.valid, "clear": stats.clear}
    if stage == Stage.COMPOSITE and plan.is_process:
        sel = load_selection(settings, job["plan_uri"], selection_doc)
        done = process_tile(plan.inputs, plan.tiles[index], process_of(plan.spec).execute, plan.spec.parameters,
                            plan.outputs, set(sel["used"]), sel["period_index"], len(sel["steps"]),
                            margin=plan.spec.halo)
        outputs.write_region(staging_of(settings, plan, job).zarr_store("cube.zarr"), plan.tiles[index],
                             plan.geobox, done.arrays)
        result = {"valid": done.stats.valid, "clear": done.stats.clear}
        if done.error is not None:  # the process's own error: recorded, not retried (same code, same error)
            result[PROCESS_ERROR] = {"tile": tile, "bbox": list(plan.tiles[index].extent.boundingbox),
                                     **done.error}
        return result
    if stage == Stage.COMPOSITE:
        sel = load_selection(settings, job["plan_uri"], selection_doc)
        arrays, stats = composite_tile(plan.inputs, plan.tiles[index], sel["used"], sel["period_index"],
                                       len(sel["steps"]))
        staging = staging_of(settings, plan, job)
        outputs.write_region(staging.zarr_store("cube.zarr"), plan.tiles[index], plan.geobox, arrays)
        return {"valid": stats.valid, "clear": stats.clear}  # the report's counts without a scene pass
    if stage == Stage.COGS:
        sel = load_selection(settings, job["plan_uri"], selection_doc)
        step, var = _step(sel["steps"], index[0]), plan.variables[index[1]]
        staging = staging_of(settings, plan, job)
        work = Path(tempfile.mkdtemp(prefix="stacube-cog-"))
        try:
            path = work / f"{var}.tif"
            outputs.write_cog(staging.zarr_store("cube.zarr", read_only=True), var, step["index"], plan.geobox,
                              plan.tiles, path)
            staging.put_file(path, f"{step['label']}/{var}.tif")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return None
    raise ValueError(f"unknown stage {stage!r}")


def scene_table(plan: Plan, valid: dict[str, int], clear: dict[str, int]) -> list[dict]:
    """Per-scene statistics over the area, the cloud filter's verdict and the best-pixel rank
    (clear ratio over the area, highest first; ties: the more recent scene first)."""
    total = int(plan.geobox.shape.x * plan.geobox.shape.y)
    rows = []
    for item_id, item in plan.items.items():
        v, c = valid.get(item_id, 0), clear.get(item_id, 0)
        clear_pct = 100.0 * c / v if v else 0.0
        row = {
            "item_id": item_id, "collection": item["collection"],
            "datetime": iso(item_datetime(item)),
            "clear_pixels": c, "valid_pixels": v, "total_pixels": total,
            "clear_percent": round(clear_pct, 3), "used": True, "reason": None, "rank": None,
        }
        if v == 0:
            row.update(used=False, reason="no valid pixel in the area")
        elif plan.spec.max_cloud is not None and 100.0 - clear_pct > plan.spec.max_cloud:
            row.update(used=False, reason=f"cloud {100.0 - clear_pct:.1f}% > max-cloud {plan.spec.max_cloud:g}%")
        rows.append(row)
    rows.sort(key=lambda r: (r["datetime"], r["item_id"]))
    ranked = sorted((r for r in rows if r["used"]),
                    key=lambda r: (-r["clear_pixels"], -item_datetime(plan.items[r["item_id"]]).timestamp()))
    for rank, r in enumerate(ranked, start=1):
        r["rank"] = rank
    return rows


def select_scenes(plan: Plan, valid: dict[str, int] | None, clear: dict[str, int] | None) -> dict:
    """The scenes used, their periods and the output steps.

    Without counts (``valid`` None: a job without a scene pass, see :func:`scene_pass`) every
    scene is used with an unknown clear ratio (None); :func:`final_selection` completes the
    selection from the composite tiles' counts.

    Raises:
        NoData: no scene passes the filters.
    """
    known = valid is not None
    if not known:
        valid, clear = {i: 1 for i in plan.items}, {}
    scenes = scene_table(plan, valid, clear)
    used_rows = [r for r in scenes if r["used"]]
    if not used_rows:
        considered = [r for r in scenes if r["valid_pixels"]]
        if considered and plan.spec.max_cloud is not None:
            best = max(considered, key=lambda r: r["clear_percent"])
            raise NoData(
                f"no scene passes the cloud filter (max-cloud {plan.spec.max_cloud:g}%): the clearest, "
                f"{best['item_id']}, is {100 - best['clear_percent']:.1f}% cloudy")
        raise NoData(f"none of the {len(scenes)} scenes has a valid pixel in the bbox")
    total = scenes[0]["total_pixels"]
    steps, period_index = [], {}
    for period in plan.periods:
        members = [r for r in used_rows if period.contains(item_datetime(plan.items[r["item_id"]]))]
        if not members:
            continue
        for r in members:
            period_index[r["item_id"]] = len(steps)
        steps.append({"index": len(steps), "label": period.label, "start": iso(period.start),
                      "end": iso(period.end), "items": [r["item_id"] for r in members]})
    for r in scenes:
        if r["used"] and r["item_id"] not in period_index:
            r.update(used=False, reason="outside every period")
    used = {r["item_id"]: (r["clear_pixels"] / total if known else None) for r in scenes if r["used"]}
    return {"scenes": scenes, "steps": steps, "used": used, "period_index": period_index, "counted": known}


def final_selection(plan: Plan, prepared: dict, valid: dict[str, int], clear: dict[str, int]) -> dict:
    """The selection of a job without a scene pass, completed from the composite tiles' counts:
    the scene table (counts, scenes without a valid pixel dropped, best-pixel ranks) and the
    steps that kept at least one scene (each keeps its ``index``).

    Raises:
        NoData: no scene has a valid pixel in the area.
    """
    scenes = scene_table(plan, valid, clear)
    if not any(r["used"] for r in scenes):
        raise NoData(f"none of the {len(scenes)} scenes has a valid pixel in the bbox")
    used_ids = {r["item_id"] for r in scenes if r["used"]}
    steps = []
    for step in prepared["steps"]:
        members = [i for i in step["items"] if i in used_ids]
        if members:
            steps.append({**step, "items": members})
    for r in scenes:
        if r["used"] and r["item_id"] not in prepared["period_index"]:
            r.update(used=False, reason="outside every period")
    total = scenes[0]["total_pixels"]
    return {**prepared, "scenes": scenes, "steps": steps, "counted": True,
            "used": {r["item_id"]: r["clear_pixels"] / total for r in scenes if r["used"]}}


def counted_selection(settings: Settings, job_id: str, plan: Plan, selection: dict) -> dict:
    """The job's selection with its counts: as it is after a scene pass, else completed from
    the composite tiles' counts (:func:`final_selection`) and stored with the job.

    Raises:
        NoData: no scene has a valid pixel in the area (the job is failed).
    """
    if selection.get("counted", True):
        return selection
    store = JobStore(settings)
    sums = store.result_sums(job_id, Stage.COMPOSITE, ("valid", "clear"))
    try:
        selection = final_selection(plan, selection, sums["valid"], sums["clear"])
    except NoData as exc:
        store.update(job_id, state="failed", error=exc.message)
        raise
    store.update(job_id, selection=selection)
    return selection


def _step(steps: list[dict], index: int) -> dict:
    """The step whose ``index`` is ``index`` (a final selection may have dropped others)."""
    return next(s for s in steps if s["index"] == index)


def prepare_composite(settings: Settings, job_id: str) -> dict:
    """After the scene statistics: choose scenes, create the staging cube and composite tiles.

    The tiles' counts are summed in the database (one row per scene comes back, not one per
    tile); the selection is stored with the job and as a document the composite tiles read.

    Raises:
        NoData: no scene passes the filters (the job fails).
    """
    store = JobStore(settings)
    job = store.get(job_id, full=False)
    plan = load_plan(settings, job_id, job)
    sums = store.result_sums(job_id, Stage.SCENES, ("valid", "clear")) if scene_pass(plan) else None
    try:
        selection = select_scenes(plan, sums and sums["valid"], sums and sums["clear"])
    except NoData as exc:
        store.update(job_id, state="failed", error=exc.message)
        raise
    staging = staging_of(settings, plan, job)
    starts = [datetime.fromisoformat(s["start"].replace("Z", "+00:00")) for s in selection["steps"]]
    what = plan.what
    outputs.create_cube(staging.zarr_store("cube.zarr"), plan.geobox, plan.variables, starts, plan.tile_shape[0],
                        attrs={"title": f"stacube {what}", "stacube:job": job_id, "Conventions": "CF-1.8"},
                        variable_attrs={v: ({"grid_mapping": "spatial_ref", "long_name": f"{v} ({what})"}
                                            if plan.is_process else
                                            variable_attrs(v, bands=plan.bands, indices=plan.indices, what=what))
                                        for v in plan.variables}, zarr_format=plan.spec.zarr_format,
                        dtypes={v: (plan.dtype_of(v), plan.fill_of(v)) for v in plan.variables})
    staging.write_document("selection", {k: selection[k] for k in ("used", "period_index", "steps")})
    store.update(job_id, selection=selection)
    store.add_tiles(job_id, Stage.COMPOSITE, [tile_key(t) for t in plan.tile_indices()])
    return selection


def finish_stage(settings: Settings, job_id: str, stage: str, *, claimed: bool = False,
                 fan_out_cogs: bool = False) -> Stage | None:
    """Move a job whose ``stage`` is complete to its next stage (the stage machine of
    :mod:`stacube.jobs.stages`); exactly one of several concurrent callers does it.

    ``scenes``: to ``preparing``, :func:`prepare_composite`, then ``composite``;
    ``preparing`` (a caller that died while preparing left it there): :func:`prepare_composite`
    again, then ``composite`` — only by a caller that ``claimed`` the stage
    (:meth:`JobStore.claim`); ``composite``: to ``cogs`` when ``fan_out_cogs`` (its tiles are
    the COGs, :func:`cog_units`), else to ``finalize``; ``cogs``: to ``finalize``. The mover
    holds the job's lease (``settings.stage_lease``) until it records the new stage's messages
    as sent.

    Returns:
        The stage this call moved the job to, or None when another caller moved it (or the
        stage still has tiles to do).

    Raises:
        NoData: no scene passes the filters (the job is failed).
    """
    store = JobStore(settings)
    lease = settings.stage_lease
    job = store.get(job_id, full=False)
    if job["stage"] == stage and stage != Stage.PREPARING and job["tiles_done"] < job["tiles_total"]:
        return None
    if stage == Stage.SCENES:
        if not store.advance_stage(job_id, Stage.SCENES, Stage.PREPARING, lease=lease):
            return None
        stage = Stage.PREPARING
    elif stage == Stage.PREPARING and not claimed:
        return None
    if stage == Stage.PREPARING:
        prepare_composite(settings, job_id)
        return Stage.COMPOSITE if store.advance_stage(job_id, Stage.PREPARING, Stage.COMPOSITE, lease=lease) else None
    if stage == Stage.COMPOSITE:
        plan = load_plan(settings, job_id, job)
        selection = counted_selection(settings, job_id, plan, store.get(job_id)["selection"])
    if stage == Stage.COMPOSITE and fan_out_cogs:
        store.add_tiles(job_id, Stage.COGS, cog_units(plan, selection["steps"]))
        return Stage.COGS if store.advance_stage(job_id, Stage.COMPOSITE, Stage.COGS, lease=lease) else None
    if stage in (Stage.COMPOSITE, Stage.COGS):
        return Stage.FINALIZE if store.advance_stage(job_id, stage, Stage.FINALIZE, lease=lease) else None
    raise ValueError(f"stage {stage!r} has no tiles")


def site_url(settings: Settings) -> str:
    """The URL the services (``stacube up``) are reached at: ``public_url``, else host and port."""
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def tiles_base(settings: Settings, plan: Plan) -> str | None:
    """The URL the job's output root is served at, for its tile pyramid's template: the
    pyramid's ``url``; for outputs in the local output root, the services' ``/files``; else
    None (the template then is the storage address)."""
    spec = plan.spec.pyramid
    if spec is None or spec.url:
        return spec and spec.url
    store, served = open_store(plan.output_root, settings), open_store(settings.output_root, settings)
    if isinstance(store, LocalStore) and isinstance(served, LocalStore) and store.path == served.path:
        return f"{site_url(settings)}/files"
    return None


def output_hrefs(plan: Plan, steps: list[dict], staging: Staging, tiles_url: str | None = None) -> dict:
    """Where readers find the outputs once committed: ``cogs`` (label -> variable -> href),
    ``zarr``, ``report``; with a pyramid also ``tiles`` (label -> tile URL template) and
    ``tilejson`` (label -> href), at ``tiles_url`` (:func:`tiles_base`) when given."""
    hrefs = {"cogs": {step["label"]: {var: staging.href(f"{step['label']}/{var}.tif") for var in plan.variables}
                      for step in steps},
             "zarr": staging.href("cube.zarr"), "report": staging.href("report.json")}
    spec = plan.spec.pyramid
    if spec is not None:  # the tile template (at the public URL when one is given) and the TileJSON
        ext = spec.format
        hrefs["tiles"] = {step["label"]: staging.public_href(f"{step['label']}/tiles", tiles_url)
                          + f"/{{z}}/{{x}}/{{y}}.{ext}" for step in steps}
        hrefs["tilejson"] = {step["label"]: staging.public_href(f"{step['label']}/tiles/tilejson.json", tiles_url)
                             for step in steps}
    return hrefs


def finalize(settings: Settings, job_id: str, *, on_register: OnRegister | None = None, on_cog=None,
             on_tile=None, threads: int = 1) -> dict:
    """COGs from the staging cube, the report, the commit, and the catalog registration.

    COGs already written by the ``cogs`` stage are kept; the others are written here,
    ``threads`` at a time. Run again after its commit (a retry), it registers the committed
    outputs without touching them.

    Args:
        on_register: called with the output collection id and the job before the collection
            is written (e.g. to claim it for the job's workspace); may raise to stop.
        on_cog: ``on_cog(done, total)`` progress callback (called from this thread).
        on_tile: ``on_tile(done, total)`` progress of a step's tile pyramid (jobs with one).
        threads: COGs written (and pyramid tiles drawn) at once (GDAL compresses, warps and
            writes without the GIL).

    Returns:
        The job report.

    Raises:
        JobCancelled: the job was cancelled meanwhile (before the commit: nothing is committed;
            before the registration: no Item is written; the job stays cancelled).
    """
    configure_gdal(settings)
    store = JobStore(settings)
    job = store.get(job_id)
    plan = load_plan(settings, job_id, job)
    selection = counted_selection(settings, job_id, plan, job["selection"])
    staging = staging_of(settings, plan, job)
    hrefs = output_hrefs(plan, selection["steps"], staging, tiles_base(settings, plan))
    if job["committed"] is None:
        _check_process_errors(store, job_id, plan)
        report = _write_outputs(settings, job, plan, selection, staging, hrefs, on_cog=on_cog, on_tile=on_tile,
                                threads=threads)
        if store.state(job_id) != "running":
            staging.discard()
            raise JobCancelled(f"job {job_id} was cancelled")
        staging.commit()
        store.mark_committed(job_id)
    else:
        report = read_document(hrefs["report"], settings)
    catalog = Catalog(settings)
    collection = derived_collection(plan)
    if on_register is not None:
        on_register(plan.output_collection, job)  # before the collection exists
    if store.state(job_id) != "running":  # cancelled since the commit: no Items for it
        raise JobCancelled(f"job {job_id} was cancelled")
    if plan.output_collection in catalog.collection_ids():
        collection["extent"] = catalog.get_collection(plan.output_collection).get("extent", collection["extent"])
    catalog.upsert_collection(collection)
    stac_base = site_url(settings) + "/stac"
    catalog.load_items(derived_items(plan, report, hrefs, stac_base), mode="upsert")
    if not store.update(job_id, state="completed", stage="finalize", report=report):
        raise JobCancelled(f"job {job_id} was cancelled")  # meanwhile: it stays cancelled
    try:
        staging.drop_documents()
    except StacubeError as exc:  # on S3 the bucket's lifecycle rule expires them
        logging.getLogger("stacube").warning("job %s: documents not deleted: %s", job_id, exc.message)
    return report


def _check_process_errors(store: JobStore, job_id: str, plan: Plan) -> None:
    """A process job whose process failed on every tile fails (with the first error); with
    some tiles written, it completes and its report lists the errors.

    Raises:
        ProcessFailed: every tile failed.
    """
    if not plan.is_process:
        return
    errors, failed = store.result_values(job_id, Stage.COMPOSITE, PROCESS_ERROR, limit=1)
    tiles = len(plan.tile_indices())
    if failed and failed >= tiles:
        first = errors[0]
        raise ProcessFailed(f"the process failed on every tile ({tiles}); tile {first['tile']}: {first['error']}",
                            first.get("traceback", ""))


def _write_outputs(settings: Settings, job: dict, plan: Plan, selection: dict, staging: Staging, hrefs: dict,
                   *, on_cog=None, on_tile=None, threads: int = 1) -> dict:
    """Consolidate the cube, write the COGs not written yet, the tile pyramids and the report;
    publish them."""
    job_id = job["id"]
    steps = selection["steps"]
    cube = staging.zarr_store("cube.zarr")
    outputs.finish_cube(cube)
    work = staging.workdir()
    written = JobStore(settings).done_tiles(job_id, Stage.COGS)
    cogs = []
    for key in cog_units(plan, steps):
        if key in written:
            continue
        step, var = _step(steps, tile_index(key)[0]), plan.variables[tile_index(key)[1]]
        (work / step["label"]).mkdir(parents=True, exist_ok=True)
        cogs.append((var, step["index"], work / step["label"] / f"{var}.tif"))

    def write(cog) -> None:
        var, index, path = cog
        outputs.write_cog(cube, var, index, plan.geobox, plan.tiles, path)

    # each COG being written needs its temporary GeoTIFF and the COG on local disk (at most 4
    # bytes a pixel each, before compression): as many at once as the disk holds
    per_cog = 3 * 4 * int(plan.geobox.shape.x * plan.geobox.shape.y)
    threads = min(threads, max(1, shutil.disk_usage(work).free // max(per_cog, 1)))
    with ThreadPoolExecutor(max(1, min(threads, len(cogs) or 1))) as pool:
        for done, _ in enumerate(pool.map(write, cogs), start=1):
            if on_cog:
                on_cog(done, len(cogs))
    pyramids = _write_pyramids(plan, steps, work, hrefs, on_tile=on_tile, threads=threads)
    started = job["started"] or job["created"]
    finished = datetime.now(timezone.utc)
    elapsed = (finished - started).total_seconds()
    pixels = int(plan.geobox.shape.x * plan.geobox.shape.y)
    gb = plan.geobox
    errors, failed = (JobStore(settings).result_values(job_id, Stage.COMPOSITE, PROCESS_ERROR,
                                                       limit=MAX_REPORTED_ERRORS)
                      if plan.is_process else ([], 0))
    report = {
        "job_id": job_id,
        "status": "partial" if failed else "completed",
        "stacube_version": __version__,
        "parameters": plan.spec.model_dump(mode="json"),
        "collection": plan.output_collection,
        "grid": {
            "crs": crs_text(gb.crs),
            "shape": [gb.shape.y, gb.shape.x],
            "transform": list(gb.affine)[:6],
            "bbox": list(gb.extent.boundingbox),
            "tiles": len(plan.tile_indices()),
        },
        "bands": plan.bands, "indices": plan.indices, "variables": plan.variables,
        "steps": steps,
        "scenes": selection["scenes"],
        "outputs": hrefs,
        "items": [f"{job_id}_{s['label']}" for s in steps],
        "started": iso(started),
        "finished": iso(finished),
        "elapsed_seconds": round(elapsed, 3),
        "throughput": {
            "pixels": pixels, "scenes": len(selection["used"]),
            "pixels_x_scenes_per_second": round(pixels * len(selection["used"]) / max(elapsed, 1e-9), 1),
        },
    }
    if plan.is_process:
        spec = plan.spec
        report["process"] = {"name": spec.process_name, "version": spec.version, "source": spec.process,
                             "parameters": spec.parameters, "halo": spec.halo,
                             "outputs": {v: {"dtype": plan.dtype_of(v), "nodata": plan.outputs[v].nodata}
                                         for v in plan.variables}}
        report["failed_tiles"] = failed
        report["errors"] = errors
    if pyramids:
        report["pyramid"] = pyramids
    outputs.write_json(work / "report.json", report)
    staging.publish()
    return report


def _write_pyramids(plan: Plan, steps: list[dict], work: Path, hrefs: dict, *, on_tile=None,
                    threads: int = 1) -> dict:
    """The tile pyramid of each step (:func:`stacube.jobs.pyramid.write_pyramid`) under
    ``<work>/<label>/tiles``, cut from the step's COGs (on local disk, or where the ``cogs``
    stage put them); ``{label: summary}``, empty without a pyramid."""
    render = pyramid_render(plan)
    if render is None:
        return {}
    from stacube.jobs import pyramid  # lazy: rio-tiler, only for jobs with a pyramid

    spec = plan.spec.pyramid
    bounds = pyramid.lonlat_bounds(plan.geobox)
    out = {}
    for step in steps:
        label = step["label"]
        local = {var: work / label / f"{var}.tif" for var in render.bands}
        sources = {var: str(path) if path.exists() else hrefs["cogs"][label][var] for var, path in local.items()}
        out[label] = pyramid.write_pyramid(sources, render, bounds, spec.minzoom, spec.maxzoom, work / label / "tiles",
                                           hrefs["tiles"][label], name=f"{plan.job_id}_{label}", threads=threads,
                                           on_tile=on_tile)
    return out


def fail(settings: Settings, job_id: str, message: str, *, discard: bool = True) -> bool:
    """Mark an active job failed and drop its staging area (nothing partial stays visible).

    Returns:
        True when this call failed the job; False when it had ended already (a job cancelled
        meanwhile stays cancelled; its staging area is dropped all the same).
    """
    store = JobStore(settings)
    failed = store.update(job_id, state="failed", error=message)
    if discard:
        try:
            discard_staging(settings, job_id)
        except InvalidInput:  # the output location itself is unusable: nothing was ever staged there
            pass
        except StacubeError as exc:  # storage down: the job's own error is the one to report;
            # the staging prefix is never read (bucket lifecycle rules expire it)
            logging.getLogger("stacube").warning("job %s: staging not cleaned: %s", job_id, exc.message)
    return failed


def discard_staging(settings: Settings, job_id: str) -> None:
    """Delete the staging area and documents of the job's current run (outputs committed by an
    earlier run stay)."""
    job = JobStore(settings).get(job_id)
    if job.get("plan") and job.get("committed") is None:
        open_store(job["plan"]["output_root"], settings).staging(job_id, job["run"]).discard()


def wait_seconds(attempt: int) -> float:
    """Back-off before retrying a tile (0.5 s, 1 s, 2 s...)."""
    return min(30.0, 0.5 * 2 ** max(0, attempt - 1))


def sleep_before_retry(attempt: int) -> None:
    time.sleep(wait_seconds(attempt))
