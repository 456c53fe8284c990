"""``stacube cube``: analysis-ready Zarr data cubes: create (from options or an Open Data Cube
ingestion configuration), open (filling what is missing), list, show, export-config, delete."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stacube.cli.common import console, err_console, settings_from, split_list
from stacube.errors import InvalidInput

app = typer.Typer(help="Analysis-ready Zarr data cubes: create (from options or an ODC ingestion configuration), open (filling what is missing), list, show, export-config, delete.",
                  no_args_is_help=True)


def _progress(label: str, quiet: bool):
    """A progress callback drawing a bar on stderr, and a function to stop it."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, transient=True)
    task: dict = {}

    def tick(done: int, total: int) -> None:
        if quiet:
            return
        if not task:
            bar.start()
            task["id"] = bar.add_task(label, total=total)
        bar.update(task["id"], completed=done, total=total)

    return tick, bar.stop


def _fill_line(report) -> str:
    return (f"{report.units} tile(s) needed: {report.computed} computed ({report.items} item reads), "
            f"{report.reused} already in the store, {report.waited} filled elsewhere; "
            f"{report.levels_written} pyramid block(s) updated in {report.seconds:.2f} s")


def _summary(definition) -> dict:
    from stacube.core.crs import crs_text  # lazy: start-up

    gb = definition.geobox
    return {
        "name": definition.name, "mode": definition.mode, "collections": definition.spec["collections"],
        "grid": definition.grid.name,
        "crs": crs_text(gb.crs),
        "resolution": abs(gb.resolution.x), "shape": [len(definition.steps), gb.shape.y, gb.shape.x],
        "chunks": list(definition.chunks), "tile_size": definition.tile, "levels": definition.levels,
        "variables": definition.variables, "resampling": definition.spec.get("resampling") or {},
        "bbox": [round(v, 6) for v in definition.bbox_lonlat],
        "time": [definition.steps[0]["time"], definition.steps[-1]["time"]], "uri": definition.uri,
    }


#: ``cube create`` options an ingestion configuration sets itself, and the field that does.
CONFIG_FIELDS = {"collection": "source_type", "grid": "storage.crs/resolution", "bands": "measurements",
                 "tile_size": "storage.tile_size", "chunk": "storage.chunking", "time_chunk": "storage.chunking",
                 "output": "location", "resampling": "measurements[].resampling_method"}


def _resampling(value: str | None) -> dict[str, str] | str | None:
    """``--resampling bilinear`` (every band) or ``red=bilinear,nir=average``."""
    if value is None:
        return None
    parts = split_list(value, "--resampling")
    if len(parts) == 1 and "=" not in parts[0]:
        return parts[0]
    out = {}
    for part in parts:
        band, sep, method = part.partition("=")
        if not sep or not band.strip() or not method.strip():
            raise InvalidInput(f"--resampling: {part!r} is not BAND=METHOD")
        out[band.strip()] = method.strip()
    return out


def _read_config(path: Path) -> dict:
    from stacube.cubes.ingestion import parse_ingestion_yaml  # lazy: start-up

    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput(f"--config {path}: cannot read it ({exc.strerror})") from None
    return parse_ingestion_yaml(text, f"--config {path}")


@app.command("create")
def create(
    name: str | None = typer.Argument(None, help="Cube name (lowercase letters, digits, '.', '_', '-'); "
                                                 "with --config: the output_type by default."),
    collection: list[str] = typer.Option(None, "--collection", "-c", help="Source collection; repeatable."),
    config: Path | None = typer.Option(
        None, "--config", help="Open Data Cube ingestion configuration (YAML): source, grid, chunks, bands "
                               "and resampling (see docs/cubes.md)."),
    grid: str | None = typer.Option(None, help="native (default) | webmercator[-z<N>] | equal-area-<R>m|km | "
                                               "epsg:<code>/<R> (anchor: epsg:<code>/<R>@<X>,<Y>)."),
    datetime_value: str | None = typer.Option(None, "--datetime", help="START/END (ISO 8601)."),
    bbox: str | None = typer.Option(None, help="Domain MINX,MINY,MAXX,MAXY (default: the items' extent, "
                                               "or the configuration's ingestion_bounds)."),
    bbox_crs: str = typer.Option("EPSG:4326", help="CRS of --bbox."),
    bands: str | None = typer.Option(None, help="Comma-separated bands (default: red,green,blue,nir present)."),
    index: list[str] = typer.Option(None, "--index", help="Index stored in the cube (NDVI...); repeatable."),
    method: str | None = typer.Option(None, help="Composite per period (median, mean, best-pixel...); "
                                                 "without it: masked observations per solar day."),
    period: str | None = typer.Option(None, help="With --method: P16D, P1M, P1Y..."),
    max_cloud_cover: float | None = typer.Option(
        None, help="Leave out items whose eo:cloud_cover (scene metadata) exceeds this percent."),
    resampling: str | None = typer.Option(
        None, help="Resampling of sources off the grid: METHOD for every band or BAND=METHOD,... "
                   "(nearest, bilinear, cubic, average...; default nearest)."),
    tile_size: int | None = typer.Option(None, help="Fill tile edge in px (multiple of the chunk edge; default 512)."),
    chunk: int | None = typer.Option(None, help="Spatial chunk edge in px (default 128)."),
    time_chunk: int | None = typer.Option(None, help="Time steps per chunk (default 32)."),
    levels: int | None = typer.Option(None, help="Pyramid levels including full resolution (default: automatic)."),
    output: str | None = typer.Option(None, help="Root URI of cubes (default <output root>/cubes; s3:// works)."),
    zarr_format: int | None = typer.Option(None, "--zarr-format", help="Zarr format of the stores: 2 (default) or 3."),
    fill: bool = typer.Option(True, "--fill/--no-fill", help="Compute the whole cube now, or only when read."),
    replace: bool = typer.Option(False, help="Replace a cube of the same name."),
    workers: int | None = typer.Option(None, help="Units filled at once (default: cores; 1: one after the other); threads, or worker processes with STACUBE_EXECUTOR=processes."),
    dask: str | None = typer.Option(None, "--dask", help="Fill on a Dask cluster (scheduler address)."),
    as_json: bool = typer.Option(False, "--json", help="Print the cube as JSON."),
) -> None:
    """Create an analysis-ready Zarr cube (time, y, x per band) registered in the catalog, from
    options or from an Open Data Cube ingestion configuration (--config)."""
    from stacube.cubes.build import create_cube  # lazy: start-up
    from stacube.cubes.spec import build_cube_spec  # lazy: start-up

    methods = _resampling(resampling)
    if config is not None:
        from stacube.catalog.pgstac import Catalog  # lazy: start-up
        from stacube.cubes.ingestion import spec_from_ingestion_config  # lazy: start-up

        given = {"collection": collection, "grid": grid, "bands": bands, "tile_size": tile_size, "chunk": chunk,
                 "time_chunk": time_chunk, "output": output, "resampling": resampling}
        for option, value in given.items():
            if value:
                raise InvalidInput(f"--{option.replace('_', '-')}: the ingestion configuration sets this "
                                   f"({CONFIG_FIELDS[option]})")
        spec = spec_from_ingestion_config(
            _read_config(config), catalog=Catalog(settings_from()), name=name, datetime=datetime_value, bbox=bbox,
            bbox_crs=bbox_crs if bbox else None, indices=index or None, method=method, period=period,
            max_cloud_cover=max_cloud_cover, levels=levels, zarr_format=zarr_format)
    else:
        for option, value in (("NAME", name), ("--collection", collection), ("--datetime", datetime_value)):
            if not value:
                raise InvalidInput(f"{option}: required (or give --config)")
        band_list = split_list(bands, "--bands")
        if isinstance(methods, str):
            if not band_list:
                raise InvalidInput("--resampling: name the bands (--bands) or use BAND=METHOD")
            methods = {b: methods for b in band_list}
        spec = build_cube_spec(
            name=name, collections=collection, grid=grid or "native", datetime=datetime_value, bbox=bbox,
            bbox_crs=bbox_crs, bands=band_list, indices=index or [], method=method, period=period,
            max_cloud_cover=max_cloud_cover, tile_size=tile_size, chunk=chunk, time_chunk=time_chunk,
            levels=levels, output=output, zarr_format=zarr_format, resampling=methods,
        )
    name = spec.name
    tick, stop = _progress(f"filling cube {name}", as_json)
    try:
        created = create_cube(spec, settings_from(), fill=fill, replace=replace, workers=workers, dask=dask,
                              progress=tick)
    finally:
        stop()
    doc = _summary(created.definition)
    if as_json:
        doc["fill"] = created.fill.as_dict() if created.fill else None
        typer.echo(json.dumps(doc, indent=2))
        return
    console.print(f"cube {name}: {doc['mode']} of {', '.join(doc['collections'])} on grid {doc['grid']} "
                  f"({doc['crs']}, {doc['resolution']:g} m), {doc['shape'][0]} steps x {doc['shape'][1]} x "
                  f"{doc['shape'][2]} px, chunks {tuple(doc['chunks'])}, {doc['levels']} level(s)")
    console.print(f"variables: {', '.join(doc['variables'])}")
    console.print(f"store: {created.definition.level_uri(0)}; registered as collection {name}")
    if created.fill:
        console.print(_fill_line(created.fill))
    else:
        console.print("not filled: tiles are computed when first read (stacube cube open, open_cube)")


@app.command("open")
def open_(
    name: str = typer.Argument(..., help="Cube name."),
    bbox: str | None = typer.Option(None, help="MINX,MINY,MAXX,MAXY (default: the whole cube)."),
    bbox_crs: str = typer.Option("EPSG:4326", help="CRS of --bbox."),
    datetime_value: str | None = typer.Option(None, "--datetime", help="START/END (default: every step)."),
    variables: str | None = typer.Option(None, help="Comma-separated variables (default: all)."),
    level: int = typer.Option(0, help="Pyramid level."),
    fill: bool = typer.Option(True, "--fill/--no-fill", help="Compute missing tiles first."),
    workers: int | None = typer.Option(None, help="Missing tiles filled at once (threads, or worker processes with STACUBE_EXECUTOR=processes)."),
    dask: str | None = typer.Option(None, "--dask", help="Fill on a Dask cluster."),
    out: Path | None = typer.Option(None, "--output", "-o", help="Write the region to .nc (NetCDF) or .zarr."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Open a region of a cube, computing only the tiles that are not in the store yet."""
    from stacube.core.cf import plain_attrs, to_netcdf  # lazy: start-up
    from stacube.cubes.fill import fill_region, open_cube  # lazy: start-up

    if out is not None and out.suffix not in (".nc", ".zarr"):
        raise InvalidInput(f"--output {out}: use a .nc or .zarr file name")
    settings = settings_from()
    tick, stop = _progress(f"filling cube {name}", as_json)
    try:
        if fill:
            _, report, _, _ = fill_region(name, bbox, datetime_value, bbox_crs=bbox_crs, level=level,
                                          settings=settings, workers=workers, dask=dask, progress=tick)
        else:
            report = None
    finally:
        stop()
    ds = open_cube(name, bbox=bbox, time=datetime_value, bbox_crs=bbox_crs, variables=variables, level=level,
                   fill=False, load=out is not None, settings=settings)
    if out is not None:
        ds.attrs = plain_attrs(ds.attrs)
        if out.suffix == ".nc":
            to_netcdf(ds, out)
        else:
            for var in ds.variables.values():
                var.encoding.pop("chunks", None)
                var.encoding.pop("preferred_chunks", None)
            ds.to_zarr(out, mode="w", zarr_format=2, consolidated=True)
    doc = {"cube": name, "sizes": dict(ds.sizes), "variables": list(ds.data_vars),
           "time": [str(ds.time.values[0])[:19], str(ds.time.values[-1])[:19]] if ds.sizes.get("time") else [],
           "fill": report.as_dict() if report else None, "output": str(out) if out else None}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    if report:
        console.print(_fill_line(report))
    console.print(f"region: {ds.sizes['time']} steps x {ds.sizes['y']} x {ds.sizes['x']} px of "
                  f"{', '.join(ds.data_vars)} ({doc['time'][0]} .. {doc['time'][-1]})" if doc["time"] else "region: empty")
    if out is not None:
        console.print(f"written to {out}")


@app.command("list")
def list_cubes(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Cubes and how many of their tiles are filled."""
    from rich.table import Table

    from stacube.cubes.definition import CubeDefinition  # lazy: start-up
    from stacube.cubes.records import CubeRecords  # lazy: start-up

    rows = CubeRecords(settings_from()).list()
    docs = []
    for r in rows:
        d = CubeDefinition.from_doc(r["definition"])
        ny, nx = d.tiles_shape
        docs.append({**_summary(d), "units": ny * nx * d.n_blocks, "units_done": r["units_done"]})
    if as_json:
        typer.echo(json.dumps(docs, indent=2))
        return
    table = Table(title=f"{len(docs)} cubes")
    for col in ("name", "mode", "collections", "grid", "steps x y x x", "levels", "filled tiles"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(d["name"], d["mode"], ",".join(d["collections"]), d["grid"],
                      " x ".join(map(str, d["shape"])), str(d["levels"]), f"{d['units_done']}/{d['units']}")
    console.print(table)


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A cube's grid, shape, chunks, variables, time range and store."""
    from stacube.cubes.fill import load_definition  # lazy: start-up
    from stacube.cubes.records import CubeRecords  # lazy: start-up

    settings = settings_from()
    d = load_definition(settings, name)
    doc = _summary(d)
    states = CubeRecords(settings).states(name)
    ny, nx = d.tiles_shape
    doc["units"] = {"total": ny * nx * d.n_blocks, "done": sum(1 for s in states.values() if s == "done"),
                    "failed": sum(1 for s in states.values() if s == "failed")}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    for key, value in doc.items():
        console.print(f"{key}: {value}")


@app.command("export-config")
def export_config(
    name: str = typer.Argument(..., help="Cube name."),
    out: Path | None = typer.Option(None, "--output", "-o", help="Write the YAML to this file (default: stdout)."),
) -> None:
    """Write a cube as an Open Data Cube ingestion configuration (YAML), which
    `stacube cube create --config` reads back into the same cube."""
    from stacube.cubes.fill import load_definition  # lazy: start-up
    from stacube.cubes.ingestion import ingestion_yaml  # lazy: start-up

    text = ingestion_yaml(load_definition(settings_from(), name))
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise InvalidInput(f"--output {out}: cannot write it ({exc.strerror})") from None
    console.print(f"cube {name}: ingestion configuration written to {out}")


@app.command("delete")
def delete(name: str) -> None:
    """Delete a cube: its stores, its bookkeeping and its collection."""
    from stacube.catalog.pgstac import Catalog  # lazy: start-up
    from stacube.cubes.arrays import delete_stores  # lazy: start-up
    from stacube.cubes.definition import CubeDefinition  # lazy: start-up
    from stacube.cubes.records import CubeRecords  # lazy: start-up

    settings = settings_from()
    definition = CubeDefinition.from_doc(CubeRecords(settings).delete(name))
    delete_stores(definition, settings)
    catalog = Catalog(settings)
    if name in catalog.collection_ids():
        catalog.delete_collection(name)
    console.print(f"cube {name} deleted")
