"""The steps of a compositing job, each runnable in any process that reaches the catalog.

``start`` plans the job and creates the ``scenes`` tiles; :func:`execute_tile` runs one tile of
either stage and records it (the same function serves the local executors, Dask and the Lambda
worker); :func:`finish_stage` moves a job whose stage has no pending tile on (the stage machine
of :mod:`stacube.jobs.stages`: after ``scenes`` it chooses the scenes and creates the staging
cube, :func:`prepare_composite`); ``finalize`` writes COGs and the report, commits the outputs
and registers the items. Tiles are idempotent: a retried or resumed tile rewrites its own region
and nothing else.

The engine knows nothing of workspaces: the caller gives the job's id (scoped as it likes) when
it submits, and an ``on_register(collection_id, job)`` callback that :func:`finalize` calls
before the output collection is written (the HTTP and SQS callers claim it for the job's
workspace there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone

from stacube import __version__
from stacube.algo.load import Gate, gated_sources
from stacube.algo.tile import composite_tile, tile_stats
from stacube.catalog.pgstac import Catalog
from stacube.core.cf import variable_attrs
from stacube.core.crs import crs_text
from stacube.core.times import item_datetime, iso
from stacube.errors import InvalidInput, NoData, StacubeError
from stacube.jobs import outputs
from stacube.jobs.plan import Plan, make_plan, plan_from_doc, plan_to_doc
from stacube.jobs.register import derived_collection, derived_items
from stacube.jobs.spec import CompositeSpec
from stacube.jobs.stages import JobCancelled, Stage
from stacube.jobs.state import JobStore, tile_index, tile_key
from stacube.settings import Settings
from stacube.storage.objects import configure_gdal, open_store

#: ``on_register(output collection id, job row)``: called by :func:`finalize` before the output
#: collection is written.
OnRegister = Callable[[str, dict], None]
_PLANS: dict[tuple[str, int], Plan] = {}


def load_plan(settings: Settings, job_id: str, job: dict | None = None) -> Plan:
    """The job's plan, read from the catalog once per process and run."""
    job = job or JobStore(settings).get(job_id)
    key = (job_id, job["run"])
    if key not in _PLANS:
        if not job.get("plan"):
            raise StacubeError(f"job {job_id} has not been planned yet")
        _PLANS.clear()
        _PLANS[key] = plan_from_doc(job["plan"])
    return _PLANS[key]


def output_root(spec: CompositeSpec, settings: Settings) -> str:
    return (spec.output or settings.output_root).rstrip("/")


def start(settings: Settings, job_id: str, *, gate: Gate | None = None) -> Plan:
    """Plan a queued job (or return the plan of a running one) and create its scene tiles (a
    job without a scene pass has none: :func:`skip_scene_pass` moves it on).

    Args:
        gate: the read gate (:data:`stacube.algo.load.Gate`) every input href goes through at
            planning; the plan keeps the hrefs it returns, so tiles open exactly what was
            checked. None: the hrefs are kept as they are.

    Raises:
        NotFound / InvalidInput / NoData: the job fails with that reason (and it is re-raised);
            so does an href the gate refuses.
    """
    store = JobStore(settings)
    job = store.get(job_id)
    if job["state"] == "running" and job.get("plan"):
        return load_plan(settings, job_id, job)
    spec = CompositeSpec.model_validate(job["parameters"])
    try:
        plan = make_plan(spec, Catalog(settings), output_root(spec, settings), job_id=job_id)
        if gate is not None:
            sources = gated_sources(plan.inputs.sources, plan.inputs.load_bands, gate)
            plan.inputs = replace(plan.inputs, sources=sources)
            plan.items = {i["id"]: i for src in sources for i in src.items}
    except StacubeError as exc:
        store.update(job_id, state="failed", error=exc.message)
        raise
    store.update(job_id, plan=plan_to_doc(plan), state="running", stage=Stage.SCENES)
    if scene_pass(plan):
        store.add_tiles(job_id, Stage.SCENES, [tile_key(t) for t in plan.tile_indices()])
    return load_plan(settings, job_id)


def scene_pass(plan: Plan) -> bool:
    """Whether the job needs the ``scenes`` pass before compositing: the cloud filter
    (``max_cloud``) drops scenes, and best-pixel ranks scenes by their clear share of the whole
    area, which a job of several tiles knows only after reading every tile. Otherwise each
    composite tile counts its scenes' pixels from the read it composites
    (:func:`stacube.algo.tile.composite_tile`) and the report is made from those counts."""
    return plan.spec.max_cloud is not None or (plan.spec.method == "best-pixel" and len(plan.tile_indices()) > 1)


def skip_scene_pass(settings: Settings, job_id: str, plan: Plan) -> Stage | None:
    """Move a job without a scene pass (it has no ``scenes`` tiles) from ``scenes`` on to
    ``composite``: :func:`finish_stage` does it (the selection without counts, the staging
    cube, the composite tiles); None when the job needs its scene pass or is past preparing.

    Raises:
        NoData: no scene passes the filters (the job is failed).
    """
    if scene_pass(plan):
        return None
    stage = JobStore(settings).get(job_id, full=False)["stage"]
    if stage not in (Stage.SCENES, Stage.PREPARING):  # PREPARING: a caller died while preparing
        return None
    return finish_stage(settings, job_id, stage)


def execute_tile(settings: Settings, job_id: str, stage: str, tile: str) -> bool:
    """Run one tile of a stage and record it.

    Returns:
        True when this tile was the stage's last one not done.

    Raises:
        JobCancelled: the job is no longer running.
        StacubeError / OSError...: the tile failed (recorded with its reason).
    """
    configure_gdal(settings)
    store = JobStore(settings)
    job = store.get(job_id)
    if job["state"] != "running":
        raise JobCancelled(f"job {job_id} is {job['state']}")
    plan = load_plan(settings, job_id, job)
    index = tile_index(tile)
    try:
        if stage == Stage.SCENES:
            stats = tile_stats(plan.inputs, plan.tiles[index])
        elif stage == Stage.COMPOSITE:
            sel = job["selection"]
            arrays, stats = composite_tile(plan.inputs, plan.tiles[index], sel["used"], sel["period_index"],
                                           len(sel["steps"]))
            staging = open_store(plan.output_root, settings).staging(job_id)
            outputs.write_region(staging.zarr_store("cube.zarr"), plan.tiles[index], plan.geobox, arrays)
        else:
            raise ValueError(f"unknown stage {stage!r}")
    except Exception as exc:
        store.finish_tile(job_id, stage, tile, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    return store.finish_tile(job_id, stage, tile, result={"valid": stats.valid, "clear": stats.clear}) == 0


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
    if valid is None:
        valid = {i: 1 for i in plan.items}
        clear = {}
        known = False
    else:
        known = True
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
    return {"scenes": scenes, "steps": steps, "used": used, "period_index": period_index}


def final_selection(plan: Plan, prepared: dict, valid: dict[str, int], clear: dict[str, int]) -> dict:
    """The selection of a job without a scene pass, completed from the composite tiles' counts:
    the scene table (counts, scenes without a valid pixel dropped, best-pixel ranks) and the
    steps that kept at least one scene.

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
    return {**prepared, "scenes": scenes, "steps": steps,
            "used": {r["item_id"]: r["clear_pixels"] / total for r in scenes if r["used"]}}


def gathered_counts(store: JobStore, job_id: str, stage: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per-scene valid and clear pixels summed over the tiles of a stage."""
    valid: dict[str, int] = {}
    clear: dict[str, int] = {}
    for result in store.tile_results(job_id, stage):
        for k, v in (result or {}).get("valid", {}).items():
            valid[k] = valid.get(k, 0) + v
        for k, v in (result or {}).get("clear", {}).items():
            clear[k] = clear.get(k, 0) + v
    return valid, clear


def prepare_composite(settings: Settings, job_id: str) -> dict:
    """After the scene statistics: choose scenes, create the staging cube and composite tiles.

    Raises:
        NoData: no scene passes the filters (the job fails).
    """
    store = JobStore(settings)
    plan = load_plan(settings, job_id)
    valid, clear = gathered_counts(store, job_id, Stage.SCENES) if scene_pass(plan) else (None, None)
    try:
        selection = select_scenes(plan, valid, clear)
    except NoData as exc:
        store.update(job_id, state="failed", error=exc.message)
        raise
    staging = open_store(plan.output_root, settings).staging(job_id)
    starts = [datetime.fromisoformat(s["start"].replace("Z", "+00:00")) for s in selection["steps"]]
    what = f"{plan.spec.method} composite"
    outputs.create_cube(staging.zarr_store("cube.zarr"), plan.geobox, plan.variables, starts, plan.tile_shape[0],
                        attrs={"title": f"stacube {what}", "stacube:job": job_id, "Conventions": "CF-1.8"},
                        variable_attrs={v: variable_attrs(v, bands=plan.bands, indices=plan.indices, what=what)
                                        for v in plan.variables}, zarr_format=plan.spec.zarr_format)
    store.update(job_id, selection=selection)
    store.add_tiles(job_id, Stage.COMPOSITE, [tile_key(t) for t in plan.tile_indices()])
    return selection


def finish_stage(settings: Settings, job_id: str, stage: str) -> Stage | None:
    """Move a job whose ``stage`` has no pending tile to its next stage (the stage machine of
    :mod:`stacube.jobs.stages`); exactly one of several concurrent callers does it.

    ``scenes``: to ``preparing``, :func:`prepare_composite`, then ``composite``;
    ``preparing`` (a caller that died while preparing left it there): :func:`prepare_composite`
    again, then ``composite``; ``composite``: to ``finalize``.

    Returns:
        The stage this call moved the job to, or None when another caller moved it (or the
        stage still has pending tiles).

    Raises:
        NoData: no scene passes the filters (the job is failed).
    """
    store = JobStore(settings)
    if store.pending_tiles(job_id, stage):
        return None
    if stage == Stage.SCENES:
        if not store.advance_stage(job_id, Stage.SCENES, Stage.PREPARING):
            return None
        stage = Stage.PREPARING
    if stage == Stage.PREPARING:
        prepare_composite(settings, job_id)
        return Stage.COMPOSITE if store.advance_stage(job_id, Stage.PREPARING, Stage.COMPOSITE) else None
    if stage == Stage.COMPOSITE:
        return Stage.FINALIZE if store.advance_stage(job_id, Stage.COMPOSITE, Stage.FINALIZE) else None
    raise ValueError(f"stage {stage!r} has no tiles")


def finalize(settings: Settings, job_id: str, *, on_register: OnRegister | None = None, on_cog=None,
             threads: int = 1) -> dict:
    """COGs from the staging cube, the report, the commit, and the catalog registration.

    Args:
        on_register: called with the output collection id and the job before the collection
            is written (e.g. to claim it for the job's workspace); may raise to stop.
        on_cog: ``on_cog(done, total)`` progress callback (called from this thread).
        threads: COGs written at once (GDAL compresses and writes without the GIL).

    Returns:
        The job report.
    """
    configure_gdal(settings)
    store = JobStore(settings)
    job = store.get(job_id)
    plan = load_plan(settings, job_id, job)
    selection = job["selection"]
    if not scene_pass(plan):
        selection = final_selection(plan, selection, *gathered_counts(store, job_id, Stage.COMPOSITE))
        store.update(job_id, selection=selection)
    steps = selection["steps"]
    out = open_store(plan.output_root, settings)
    staging = out.staging(job_id)
    cube = staging.zarr_store("cube.zarr")
    outputs.finish_cube(cube)
    work = staging.workdir()
    hrefs: dict = {"cogs": {}, "zarr": out.href(job_id, "cube.zarr"), "report": out.href(job_id, "report.json")}
    cogs = []
    for step in steps:
        (work / step["label"]).mkdir(parents=True, exist_ok=True)
        hrefs["cogs"][step["label"]] = {}
        for var in plan.variables:
            cogs.append((var, step["index"], work / step["label"] / f"{var}.tif"))
            hrefs["cogs"][step["label"]][var] = out.href(job_id, f"{step['label']}/{var}.tif")

    def write(cog) -> None:
        var, index, path = cog
        outputs.write_cog(cube, var, index, plan.geobox, plan.tiles, path)

    with ThreadPoolExecutor(max(1, min(threads, len(cogs)))) as pool:
        for done, _ in enumerate(pool.map(write, cogs), start=1):
            if on_cog:
                on_cog(done, len(cogs))
    started = job["started"] or job["created"]
    finished = datetime.now(timezone.utc)
    elapsed = (finished - started).total_seconds()
    pixels = int(plan.geobox.shape.x * plan.geobox.shape.y)
    gb = plan.geobox
    report = {
        "job_id": job_id,
        "status": "completed",
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
    outputs.write_json(work / "report.json", report)
    staging.publish()
    if store.state(job_id) != "running":
        staging.discard()
        raise JobCancelled(f"job {job_id} was cancelled")
    staging.commit()
    catalog = Catalog(settings)
    collection = derived_collection(plan)
    if on_register is not None:
        on_register(plan.output_collection, job)  # before the collection exists
    if plan.output_collection in catalog.collection_ids():
        collection["extent"] = catalog.get_collection(plan.output_collection).get("extent", collection["extent"])
    catalog.upsert_collection(collection)
    stac_base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/") + "/stac"
    catalog.load_items(derived_items(plan, report, hrefs, stac_base), mode="upsert")
    store.update(job_id, state="completed", stage="finalize", report=report)
    return report


def fail(settings: Settings, job_id: str, message: str, *, discard: bool = True) -> None:
    """Mark a job failed and drop its staging area (nothing partial stays visible)."""
    store = JobStore(settings)
    store.update(job_id, state="failed", error=message)
    if discard:
        try:
            discard_staging(settings, job_id)
        except InvalidInput:  # the output location itself is unusable: nothing was ever staged there
            pass
        except StacubeError as exc:  # storage down: the job's own error is the one to report;
            # the staging prefix is never read (bucket lifecycle rules expire it)
            logging.getLogger("stacube").warning("job %s: staging not cleaned: %s", job_id, exc.message)


def discard_staging(settings: Settings, job_id: str) -> None:
    job = JobStore(settings).get(job_id)
    if job.get("plan"):
        open_store(job["plan"]["output_root"], settings).staging(job_id).discard()


def wait_seconds(attempt: int) -> float:
    """Back-off before retrying a tile (0.5 s, 1 s, 2 s...)."""
    return min(30.0, 0.5 * 2 ** max(0, attempt - 1))


def sleep_before_retry(attempt: int) -> None:
    time.sleep(wait_seconds(attempt))
