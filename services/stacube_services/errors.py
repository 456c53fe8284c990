"""JSON error responses shared by the HTTP apps: 4xx with a reason, never a 500 for bad input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stacube.errors import StacubeError

logger = logging.getLogger("stacube")


def error_response(status: int, code: str, description: str) -> JSONResponse:
    """The error body every stacube service answers with."""
    return JSONResponse({"code": code, "description": description}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    """Map stacube errors and database input errors to JSON 4xx/503 answers."""
    import psycopg
    from psycopg_pool import PoolTimeout

    @app.exception_handler(StacubeError)
    async def _stacube(request: Request, exc: StacubeError):
        return error_response(exc.status_code, type(exc).__name__, exc.message)

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
                         asyncpg.exceptions.SyntaxOrAccessError):
            app.add_exception_handler(exc_type, _bad_input)
        for exc_type in (asyncpg.exceptions.PostgresConnectionError,
                         asyncpg.exceptions.CannotConnectNowError, ConnectionError, OSError):
            app.add_exception_handler(exc_type, _unavailable)
    except ImportError:
        pass

    @app.exception_handler(psycopg.OperationalError)
    async def _down(request: Request, exc: Exception):
        return error_response(503, "DatabaseUnavailable", "the catalog database is unavailable; retry shortly")

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: Exception):
        return error_response(503, "DatabaseUnavailable", "no database connection available; retry shortly")


async def _bad_input(request: Request, exc: Exception):
    return error_response(400, "InvalidParameter", _first_line(exc))


async def _unavailable(request: Request, exc: Exception):
    return error_response(503, "DatabaseUnavailable", "the catalog database is unavailable; retry shortly")


def _first_line(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    text = (getattr(diag, "message_primary", None) if diag else None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


class JsonBodyMiddleware:
    """Answer 400 to a request whose JSON body does not parse, before any route sees it.

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
        if ctype and "json" not in ctype:
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body.strip():
            import orjson

            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                await error_response(400, "InvalidJSON", f"request body is not valid JSON: {exc}")(
                    scope, receive, send)
                return
        await self.app(scope, _replay([body], None), send)


def _replay(bodies, tail):
    pending = [{"type": "http.request", "body": b, "more_body": False} for b in bodies]
    if tail is not None:
        pending.append(tail)

    async def receive():
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive
