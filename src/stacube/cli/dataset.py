"""``stacube dataset``: datasets (STAC Items): add, search, show."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from stacube.cli.common import console, settings_from
from stacube.errors import InvalidInput

app = typer.Typer(help="Datasets (STAC Items): add, search, show.", no_args_is_help=True)


def _catalog():
    from stacube.catalog.pgstac import Catalog  # lazy: start-up

    return Catalog(settings_from())


@app.command("add")
def dataset_add(
    paths: list[Path] = typer.Argument(..., help="Item JSON / ndjson files, manifest folders, COG folders."),
    collection: str | None = typer.Option(None, "--collection", "-c",
                                          help="Collection of the items (required for COGs)."),
    datetime_value: str | None = typer.Option(
        None, "--datetime", help="Acquisition time of every COG item (overrides what the files say)."),
    datetime_pattern: str | None = typer.Option(
        None, "--datetime-pattern",
        help="How names carry the date: strptime codes ('%Y%m%d', '%Y_%j') or a regex with named "
             "groups year, month, day (or doy), hour, minute, second. Tried before the GeoTIFF tags "
             "and the Landsat/Sentinel-2 IDs and ISO dates stacube reads by itself."),
    mode: str = typer.Option("upsert", help="upsert (default), insert or ignore."),
) -> None:
    """Register datasets. All are checked first; the load is one transaction (all or nothing).

    A folder of COGs is one scene per folder; its time comes from the GeoTIFF tags, then the
    Landsat / Sentinel-2 scene IDs or ISO dates in its names; a scene whose time cannot be
    found is refused with its path, and nothing is registered.
    """
    from stacube.catalog.register import add_datasets  # lazy: start-up

    if mode not in ("upsert", "insert", "ignore"):
        raise InvalidInput(f"--mode must be upsert, insert or ignore, not {mode!r}")
    t0 = time.perf_counter()
    result = add_datasets(_catalog(), paths, collection=collection, datetime_value=datetime_value,
                          datetime_pattern=datetime_pattern, mode=mode)
    elapsed = time.perf_counter() - t0
    per = ", ".join(f"{c}: {n}" for c, n in sorted(result.collections.items()))
    console.print(f"registered {result.items} items ({per}) in {elapsed:.2f} s")


@app.command("search")
def dataset_search(
    collection: list[str] = typer.Option(None, "--collection", "-c", help="Collection(s)."),
    bbox: str | None = typer.Option(None, help="MINX,MINY,MAXX,MAXY in EPSG:4326."),
    datetime_value: str | None = typer.Option(None, "--datetime", help="Instant or START/END."),
    filter_text: str | None = typer.Option(None, "--filter", help="CQL2-text filter."),
    limit: int = typer.Option(50, help="Most items to print."),
    as_json: bool = typer.Option(False, "--json", help="Print an ItemCollection JSON."),
) -> None:
    """Search datasets and print a table (or JSON)."""
    from stacube.core.bbox import parse_bbox  # lazy: start-up
    from stacube.core.times import parse_datetime_range  # lazy: start-up

    query: dict = {"collections": collection or None}
    if bbox:
        query["bbox"] = parse_bbox(bbox)
    if datetime_value:
        parse_datetime_range(datetime_value)
        query["datetime"] = datetime_value
    if filter_text:
        query["filter"] = filter_text
        query["filter-lang"] = "cql2-text"
    items = list(_catalog().search(query, max_items=limit))
    if as_json:
        typer.echo(json.dumps({"type": "FeatureCollection", "features": items}, indent=2))
        return
    table = Table(title=f"{len(items)} datasets" + (f" (first {limit})" if len(items) == limit else ""))
    for col in ("collection", "id", "datetime", "cloud %", "assets"):
        table.add_column(col, overflow="fold")
    for it in items:
        props = it.get("properties", {})
        cc = props.get("eo:cloud_cover")
        table.add_row(it.get("collection", ""), it["id"],
                      str(props.get("datetime") or props.get("start_datetime") or "")[:19],
                      "" if cc is None else f"{cc:.1f}", str(len(it.get("assets", {}))))
    console.print(table)


@app.command("show")
def dataset_show(collection: str, item: str) -> None:
    """Print a dataset's STAC Item JSON."""
    typer.echo(json.dumps(_catalog().get_item(collection, item), indent=2))
