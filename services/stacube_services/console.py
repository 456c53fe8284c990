"""The web console: a single-page application served by the Python app.

The front end (``services/console``, built by ``scripts/build-console.sh`` into
``console_dist/`` next to this module) talks only to the public STAC, raster and jobs
endpoints (and the cubes API's time series), whose base URLs it reads from
``GET /console/config.json``. Routes:

* ``GET /``: the console (``index.html``; a short page with the API links when the bundle
  has not been built);
* ``GET /console/config.json``: base URLs, the optional basemap and how to sign in (``auth``:
  ``{"oidc": {"issuer", "client_id", "scopes"}}`` when ``STACUBE_OIDC_JWKS``,
  ``STACUBE_OIDC_ISSUER`` and ``STACUBE_OIDC_CLIENT_ID`` are set, else ``{"oidc": null}``; API
  keys are always accepted);
* ``GET /console/assets/...``: the bundle (content-hashed names, cached for a year, gzip).

Configuration (environment, ``STACUBE_CONSOLE_`` prefix): ``STAC_URL``, ``RASTER_URL``,
``JOBS_URL``, ``FILES_URL``, ``CUBES_URL`` (default: same origin, relative to the page, so a
path prefix works), ``BASEMAP_URL`` (an XYZ raster template, e.g. OpenStreetMap's; unset: no
basemap, the console then needs no internet at all) with ``BASEMAP_ATTRIBUTION``,
``IMAGERY_URL`` with ``IMAGERY_ATTRIBUTION`` (an XYZ imagery template for the map's "Imagery"
basemap; unset: the catalog's own true-colour mosaics, no internet needed), and ``DIST``
(another bundle directory).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles

from stacube import __version__
from stacube.settings import Settings

DIST = Path(__file__).resolve().parent / "console_dist"
ASSETS = "console/assets"


class ConsoleSettings(BaseSettings):
    """Where the console finds the APIs, and its basemap."""

    model_config = SettingsConfigDict(env_prefix="STACUBE_CONSOLE_", extra="ignore")

    stac_url: str = Field("stac", description="STAC API base URL (relative: to the console page).")
    raster_url: str = Field("raster", description="Raster API base URL.")
    jobs_url: str = Field("jobs", description="Jobs API base URL.")
    files_url: str = Field("files", description="Base URL of job outputs.")
    cubes_url: str = Field("cubes", description="Cubes API base URL (time series).")
    imagery_url: str | None = Field(None, description="XYZ raster tiles template of an imagery basemap "
                                                      "(unset: the catalog's own true-colour mosaics).")
    imagery_attribution: str = Field("", description="Imagery basemap credit.")
    basemap_url: str | None = Field(None, description="XYZ raster tiles template of a basemap.")
    basemap_attribution: str = Field("© OpenStreetMap contributors", description="Basemap credit.")
    dist: Path | None = Field(None, description="Directory of the built console (default: console_dist).")


class CachedStaticFiles(StaticFiles):
    """Static files with content-hashed names: cacheable forever."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def console_config(console: ConsoleSettings, settings: Settings | None = None) -> dict:
    """The document of ``GET /console/config.json`` (public: no secret is in it)."""
    basemap = None
    if console.basemap_url:
        basemap = {"tiles": [console.basemap_url], "attribution": console.basemap_attribution}
    return {
        "stac_url": console.stac_url,
        "raster_url": console.raster_url,
        "jobs_url": console.jobs_url,
        "files_url": console.files_url,
        "cubes_url": console.cubes_url,
        "basemap": basemap,
        "imagery": ({"tiles": [console.imagery_url], "attribution": console.imagery_attribution}
                    if console.imagery_url else None),
        "auth": {"oidc": oidc_client(settings)},
        "version": __version__,
    }


def oidc_client(settings: Settings | None) -> dict | None:
    """What the console needs to sign in with the OIDC provider (authorization code + PKCE), or
    None when tokens are not accepted or no client id is configured."""
    if settings is None or not (settings.oidc_jwks and settings.oidc_issuer and settings.oidc_client_id):
        return None
    return {"issuer": settings.oidc_issuer, "client_id": settings.oidc_client_id,
            "scopes": settings.oidc_scopes}


def _unbuilt_page(dist: Path) -> str:
    links = [("stac/", "STAC API"), ("stac/api.html", "STAC API docs"), ("raster/", "Raster API"),
             ("raster/api.html", "Raster API docs"), ("api", "Service links (JSON)")]
    items = "".join(f'<li><a href="{href}">{escape(text)}</a></li>' for href, text in links)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stacube</title></head>'
        f"<body><h1>stacube {escape(__version__)}</h1>"
        f"<p>The web console is not built (no {escape(str(dist))}): "
        "run <code>scripts/build-console.sh</code>.</p>"
        f"<ul>{items}</ul></body></html>"
    )


def mount_console(app: FastAPI, settings: Settings) -> None:
    """Serve the console at ``/`` of ``app`` (with its config and assets under ``/console``)."""
    console = ConsoleSettings()
    dist = (console.dist or DIST).resolve()
    index = dist / "index.html"
    config = console_config(console, settings)
    no_cache = {"Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False, name="console")
    def console_index() -> HTMLResponse:
        if index.is_file():
            return HTMLResponse(index.read_text(encoding="utf-8"), headers=no_cache)
        return HTMLResponse(_unbuilt_page(dist), headers=no_cache)

    @app.get("/console/config.json", include_in_schema=False)
    def console_config_json() -> JSONResponse:
        return JSONResponse(config, headers=no_cache)

    @app.get("/console", include_in_schema=False)
    @app.get("/console/", include_in_schema=False)
    def console_redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url_for("console")), status_code=307)

    static = CachedStaticFiles(directory=dist / ASSETS, check_dir=False)  # 404s until built
    app.mount(f"/{ASSETS}", GZipMiddleware(static, minimum_size=1024), name="console-assets")
