"""``stacube key``: API keys of workspaces: create, list, revoke."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from stacube.cli.common import console, err_console, settings_from, when

app = typer.Typer(help="API keys of workspaces: create, list, revoke.", no_args_is_help=True)


def _access_store():
    from stacube.access.workspaces import AccessStore  # lazy: start-up

    return AccessStore(settings_from())


@app.command("create")
def create(
    workspace: str | None = typer.Option(None, "--workspace", help="The workspace the key acts for."),
    admin: bool = typer.Option(False, "--admin", help="An admin key: reads and writes everything."),
    label: str | None = typer.Option(None, help="A note on who or what uses the key."),
) -> None:
    """Create an API key and print it once (only its SHA-256 is stored)."""
    created = _access_store().create_key(workspace, admin=admin, label=label)
    what = ("admin key" if admin else "key") + (f" for workspace {workspace}" if workspace else "")
    err_console.print(f"{what} {created.id} created; the key is shown only now:")
    typer.echo(created.key)


@app.command("list")
def list_keys(
    workspace: str | None = typer.Option(None, "--workspace", help="Only the keys of this workspace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Keys (ids, workspaces, rights; never the keys themselves)."""
    rows = _access_store().keys(workspace)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{len(rows)} keys")
    for col in ("id", "workspace", "admin", "label", "created", "revoked"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["id"], r["workspace"] or "", "yes" if r["admin"] else "", r["label"] or "",
                      when(r["created"]), when(r["revoked"]))
    console.print(table)


@app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key: requests carrying it answer 401 from now on."""
    row = _access_store().revoke_key(key_id)
    console.print(f"key {row['id']} revoked")
