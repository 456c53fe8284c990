"""JSON error responses shared by the HTTP apps: 4xx with a reason, never a 500 for bad input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stacube.access.errors import Unauthorized
from stacube.errors import DatabaseUnavailable, StacubeError
from stacube_services.body import read_body, replay

logger = logging.getLogger("stacube")


def error_response(status: int, code: str, description: str) -> JSONResponse:
    """The error body every stacube service answers with."""
    return JSONResponse({"code": code, "description": description}, status_code=status)


def stacube_error_response(exc: StacubeError) -> JSONResponse:
    """The answer to a :class:`StacubeError` (401s carry ``WWW-Authenticate: Bearer``)."""
    response = error_response(exc.status_code, type(exc).__name__, exc.message)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="stacube"'
    return response


def add_error_handlers(app: FastAPI) -> None:
    """Map stacube errors and database input errors to JSON 4xx/503 answers."""
    import psycopg
    from psycopg_pool import PoolTimeout

    @app.exception_handler(StacubeError)
    async def _stacube(request: Request, exc: StacubeError):
        return stacube_error_response(exc)

    @app.exception_handler(psycopg.errors.DataError)
    async def _data(request: Request, exc: Exception):
        return error_response(400, "InvalidParameter", _first_line(exc))

    @app.exception_handler(psycopg.errors.SyntaxErrorOrAccessRuleViolation)
    async def _syntax(request: Request, exc: Exception):
        return error_response(400, "InvalidParameter", _first_line(exc))

    @app.exception_handler(psycopg.errors.RaiseException)
    async def _raised(request: Request, exc: Exception):
        return error_response(400, "InvalidParameter", _first_line(exc))

    try:  # stac-fastapi-pgstac talks to PostgreSQL through asyncpg
        import asyncpg

        for exc_type in (asyncpg.exceptions.DataError, asyncpg.exceptions.RaiseError,
                         asyncpg.exceptions.SyntaxOrAccessError,
                         # e.g. an item for a collection that does not exist ("no partition")
                         asyncpg.exceptions.IntegrityConstraintViolationError):
            app.add_exception_handler(exc_type, _bad_input)
        for exc_type in (asyncpg.exceptions.PostgresConnectionError,
                         asyncpg.exceptions.CannotConnectNowError, ConnectionError, OSError,
                         # the server shutting down or restarting ("terminating connection due
                         # to administrator command"), and connections it closed meanwhile
                         asyncpg.exceptions.OperatorInterventionError,
                         asyncpg.exceptions.InterfaceError,
                         # releasing a connection the server terminated mid-query
                         asyncpg.exceptions.InternalClientError):
            app.add_exception_handler(exc_type, _unavailable)
    except ImportError:
        pass

    import json

    import orjson

    for exc_type in (orjson.JSONDecodeError, json.JSONDecodeError):  # a JSON-valued parameter
        app.add_exception_handler(exc_type, _bad_json)
    try:  # JSON Patch bodies (transactions) naming members that do not exist
        import jsonpatch
        import jsonpointer

        for exc_type in (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException):
            app.add_exception_handler(exc_type, _bad_input)
    except ImportError:
        pass
    # e.g. stac-pydantic converting "0001-01-01T00:00:00+01:00" to UTC inside request validation
    app.add_exception_handler(OverflowError, _out_of_range)

    @app.exception_handler(psycopg.OperationalError)
    async def _down(request: Request, exc: Exception):
        return error_response(503, "DatabaseUnavailable", "the catalog database is unavailable; retry shortly")

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: Exception):
        return error_response(503, "DatabaseUnavailable", "no database connection available; retry shortly")


def add_raster_error_handlers(app: FastAPI) -> None:
    """GDAL failing to open or read an asset answers 502 with one reason, the same whether the
    file is missing, unreachable or not a raster (nothing tells whether it exists)."""
    from rasterio.errors import RasterioError, RasterioIOError

    for exc_type in (RasterioIOError, RasterioError):
        app.add_exception_handler(exc_type, _unreadable_asset)


async def _unreadable_asset(request: Request, exc: Exception):
    return error_response(502, "StorageError", "cannot read an asset: GDAL could not open or read it "
                                               "(missing, unreachable, or not a raster it reads)")


async def _bad_input(request: Request, exc: Exception):
    return error_response(400, "InvalidParameter", _first_line(exc))


async def _bad_json(request: Request, exc: Exception):
    return error_response(400, "InvalidParameter", f"a parameter is not valid JSON: {_first_line(exc)}")


async def _out_of_range(request: Request, exc: Exception):
    return error_response(400, "InvalidParameter", f"a value is out of range: {_first_line(exc)}")


async def _unavailable(request: Request, exc: Exception):
    return error_response(503, "DatabaseUnavailable", "the catalog database is unavailable; retry shortly")


def _first_line(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    text = (getattr(diag, "message_primary", None) if diag else None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


class JsonBodyMiddleware:
    """Answer 4xx to a request body that is not JSON, before any route sees it: 400 when it does
    not parse, 415 when it is sent as another media type (every route of these APIs takes JSON).

    Some request models validate raw bodies in ways that fail with a server error on garbage;
    this keeps malformed input a client error.
    """

    METHODS = {"POST", "PUT", "PATCH"}

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in self.METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        body, tail = await read_body(receive)
        if body.strip():
            if ctype and "json" not in ctype:
                await error_response(415, "UnsupportedMediaType",
                                     f"the body is sent as {ctype.split(';')[0]!r}; send JSON "
                                     "(Content-Type: application/json)")(scope, receive, send)
                return
            import orjson

            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                await error_response(400, "InvalidJSON", f"request body is not valid JSON: {exc}")(
                    scope, receive, send)
                return
        await self.app(scope, replay(body, tail), send)


def database_unavailable(exc: BaseException) -> bool:
    """True for the errors of a database that cannot be reached (down, restarting, no connection)."""
    import psycopg
    from psycopg_pool import PoolTimeout


    if isinstance(exc, BaseExceptionGroup):
        return any(database_unavailable(e) for e in exc.exceptions)
    kinds: tuple = (psycopg.OperationalError, PoolTimeout, DatabaseUnavailable, ConnectionError)
    try:
        import asyncpg

        kinds += (asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.CannotConnectNowError,
                  asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InterfaceError,
                  asyncpg.exceptions.InternalClientError)
    except ImportError:
        pass
    return isinstance(exc, kinds)


class UnavailableMiddleware:
    """Answer 503 JSON when the database cannot be reached, whatever raised the error.

    Exception handlers only see errors of the routes; middlewares that query the database (access
    checks, request rewrites) run outside them. This one wraps the whole application.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started or not database_unavailable(exc):
                raise
            logger.warning("database unavailable: %s", _first_line(exc))
            await error_response(503, "DatabaseUnavailable",
                                 "the catalog database is unavailable; retry shortly")(scope, receive, send)
