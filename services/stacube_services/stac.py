"""The STAC API: stac-fastapi-pgstac with every read extension, transactions behind an API key.

Extensions: core, collections, features (OGC API Features), item-search, filter (CQL2 text and
JSON), sort, fields, query, free-text, token pagination, collection-search; transactions and
bulk transactions only when ``STACUBE_API_KEY`` is set, and then only for requests with a
matching ``X-API-Key`` header.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import unquote, urlparse

from fastapi import Depends, HTTPException, Request
from stac_fastapi.api.app import StacApi

from stacube import __version__
from stacube.settings import Settings
from stacube_services.errors import JsonBodyMiddleware, add_error_handlers

# stac-fastapi warns when a module-level default settings object is built; ours sets every field.
logging.getLogger("stac_fastapi.types.config").setLevel(logging.ERROR)


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


def api_key_guard(settings: Settings):
    """A dependency rejecting requests without the configured ``X-API-Key``."""

    def check(request: Request) -> None:
        given = request.headers.get("x-api-key", "")
        if not settings.api_key or not hmac.compare_digest(given, settings.api_key):
            raise HTTPException(status_code=401, detail="transactions need a valid X-API-Key header")

    return check


def stac_lifespan(settings: Settings):
    """An async context manager factory opening (and closing) the STAC API's database pools."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        from stac_fastapi.pgstac.db import close_db_connection, connect_to_db

        await connect_to_db(app, postgres_settings=postgres_settings(settings),
                            add_write_connection_pool=bool(settings.api_key))
        yield
        await close_db_connection(app)

    return lifespan


def create_stac_api(settings: Settings, *, prefix_path: str = "", lifespan=None) -> StacApi:
    """A STAC API over the catalog.

    Args:
        settings: catalog configuration (and ``api_key`` for transactions).
        prefix_path: path the API lives under in its application (``/stac`` in ``stacube up``).
        lifespan: replaces the default lifespan (which opens the database pools).
    """
    from fastapi.routing import APIRoute
    from stac_fastapi.api.routes import Scope
    from stac_fastapi.pgstac.app import instantiate_api
    from stac_fastapi.pgstac.config import Settings as StacSettings
    from stac_fastapi.pgstac.models.extensions import Extensions

    stac_settings = StacSettings(
        stac_fastapi_title="stacube STAC API",
        stac_fastapi_description="STAC API over the stacube catalog (pgSTAC).",
        stac_fastapi_landing_id="stacube",
        stac_fastapi_version=__version__,
        enable_transactions_extensions=bool(settings.api_key),
        openapi_url=f"{prefix_path}/api", docs_url=f"{prefix_path}/api.html",
        prefix_path=prefix_path,
    )
    api = instantiate_api(extensions=Extensions(settings=stac_settings), settings=stac_settings,
                          lifespan=lifespan or stac_lifespan(settings))
    api.client.landing_page_id = "stacube"
    api.app.add_middleware(JsonBodyMiddleware)
    add_error_handlers(api.app)
    if settings.api_key:
        scopes = [
            Scope(path=route.path, method=method)
            for route in api.app.router.routes if isinstance(route, APIRoute)
            for method in route.methods
            if method in ("POST", "PUT", "PATCH", "DELETE") and route.path != f"{prefix_path}/search"
        ]
        api.add_route_dependencies(scopes=scopes, dependencies=[Depends(api_key_guard(settings))])
    return api
