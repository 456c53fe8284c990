"""Access control in the raster API (titiler-pgstac), through titiler's own hooks.

* :func:`raster_dependency` - added with titiler's ``add_route_dependencies`` to every route with
  a ``{collection_id}`` or ``{search_id}`` (mosaics, masked mosaics, item tiles, points,
  statistics, TileJSON, WMTS): a collection the caller may not read answers the 404 titiler-pgstac
  gives for one that does not exist (the same exception class, so the same body); a registered
  search whose ``collections`` are not all readable by *this* caller (searches are shared by
  hash; one without ``collections`` only for callers who read everything) answers the 404 of an
  unknown search. The decision (:func:`mosaic_access`) is made once per request and kept in the
  scope: the ``index=`` check and the tile cache (:mod:`stacube_services.tile_cache`) use the same.
* :func:`search_dependency` - the ``search_dependency`` of titiler-pgstac's register route: every
  listed collection must exist and be readable (404 ``unknown collection``, for anyone); a search
  without ``collections`` is registered over the caller's readable collections. Searches of
  anonymous callers are marked, and at most ``STACUBE_ANONYMOUS_SEARCHES`` of them (and of the
  searches collection mosaics register on the fly) are kept, least recently used dropped first.
* :func:`filter_search_list` - the search list route answers only the searches the caller could
  use (``context.matched`` left out).
* :func:`gated_readers` - titiler-pgstac's item and mosaic readers, every asset opened through
  the read gate (:class:`stacube.access.gate.ReadGate`): the href checked is the href opened.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from cachetools import LRUCache

from fastapi import Depends, HTTPException, Request
from titiler.core.routing import add_route_dependencies
from titiler.pgstac import model
from titiler.pgstac.dependencies import SearchParams
from titiler.pgstac.errors import MosaicNotFoundError
from titiler.pgstac.reader import PgSTACReader, SimpleSTACReader

from stacube.access.errors import InvalidParameter
from stacube.access.policy import Principal
from stacube.errors import NotFound
from stacube_services.access.service import (
    AccessService,
    AuthMiddleware,
    PsycopgPoolDb,
    access_of,
    principal_of,
)
from stacube_services.body import rewrite_json_response
from stacube_services.local_reads import LocalReadsInThread

SEARCH_SQL = "SELECT search FROM pgstac.searches WHERE hash = %s"
EXISTING_SQL = "SELECT id FROM pgstac.collections WHERE id = ANY(%s)"
ANONYMOUS_KEY = "stacube:anonymous"
#: Searches that can be registered again at any time: those of anonymous callers, and those
#: titiler-pgstac registers for every collection mosaic request. Beyond the budget, the least
#: recently used go.
PRUNE_SQL = ("DELETE FROM pgstac.searches WHERE hash IN (SELECT hash FROM pgstac.searches "
             "WHERE metadata->>'" + ANONYMOUS_KEY + "' = 'true' OR metadata->>'name' LIKE 'Mosaic for %% Collection' "
             "ORDER BY lastused DESC NULLS LAST OFFSET %s)")
PRUNE_EVERY = 30.0  # seconds between prunes of one process on the collection routes
#: the scope key of the request's :class:`MosaicAccess` decisions
DECISIONS_KEY = "stacube.mosaic_access"


def _search_collections(search) -> list[str]:
    if isinstance(search, str):
        search = json.loads(search)
    return list((search or {}).get("collections") or [])


@dataclass(frozen=True)
class MosaicAccess:
    """The access decision for the tiles of one collection or registered search, made once per
    request (:func:`mosaic_access`) for every component that needs it: the route dependency, the
    ``index=`` check and the tile cache.

    Attributes:
        readable: whether the caller may use it (False: the route answers the 404 of an unknown
            collection or search).
        collections: the collection ids its tiles draw from (``()``: a search without
            ``collections``, the whole catalog); None for a search that is not registered (the
            route answers its own 404).
    """

    readable: bool
    collections: tuple[str, ...] | None


#: search hash -> its ``collections`` (pgSTAC derives the hash from the search: it never changes)
_SEARCHES: LRUCache = LRUCache(maxsize=4096)
_SEARCHES_LOCK = threading.Lock()


def known_search_collections(sid: str) -> tuple[str, ...] | None:
    """The ``collections`` of registered search ``sid`` when this process has read them, else
    None (unknown here, or no such search)."""
    with _SEARCHES_LOCK:
        return _SEARCHES.get(sid)


async def _registered_collections(service: AccessService, sid: str) -> tuple[str, ...] | None:
    found = known_search_collections(sid)
    if found is not None:
        return found
    rows = await service.fetch(SEARCH_SQL, sid)
    if not rows:
        return None
    found = tuple(_search_collections(rows[0][0]))
    with _SEARCHES_LOCK:
        _SEARCHES[sid] = found
    return found


async def mosaic_access(service: AccessService, scope, *, collection: str | None = None,
                        search: str | None = None) -> MosaicAccess:
    """Whether the caller may use collection ``collection`` (its mosaics and items) or registered
    search ``search`` (all its ``collections`` readable; one without them only for callers who
    read everything), and what it draws from. Decided once per request (kept in the scope).

    Raises:
        DatabaseUnavailable: the access rows or the search cannot be read (the original database
            error is its ``__cause__``).
    """
    key = ("collection", collection) if collection is not None else ("search", search)
    decisions = scope.setdefault(DECISIONS_KEY, {})
    decision = decisions.get(key)
    if decision is not None:
        return decision
    principal = principal_of(scope)
    view = await service.view(scope)
    if collection is not None:
        decision = MosaicAccess(view.can_read(principal, collection), (collection,))
    else:
        collections = await _registered_collections(service, search)
        if collections is None:
            decision = MosaicAccess(True, None)
        elif not view.restricts(principal):
            decision = MosaicAccess(True, collections)
        else:
            decision = MosaicAccess(bool(collections) and all(view.can_read(principal, c) for c in collections),
                                    collections)
    decisions[key] = decision
    return decision


class SearchBudget:
    """Keeps the disposable searches (see :data:`PRUNE_SQL`) within ``keep``; prunes at most
    every :data:`PRUNE_EVERY` seconds unless told to."""

    def __init__(self, keep: int):
        self.keep = keep
        self._last = 0.0
        self._lock = threading.Lock()

    async def prune(self, service: AccessService, *, now: bool = False) -> None:
        with self._lock:
            due = now or time.monotonic() - self._last >= PRUNE_EVERY
            if due:
                self._last = time.monotonic()
        if due:
            await service.execute(PRUNE_SQL, max(self.keep - 1, 0))


def raster_dependency(budget: SearchBudget):
    """The dependency of the collection and search routes (see the module docstring)."""

    async def check(request: Request) -> None:
        service = access_of(request)
        params = request.path_params
        if "collection_id" in params:
            cid = params["collection_id"]
            if not (await mosaic_access(service, request.scope, collection=cid)).readable:
                if "item_id" in params:
                    raise HTTPException(404, f"No item '{params['item_id']}' found in '{cid}' collection")
                raise MosaicNotFoundError(f"CollectionId `{cid}` not found")
            if "item_id" not in params:
                await budget.prune(service)
        elif "search_id" in params:
            sid = params["search_id"]
            if not (await mosaic_access(service, request.scope, search=sid)).readable:
                raise MosaicNotFoundError(f"SearchId `{sid}` not found")

    return check


def search_dependency(budget: SearchBudget):
    """titiler-pgstac's ``SearchParams``, checked for the caller (see the module docstring)."""

    async def checked(request: Request, search_query=Depends(SearchParams)):
        search, metadata = search_query
        service = access_of(request)
        principal: Principal = principal_of(request)
        view = await service.view(request.scope)
        requested = search.collections
        if requested:
            if not all(isinstance(c, str) for c in requested):
                raise InvalidParameter("collections must be a list of collection ids")
            existing = {r[0] for r in await service.fetch(EXISTING_SQL, list(requested))}
            for cid in requested:
                if cid not in existing or not view.can_read(principal, cid):
                    raise NotFound(f"unknown collection {cid!r}")
        elif view.restricts(principal):
            search.collections = view.narrow(principal, None, await service.collection_ids())
        if principal.is_anonymous:
            metadata = model.Metadata(**{**metadata.model_dump(exclude_none=True), ANONYMOUS_KEY: True})
            await budget.prune(service, now=True)
        return search, metadata

    return checked


def endpoint_routes(routes, prefix: str = ""):
    """``(route, full path)`` of every endpoint route, also inside included routers (FastAPI keeps
    an included router as one route holding the original one; its prefix is added here)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from endpoint_routes(included.routes, prefix + getattr(context, "prefix", ""))
        elif hasattr(route, "path"):
            yield route, prefix + route.path


def filter_search_list(app) -> None:
    """Make the search list routes answer only the searches the caller could use."""
    for route, _ in endpoint_routes(app.router.routes):
        if getattr(route, "name", None) == "list_searches":
            route.app = _SearchListFilter(route.app)


class _SearchListFilter:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        service = scope["app"].state.stacube_access
        principal = principal_of(scope)
        view = await service.view(scope)
        if not view.restricts(principal):
            await self.app(scope, receive, send)
            return

        def usable(entry) -> bool:
            cols = _search_collections(((entry or {}).get("search") or {}).get("search"))
            return bool(cols) and all(view.can_read(principal, c) for c in cols)

        def readable(doc: dict) -> dict:
            doc["searches"] = [e for e in doc.get("searches", []) if usable(e)]
            context = doc.get("context") or {}
            context["returned"] = len(doc["searches"])
            context.pop("matched", None)
            return doc

        await rewrite_json_response(self.app, scope, receive, send, readable,
                                    fallback=b'{"searches": [], "links": []}')


def gated_readers(gate_of) -> tuple[type, type]:
    """``(item reader, mosaic dataset reader)``: titiler-pgstac's ``PgSTACReader`` and
    ``SimpleSTACReader`` opening each asset through ``gate_of()`` (the current read gate) - the
    URL they open is the one the gate returns - and reading local assets in the calling thread
    (:class:`LocalReadsInThread`)."""

    class GatedPgSTACReader(LocalReadsInThread, PgSTACReader):
        def _get_reader(self, asset_info):
            asset_info["url"] = gate_of().check(asset_info["url"], self.input.collection_id)
            return super()._get_reader(asset_info)

    class GatedSimpleSTACReader(LocalReadsInThread, SimpleSTACReader):
        def _get_reader(self, asset_info):
            asset_info["url"] = gate_of().check(asset_info["url"], self.input.get("collection"))
            return super()._get_reader(asset_info)

    return GatedPgSTACReader, GatedSimpleSTACReader


def install_raster_access(app, settings) -> AccessService:
    """Authentication (a middleware), the route dependency on every collection and search route,
    and the filtered search list, on the titiler-pgstac ``app`` (call once its routes exist).
    Returns its :class:`AccessService` (the register route takes :func:`search_dependency`)."""
    service = app.state.stacube_access
    dependency = Depends(raster_dependency(app.state.stacube_search_budget))
    for route, path in endpoint_routes(app.router.routes):
        methods = sorted(getattr(route, "methods", None) or ())
        if methods and ("{collection_id}" in path or "{search_id}" in path):
            add_route_dependencies([route], scopes=[{"path": route.path, "method": methods[0]}],
                                   dependencies=[dependency])
    filter_search_list(app)
    app.add_middleware(AuthMiddleware, service=service)
    return service


def raster_access_service(app, settings) -> AccessService:
    """The raster app's :class:`AccessService` and search budget (in ``app.state``)."""
    service = AccessService(settings, PsycopgPoolDb(app))
    app.state.stacube_access = service
    app.state.stacube_search_budget = SearchBudget(settings.anonymous_searches)
    return service
