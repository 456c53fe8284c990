"""One application for ``stacube up``: the STAC API at ``/stac``, the raster API at ``/raster``.

The STAC API is the application itself (stac-fastapi builds its links from its router prefix,
``/stac``); the raster API is mounted at ``/raster``. Mounted applications do not run their own
lifespans, so this one opens and closes the database pools of both.
"""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from starlette.middleware import Middleware

from stacube import __version__
from stacube.settings import Settings
from stacube_services.access.files import AuthorisedFiles
from stacube_services.cubes import create_cubes_app
from stacube_services.errors import UnavailableMiddleware
from stacube_services.files import local_output_dir
from stacube_services.jobs import create_jobs_app
from stacube_services.raster import create_raster_app
from stacube_services.stac import create_stac_api, stac_lifespan


class MountedApp:
    """Runs a mounted application as if it were served at its mount path.

    Starlette builds ``request.base_url`` of a mounted app without the mount path; titiler
    builds its links (tilejson, WMTS, viewer) from it. Setting ``app_root_path`` to the mount
    path, and letting the mounted app's own router answer ``url_for``, makes those links right.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            scope["app_root_path"] = scope.get("root_path", "")
            scope.pop("router", None)
        await self.app(scope, receive, send)


class MountRoots:
    """Serve a mount's bare path (``/jobs``) as its root (``/jobs/``) instead of redirecting:
    clients that do not follow redirects for POST, and proxies, get an answer directly."""

    def __init__(self, app, roots: tuple[str, ...]):
        self.app = app
        self.roots = set(roots)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in self.roots:
            scope = dict(scope)
            scope["path"] = scope["path"] + "/"
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


#: the answers of the mounted APIs that are images (tiles, parts, previews), compressed already
IMAGE_PATHS = r"^/(?:raster|cubes)/.*(?:/tiles/|/bbox/|/feature|/preview)"


def uncompressed_images(app: FastAPI) -> None:
    """Keep stac-fastapi's compression (``BrotliMiddleware``, gzip as fallback) off the images of
    the APIs mounted on its app: PNG, WebP and JPEG tiles gain nothing from it and every tile
    would pay for it (titiler's own application excludes images the same way)."""
    for i, middleware in enumerate(app.user_middleware):
        if getattr(middleware.cls, "__name__", "") == "BrotliMiddleware":  # brotli-asgi's, from stac-fastapi
            app.user_middleware[i] = Middleware(middleware.cls, *middleware.args,
                                                **{**middleware.kwargs, "excluded_handlers": [IMAGE_PATHS]})


def create_app(settings: Settings | None = None) -> FastAPI:
    """The combined application (a factory: no global state)."""
    settings = settings or Settings()
    raster_app = create_raster_app(settings)
    open_stac = stac_lifespan(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(open_stac(app))
            await stack.enter_async_context(raster_app.router.lifespan_context(raster_app))
            yield

    app = create_stac_api(settings, prefix_path="/stac", lifespan=lifespan).app
    app.state.stacube_settings = settings
    uncompressed_images(app)

    def landing(request: Request) -> dict:
        base = str(request.base_url).rstrip("/")
        return {
            "title": "stacube",
            "version": __version__,
            "links": [
                {"rel": "stac", "href": f"{base}/stac/", "title": "STAC API"},
                {"rel": "service-doc", "href": f"{base}/stac/api.html", "title": "STAC API docs"},
                {"rel": "raster", "href": f"{base}/raster/", "title": "Raster API (titiler-pgstac)"},
                {"rel": "service-doc", "href": f"{base}/raster/api.html", "title": "Raster API docs"},
                {"rel": "indices", "href": f"{base}/raster/indices", "title": "Spectral index presets"},
                {"rel": "jobs", "href": f"{base}/jobs", "title": "Jobs API (compositing)"},
                {"rel": "data", "href": f"{base}/files/", "title": "Job outputs (COG, Zarr, reports)"},
            ],
        }

    app.mount("/raster", MountedApp(raster_app))
    app.mount("/jobs", MountedApp(create_jobs_app(settings, mount="/jobs")))
    app.add_middleware(MountRoots, roots=("/jobs", "/raster", "/files"))
    app.mount("/cubes", MountedApp(create_cubes_app(settings, access=app.state.stacube_access)))
    try:
        from stacube_services.console import mount_console  # lazy: absent from API-only deployments
    except ImportError:  # no console in this deployment: "/" lists the APIs
        app.get("/", include_in_schema=False)(landing)
    else:
        mount_console(app, settings)
    app.get("/api", include_in_schema=False)(landing)
    files = local_output_dir(settings)
    if files is not None:
        # job outputs (COGs, Zarr, reports) for download, read-only
        files.mkdir(parents=True, exist_ok=True)
        app.mount("/files", AuthorisedFiles(directory=files, service=app.state.stacube_access), name="files")
    app.add_middleware(UnavailableMiddleware)  # outermost: also covers errors of middlewares
    return app
