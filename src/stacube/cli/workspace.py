"""``stacube workspace``: workspaces (teams that own collections and share them): create, list."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from stacube.cli.common import console, settings_from, when

app = typer.Typer(help="Workspaces (teams that own collections and share them): create, list.",
                  no_args_is_help=True)


def _access_store():
    from stacube.access.workspaces import AccessStore  # lazy: start-up

    return AccessStore(settings_from())


@app.command("create")
def create(name: str, title: str | None = typer.Option(None, help="A human-readable title.")) -> None:
    """Register a workspace."""
    _access_store().create_workspace(name, title)
    console.print(f"workspace {name} created")


@app.command("list")
def list_workspaces(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Workspaces with their number of collections and active keys."""
    rows = _access_store().workspaces()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{len(rows)} workspaces")
    for col in ("name", "title", "collections", "keys", "created"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["title"] or "", str(r["collections"]), str(r["keys"]), when(r["created"]))
    console.print(table)
