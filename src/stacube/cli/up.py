"""``stacube up``: serve the STAC API and the raster API on one base URL."""

from __future__ import annotations

import os

import typer

from stacube.cli.common import console, server_collections, settings_from


def up(
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    workers: int = typer.Option(1, help="Server worker processes."),
) -> None:
    """Serve the console, the STAC, raster, jobs and cubes APIs and local outputs, in the foreground.

    Paths: / (web console), /stac, /raster, /jobs, /cubes, /files.
    """
    import uvicorn

    from stacube.db.connection import connect, require_pgstac  # lazy: start-up
    from stacube.storage.objects import configure_gdal  # lazy: start-up

    settings = settings_from(host=host, port=port)
    with connect(settings) as conn:  # fail early, with one line, when the catalog is down
        require_pgstac(conn)
    configure_gdal(settings)
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"stacube serving {base}  (STAC {base}/stac, raster {base}/raster; Ctrl-C stops)")
    os.environ.setdefault("STACUBE_HOST", settings.host)
    os.environ.setdefault("STACUBE_PORT", str(settings.port))
    server_collections()
    uvicorn.run("stacube_services.app:create_app", factory=True, host=settings.host,
                port=settings.port, workers=workers, log_level="warning", proxy_headers=True)
