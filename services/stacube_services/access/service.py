"""Who is calling, and the access rows of the request: shared by every HTTP app.

:class:`AuthMiddleware` turns the request's credentials into a :class:`Principal` and puts it in
the ASGI scope (``scope["stacube.principal"]``), where the apps' route dependencies find it
(:func:`principal_of`). Credentials: ``X-API-Key: <key>`` or ``Authorization: Bearer <key or
JWT>``. None: anonymous. Invalid ones (unknown or revoked key, bad, expired or forged token)
answer 401 JSON with a reason and ``WWW-Authenticate: Bearer``. An application mounted inside
another (``stacube up`` mounts the raster, jobs and cubes APIs in the STAC app) reuses the
principal the outer one found.

:class:`AccessService` reads through the app's own database pool (asyncpg for the STAC API,
psycopg for the raster API, a connection per call for the jobs API), so it works the same under
``stacube up`` and on Lambda. Nothing is cached across requests except the OIDC key sets and
the read gate (:class:`GateCache`, a few seconds).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import anyio

from stacube.access.errors import Unauthorized
from stacube.access.gate import GATE_SQL, ReadGate
from stacube.access.oidc import OidcValidator, looks_like_jwt
from stacube.access.policy import ANONYMOUS, AccessView, Principal
from stacube.access.workspaces import (
    ACCESS_ROWS_SQL,
    COLLECTION_IDS_SQL,
    KEY_SQL,
    WORKSPACE_SQL,
    hash_key,
)
from stacube.db.connection import connect
from stacube.errors import DatabaseUnavailable, StacubeError
from stacube_services.errors import stacube_error_response

PRINCIPAL_KEY = "stacube.principal"
VIEW_KEY = "stacube.access_view"
#: the access rows and the catalog versions of some collections (NULL: all), in one statement
ACCESS_AND_VERSIONS_SQL = (
    "SELECT 'access', collection, workspace, visibility, shared_with, NULL::bigint "
    "FROM stacube.collection_access UNION ALL "
    "SELECT 'version', collection, NULL::text, NULL::text, NULL::text[], version FROM stacube.catalog_changes "
    "WHERE %s::text[] IS NULL OR collection = ANY(%s::text[])")

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


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """The error to answer for a database error met while checking access."""
    if type(exc).__name__ in ("UndefinedTableError", "UndefinedTable", "UndefinedColumnError",
                              "UndefinedColumn"):
        return DatabaseUnavailable("the catalog has no access tables: run `stacube db migrate`")
    return DatabaseUnavailable("the catalog database is unavailable; retry shortly")


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


class GateCache:
    """The read gate (:class:`stacube.access.gate.ReadGate`) of an app, read again from the
    catalog at most every ``ttl`` seconds (registered roots and workspace prefixes change
    rarely; every asset open asks for it)."""

    def __init__(self, settings, ttl: float = 10.0):
        self.settings = settings
        self.ttl = ttl
        self._gate: ReadGate | None = None
        self._when = 0.0
        self._lock = threading.Lock()

    def fresh(self) -> ReadGate | None:
        """The cached gate when it is younger than ``ttl``, else None."""
        with self._lock:
            return self._gate if self._gate is not None and time.monotonic() - self._when < self.ttl else None

    def refresh_from(self, rows) -> ReadGate:
        """Cache (and return) the gate of these ``(collection, prefix)`` rows."""
        gate = ReadGate.from_rows(self.settings, rows)
        with self._lock:
            self._gate, self._when = gate, time.monotonic()
        return gate

    def current(self) -> ReadGate:
        """The gate (from the catalog when the cached one is older than ``ttl``). While the
        catalog cannot be read, the last gate read (or, before any, the server-wide prefixes
        alone: it refuses more, never less)."""
        gate = self.fresh()
        if gate is not None:
            return gate
        try:
            with connect(self.settings, autocommit=True) as conn:
                rows = conn.execute(GATE_SQL).fetchall()
        except (*DB_ERRORS, StacubeError):
            with self._lock:
                return self._gate or ReadGate.from_settings(self.settings)
        return self.refresh_from(rows)


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
        self.gates = GateCache(settings)

    async def authenticate(self, headers: dict[bytes, bytes]) -> Principal:
        """The principal of a request's headers.

        Raises:
            Unauthorized: invalid credentials (see the module docstring).
            DatabaseUnavailable: keys cannot be looked up.
        """
        secret = presented_secret(headers)
        if secret is None:
            return ANONYMOUS
        if self.admin_key and hmac.compare_digest(secret.encode(), self.admin_key.encode()):
            return Principal("admin", None, "settings", "settings")
        if looks_like_jwt(secret):
            if self.oidc is None:
                raise Unauthorized("bearer tokens are not accepted here (no OIDC provider configured)")
            principal = await anyio.to_thread.run_sync(self.oidc.principal, secret)
            if principal.workspace and not await self.fetch(WORKSPACE_SQL, principal.workspace):
                raise Unauthorized(f"bearer token names an unknown workspace {principal.workspace!r}")
            return principal
        rows = await self.fetch(KEY_SQL, hash_key(secret))
        if not rows:
            raise Unauthorized("invalid or revoked API key")
        key_id, workspace, admin = rows[0]
        return Principal("admin" if admin else "member", workspace, key_id, "api-key")

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        """Rows of a query; database errors become :class:`DatabaseUnavailable`."""
        try:
            return await self.db.fetch(sql, *args)
        except DB_ERRORS as exc:
            raise unavailable(exc) from exc

    async def execute(self, sql: str, *args: Any) -> list[tuple]:
        """Rows of a writing query; database errors become :class:`DatabaseUnavailable`."""
        try:
            return await self.db.execute(sql, *args)
        except DB_ERRORS as exc:
            raise unavailable(exc) from exc

    async def view(self, scope) -> AccessView:
        """The access rows, read once per request (cached in the scope)."""
        view = scope.get(VIEW_KEY)
        if view is None:
            view = AccessView.from_rows(await self.fetch(ACCESS_ROWS_SQL))
            scope[VIEW_KEY] = view
        return view

    async def view_and_versions(self, scope, collections: Sequence[str] | None) -> dict[str, int]:
        """The access rows (then kept in the scope, as :meth:`view` keeps them) and the catalog
        versions (``stacube.catalog_changes``) of ``collections`` (None: of every collection),
        read in one statement: one connection of the pool, not two, per tile request.

        Returns:
            ``{collection id: version}`` of those of ``collections`` that have one.

        Raises:
            DatabaseUnavailable: the statement failed (the database error is its ``__cause__``:
                an outage, or a catalog without the versions table).
        """
        wanted = list(collections) if collections is not None else None
        rows = await self.fetch(ACCESS_AND_VERSIONS_SQL, wanted, wanted)
        scope[VIEW_KEY] = AccessView.from_rows(r[1:5] for r in rows if r[0] == "access")
        return {r[1]: r[5] for r in rows if r[0] == "version"}

    async def collection_ids(self) -> list[str]:
        """Every collection id of the catalog."""
        return [r[0] for r in await self.fetch(COLLECTION_IDS_SQL)]

    async def gate(self) -> ReadGate:
        """The read gate (cached for a few seconds), read through the app's pool."""
        return self.gates.fresh() or self.gates.refresh_from(await self.fetch(GATE_SQL))


# -- responses and middleware --------------------------------------------------------------------
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
        except StacubeError as exc:
            await stacube_error_response(exc)(scope, receive, send)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)


def access_of(request) -> AccessService:
    """The :class:`AccessService` of the app serving ``request`` (or of the app it is mounted in)."""
    service = getattr(request.app.state, "stacube_access", None)
    if service is None:
        raise DatabaseUnavailable("access control is not set up for this application")
    return service
