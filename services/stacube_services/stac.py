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

# stac-fastapi warns when its module-level default settings are built; ours set every field.
logging.getLogger("stac_fastapi.types.config").setLevel(logging.ERROR)

from stac_fastapi.api.app import StacApi  # noqa: E402

from stacube import __version__
from stacube.settings import Settings
from stacube_services.errors import JsonBodyMiddleware, add_error_handlers, error_response


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


class ApiKeyMiddleware:
    """Transactions (POST/PUT/PATCH/DELETE under ``/collections``) need ``X-API-Key``.

    Searches (``POST /search``) stay open. Answers 401 JSON without the right key.
    """

    WRITE = {"POST", "PUT", "PATCH", "DELETE"}

    def __init__(self, app, *, api_key: str, prefix_path: str = ""):
        self.app = app
        self.key = api_key.encode()
        self.protected = f"{prefix_path}/collections"

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in self.WRITE:
            path = scope["path"]
            if path == self.protected or path.startswith(self.protected + "/"):
                given = dict(scope.get("headers") or []).get(b"x-api-key", b"")
                if not hmac.compare_digest(given, self.key):
                    await error_response(401, "Unauthorized",
                                         "transactions need a valid X-API-Key header")(scope, receive, send)
                    return
        await self.app(scope, receive, send)


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
        api.app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, prefix_path=prefix_path)
    return api
