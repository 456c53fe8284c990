"""Access control in the raster API (titiler-pgstac), and the readers that refuse foreign hrefs.

:class:`RasterAccessMiddleware`:

* ``/collections/{id}/...`` (collection mosaics, masked mosaics, item tiles) - 404 when the
  caller may not read the collection, with the body titiler-pgstac gives for a collection or item
  that does not exist;
* ``/searches/{id}/...`` - the registered search's ``collections`` must all be readable (a search
  without ``collections`` only for callers who can read everything), else the 404 of an unknown
  search;
* ``POST /searches/register`` - every listed collection must exist and be readable (404
  ``unknown collection``, for anyone); a search without ``collections`` is registered over the
  collections the caller may read;
* ``GET /searches/`` - lists only the searches the caller could use (``context.matched`` is then
  left out).

:func:`guarded_readers` - titiler-pgstac's item and mosaic readers whose every asset open goes
through :meth:`ReadPrefixes.check` first (403 ``asset href ... is not under an allowed prefix``,
nothing read).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from stacube.access.asgi import (
    DB_ERRORS,
    AccessService,
    AuthMiddleware,
    PsycopgPoolDb,
    error_for,
    json_error,
    principal_of,
    read_body,
    relative_path,
    replay,
    rewrite_json_response,
    with_body,
)
from stacube.access.errors import InvalidParameter
from stacube.access.prefixes import ReadPrefixes
from stacube.errors import NotFound, StacubeError

SEARCH_SQL = "SELECT search FROM pgstac.searches WHERE hash = %s"
EXISTING_SQL = "SELECT id FROM pgstac.collections WHERE id = ANY(%s)"


def guarded_readers(prefixes: ReadPrefixes) -> tuple[type, type]:
    """``(item reader, mosaic dataset reader)``: titiler-pgstac's ``PgSTACReader`` and
    ``SimpleSTACReader`` checking each asset URL against ``prefixes`` before opening it."""
    from titiler.pgstac.reader import PgSTACReader, SimpleSTACReader

    class GuardedPgSTACReader(PgSTACReader):
        def _get_reader(self, asset_info):
            prefixes.check(asset_info["url"])
            return super()._get_reader(asset_info)

    class GuardedSimpleSTACReader(SimpleSTACReader):
        def _get_reader(self, asset_info):
            prefixes.check(asset_info["url"])
            return super()._get_reader(asset_info)

    return GuardedPgSTACReader, GuardedSimpleSTACReader


class _Hidden(Exception):
    """Answer as if the thing did not exist."""

    def __init__(self, response):
        self.response = response


class RasterAccessMiddleware:
    """Path and registration checks of the raster API (see the module docstring).

    Args:
        service: the app's :class:`AccessService`.
        precheck: ``precheck(path, query) -> reason | None``; requests the app rejects anyway
            (size limits, tiles outside the matrix) pass through unchecked, to be rejected alike.
    """

    def __init__(self, app, *, service: AccessService, precheck=None):
        self.app = app
        self.service = service
        self.precheck = precheck

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = relative_path(scope) or "/"
        parts = [p for p in path.split("/") if p]
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            if parts[:2] == ["searches", "register"] and scope["method"] == "POST":
                await self.register(scope, receive, send)
                return
            if self.precheck is None or not self.precheck(path, dict(query)):
                await self.check_path(scope, parts, {k for k, _ in query})
            if parts and parts[0] == "searches" and len(parts) <= 2 and parts[1:] in ([], ["list"]) \
                    and scope["method"] == "GET":
                await self.list_searches(scope, receive, send)
                return
        except _Hidden as hidden:
            await hidden.response(scope, receive, send)
            return
        except (StacubeError, *DB_ERRORS) as exc:
            await error_for(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def check_path(self, scope, parts: list[str], params: set[str]) -> None:
        if len(parts) < 2:
            return
        principal = principal_of(scope)
        if parts[0] == "collections":
            cid = parts[1]
            view = await self.service.view(scope)
            if view.can_read(principal, cid):
                return
            if "index" in params:
                raise _Hidden(json_error(404, "NotFound", f"unknown collection {cid!r}"))
            if len(parts) >= 4 and parts[2] == "items":
                raise _Hidden(_detail(404, f"No item '{parts[3]}' found in '{cid}' collection"))
            raise _Hidden(_detail(404, f"CollectionId `{cid}` not found"))
        if parts[0] == "searches" and parts[1] not in ("register", "list"):
            sid = parts[1]
            if not await self.search_usable(scope, sid):
                if "index" in params:
                    raise _Hidden(json_error(404, "NotFound", f"unknown search {sid!r}"))
                raise _Hidden(_detail(404, f"SearchId `{sid}` not found"))

    async def search_usable(self, scope, sid: str) -> bool:
        principal = principal_of(scope)
        view = await self.service.view(scope)
        if not view.restricts(principal):
            return True
        rows = await self.service.db.fetch(SEARCH_SQL, sid)
        if not rows:
            return True  # unknown: the app answers its own 404
        search = rows[0][0]
        if isinstance(search, str):
            search = json.loads(search)
        collections = (search or {}).get("collections") or []
        return bool(collections) and all(view.can_read(principal, c) for c in collections)

    async def register(self, scope, receive, send) -> None:
        body, tail = await read_body(receive)
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            await self.app(scope, replay(body, tail), send)  # the app answers its own 4xx
            return
        if not isinstance(doc, dict):
            await self.app(scope, replay(body, tail), send)
            return
        principal = principal_of(scope)
        view = await self.service.view(scope)
        requested = doc.get("collections")
        if isinstance(requested, str):
            requested = [requested]
        if requested:
            if not isinstance(requested, list) or not all(isinstance(c, str) for c in requested):
                raise InvalidParameter("collections must be a list of collection ids")
            existing = {r[0] for r in await self.service.db.fetch(EXISTING_SQL, list(requested))}
            for cid in requested:
                if cid not in existing or not view.can_read(principal, cid):
                    raise NotFound(f"unknown collection {cid!r}")
        elif view.restricts(principal):
            doc["collections"] = view.narrow(principal, None, await self.service.collection_ids())
            body = json.dumps(doc).encode()
            scope = with_body(scope, body)
        await self.app(scope, replay(body, tail), send)

    async def list_searches(self, scope, receive, send) -> None:
        principal = principal_of(scope)
        view = await self.service.view(scope)
        if not view.restricts(principal):
            await self.app(scope, receive, send)
            return

        def usable(entry) -> bool:
            search = ((entry or {}).get("search") or {}).get("search") or {}
            cols = search.get("collections") or []
            return bool(cols) and all(view.can_read(principal, c) for c in cols)

        def readable(doc: dict) -> dict:
            doc["searches"] = [e for e in doc.get("searches", []) if usable(e)]
            context = doc.get("context") or {}
            context["returned"] = len(doc["searches"])
            context.pop("matched", None)
            return doc

        await rewrite_json_response(self.app, scope, receive, send, readable,
                                    fallback=b'{"searches": [], "links": []}')


def _detail(status: int, text: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"detail": text}, status_code=status)


def install_raster_access(app, settings, *, precheck=None) -> AccessService:
    """Add authentication and the raster checks to the titiler-pgstac ``app`` (outermost
    middlewares; call after the app's own); returns its :class:`AccessService`."""

    service = AccessService(settings, PsycopgPoolDb(app))
    app.state.stacube_access = service
    app.add_middleware(RasterAccessMiddleware, service=service, precheck=precheck)
    app.add_middleware(AuthMiddleware, service=service)
    return service
