"""``stacube cubes``, ``stacube keys`` and ``stacube product share``: tenants, API keys and who
may read which collection. The CLI is the operator's tool: it is not subject to access control."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from stacube.cli.common import console, err_console, settings_from, split_list

cubes_app = typer.Typer(
    help="Tenant cubes (teams that own collections and share them; `stacube cube` is for Zarr cubes): "
         "create, list.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of cubes: create, list, revoke.", no_args_is_help=True)


def _store():
    from stacube.access.store import AccessStore

    return AccessStore(settings_from())


def _when(value) -> str:
    return str(value)[:19] if value else ""


@cubes_app.command("create")
def cubes_create(name: str, title: str | None = typer.Option(None, help="A human-readable title.")) -> None:
    """Register a cube."""
    _store().create_cube(name, title)
    console.print(f"cube {name} created")


@cubes_app.command("list")
def cubes_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Cubes with their number of collections and active keys."""
    rows = _store().cubes()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{len(rows)} cubes")
    for col in ("name", "title", "collections", "keys", "created"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["title"] or "", str(r["collections"]), str(r["keys"]), _when(r["created"]))
    console.print(table)


@keys_app.command("create")
def keys_create(
    cube: str | None = typer.Option(None, "--cube", help="The cube the key acts for."),
    admin: bool = typer.Option(False, "--admin", help="An admin key: reads and writes everything."),
    label: str | None = typer.Option(None, help="A note on who or what uses the key."),
) -> None:
    """Create an API key and print it once (only its SHA-256 is stored)."""
    created = _store().create_key(cube, admin=admin, label=label)
    what = ("admin key" if admin else "key") + (f" for cube {cube}" if cube else "")
    err_console.print(f"{what} {created.id} created; the key is shown only now:")
    typer.echo(created.key)


@keys_app.command("list")
def keys_list(
    cube: str | None = typer.Option(None, "--cube", help="Only the keys of this cube."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Keys (ids, cubes, rights; never the keys themselves)."""
    rows = _store().keys(cube)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{len(rows)} keys")
    for col in ("id", "cube", "admin", "label", "created", "revoked"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["id"], r["cube"] or "", "yes" if r["admin"] else "", r["label"] or "",
                      _when(r["created"]), _when(r["revoked"]))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: requests carrying it answer 401 from now on."""
    row = _store().revoke_key(key_id)
    console.print(f"key {row['id']} revoked")


def _describe(access) -> str:
    if access is None:
        return "public (no owner: admins change it)"
    shared = (f", shared with {', '.join(access.shared_with)}"
              if access.shared_with and access.visibility == "shared" else "")
    return f"cube {access.owner}, {access.visibility}{shared}"


def product_share(
    product: str,
    cube: str | None = typer.Option(None, "--cube", help="Owning cube (sets or changes the owner)."),
    visibility: str | None = typer.Option(None, help="private, shared or public."),
    share_with: str | None = typer.Option(None, "--with", help="Cubes to share with (comma list)."),
    unshare: str | None = typer.Option(None, "--without", help="Cubes to stop sharing with."),
) -> None:
    """Show or change who may read a product: its cube, visibility and the cubes it is shared
    with (no option: show)."""
    from stacube.catalog.store import Catalog

    settings = settings_from()
    Catalog(settings).get_collection(product)
    store = _store()
    if cube is None and visibility is None and share_with is None and unshare is None:
        console.print(f"{product}: {_describe(store.get(product))}")
        return
    access = store.set_access(product, owner=cube, visibility=visibility,
                              share_with=split_list(share_with, "--with"),
                              unshare=split_list(unshare, "--without"))
    console.print(f"{product}: {_describe(access)}")


def set_product_access(settings, collection_id: str, *, cube: str | None, visibility: str | None,
                       share_with: list[str]) -> None:
    """Access options of ``stacube product add``: applied before the product is written, so a
    private product is never public, not even for a moment."""
    from stacube.access.store import AccessStore

    if cube is None and visibility is None and not share_with:
        return
    AccessStore(settings).set_access(collection_id, owner=cube, visibility=visibility,
                                     share_with=share_with, replace_shares=True)
