"""``stacube db``: the embedded PostgreSQL + PostGIS + pgSTAC catalog."""

from __future__ import annotations

import typer

from stacube.cli.common import console, settings_from
from stacube.errors import StacubeError

app = typer.Typer(help="The catalog database: start, stop, status (the embedded cluster), migrate (any pgSTAC database).",
                  no_args_is_help=True)

PortOption = typer.Option(None, "--port", help="Port of the embedded cluster (STACUBE_DB_PORT).")


def _cluster(port: int | None):
    from stacube.db.embedded import EmbeddedCluster  # lazy: start-up

    settings = settings_from(db_port=port)
    if not settings.uses_embedded_db:
        raise StacubeError(
            "an external database is configured (STACUBE_DATABASE_URL / PGHOST): "
            "start and stop it yourself; `stacube db migrate` installs pgSTAC in it"
        )
    return settings, EmbeddedCluster(settings)


@app.command()
def start(port: int | None = PortOption) -> None:
    """Create (first time), start and migrate the embedded cluster. Idempotent."""
    from stacube.db.migrate import migrate  # lazy: start-up

    settings, cluster = _cluster(port)
    started = cluster.start()
    before, after = migrate(settings)
    state = "started" if started else "already running"
    schema = f"pgSTAC {after}" + (" installed" if before is None else
                                  f" (upgraded from {before})" if before != after else "")
    console.print(f"catalog database {state} on 127.0.0.1:{cluster.port} "
                  f"({cluster.directory}); {schema}")


@app.command()
def stop(port: int | None = PortOption) -> None:
    """Stop the embedded cluster."""
    _, cluster = _cluster(port)
    console.print("stopped" if cluster.stop() else "not running")


@app.command()
def status(port: int | None = PortOption) -> None:
    """Show whether the catalog database is reachable, its pgSTAC version and contents."""
    from stacube.catalog.pgstac import Catalog  # lazy: start-up
    from stacube.db.connection import connect, pgstac_version, redact  # lazy: start-up

    settings = settings_from(db_port=port)
    if settings.uses_embedded_db:
        from stacube.db.embedded import EmbeddedCluster  # lazy: start-up

        st = EmbeddedCluster(settings).status()
        console.print(f"embedded cluster: {st.directory} "
                      f"({'running, pid ' + str(st.pid) if st.running else 'initialised, stopped' if st.initialised else 'not created'})")
        if not st.running:
            raise typer.Exit(1)
    with connect(settings) as conn:
        version = pgstac_version(conn)
    console.print(f"database: {redact(settings.dsn())}")
    if version is None:
        console.print("pgSTAC: not installed (run `stacube db migrate`)")
        raise typer.Exit(1)
    counts = Catalog(settings).item_counts()
    n_collections = len(Catalog(settings).collection_ids())
    console.print(f"pgSTAC {version}: {n_collections} collections, {sum(counts.values())} items")


@app.command()
def migrate(port: int | None = PortOption) -> None:
    """Install or upgrade pgSTAC in the configured database (embedded or external)."""
    from stacube.db.migrate import migrate as run_migrate  # lazy: start-up

    settings = settings_from(db_port=port)
    before, after = run_migrate(settings)
    if before == after:
        console.print(f"pgSTAC {after}: up to date")
    else:
        console.print(f"pgSTAC {before or 'none'} -> {after}")
