"""The raster API: titiler-pgstac mosaics (registered searches, collections) and item tiles,
plus stacube's named spectral indices and request limits.

Everything titiler-pgstac offers is here (``/searches``, ``/collections/{id}``,
``/collections/{id}/items/{item}``: XYZ tiles in any tile matrix set, PNG/WebP/JPEG/GeoTIFF,
``expression``, ``assets``, ``colormap_name``, ``rescale``, statistics, point values, WMTS,
TileJSON, map viewers). stacube adds:

* ``index=NDVI`` (NDVI, NDWI, NDBI, EVI, NBR or any spyndex index of reflectance bands) on
  any tile, point, statistics or part request: resolved to the collection's assets through
  common names, with the spyndex formula as the expression, ``unscale=true`` (physical
  reflectance) and a default colormap and rescale range;
* ``GET /indices``: the presets with their formulas;
* limits (docs/security.md): tiles larger than ``STACUBE_MAX_TILE_SIZE`` px (buffer included),
  part/preview/statistics requests larger than ``STACUBE_MAX_PART_SIZE`` px, ``buffer``,
  ``padding`` and the mosaic scan limits (``scan_limit``, ``items_limit``, ``time_limit``) above
  their maxima answer 400 with a reason; an answer above ``STACUBE_MAX_RESPONSE_SIZE`` (6 MB) is
  refused with its size;
* a cache of rendered tiles keyed on the catalog's last change of their collections, with
  ``ETag`` / ``If-None-Match`` (:mod:`stacube_services.tile_cache`).

Access control (:mod:`stacube_services.access.raster`) sits in titiler's hooks: a route
dependency on every collection and search route, the register route's search dependency, and
readers that open every asset through the read gate.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from stacube.catalog.bands import resolve_band_assets
from stacube.catalog.renders import default_render, render_query, render_zooms
from stacube.core.indices import PRESETS, RENDER, get_index
from stacube.db.connection import connect_kwargs
from stacube.errors import InvalidInput, NotFound, StacubeError
from stacube.settings import Settings
from stacube.storage.tiles import open_tile_store
from stacube_services.access.raster import (
    gated_readers,
    install_raster_access,
    mosaic_access,
    raster_access_service,
    search_dependency,
)
from stacube_services.body import read_body, replay
from stacube_services.cache import CacheHeaders, is_derived
from stacube_services.catalog_cache import CollectionCache
from stacube_services.errors import add_error_handlers, add_raster_error_handlers, error_response
from stacube_services.limits import RequestLimits, ResponseSizeLimit
from stacube_services.local_reads import LocalItemsInThread
from stacube_services.masked import MaskedTilesExtension
from stacube_services.tile_cache import TileCache, VersionedBackend
from stacube_services.tms import SUPPORTED_TMS, checked_tile_matrix_set

#: a part's size in its path: ``/bbox/.../{width}x{height}.{format}``, ``/feature/...``, ``/preview/...``
PART_IN_PATH = re.compile(r"(?:/bbox/[^/]+|/feature|/preview)/(\d+(?:\.\d*)?)x(\d+(?:\.\d*)?)\.[A-Za-z0-9]+$")


def index_params(index_name: str, collections: list[dict], query: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Rewrite ``index=NAME`` into titiler parameters for these collections.

    Raises:
        InvalidInput: unknown index, a missing band, or collections whose bands use different
            asset keys (one ``assets`` list must serve every item of a mosaic).
    """

    index = get_index(index_name)
    commons = list(index.bands.values())
    keys = None
    for coll in collections:
        mapped = [resolve_band_assets(coll, [c])[c] for c in commons]
        if keys is not None and mapped != keys:
            raise InvalidInput(
                f"index {index.name}: collections map {', '.join(commons)} to different assets; "
                "request each collection separately"
            )
        keys = mapped
    given = {k for k, _ in query}
    out = [(k, v) for k, v in query if k not in ("index", "assets", "expression", "asset_as_band")]
    out += [("assets", k) for k in dict.fromkeys(keys)]
    order = list(dict.fromkeys(commons))
    out.append(("expression", index.expression(order)))
    out.append(("unscale", "true"))
    cmap, (lo, hi) = RENDER.get(index.name, ("viridis", (-1.0, 1.0)))
    if "colormap_name" not in given and "colormap" not in given:
        out.append(("colormap_name", cmap))
    if "rescale" not in given:
        out.append(("rescale", f"{lo},{hi}"))
    return out


#: the routes that draw pixels (and so need assets), by the last part(s) of their path
RENDERED = ("/tiles/", "/tilejson.json", "/map.html", "/point/", "/bbox/", "/statistics", "/feature")
RECONNECT_SECONDS = 2.0  # how long the raster pool retries a connection it cannot make (see lifespan)


def reconnect_while_waited(pool) -> None:
    """psycopg_pool's ``reconnect_failed``: the pool gave up making a connection after
    :data:`RECONNECT_SECONDS`; while requests wait for one, start again (``check()`` grows a pool
    short of connections), so they are served about a second after the database is back. With
    nobody waiting, the next request that finds no connection grows the pool itself."""
    if pool.get_stats().get("requests_waiting"):
        pool.check()


def renders_by_default(path: str, query: list[tuple[str, str]]) -> bool:
    """Whether a request draws pixels but names nothing to draw (no ``assets``, ``expression``
    or ``index``): it then gets the collection's default rendering."""
    given = {k for k, _ in query}
    if given & {"assets", "expression", "index"}:
        return False
    if not path.startswith(("/collections/", "/searches/")) or path.endswith("WMTSCapabilities.xml"):
        return False
    return any(part in path or path.endswith(part.rstrip("/")) for part in RENDERED)


def render_params(collections: list[dict], path: str) -> list[tuple[str, str]]:
    """Query parameters of the first collection's default rendering (STAC ``renders``), when
    every collection of the request has one drawing the same assets; [] otherwise. ``minzoom``
    and ``maxzoom`` (from ``minmax_zoom``) go to TileJSON and map requests only."""
    renders = [default_render(c) for c in collections]
    if not renders or any(r is None for r in renders) or \
            any(r["assets"] != renders[0]["assets"] for r in renders):
        return []
    out = render_query(renders[0])
    zooms = render_zooms(renders[0])
    if zooms and path.endswith(("tilejson.json", "map.html")):
        out += [("minzoom", str(zooms[0])), ("maxzoom", str(zooms[1]))]
    return out


def _tile_index_error(path: str) -> str | None:
    """A reason when ``.../tiles/{tms}/{z}/{x}/{y}`` names no tile of the tile matrix set."""
    import morecantile

    parts = path.split("/")
    if "tiles" not in parts:
        return None
    rest = parts[parts.index("tiles") + 1:]
    if len(rest) == 5 and rest[4] == "assets":
        rest = rest[:4]
    if len(rest) != 4:
        return None
    tms_id, z, x, y = rest
    y = y.split("@", 1)[0].split(".", 1)[0]
    try:
        z, x, y = int(z), int(x), int(y)
    except ValueError:
        return None

    if tms_id not in morecantile.tms.list():
        return None  # not a tile route: the app answers for itself
    try:
        checked_tile_matrix_set(tms_id, z, x, y)
    except InvalidInput as exc:
        return exc.message
    return None


def _limit_error(path: str, query: dict[str, str], settings: Settings) -> str | None:
    def number(name):
        try:
            return float(query[name]) if name in query else None
        except ValueError:
            return None

    max_tile, max_part = settings.max_tile_size, settings.max_part_size
    buffer = number("buffer") or 0
    for name, most in (("buffer", settings.max_buffer), ("padding", settings.max_padding)):
        value = number(name)
        if value is not None and not 0 <= value <= most:
            return f"{name}={query[name]} must be between 0 and {most} px"
    if "/tiles/" in path:
        size = number("tilesize") or 256
        scale = 1
        tail = path.rsplit("/", 1)[-1]
        if "@" in tail:
            try:
                scale = int(tail.split("@", 1)[1].split("x", 1)[0])
            except ValueError:
                scale = 1
        if (size + 2 * buffer) * scale > max_tile:
            return f"tile size {int((size + 2 * buffer) * scale)} px (buffer included) exceeds the limit of {max_tile} px"
    sized = PART_IN_PATH.search(path)  # .../bbox/{minx},{miny},{maxx},{maxy}/{width}x{height}.{format}
    if sized:
        for name, text in zip(("width", "height"), sized.groups()):
            if not 1 <= float(text) <= max_part:
                return f"{name}={text} must be between 1 and {max_part} px (STACUBE_MAX_PART_SIZE)"
    for name in ("max_size", "width", "height", "tilesize"):
        value = number(name)
        if value is not None and not value >= 1:  # numpy fails on negative sizes (a 500)
            return f"{name}={query[name]} must be a positive number of pixels"
        if value is not None and value > max_part and name != "tilesize":
            return f"{name}={int(value)} exceeds the limit of {max_part} px (STACUBE_MAX_PART_SIZE)"
    if any(ord(c) < 32 for c in query.get("sortby", "")):  # titiler-pgstac fails on them
        return "sortby must not contain control characters"
    for name, most in (("scan_limit", settings.mosaic_scan_limit), ("items_limit", settings.mosaic_items_limit),
                       ("time_limit", settings.mosaic_time_limit)):
        value = number(name)
        if value is not None and not 1 <= value <= most:
            return f"{name}={query[name]} must be between 1 and {most}"
    return _tile_index_error(path)


class RasterRequestMiddleware:
    """Resolves ``index=`` and enforces size limits before titiler sees the request."""

    def __init__(self, app: ASGIApp, *, parent: FastAPI, settings: Settings):
        self.app = app
        self.parent = parent
        self.settings = settings
        self.cache = CollectionCache(parent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        path = scope["path"][len(scope.get("root_path", "")):] if scope["path"].startswith(scope.get("root_path", "")) else scope["path"]
        problem = _limit_error(path, dict(query), self.settings)
        if not problem and scope["method"] == "POST" and path.rstrip("/").endswith("/searches/register"):
            body, tail = await read_body(receive)
            receive = replay(body, tail)
            try:
                doc = orjson.loads(body) if body.strip() else None
            except orjson.JSONDecodeError:
                doc = None
            # titiler-pgstac's validator fails with a KeyError (a 500) on an invalid bbox + intersects
            if isinstance(doc, dict) and doc.get("bbox") is not None and doc.get("intersects") is not None:
                problem = "bbox and intersects are mutually exclusive"
        if problem:
            await error_response(400, "InvalidParameter", problem)(scope, receive, send)
            return
        names = [v for k, v in query if k == "index"]
        if names:
            try:
                await self._check_access(scope, path)
                collections = self._collections_for(path)
                query = index_params(names[0], collections, query)
            except StacubeError as exc:  # bad index, unknown or hidden collection, database away
                await error_response(exc.status_code, type(exc).__name__, exc.message)(scope, receive, send)
                return
            scope = dict(scope)
            scope["query_string"] = urlencode(query).encode("latin-1")
        elif renders_by_default(path, query):
            try:
                extra = render_params(self._collections_for(path), path)
            except (InvalidInput, NotFound):
                extra = []  # titiler answers for itself
            if extra:
                scope = dict(scope)
                scope["query_string"] = urlencode(query + extra).encode("latin-1")
        await self.app(scope, receive, send)

    async def _check_access(self, scope, path: str) -> None:
        """``index=`` on a collection or search the caller may not use answers like an unknown one."""
        service = getattr(self.parent.state, "stacube_access", None)
        parts = [p for p in path.split("/") if p]
        if service is None or len(parts) < 2:
            return
        if parts[0] == "collections" and not (await mosaic_access(service, scope, collection=parts[1])).readable:
            raise NotFound(f"unknown collection {parts[1]!r}")
        if parts[0] == "searches" and not (await mosaic_access(service, scope, search=parts[1])).readable:
            raise NotFound(f"unknown search {parts[1]!r}")

    def _collections_for(self, path: str) -> list[dict]:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "collections":
            return [self.cache.collection(parts[1])]
        if len(parts) >= 2 and parts[0] == "searches":
            return [self.cache.collection(c) for c in self.cache.search_collections(parts[1])]
        raise InvalidInput("index= works on /collections/{id}/..., /collections/{id}/items/{item}/... and /searches/{id}/...")


class MosaicId(str):
    """A mosaic's search hash (what titiler-pgstac's backends read) that also carries a name for
    people (``label``: the collection id), which WMTS layer identifiers use."""

    label: str


def labelled(dependency, label_of):
    """``dependency`` (a titiler-pgstac path dependency returning a search hash) returning a
    :class:`MosaicId` labelled ``label_of(its keyword arguments)``."""
    import inspect

    def wrapper(*args, **kwargs):
        value = MosaicId(dependency(*args, **kwargs))
        value.label = label_of(kwargs)
        return value

    wrapper.__signature__ = inspect.signature(dependency)
    wrapper.__name__ = dependency.__name__
    return wrapper


def layer_name(src_path) -> str:
    """WMTS layer identifier prefix: the collection id (or ``search-<hash>``)."""
    return getattr(src_path, "label", None) or str(src_path)


def mosaic_renders(backend) -> dict:
    """The renderings of a mosaic as titiler query parameters (titiler-pgstac's own function:
    the collection's STAC ``renders``, recorded with its search), each with its zoom range."""
    from titiler.extensions.render import _adapt_render_for_v2

    renders = backend.info().metadata.defaults_params or {}
    for render in renders.values():
        _adapt_render_for_v2(render)
        # the rendering's zooms (minmax_zoom) bound its WMTS layer in WebMercatorQuad
        zooms = [render.pop(k, None) for k in ("minzoom", "maxzoom")]
        if None not in zooms:
            render["tilematrixsets"] = {"WebMercatorQuad": tuple(int(z) for z in zooms)}
    return renders


class MosaicBackend(LocalItemsInThread, VersionedBackend):
    """titiler-pgstac's mosaic backend as the raster API uses it: the asset lists of tiles cached
    per catalog version, tiles of local items read in the request's thread."""


def create_raster_app(settings: Settings) -> FastAPI:
    """The titiler-pgstac application, assembled from its factories with stacube's settings."""
    from contextlib import asynccontextmanager

    import jinja2
    from fastapi import status
    from pydantic import ValidationError
    from rio_tiler.errors import RioTilerError
    from starlette.templating import Jinja2Templates
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.core.factory import (
        AlgorithmFactory,
        ColorMapFactory,
        MultiBaseTilerFactory,
        TMSFactory,
    )
    from titiler.core.utils import update_openapi
    from titiler.extensions import stacRenderExtension, wmtsExtension
    from titiler.mosaic.errors import MOSAIC_STATUS_CODES
    from titiler.mosaic.extensions.wmts import wmtsExtension as wmtsExtensionMosaic
    from titiler.pgstac.db import close_db_connection
    from titiler.pgstac.dependencies import CollectionIdParams, ItemIdParams, SearchIdParams
    from titiler.pgstac.errors import PGSTAC_STATUS_CODES, BackendError
    from titiler.pgstac.extensions import searchInfoExtension
    from titiler.pgstac.factory import (
        MosaicTilerFactory,
        add_search_list_route,
        add_search_register_route,
    )


    templates = Jinja2Templates(env=jinja2.Environment(
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader("titiler.pgstac", "templates"),
                                    jinja2.PackageLoader("titiler.core", "templates")]),
    ))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from psycopg_pool import ConnectionPool

        # titiler-pgstac's pool, plus: connections are checked before use (a database restart
        # leaves broken ones behind), a request waits at most STACUBE_DB_POOL_TIMEOUT s (5) for
        # one, well under the function's 30 s (then 503), and behind a transaction pooler the
        # connections send no startup options and prepare no statement (connect_kwargs); a
        # connection that cannot be made is retried for 2 s, not psycopg_pool's 5 min, whose
        # back-off doubles (1, 2, 4, 8 s...) and would keep requests waiting up to 8 s after the
        # database is back (see reconnect_while_waited)
        app.state.dbpool = ConnectionPool(
            conninfo=settings.dsn(), min_size=1, max_size=settings.db_pool_size, open=True,
            kwargs={**connect_kwargs(settings, "stacube-raster"), "connect_timeout": 5},
            check=ConnectionPool.check_connection, timeout=settings.db_pool_timeout,
            reconnect_timeout=RECONNECT_SECONDS, reconnect_failed=reconnect_while_waited)
        app.state.dbpool.wait()
        yield
        await close_db_connection(app)

    app = FastAPI(title="stacube raster API", openapi_url="/api", docs_url="/api.html",
                  description="Dynamic tiles of the stacube catalog (titiler-pgstac), with named spectral indices.",
                  lifespan=lifespan)
    update_openapi(app)
    add_error_handlers(app)
    add_exception_handlers(app, {**DEFAULT_STATUS_CODES, **MOSAIC_STATUS_CODES, **PGSTAC_STATUS_CODES,
                                 # invalid input found past request validation (cql2 filters, geometries): 400 with a reason
                                 ValidationError: status.HTTP_400_BAD_REQUEST,
                                 RioTilerError: status.HTTP_400_BAD_REQUEST,
                                 BackendError: status.HTTP_400_BAD_REQUEST})  # pgSTAC refused the search
    add_raster_error_handlers(app)  # GDAL cannot read an asset: 502

    service = raster_access_service(app, settings)
    # every asset is opened through the read gate (STACUBE_READ_PREFIXES, the collections' roots)
    item_reader, mosaic_reader = gated_readers(service.gates.current)

    def mosaic(path_dependency, prefix: str) -> MosaicTilerFactory:
        # WMTS layers: one per rendering of the collection (STAC renders), named after it
        return MosaicTilerFactory(
            path_dependency=path_dependency, router_prefix=prefix, add_statistics=True,
            dataset_reader=mosaic_reader, backend=MosaicBackend, supported_tms=SUPPORTED_TMS,
            add_viewer=True, add_part=True, add_ogc_maps=False, get_renders=mosaic_renders,
            # cloud-masked mosaics: /collections/{id}/masked/..., /searches/{id}/masked/...
            extensions=[searchInfoExtension(), wmtsExtensionMosaic(layer_identifier_provider=layer_name),
                        MaskedTilesExtension()],
            templates=templates,
        )

    searches = mosaic(labelled(SearchIdParams, lambda kw: f"search-{kw['search_id']}"),
                      "/searches/{search_id}")
    app.include_router(searches.router, tags=["STAC Search"], prefix="/searches/{search_id}")
    add_search_list_route(app, prefix="/searches", tags=["STAC Search"])
    add_search_register_route(
        app, prefix="/searches", tags=["STAC Search"],
        search_dependency=search_dependency(app.state.stacube_search_budget),
        tile_dependencies=[searches.layer_dependency, searches.dataset_dependency,
                           searches.pixel_selection_dependency, searches.process_dependency,
                           searches.render_dependency, searches.assets_accessor_dependency,
                           searches.reader_dependency, searches.backend_dependency],
    )
    collections = mosaic(labelled(CollectionIdParams, lambda kw: kw["collection_id"]),
                         "/collections/{collection_id}")
    app.include_router(collections.router, tags=["STAC Collection"], prefix="/collections/{collection_id}")
    items = MultiBaseTilerFactory(
        reader=item_reader, path_dependency=ItemIdParams,
        router_prefix="/collections/{collection_id}/items/{item_id}", add_viewer=True, supported_tms=SUPPORTED_TMS,
        extensions=[wmtsExtension(), stacRenderExtension()], templates=templates,
    )
    app.include_router(items.router, tags=["STAC Item"], prefix="/collections/{collection_id}/items/{item_id}")
    app.include_router(TMSFactory(templates=templates, supported_tms=SUPPORTED_TMS).router, tags=["Tiling Schemes"])
    app.include_router(AlgorithmFactory(templates=templates).router, tags=["Algorithms"])
    app.include_router(ColorMapFactory(templates=templates).router, tags=["ColorMaps"])

    @app.get("/indices", tags=["Spectral indices"], summary="Named spectral index presets")
    def list_indices() -> list[dict]:
        """The index presets usable as ``index=NAME``: formula (spyndex), bands, default rendering."""
        out = []
        for name in PRESETS:
            idx = get_index(name)
            cmap, rescale = RENDER[name]
            out.append({"name": idx.name, "long_name": idx.long_name, "formula": idx.formula,
                        "bands": idx.bands, "constants": idx.constants, "reference": idx.reference,
                        "colormap_name": cmap, "rescale": list(rescale)})
        return out

    @app.get("/", tags=["Landing"], summary="Raster API landing page")
    def landing(request: Request) -> dict:
        base = str(request.base_url).rstrip("/")
        return {
            "title": "stacube raster API",
            "links": [
                {"rel": "service-desc", "href": f"{base}/api", "type": "application/vnd.oai.openapi+json;version=3.0"},
                {"rel": "service-doc", "href": f"{base}/api.html", "type": "text/html"},
                {"rel": "data", "href": f"{base}/searches", "title": "Registered searches (mosaics)"},
                {"rel": "data", "href": f"{base}/collections/{{collection_id}}/WebMercatorQuad/tilejson.json",
                 "title": "Collection mosaic TileJSON (template)", "templated": True},
                {"rel": "data", "href": f"{base}/collections/{{collection_id}}/items/{{item_id}}/WebMercatorQuad/tilejson.json",
                 "title": "Item TileJSON (template)", "templated": True},
                {"rel": "data", "href": f"{base}/indices", "title": "Spectral index presets (index=NAME)"},
                {"rel": "data", "href": f"{base}/tileMatrixSets", "title": "Tile matrix sets"},
            ],
        }

    @app.get("/healthz", tags=["Health Check"])
    def healthz() -> dict:
        try:
            with app.state.dbpool.connection(1) as conn:
                conn.execute("SELECT 1")
            return {"database_online": True}
        except Exception:
            return {"database_online": False}

    app.add_middleware(RasterRequestMiddleware, parent=app, settings=settings)
    app.add_middleware(ResponseSizeLimit, limit=settings.max_response_size)
    # rendered tiles, once the caller is known (it checks access before a lookup)
    app.add_middleware(TileCache, size=settings.tile_cache_size, store=open_tile_store(settings.tile_store, settings),
                       store_max_zoom=settings.tile_store_max_zoom)
    # authentication (outer), then the limits; the route dependencies check access
    install_raster_access(app, settings)
    app.add_middleware(RequestLimits, settings=settings)
    collections = CollectionCache(app)
    app.add_middleware(CacheHeaders, api="raster",  # tiles of job outputs are immutable
                       derived=lambda collection_id: is_derived(collections.collection(collection_id)))
    return app
