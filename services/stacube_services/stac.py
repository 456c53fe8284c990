"""The STAC API: stac-fastapi-pgstac with every read extension, transactions behind credentials.

Extensions: core, collections, features (OGC API Features), item-search, filter (CQL2 text and
JSON), sort, fields, query, free-text, token pagination, collection-search; transactions and
bulk transactions when ``STACUBE_TRANSACTIONS`` is on (default: when ``STACUBE_API_KEY`` is set).
Access control (:mod:`stacube_services.access.stac`): reads and searches see only the
collections the caller may read; writes need an API key or token of the owning workspace, or an
admin's. Request limits (:mod:`stacube_services.limits`) run before anything else. Items carry
asset hrefs every client can open: local files as URLs of the asset route
(``/collections/{c}/items/{i}/assets/{key}``, :mod:`stacube_services.assets`), their storage
paths as alternates.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlparse

# stac-fastapi warns when its module-level default settings are built; ours set every field.
logging.getLogger("stac_fastapi.types.config").setLevel(logging.ERROR)

from stac_fastapi.api.app import StacApi  # noqa: E402
from stac_fastapi.types.requests import get_base_url  # noqa: E402

from stacube import __version__
from stacube.settings import Settings
from stacube_services.access.sharing import add_access_routes
from stacube_services.access.stac import AccessCoreClient, AccessExtensions, install_stac_access
from stacube_services.assets import add_asset_routes, served_features
from stacube_services.cache import CacheHeaders
from stacube_services.errors import JsonBodyMiddleware, add_error_handlers
from stacube_services.limits import RequestLimits
from stacube_services.stac_requests import TRANSACTION_PATH, StacRequestMiddleware


#: the sort extension's classes as STAC API 1.0.0 names them too: stac-fastapi advertises the
#: v1.1.0 forms only, which pystac-client (matching ``v1.0.*``) does not recognise
COMPATIBLE_CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
]


class StacubeCoreClient(AccessCoreClient):
    """The access-checked client whose items carry asset hrefs every client can open: local
    files as URLs of the asset route, the storage path as an alternate
    (:mod:`stacube_services.assets`). Every item answer (search, item list, item) goes through
    ``_search_base``."""

    async def _search_base(self, search_request, request):
        answer = await super()._search_base(search_request, request)
        served_features(answer.get("features") or [], get_base_url(request))
        return answer


def postgres_settings(settings: Settings, pool_size: int | None = None):
    """stac-fastapi-pgstac connection settings from stacube's DSN."""
    from stac_fastapi.pgstac.config import PostgresSettings, ServerSettings

    url = urlparse(settings.dsn())
    size = pool_size or settings.db_pool_size
    return PostgresSettings(
        pguser=unquote(url.username or "postgres"), pgpassword=unquote(url.password or ""),
        pghost=url.hostname or "127.0.0.1", pgport=url.port or 5432,
        pgdatabase=(url.path or "/postgres").lstrip("/") or "postgres",
        db_min_conn_size=1, db_max_conn_size=size,
        server_settings=ServerSettings(application_name="stacube-stac"),
    )


async def _transaction_pool(pg):
    """stac-fastapi-pgstac's asyncpg pool for a transaction pooler (PgBouncer transaction mode,
    RDS Proxy): no statement cache (asyncpg's named prepared statements would outlive the
    transaction) and no ``search_path`` startup parameter (the role's own applies)."""
    import asyncpg
    from stac_fastapi.pgstac.db import con_init

    return await asyncpg.create_pool(
        pg.connection_string, min_size=pg.db_min_conn_size, max_size=pg.db_max_conn_size,
        max_queries=pg.db_max_queries, max_inactive_connection_lifetime=pg.db_max_inactive_conn_lifetime,
        init=con_init, statement_cache_size=0, server_settings={"application_name": "stacube-stac"})


def transactions_enabled(settings: Settings) -> bool:
    """``STACUBE_TRANSACTIONS`` when set, else whether an admin key (``STACUBE_API_KEY``) is."""
    return settings.transactions if settings.transactions is not None else bool(settings.api_key)


def stac_lifespan(settings: Settings):
    """An async context manager factory opening (and closing) the STAC API's database pools."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        from stac_fastapi.pgstac.db import close_db_connection, connect_to_db, get_connection

        pg = postgres_settings(settings)
        if settings.db_pool_mode == "transaction":
            app.state.readpool = await _transaction_pool(pg)
            if transactions_enabled(settings):
                app.state.writepool = await _transaction_pool(pg)
            app.state.get_connection = get_connection
        else:
            await connect_to_db(app, postgres_settings=pg,
                                add_write_connection_pool=transactions_enabled(settings))
        yield
        await close_db_connection(app)

    return lifespan


def create_stac_api(settings: Settings, *, prefix_path: str = "", lifespan=None) -> StacApi:
    """A STAC API over the catalog.

    Args:
        settings: catalog configuration (transactions, admin key, OIDC, read prefixes).
        prefix_path: path the API lives under in its application (``/stac`` in ``stacube up``).
        lifespan: replaces the default lifespan (which opens the database pools).
    """
    from stac_fastapi.pgstac.app import instantiate_api
    from stac_fastapi.pgstac.config import Settings as StacSettings


    stac_settings = StacSettings(
        stac_fastapi_title="stacube STAC API",
        stac_fastapi_description="STAC API over the stacube catalog (pgSTAC).",
        stac_fastapi_landing_id="stacube",
        stac_fastapi_version=__version__,
        enable_transactions_extensions=transactions_enabled(settings),
        openapi_url=f"{prefix_path}/api", docs_url=f"{prefix_path}/api.html",
        prefix_path=prefix_path,
        # items are hydrated in Python (hydraters) rather than in pgSTAC's PL/pgSQL: ~15x less
        # database time for items with large item_assets (see benchmarks/load.py)
        use_api_hydrate=True,
    )
    api = instantiate_api(client=StacubeCoreClient, extensions=AccessExtensions(settings=stac_settings),
                          settings=stac_settings, lifespan=lifespan or stac_lifespan(settings))
    api.client.landing_page_id = "stacube"
    api.client.base_conformance_classes.extend(COMPATIBLE_CONFORMANCE)
    api.app.state.stacube_settings = settings  # items written through transactions describe their collection

    api.app.add_middleware(StacRequestMiddleware, prefix_path=prefix_path)
    api.app.add_middleware(JsonBodyMiddleware)
    add_error_handlers(api.app)
    add_asset_routes(api.app, prefix_path)  # before the access dependency, which then covers it
    add_access_routes(api.app, prefix_path)  # the caller and the sharing of collections (idem)
    install_stac_access(api, settings, prefix_path=prefix_path, transactions=transactions_enabled(settings))

    def large_body(scope) -> bool:  # STAC transactions may carry larger bodies than searches
        path = scope["path"]
        return path.startswith(prefix_path) and bool(TRANSACTION_PATH.match(path[len(prefix_path):]))

    api.app.add_middleware(RequestLimits, settings=settings, large_body=large_body)
    # what CloudFront and browsers may keep (under stacube up, the other APIs are mounted on this app)
    api.app.add_middleware(CacheHeaders, api="stac", prefix=prefix_path)
    return api
