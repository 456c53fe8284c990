"""The ASGI pieces every HTTP app shares: who is calling, and the access rows of the request.

:class:`AuthMiddleware` turns the request's credentials into a :class:`Principal` and puts it in
the ASGI scope (``scope["stacube.principal"]``), where the apps' checks find it
(:func:`principal_of`). Credentials: ``X-API-Key: <key>`` or ``Authorization: Bearer <key or
JWT>``. None: anonymous. Invalid ones (unknown or revoked key, bad, expired or forged token)
answer 401 JSON with a reason and ``WWW-Authenticate: Bearer``. An application mounted inside
another (``stacube up`` mounts the raster and jobs APIs in the STAC app) reuses the principal the
outer one found.

:class:`AccessService` reads through the app's own database pool (asyncpg for the STAC API,
psycopg for the raster API, a connection per call for the jobs API), so it works the same under
``stacube up`` and on Lambda. Nothing is cached across requests except the OIDC key sets.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import Any, Protocol

from stacube.access.errors import Unauthorized
from stacube.access.oidc import OidcValidator, looks_like_jwt
from stacube.access.policy import ANONYMOUS, AccessView, Principal
from stacube.access.prefixes import ReadPrefixes
from stacube.access.workspaces import (
    ACCESS_ROWS_SQL,
    COLLECTION_IDS_SQL,
    KEY_SQL,
    WORKSPACE_SQL,
    hash_key,
)
from stacube.db.connection import connect
from stacube.errors import DatabaseUnavailable, StacubeError

PRINCIPAL_KEY = "stacube.principal"
VIEW_KEY = "stacube.access_view"


# -- database adapters -------------------------------------------------------------------------
class AsyncDb(Protocol):
    """What the access checks need from a database: rows of a query (``%s`` placeholders)."""

    async def fetch(self, sql: str, *args: Any) -> list[tuple]: ...

    async def execute(self, sql: str, *args: Any) -> list[tuple]: ...


def _dollar(sql: str) -> str:
    parts = sql.split("%s")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


class AsyncpgDb:
    """Through stac-fastapi-pgstac's asyncpg pools (``app.state.readpool`` / ``writepool``)."""

    def __init__(self, app):
        self.app = app

    async def _run(self, pool_name: str, sql: str, args) -> list[tuple]:
        state = self.app.state
        pool = getattr(state, pool_name, None) or getattr(state, "readpool", None)
        if pool is None:
            raise DatabaseUnavailable("the catalog database is not connected yet; retry shortly")
        async with pool.acquire() as conn:
            return [tuple(r) for r in await conn.fetch(_dollar(sql), *args)]

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        return await self._run("readpool", sql, args)

    async def execute(self, sql: str, *args: Any) -> list[tuple]:
        return await self._run("writepool", sql, args)


class PsycopgPoolDb:
    """Through titiler-pgstac's psycopg pool (``app.state.dbpool``), in a worker thread."""

    def __init__(self, app):
        self.app = app

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        import anyio

        def run():
            pool = getattr(self.app.state, "dbpool", None)
            if pool is None:
                raise DatabaseUnavailable("the catalog database is not connected yet; retry shortly")
            with pool.connection() as conn:
                cur = conn.execute(sql, args)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []

        return await anyio.to_thread.run_sync(run)

    execute = fetch


class PsycopgDb:
    """A connection per call (the jobs API: few, slow requests), in a worker thread."""

    def __init__(self, settings):
        self.settings = settings

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        import anyio


        def run():
            with connect(self.settings, autocommit=True) as conn:
                cur = conn.execute(sql, args)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []

        return await anyio.to_thread.run_sync(run)

    execute = fetch


# -- principals ---------------------------------------------------------------------------------
def _headers(scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers") or []}


def presented_secret(headers: dict[bytes, bytes]) -> str | None:
    """The key or token of a request (``X-API-Key`` or ``Authorization: Bearer``), or None.

    Raises:
        Unauthorized: another ``Authorization`` scheme, or two different credentials.
    """
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    token = ""
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be `Bearer <API key or token>`")
        token = value.strip()
    if key and token and key != token:
        raise Unauthorized("X-API-Key and Authorization carry different credentials")
    return key or token or None


def principal_of(scope_or_request) -> Principal:
    """The principal :class:`AuthMiddleware` put in the scope (anonymous when none)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return scope.get(PRINCIPAL_KEY) or ANONYMOUS


class AccessService:
    """Authentication and access rows for one application.

    Args:
        settings: ``api_key`` (the admin key), ``oidc_*``, ``read_prefixes``.
        db: how to reach the catalog (one of the adapters above).
    """

    def __init__(self, settings, db: AsyncDb):
        self.settings = settings
        self.db = db
        self.admin_key = settings.api_key
        self.oidc = OidcValidator.from_settings(settings)
        self.prefixes = ReadPrefixes.from_settings(settings)

    async def authenticate(self, headers: dict[bytes, bytes]) -> Principal:
        """The principal of a request's headers.

        Raises:
            Unauthorized: invalid credentials (see the module docstring).
        """
        secret = presented_secret(headers)
        if secret is None:
            return ANONYMOUS
        if self.admin_key and hmac.compare_digest(secret.encode(), self.admin_key.encode()):
            return Principal("admin", None, "settings", "settings")
        if looks_like_jwt(secret):
            if self.oidc is None:
                raise Unauthorized("bearer tokens are not accepted here (no OIDC provider configured)")
            import anyio

            principal = await anyio.to_thread.run_sync(self.oidc.principal, secret)
            if principal.workspace and not await self.db.fetch(WORKSPACE_SQL, principal.workspace):
                raise Unauthorized(f"bearer token names an unknown workspace {principal.workspace!r}")
            return principal
        rows = await self.db.fetch(KEY_SQL, hash_key(secret))
        if not rows:
            raise Unauthorized("invalid or revoked API key")
        key_id, workspace, admin = rows[0]
        return Principal("admin" if admin else "member", workspace, key_id, "api-key")

    async def view(self, scope) -> AccessView:
        """The access rows, read once per request (cached in the scope)."""
        view = scope.get(VIEW_KEY)
        if view is None:
            view = AccessView.from_rows(await self.db.fetch(ACCESS_ROWS_SQL))
            scope[VIEW_KEY] = view
        return view

    async def collection_ids(self) -> list[str]:
        """Every collection id of the catalog."""
        return [r[0] for r in await self.db.fetch(COLLECTION_IDS_SQL)]


# -- responses and middleware --------------------------------------------------------------------
def json_error(status: int, code: str, description: str, headers: dict[str, str] | None = None):
    """The JSON error body of the stacube services, as an ASGI app."""
    from starlette.responses import JSONResponse

    return JSONResponse({"code": code, "description": description}, status_code=status, headers=headers)


def error_for(exc: Exception):
    """The response for an error raised while checking access."""
    if isinstance(exc, Unauthorized):
        return json_error(401, "Unauthorized", exc.message, {"WWW-Authenticate": 'Bearer realm="stacube"'})
    if isinstance(exc, StacubeError):
        return json_error(exc.status_code, type(exc).__name__, exc.message)
    name = type(exc).__name__
    if name in ("UndefinedTableError", "UndefinedTable"):
        return json_error(503, "DatabaseUnavailable",
                          "the catalog has no access tables: run `stacube db migrate`")
    return json_error(503, "DatabaseUnavailable", "the catalog database is unavailable; retry shortly")


DB_ERRORS: tuple[type[BaseException], ...] = (OSError,)
try:
    import psycopg as _psycopg

    DB_ERRORS += (_psycopg.Error,)
except ImportError:  # pragma: no cover
    pass
try:
    import asyncpg as _asyncpg

    DB_ERRORS += (_asyncpg.PostgresError, _asyncpg.InterfaceError)
except ImportError:  # pragma: no cover - the raster image has no asyncpg
    pass


class AuthMiddleware:
    """Puts the caller's :class:`Principal` in the scope; 401 for invalid credentials.

    Args:
        service: the app's :class:`AccessService`.
    """

    def __init__(self, app, *, service: AccessService):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or PRINCIPAL_KEY in scope:
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.service.authenticate(_headers(scope))
        except (StacubeError, *DB_ERRORS) as exc:
            await error_for(exc)(scope, receive, send)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)


async def read_body(receive) -> tuple[bytes, list[dict]]:
    """The whole request body, and the messages after it (to replay)."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks), []


def replay(body: bytes, tail: Iterable[dict] = ()):
    """A ``receive`` that hands ``body`` to the app again."""
    pending = [{"type": "http.request", "body": body, "more_body": False}, *tail]

    async def receive():
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive


async def rewrite_json_response(app, scope, receive, send, rewrite, *, fallback: bytes) -> None:
    """Run ``app`` and send its response, the JSON body of a 200 replaced by ``rewrite(document)``
    (``fallback`` when the body is not the JSON ``rewrite`` expects); other statuses pass as they are."""
    start: dict = {}
    chunks: list[bytes] = []

    async def capture(message):
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    body = b"".join(chunks)
    if start.get("status") == 200:
        try:
            body = json.dumps(rewrite(json.loads(body))).encode()
        except (ValueError, AttributeError, TypeError):
            body = fallback
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
    await send({"type": "http.response.body", "body": body})


def with_body(scope, body: bytes) -> dict:
    """The scope with its ``content-length`` set for a replaced body."""
    scope = dict(scope)
    headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    scope["headers"] = headers
    return scope


def relative_path(scope, prefix: str = "") -> str | None:
    """The request path below the app's root path and ``prefix``; None when outside ``prefix``."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if prefix:
        if path != prefix and not path.startswith(prefix + "/"):
            return None
        path = path[len(prefix):]
    return path or "/"
