"""``stacube workspace``: workspaces (teams that own collections and share them): create, list, set."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from stacube.cli.common import console, settings_from, when

app = typer.Typer(help="Workspaces (teams that own collections and share them): create, list, set.",
                  no_args_is_help=True)


def _access_store():
    from stacube.access.workspaces import AccessStore  # lazy: start-up

    return AccessStore(settings_from())


@app.command("create")
def create(name: str, title: str | None = typer.Option(None, help="A human-readable title.")) -> None:
    """Register a workspace."""
    _access_store().create_workspace(name, title)
    console.print(f"workspace {name} created")


@app.command("set")
def set_workspace(
    name: str,
    read_prefix: list[str] = typer.Option(None, "--read-prefix",
                                          help="Grant a read prefix (directory, s3://bucket/prefix, https://host/path)."),
    drop_prefix: list[str] = typer.Option(None, "--drop-prefix", help="Withdraw a read prefix."),
    job_quota: int | None = typer.Option(None, help="Largest job: output pixels x scenes x bands."),
    max_jobs: int | None = typer.Option(None, help="Jobs running at once (more wait, queued)."),
    defaults: bool = typer.Option(False, "--defaults", help="Back to the server's job limits."),
) -> None:
    """Grant read prefixes and set the job limits of a workspace: its members may register
    assets under its prefixes, and the raster API reads them for its collections."""
    row = _access_store().set_workspace(name, add_prefixes=read_prefix or (), remove_prefixes=drop_prefix or (),
                                        job_quota=job_quota, max_jobs=max_jobs, clear_limits=defaults)
    limits = (f"job quota {row['job_quota'] or 'default'}, max jobs {row['max_jobs'] or 'default'}")
    console.print(f"workspace {name}: read prefixes {', '.join(row['read_prefixes']) or 'none'}; {limits}",
                  highlight=False)


@app.command("list")
def list_workspaces(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Workspaces with their number of collections and active keys."""
    rows = _access_store().workspaces()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{len(rows)} workspaces")
    for col in ("name", "title", "collections", "keys", "read prefixes", "job quota", "max jobs", "created"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["title"] or "", str(r["collections"]), str(r["keys"]),
                      ", ".join(r["read_prefixes"] or []), str(r["job_quota"] or "default"),
                      str(r["max_jobs"] or "default"), when(r["created"]))
    console.print(table)
