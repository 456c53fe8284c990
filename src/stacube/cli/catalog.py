"""``stacube product`` and ``stacube dataset``: the catalog's collections and items."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from stacube.cli.common import console, settings_from, split_list
from stacube.errors import InvalidInput

product_app = typer.Typer(help="Products (STAC Collections): add, list, show, delete.",
                          no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets (STAC Items): add, search, show.", no_args_is_help=True)


def _catalog():
    from stacube.catalog.store import Catalog

    return Catalog(settings_from())


@product_app.command("add")
def product_add(
    files: list[Path] = typer.Argument(..., help="STAC Collection JSON or ODC product YAML files."),
    quality_asset: str | None = typer.Option(None, help="Quality (mask) asset of the product."),
    quality_preset: str | None = typer.Option(
        None, help="Named decoding rule: fmask, sentinel-2-scl, binary-cloud, binary-valid, "
                   "landsat-c1-bqa, landsat-c2-qa-pixel."),
    cube: str | None = typer.Option(None, "--cube", help="Cube that owns the products."),
    visibility: str | None = typer.Option(None, help="private (default with --cube), shared or public."),
    share_with: str | None = typer.Option(None, "--share-with", help="Cubes that may read them (comma list)."),
) -> None:
    """Add or replace products. ODC product definitions are converted to STAC Collections."""
    from stacube.catalog.products import read_product_file
    from stacube.catalog.register import add_product
    from stacube.cli.access import set_product_access

    ids = [read_product_file(f)["id"] for f in files]  # check every file before writing any
    shares = split_list(share_with, "--share-with")
    catalog = _catalog()
    for f, product_id in zip(files, ids):
        set_product_access(catalog.settings, product_id, cube=cube, visibility=visibility, share_with=shares)
        doc = add_product(catalog, f, quality_asset=quality_asset, quality_preset=quality_preset)
        rule = doc.get("stacube:quality")
        extra = f", quality {rule['asset']} ({rule.get('preset') or rule['kind']})" if rule else ""
        console.print(f"product {doc['id']}: {len(doc.get('item_assets', {}))} measurements{extra}")


def _platforms(doc: dict) -> str:
    return ", ".join(str(p) for p in (doc.get("summaries") or {}).get("platform", []))


@product_app.command("list")
def product_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List products with their platform, bands, item count and time range."""
    from stacube.catalog.bands import data_bands

    catalog = _catalog()
    counts = catalog.item_counts()
    rows = []
    for doc in catalog.collections():
        interval = ((doc.get("extent") or {}).get("temporal") or {}).get("interval") or [[None, None]]
        rows.append({
            "id": doc["id"], "platform": _platforms(doc), "items": counts.get(doc["id"], 0),
            "bands": data_bands(doc), "start": interval[0][0], "end": interval[0][1],
            "quality": (doc.get("stacube:quality") or {}).get("asset"), "title": doc.get("title"),
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} products")
    for col in ("id", "platform", "items", "from", "to", "bands", "quality"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["id"], r["platform"], str(r["items"]), (r["start"] or "")[:10],
                      (r["end"] or "")[:10], ",".join(r["bands"]), r["quality"] or "")
    console.print(table)


@product_app.command("show")
def product_show(product: str) -> None:
    """Print a product's STAC Collection JSON."""
    typer.echo(json.dumps(_catalog().get_collection(product), indent=2))


@product_app.command("delete")
def product_delete(product: str, yes: bool = typer.Option(False, "--yes", help="Do not ask.")) -> None:
    """Delete a product and all its datasets."""
    catalog = _catalog()
    catalog.get_collection(product)
    if not yes:
        typer.confirm(f"delete {product} and its items?", abort=True)
    catalog.delete_collection(product)
    from stacube.access.store import AccessStore

    AccessStore(catalog.settings).drop(product)
    console.print(f"deleted {product}")


@dataset_app.command("add")
def dataset_add(
    paths: list[Path] = typer.Argument(..., help="Item JSON / ndjson files, manifest folders, COG folders."),
    collection: str | None = typer.Option(None, "--collection", "-c",
                                          help="Collection of the items (required for COGs)."),
    datetime_value: str | None = typer.Option(None, "--datetime", help="Acquisition time for COGs."),
    mode: str = typer.Option("upsert", help="upsert (default), insert or ignore."),
) -> None:
    """Register datasets. All are checked first; the load is one transaction (all or nothing)."""
    from stacube.catalog.register import add_datasets

    if mode not in ("upsert", "insert", "ignore"):
        raise InvalidInput(f"--mode must be upsert, insert or ignore, not {mode!r}")
    t0 = time.perf_counter()
    result = add_datasets(_catalog(), paths, collection=collection, datetime_value=datetime_value,
                          mode=mode)
    elapsed = time.perf_counter() - t0
    per = ", ".join(f"{c}: {n}" for c, n in sorted(result.collections.items()))
    console.print(f"registered {result.items} items ({per}) in {elapsed:.2f} s")


@dataset_app.command("search")
def dataset_search(
    collection: list[str] = typer.Option(None, "--collection", "-c", help="Collection(s)."),
    bbox: str | None = typer.Option(None, help="MINX,MINY,MAXX,MAXY in EPSG:4326."),
    datetime_value: str | None = typer.Option(None, "--datetime", help="Instant or START/END."),
    filter_text: str | None = typer.Option(None, "--filter", help="CQL2-text filter."),
    limit: int = typer.Option(50, help="Most items to print."),
    as_json: bool = typer.Option(False, "--json", help="Print an ItemCollection JSON."),
) -> None:
    """Search datasets and print a table (or JSON)."""
    from stacube.jobs.spec import parse_bbox, parse_datetime_range

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


@dataset_app.command("show")
def dataset_show(collection: str, item: str) -> None:
    """Print a dataset's STAC Item JSON."""
    typer.echo(json.dumps(_catalog().get_item(collection, item), indent=2))
