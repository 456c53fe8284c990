"""``stacube composite``: assemble a cube from the catalog and composite it."""

from __future__ import annotations

import json
import logging

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stacube.cli.common import console, err_console, int_list, settings_from, split_list

STAGES = {"scenes": "scene statistics", "composite": "compositing tiles", "cogs": "writing COGs",
          "pyramid": "writing tile pyramid"}
PROCESS_STAGES = {**STAGES, "composite": "processing tiles"}


def job_id_kind(settings, job_id: str) -> str | None:
    """The job's kind (``composite``, ``process``), None when there is no such job."""
    from stacube.errors import NotFound  # lazy: start-up
    from stacube.jobs.state import JobStore  # lazy: start-up

    try:
        return JobStore(settings).get(job_id, full=False)["kind"]
    except NotFound:
        return None


def _list_indices(value: bool) -> None:
    """``--list-indices``: print the spectral index presets and their formulas, then exit."""
    if not value:
        return
    from rich.table import Table

    from stacube.core.indices import PRESETS, get_index  # lazy: start-up

    table = Table(title="index presets (any spyndex index of reflectance bands works by name too)")
    for col in ("name", "formula", "bands", "long name", "reference"):
        table.add_column(col, overflow="fold")
    for name in PRESETS:
        idx = get_index(name)
        table.add_row(idx.name, idx.formula, ", ".join(f"{s}={c}" for s, c in idx.bands.items()),
                      idx.long_name, idx.reference)
    console.print(table)
    raise typer.Exit()


def composite(
    collection: list[str] = typer.Option(..., "--collection", "-c",
                                         help="Collection id; repeat for cross-collection (bands match by common name)."),
    bbox: str = typer.Option(..., help="MINX,MINY,MAXX,MAXY of the area."),
    bbox_crs: str = typer.Option("EPSG:4326", help="CRS of --bbox."),
    datetime_value: str = typer.Option(..., "--datetime", help="START/END (ISO 8601)."),
    method: str = typer.Option(..., help="most-recent | least-recent | best-pixel | median | mean | geomedian | "
                                         "max-ndvi | medoid | pNN (percentile, e.g. p25)."),
    bands: str | None = typer.Option(
        None, help="Comma-separated common names or asset keys (default red,green,blue; with --index "
                   "and no --bands, only the indices are written)."),
    index: list[str] = typer.Option(None, "--index", help="Index preset (NDVI, NDWI, NDBI, EVI, NBR); repeatable."),
    max_cloud: float | None = typer.Option(None, help="Drop scenes whose non-clear share of valid pixels exceeds this percent."),
    mask_asset: str | None = typer.Option(None, help="Override the product's quality asset."),
    clear: str | None = typer.Option(None, help="With --mask-asset: comma-separated clear values."),
    period: str | None = typer.Option(None, help="One composite per period: P16D, P1M, P1Y..."),
    crs: str | None = typer.Option(None, help="Output CRS (default: the first collection's)."),
    resolution: float | None = typer.Option(None, help="Output pixel size in CRS units."),
    anchor: str | None = typer.Option(
        None, help="Where output pixel edges fall: native (the sources' pixel edges; default), edge "
                   "(multiples of the resolution), center, floating, or FX,FY pixel fractions."),
    grid: str | None = typer.Option(None, help="Named grid (native, webmercator[-z<N>], equal-area-<R>m|km, epsg:<code>/<R>): "
                                               "outputs cover the area in whole pixels of it."),
    grid_tiles: bool = typer.Option(False, "--grid-tiles",
                                    help="With --grid: cover the whole tiles of the grid that meet the area."),
    output: str | None = typer.Option(None, help="Output root URI (default .stacube/data; s3://bucket/prefix works)."),
    output_collection: str | None = typer.Option(None, help="Collection the results are registered in."),
    tile_size: int | None = typer.Option(
        None, help="Tile edge in output pixels (default: what fits STACUBE_TILE_MEMORY, 2 GiB)."),
    mask_cleanup: str | None = typer.Option(None, help="OPEN,DILATE pixels: remove cloud specks by opening, "
                                                       "then grow clouds by dilation (e.g. 2,3)."),
    zarr_format: int = typer.Option(2, "--zarr-format", help="Zarr format of the Zarr output: 2 or 3."),
    pyramid: str | None = typer.Option(
        None, "--pyramid", help="Also write a static XYZ tile pyramid (WebMercatorQuad) of these zooms, "
                                "e.g. 8-14, beside the COGs (a bucket or CDN serves it as files)."),
    pyramid_format: str | None = typer.Option(None, "--pyramid-format", help="png (default) or webp."),
    pyramid_bands: str | None = typer.Option(
        None, "--pyramid-bands", help="One or three outputs drawn (default red,green,blue, else the first)."),
    pyramid_expression: str | None = typer.Option(
        None, "--pyramid-expression", help="rio-tiler expression over b1..bN, the --pyramid-bands in order."),
    pyramid_rescale: list[str] = typer.Option(
        None, "--pyramid-rescale", help="MIN,MAX drawn (repeat per band; default 0,0.3 for reflectance, "
                                        "an index's own range)."),
    pyramid_colormap: str | None = typer.Option(None, "--pyramid-colormap",
                                                help="rio-tiler colormap of a one-band pyramid (viridis...)."),
    pyramid_url: str | None = typer.Option(
        None, "--pyramid-url", help="Public URL the output root is served at (tile template and TileJSON)."),
    workers: int | None = typer.Option(None, help="Tiles run at once (default: cores; 1: one after the other); threads, or worker processes with STACUBE_EXECUTOR=processes."),
    dask: str | None = typer.Option(None, "--dask", help="Run tiles on a Dask cluster (scheduler address)."),
    as_json: bool = typer.Option(False, "--json", help="Print the job report as JSON on stdout."),
    list_indices: bool = typer.Option(False, "--list-indices", is_eager=True, callback=_list_indices,
                                      help="List the spectral index presets and exit."),
) -> None:
    """Composite scenes of one or more collections over an area and time range.

    Writes one COG per band/index/count and per period, a Zarr cube and a JSON report (with
    --pyramid also static XYZ tiles and their TileJSON), then registers the results as STAC
    Items (searchable and tileable at once).
    """
    from stacube.errors import InvalidInput  # lazy: start-up
    from stacube.jobs.runner import check, submit  # lazy: start-up
    from stacube.jobs.spec import build_spec  # lazy: start-up

    clear_values = int_list(clear, "--clear")
    spec = build_spec(
        collections=collection, bbox=bbox, bbox_crs=bbox_crs, datetime=datetime_value, method=method,
        bands=split_list(bands, "--bands"), indices=index or [], max_cloud=max_cloud,
        mask_asset=mask_asset, clear=clear_values, period=period, crs=crs, resolution=resolution, anchor=anchor,
        grid=grid, grid_tiles=grid_tiles or None,
        output=output, output_collection=output_collection, tile_size=tile_size, mask_cleanup=mask_cleanup,
        zarr_format=zarr_format,
        pyramid=pyramid_param(pyramid, format=pyramid_format, bands=split_list(pyramid_bands, "--pyramid-bands"),
                              expression=pyramid_expression, rescale=pyramid_rescale,
                              colormap_name=pyramid_colormap, url=pyramid_url),
    )
    settings = settings_from()
    plan = check(spec, settings)  # input errors and an unwritable --output end here: no job is recorded
    job, _ = submit(spec, settings)
    report = run_with_progress(settings, job["id"], workers=workers, dask=dask, transient=as_json, plan=plan)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    print_summary(report)


def pyramid_param(zooms: str | None, **options) -> dict | None:
    """The ``pyramid`` parameter from ``--pyramid Z0-Z1`` and the ``--pyramid-*`` options (None
    without ``--pyramid``).

    Raises:
        InvalidInput: a ``--pyramid-*`` option without ``--pyramid``.
    """
    from stacube.errors import InvalidInput  # lazy: start-up

    given = {k: v for k, v in options.items() if v not in (None, [])}
    if zooms is None:
        if given:
            raise InvalidInput(f"--pyramid-{next(iter(given)).replace('_name', '').replace('_', '-')} "
                               "needs --pyramid Z0-Z1")
        return None
    return {"zooms": zooms, **given}


def run_with_progress(settings, job_id: str, *, workers=None, dask=None, transient=False, plan=None) -> dict:
    """Run or resume a job with progress bars on stderr; returns its report. A job of a
    workspace (submitted over HTTP) registers its output into that workspace. ``plan``: what
    :func:`stacube.jobs.runner.check` returned for a job just submitted."""
    labels = PROCESS_STAGES if job_id_kind(settings, job_id) == "process" else STAGES
    from stacube.access.jobs import output_claim  # lazy: start-up
    from stacube.jobs.runner import run_job  # lazy: start-up

    # odc-stac logs each failed read; the error that ends the job says it once
    logging.getLogger("odc").setLevel(logging.CRITICAL)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err_console, transient=transient)
    tasks: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
            tasks["job"] = bar.add_task(f"job {job_id} (resume: stacube job resume {job_id})", total=None)
        if stage not in tasks:
            tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        return run_job(settings, job_id, progress=progress, workers=workers, dask=dask,
                       on_register=output_claim(settings), plan=plan)
    except KeyboardInterrupt:
        raise  # the bars stay, with the job id to resume
    except BaseException:
        bar.live.transient = True  # a failed job leaves only its one-line error
        raise
    finally:
        bar.stop()


def print_summary(report: dict) -> None:
    """The human summary of a finished job (a cube's fill job: what the fill computed)."""
    if "cube" in report and "fill" in report:
        f = report["fill"]
        console.print(f"cube {report['cube']}: {f['units']} fill unit(s), {f['computed']} computed, "
                      f"{f['reused']} already in the store, in {f['seconds']:.2f} s")
        return
    used = [s for s in report["scenes"] if s["used"]]
    dropped = [s for s in report["scenes"] if not s["used"]]
    thr = report["throughput"]
    console.print(
        f"job {report['job_id']}: {len(used)} scenes used, {len(dropped)} dropped, "
        f"{len(report['steps'])} period(s), grid {report['grid']['shape'][1]}x{report['grid']['shape'][0]} "
        f"px in {report['grid']['crs']}, {report['grid']['tiles']} tile(s)"
    )
    for s in dropped:
        console.print(f"  dropped {s['item_id']}: {s['reason']}")
    if "process" in report:
        proc = report["process"]
        console.print(f"process {proc['name']} (version {proc['version']}): outputs {', '.join(proc['outputs'])}")
        if report.get("failed_tiles"):
            console.print(f"  {report['failed_tiles']} of {report['grid']['tiles']} tiles failed (left nodata):")
            for err in report["errors"][:5]:
                console.print(f"  tile {err['tile']}: {err['error']}")
    console.print(f"outputs: {report['outputs']['report'].rsplit('/', 1)[0]}")
    console.print(f"registered in {report['collection']}: {', '.join(report['items'])}")
    console.print(
        f"done in {report['elapsed_seconds']:.2f} s: {thr['pixels']:,} px x {thr['scenes']} scenes, "
        f"{thr['pixels_x_scenes_per_second']:,.0f} pixels x scenes / s"
    )
