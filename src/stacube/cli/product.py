"""``stacube product``: products (STAC Collections): add, list, show, quality, delete, share."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from stacube.cli.common import console, int_list, settings_from, split_list

app = typer.Typer(help="Products (STAC Collections): add, create, list, show, quality, delete, share.",
                  no_args_is_help=True)


def _catalog():
    from stacube.catalog.pgstac import Catalog  # lazy: start-up

    return Catalog(settings_from())


def _access_store(settings=None):
    from stacube.access.workspaces import AccessStore  # lazy: start-up

    return AccessStore(settings or settings_from())


@app.command("add")
def product_add(
    files: list[Path] = typer.Argument(..., help="STAC Collection JSON or ODC product YAML files."),
    quality_asset: str | None = typer.Option(None, help="Quality (mask) asset of the product."),
    quality_preset: str | None = typer.Option(
        None, help="Named decoding rule: fmask, sentinel-2-scl, binary-cloud, binary-valid, "
                   "landsat-c1-bqa, landsat-c2-qa-pixel."),
    workspace: str | None = typer.Option(None, "--workspace", help="Workspace that owns the products."),
    visibility: str | None = typer.Option(None, help="private (default with --workspace), shared or public."),
    share_with: str | None = typer.Option(None, "--share-with", help="Workspaces that may read them (comma list)."),
) -> None:
    """Add or replace products. ODC product definitions are converted to STAC Collections."""
    from stacube.catalog.products import read_product_file  # lazy: start-up
    from stacube.catalog.register import add_product  # lazy: start-up

    ids = [read_product_file(f)["id"] for f in files]  # check every file before writing any
    shares = split_list(share_with, "--share-with")
    catalog = _catalog()
    for f, product_id in zip(files, ids):
        _set_access(catalog.settings, product_id, workspace=workspace, visibility=visibility, share_with=shares)
        _print_added(add_product(catalog, f, quality_asset=quality_asset, quality_preset=quality_preset))


def _print_added(doc: dict) -> None:
    rule = doc.get("stacube:quality")
    extra = f", quality {rule['asset']} ({rule.get('preset') or rule['kind']})" if rule else ""
    measured = (f"{len(doc['item_assets'])} measurements" if doc.get("item_assets")
                else "no item_assets declared (described from its items as they are registered)")
    console.print(f"product {doc['id']}: {measured}{extra}")


@app.command("create")
def product_create(
    name: str = typer.Argument(..., help="Product (collection) id."),
    from_cogs: Path = typer.Option(..., "--from-cogs", help="A folder of scene folders of COGs (or one scene folder)."),
    band: list[str] = typer.Option(None, "--band", help="STEM=COMMON_NAME (e.g. B4=red); repeatable."),
    quality_asset: str | None = typer.Option(None, help="Quality (mask) band, by file stem."),
    quality_preset: str | None = typer.Option(
        None, help="Its decoding rule: fmask, sentinel-2-scl, binary-cloud, binary-valid, landsat-c1-bqa, "
                   "landsat-c2-qa-pixel."),
    clear: str | None = typer.Option(None, help="Instead of a preset: the mask values that are clear (0,1)."),
    title: str | None = typer.Option(None, help="Title (the ODC description)."),
    platform: str | None = typer.Option(None, help="Platform, e.g. landsat-7 (default: what the scene IDs say)."),
    print_yaml: bool = typer.Option(False, "--print-yaml",
                                    help="Print the ODC product definition instead of registering it."),
) -> None:
    """Describe a product from the COGs of one scene folder and register it.

    Measurements come from the files (asset key = file stem without the scene ID; dtype,
    nodata, scale/offset, units); common names from --band or the band designations of the
    sensor the scene IDs name; storage CRS and resolution from the files; a band named BQA,
    QA_PIXEL, SCL or Fmask is the quality band unless --quality-asset says otherwise.
    `stacube product add` of the --print-yaml output gives the same product.
    """
    import yaml

    from stacube.catalog.from_cogs import describe_cogs, parse_band_options  # lazy: start-up
    from stacube.catalog.products import odc_to_collection  # lazy: start-up
    from stacube.catalog.register import upsert_product  # lazy: start-up

    doc = describe_cogs(name, from_cogs, bands=parse_band_options(band or []), quality_asset=quality_asset,
                        quality_preset=quality_preset, clear=int_list(clear, "--clear"), title=title,
                        platform=platform)
    collection = odc_to_collection(doc, source=str(from_cogs))
    if print_yaml:
        typer.echo(f"# ODC product definition of {from_cogs}; register with: stacube product add FILE")
        typer.echo(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100), nl=False)
        return
    _print_added(upsert_product(_catalog(), collection))


def _platforms(doc: dict) -> str:
    return ", ".join(str(p) for p in (doc.get("summaries") or {}).get("platform", []))


@app.command("quality")
def product_quality(
    product: str,
    asset: str | None = typer.Option(None, "--asset", help="Quality (mask) asset of the product."),
    preset: str | None = typer.Option(
        None, "--preset", help="Named decoding rule: fmask, sentinel-2-scl, binary-cloud, binary-valid, "
                               "landsat-c1-bqa, landsat-c2-qa-pixel."),
    clear: str | None = typer.Option(None, "--clear", help="Comma-separated clear values of --asset "
                                                           "(a categorical mask)."),
    rule: Path | None = typer.Option(None, "--rule", help="A rule document (JSON/YAML, as stacube:quality)."),
    remove: bool = typer.Option(False, "--remove", help="Remove the product's quality rule."),
) -> None:
    """Show or set the quality rule of a registered product, without registering its items again:
    ``--asset A --preset P``, ``--asset A --clear 0,1``, ``--rule FILE`` or ``--remove``."""
    import yaml

    from stacube.catalog.quality import parse_rule, preset as named_rule  # lazy: start-up
    from stacube.catalog.register import mask_rule, set_quality  # lazy: start-up
    from stacube.errors import InvalidInput  # lazy: start-up

    catalog = _catalog()
    given = [n for n, v in (("--preset", preset), ("--clear", clear), ("--rule", rule), ("--remove", remove)) if v]
    if len(given) > 1:
        raise InvalidInput(f"{' and '.join(given)} exclude each other: give one")
    if not given:
        if asset:
            raise InvalidInput("--asset needs --preset or --clear")
        doc = catalog.get_collection(product)
        current = doc.get("stacube:quality")
        typer.echo(json.dumps(current, indent=2) if current else f"{product}: no quality rule")
        return
    if remove:
        set_quality(catalog, product, None)
        console.print(f"product {product}: quality rule removed")
        return
    if rule is not None:
        try:
            parsed = parse_rule(yaml.safe_load(rule.read_text()), where=str(rule))
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(f"cannot read {rule}: {exc}") from exc
    elif not asset:
        raise InvalidInput(f"{given[0]} needs --asset (the mask asset)")
    elif preset:
        parsed = named_rule(preset, asset)
    else:
        try:
            values = [int(v) for v in split_list(clear, "--clear")]
        except ValueError as exc:
            raise InvalidInput(f"--clear {clear!r}: expected comma-separated integers") from exc
        parsed = mask_rule(catalog, product, asset, values)
    doc = set_quality(catalog, product, parsed)
    stored = doc["stacube:quality"]
    console.print(f"product {product}: quality {stored['asset']} ({stored.get('preset') or stored['kind']})")


@app.command("list")
def product_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List products with their platform, bands, item count and time range."""
    from stacube.catalog.bands import data_bands  # lazy: start-up

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


@app.command("show")
def product_show(product: str) -> None:
    """Print a product's STAC Collection JSON."""
    typer.echo(json.dumps(_catalog().get_collection(product), indent=2))


@app.command("delete")
def product_delete(product: str, yes: bool = typer.Option(False, "--yes", help="Do not ask.")) -> None:
    """Delete a product and all its datasets."""
    catalog = _catalog()
    catalog.get_collection(product)
    if not yes:
        typer.confirm(f"delete {product} and its items?", abort=True)
    catalog.delete_collection(product)
    _access_store().drop(product)
    console.print(f"deleted {product}")


def _describe(access) -> str:
    if access is None:
        return "public (no workspace: admins change it)"
    shared = (f", shared with {', '.join(access.shared_with)}"
              if access.shared_with and access.visibility == "shared" else "")
    return f"workspace {access.workspace}, {access.visibility}{shared}"


@app.command("share")
def product_share(
    product: str,
    workspace: str | None = typer.Option(None, "--workspace", help="Owning workspace (sets or changes it)."),
    visibility: str | None = typer.Option(None, help="private, shared or public."),
    share_with: str | None = typer.Option(None, "--with", help="Workspaces to share with (comma list)."),
    unshare: str | None = typer.Option(None, "--without", help="Workspaces to stop sharing with."),
) -> None:
    """Show or change who may read a product: its workspace, visibility and the workspaces it
    is shared with (no option: show)."""
    _catalog().get_collection(product)
    store = _access_store()
    if workspace is None and visibility is None and share_with is None and unshare is None:
        console.print(f"{product}: {_describe(store.get(product))}")
        return
    access = store.set_access(product, workspace=workspace, visibility=visibility,
                              share_with=split_list(share_with, "--with"),
                              unshare=split_list(unshare, "--without"))
    console.print(f"{product}: {_describe(access)}")


def _set_access(settings, collection_id: str, *, workspace: str | None, visibility: str | None,
                share_with: list[str]) -> None:
    """Access options of ``stacube product add``: applied before the product is written, so a
    private product is never public, not even for a moment."""
    if workspace is None and visibility is None and not share_with:
        return
    _access_store(settings).set_access(collection_id, workspace=workspace, visibility=visibility,
                                     share_with=share_with, replace_shares=True)
