"""Running a compositing job end to end: plan, scene statistics, tiles, outputs, registration.

Guarantees:

* outputs are produced in a staging area and committed only when complete; the catalog is
  written last, so a failed job leaves neither partial files nor items;
* the job id is derived from the parameters: running the same job again replaces its outputs
  and upserts the same items (idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from stacube import __version__
from stacube.catalog.store import Catalog
from stacube.errors import NoData
from stacube.jobs import outputs
from stacube.jobs.executors import SerialExecutor, make_executor
from stacube.jobs.plan import Plan, _item_datetime, make_plan
from stacube.jobs.register import derived_collection, derived_items
from stacube.jobs.spec import CompositeSpec
from stacube.jobs.tiles import compute_tile, tile_stats
from stacube.settings import Settings
from stacube.storage.stores import configure_gdal, open_store

Progress = Callable[[str, int, int], None]


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def scene_table(plan: Plan, valid: dict[str, int], clear: dict[str, int]) -> list[dict]:
    """Per-scene statistics over the area, the cloud filter's verdict and the best-pixel rank."""
    total = int(plan.geobox.shape.x * plan.geobox.shape.y)
    rows = []
    for item_id, item in plan.items.items():
        v, c = valid.get(item_id, 0), clear.get(item_id, 0)
        clear_pct = 100.0 * c / v if v else 0.0
        row = {
            "item_id": item_id, "collection": item["collection"],
            "datetime": _iso(_item_datetime(item)),
            "clear_pixels": c, "valid_pixels": v, "total_pixels": total,
            "clear_percent": round(clear_pct, 3), "used": True, "reason": None,
        }
        if v == 0:
            row.update(used=False, reason="no valid pixel in the area")
        elif plan.spec.max_cloud is not None and 100.0 - clear_pct > plan.spec.max_cloud:
            row.update(used=False, reason=f"cloud {100.0 - clear_pct:.1f}% > max-cloud {plan.spec.max_cloud:g}%")
        rows.append(row)
    rows.sort(key=lambda r: (r["datetime"], r["item_id"]))
    # best-pixel rank: clear ratio over the area, highest first; ties: the more recent first
    ranked = sorted((r for r in rows if r["used"]),
                    key=lambda r: (-r["clear_pixels"], -_item_datetime(plan.items[r["item_id"]]).timestamp()))
    for rank, r in enumerate(ranked, start=1):
        r["rank"] = rank
    return rows


def run_composite(spec: CompositeSpec, settings: Settings, *, progress: Progress | None = None,
                  workers: int | None = None) -> dict:
    """Run a compositing job and return its report.

    Args:
        spec: validated parameters.
        settings: catalog and storage configuration.
        progress: ``progress(stage, done, total)`` callback (stages: ``scenes``, ``tiles``,
            ``cogs``).
        workers: tile processes (None/0: settings.workers or the number of cores; 1: in-process).

    Raises:
        NotFound / InvalidInput / NoData: bad parameters or nothing to composite; nothing written.
        StorageError: an input or output cannot be read or written; nothing registered.
    """
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    configure_gdal(settings)
    tick = progress or (lambda stage, done, total: None)
    catalog = Catalog(settings)
    output_root = (spec.output or settings.output_root).rstrip("/")
    store = open_store(output_root, settings)
    plan = make_plan(spec, catalog, output_root)
    tiles = plan.tile_indices()
    n_workers = workers if workers is not None else (settings.workers or None)
    executor = SerialExecutor() if len(tiles) == 1 else make_executor(n_workers)
    try:
        valid: dict[str, int] = {}
        clear: dict[str, int] = {}
        tick("scenes", 0, len(tiles))
        for done, (_, stats) in enumerate(executor.map_unordered(tile_stats, [(plan, t) for t in tiles]), 1):
            for k, v in stats.valid.items():
                valid[k] = valid.get(k, 0) + v
            for k, v in stats.clear.items():
                clear[k] = clear.get(k, 0) + v
            tick("scenes", done, len(tiles))
        scenes = scene_table(plan, valid, clear)
        used_rows = [r for r in scenes if r["used"]]
        if not used_rows:
            considered = [r for r in scenes if r["valid_pixels"]]
            if considered and spec.max_cloud is not None:
                best = max(considered, key=lambda r: r["clear_percent"])
                raise NoData(
                    f"no scene passes the cloud filter (max-cloud {spec.max_cloud:g}%): the clearest, "
                    f"{best['item_id']}, is {100 - best['clear_percent']:.1f}% cloudy"
                )
            raise NoData(f"none of the {len(scenes)} scenes has a valid pixel in the bbox")
        total = scenes[0]["total_pixels"]
        used = {r["item_id"]: r["clear_pixels"] / total for r in used_rows}
        steps = []
        step_starts = []
        period_index: dict[str, int] = {}
        for period in plan.periods:
            members = [r for r in used_rows if period.contains(_item_datetime(plan.items[r["item_id"]]))]
            if not members:
                continue
            for r in members:
                period_index[r["item_id"]] = len(steps)
            step_starts.append(period.start)
            steps.append({"index": len(steps), "label": period.label, "start": _iso(period.start),
                          "end": _iso(period.end), "items": [r["item_id"] for r in members]})
        for r in scenes:
            if r["used"] and r["item_id"] not in period_index:
                r.update(used=False, reason="outside every period")
        used = {k: v for k, v in used.items() if k in period_index}

        staging = store.stage(plan.job_id)
        try:
            cube = staging / "cube.zarr"
            outputs.create_cube(cube, plan.geobox, plan.variables, step_starts, plan.tile_shape[0],
                                attrs={"title": f"stacube {spec.method} composite", "stacube:job": plan.job_id,
                                       "Conventions": "CF-1.8"})
            tick("tiles", 0, len(tiles))
            args = [(plan, t, used, period_index, len(steps)) for t in tiles]
            for done, (a, arrays) in enumerate(executor.map_unordered(compute_tile, args), 1):
                outputs.write_region(cube, plan.tiles[a[1]], plan.geobox, arrays)
                tick("tiles", done, len(tiles))
            outputs.finish_cube(cube)
            hrefs: dict = {"cogs": {}, "zarr": store.href(plan.job_id, "cube.zarr"),
                           "report": store.href(plan.job_id, "report.json")}
            n_cogs = len(steps) * len(plan.variables)
            tick("cogs", 0, n_cogs)
            done = 0
            for step in steps:
                folder = staging / step["label"]
                folder.mkdir(exist_ok=True)
                hrefs["cogs"][step["label"]] = {}
                for var in plan.variables:
                    outputs.write_cog(cube, var, step["index"], plan.geobox, plan.tiles, folder / f"{var}.tif")
                    hrefs["cogs"][step["label"]][var] = store.href(plan.job_id, f"{step['label']}/{var}.tif")
                    done += 1
                    tick("cogs", done, n_cogs)
            elapsed = time.perf_counter() - t0
            pixels = int(plan.geobox.shape.x * plan.geobox.shape.y)
            report = {
                "job_id": plan.job_id,
                "status": "completed",
                "stacube_version": __version__,
                "parameters": spec.model_dump(mode="json"),
                "collection": plan.output_collection,
                "grid": {
                    "crs": f"EPSG:{plan.geobox.crs.epsg}" if plan.geobox.crs.epsg else plan.geobox.crs.to_wkt(),
                    "shape": [plan.geobox.shape.y, plan.geobox.shape.x],
                    "transform": list(plan.geobox.affine)[:6],
                    "bbox": list(plan.geobox.extent.boundingbox),
                    "tiles": len(tiles),
                },
                "bands": plan.bands, "indices": plan.indices, "variables": plan.variables,
                "steps": steps,
                "scenes": scenes,
                "outputs": hrefs,
                "items": [f"{plan.job_id}_{s['label']}" for s in steps],
                "started": _iso(started),
                "finished": _iso(datetime.now(timezone.utc)),
                "elapsed_seconds": round(elapsed, 3),
                "throughput": {
                    "pixels": pixels, "scenes": len(used),
                    "pixels_x_scenes_per_second": round(pixels * len(used) / max(elapsed, 1e-9), 1),
                },
            }
            outputs.write_json(staging / "report.json", report)
        except BaseException:
            store.discard(staging)
            raise
        store.commit(staging, plan.job_id)
    finally:
        executor.close()

    collection = derived_collection(plan)
    existing = catalog.collection_ids()
    if plan.output_collection in existing:
        old = catalog.get_collection(plan.output_collection)
        collection["extent"] = old.get("extent", collection["extent"])
    catalog.upsert_collection(collection)
    stac_base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/") + "/stac"
    catalog.load_items(derived_items(plan, report, hrefs, stac_base), mode="upsert")
    return report


def load_report(path: str | Path) -> dict:
    import json

    return json.loads(Path(path).read_text())
