"""Rendered raster tiles kept in the memory of each raster API process (and low zooms in a store
the processes share), keyed on the catalog's last change of the collections they draw.

A GET of a tile (``/collections/{id}/tiles/...``, ``/searches/{id}/tiles/...``, their
``masked/`` forms, ``/collections/{id}/items/{item}/tiles/...``) is looked up under the key:

* the path (collection, item or search hash, tile matrix set, z/x/y, scale, format);
* the query parameters, sorted by name (repeated ones keep their order: ``assets=B4&assets=B3``
  is not ``assets=B3&assets=B4``), and the ``Accept`` header when the path names no format;
* the version of every collection the tile draws from (``stacube.catalog_changes``: a new value
  whenever one of its items or its document is written, deleted or added; see
  :data:`stacube.db.migrate.CATALOG_CHANGES`); a registered search draws from its
  ``collections``, one without them from the whole catalog. A new item thus changes the key.

Access control comes first: the cache takes the decision the route takes
(:func:`~stacube_services.access.raster.mosaic_access`, made once per request and kept in the
scope, so the route's dependency reuses it); a caller who may not read gets no lookup and goes on
to the route (which answers 404). What a reader may see does not depend on who reads, so one
entry serves every caller allowed to read.

The answer carries ``ETag`` (a hash of the key) and ``X-Tile-Cache: hit|miss``; an
``If-None-Match`` naming the ETag answers 304 without rendering (``Cache-Control`` comes from
:class:`~stacube_services.cache.CacheHeaders`). Only 200 answers are kept, least recently used
dropped first once their bodies exceed ``STACUBE_TILE_CACHE_SIZE`` bytes (an answer larger than
a sixteenth of it is not kept); concurrent misses of one key render once (a waiter whose render kept
nothing renders its own, at once).

With a tile store (``STACUBE_TILE_STORE``, :mod:`stacube.storage.tiles`), tiles of zoom levels up
to ``STACUBE_TILE_STORE_MAX_ZOOM`` missing from memory are looked up there under the same key
(another process rendered them, or ``stacube tiles seed``; served as ``hit``, and kept in memory),
and a tile rendered here is written there after its answer is sent. The store is read only
after the access decision, like the memory. A store that fails is left alone for
:data:`OFF_AFTER_ERROR` seconds (the tiles are rendered, one warning logged).

Errors of the lookups: a database outage (:data:`UNAVAILABLE`: connection refused or ended, the
pool's wait for a connection over, an administrator's shutdown - psycopg's ``OperationalError``
family) answers the route's 503 ``DatabaseUnavailable`` at once, as the route would after the
same wait, instead of waiting a second time in the route. Any other error of the version lookup
(a catalog without ``stacube.catalog_changes``, a role not granted it) renders the tile uncached,
and the cache stays off for :data:`OFF_AFTER_ERROR` seconds (no failing query per tile).

The versions also reach titiler-pgstac's mosaic backend (:class:`VersionedBackend`), whose
asset lists per tile are otherwise cached for 5 minutes whatever is added.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
from contextvars import ContextVar
from urllib.parse import parse_qsl

import anyio
from cachetools import LRUCache, TTLCache
from cachetools.keys import hashkey
from titiler.pgstac.backend import PGSTACBackend

from stacube.errors import DatabaseUnavailable, StacubeError, StorageError
from stacube.storage.tiles import TileStore
from stacube_services.access.raster import known_search_collections, mosaic_access
from stacube_services.access.service import DB_ERRORS, unavailable
from stacube_services.cache import etag_matches
from stacube_services.errors import stacube_error_response

log = logging.getLogger(__name__)

#: database errors that mean the catalog cannot be reached now (connection refused or ended, the
#: pool's wait over, an administrator's shutdown: psycopg's ``OperationalError`` family, and the
#: socket errors under it): the request answers 503 at once
UNAVAILABLE: tuple[type[BaseException], ...] = (OSError,)
try:
    import psycopg as _psycopg

    UNAVAILABLE += (_psycopg.OperationalError,)  # psycopg_pool.PoolTimeout, errors.AdminShutdown
except ImportError:  # pragma: no cover
    pass
#: seconds the cache stays off after a version lookup failed for another reason than an outage
OFF_AFTER_ERROR = 30.0

#: a tile route: ``collections/{id}[/items/{item}]`` or ``searches/{id}``, then ``[masked/]...tiles/``
TILE_ROUTE = re.compile(r"^/(?:collections/(?P<collection>[^/]+)(?:/items/[^/]+)?|searches/(?P<search>[^/]+))"
                        r"/(?:masked/)?(?:[^/]+/)?tiles/[^/]+/(?P<z>\d+)/\d+/[^/]+$")
#: the catalog version of the request being rendered (read by :class:`VersionedBackend`)
CATALOG_VERSION: ContextVar[str | None] = ContextVar("stacube_catalog_version", default=None)
#: headers of a rendered answer that are not kept with it (of that one answer only)
DROPPED_HEADERS = {b"date", b"server", b"set-cookie", b"etag", b"x-tile-cache", b"connection", b"transfer-encoding"}


class TileCache:
    """ASGI middleware of the raster API (inside authentication: the principal is known).

    Args:
        app: the ASGI app.
        size: bytes of tile bodies kept in memory (0: none).
        store: the tile store shared by the processes (None: none); with ``size`` 0 and no
            store, everything passes through.
        store_max_zoom: highest zoom level (tile matrix) of the tiles looked up in and written
            to ``store``.
    """

    def __init__(self, app, *, size: int, store: TileStore | None = None, store_max_zoom: int = 8):
        self.app = app
        self.size = int(size)
        self.store = store
        self.store_max_zoom = int(store_max_zoom)
        self.tiles: LRUCache = LRUCache(maxsize=max(self.size, 1), getsizeof=lambda entry: len(entry[1]) + 256)
        self.pending: dict[str, asyncio.Event] = {}
        self.off_until = 0.0  # monotonic time until which versions are not looked up
        self.store_off_until = 0.0  # monotonic time until which the store is not used

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope["method"] != "GET" or (self.size <= 0 and self.store is None)
                or time.monotonic() < self.off_until):
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path") or ""
        path = scope.get("path") or "/"
        path = path[len(root):] if root and path.startswith(root) else path
        route = TILE_ROUTE.match(path)
        service = getattr(scope["app"].state, "stacube_access", None) if route else None
        if route is None or service is None or (self.size <= 0 and not self._in_store_zooms(int(route["z"]))):
            await self.app(scope, receive, send)
            return
        try:
            version = await self._readable_version(service, scope, route["collection"], route["search"])
        except (*DB_ERRORS, StacubeError) as exc:
            if is_outage(exc):  # what the route would answer, without waiting for the pool again
                await stacube_error_response(exc if isinstance(exc, StacubeError) else unavailable(exc))(
                    scope, receive, send)
                return
            version = None  # the route decides (and answers its own error)
        if version is None:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        key = tile_key(path, scope.get("query_string", b""), headers.get(b"accept", b""), version)
        etag = '"' + key + '"'
        if etag_matches(headers.get(b"if-none-match", b"").decode("latin-1"), etag):
            await send({"type": "http.response.start", "status": 304,
                        "headers": [(b"etag", etag.encode()), (b"x-tile-cache", b"hit")]})
            await send({"type": "http.response.body", "body": b""})
            return
        rendering = self.pending.get(key)
        if rendering is not None:  # the same tile is being rendered: wait for it, once
            await rendering.wait()
        entry = self.tiles.get(key)
        z = int(route["z"])
        stored = self._stores(z)
        if entry is None and rendering is not None and stored:  # memory off or the tile too large
            entry = await self._stored(key, z)
        if entry is not None:
            await _send_entry(send, entry, etag, b"hit")
            return
        if rendering is not None:  # it kept nothing (an error, a large answer): no queue behind it
            await self._render(scope, receive, send, None, etag, version)
            return
        self.pending[key] = event = asyncio.Event()
        try:
            entry = await self._stored(key, z) if stored else None
            if entry is not None:  # rendered by another process (or seeded)
                self._keep(key, entry)
                await _send_entry(send, entry, etag, b"hit")
                return
            await self._render(scope, receive, send, key, etag, version, z if stored else None)
        finally:
            del self.pending[key]
            event.set()

    def _in_store_zooms(self, z: int) -> bool:
        """Whether tiles of zoom ``z`` are kept in the store (when it works)."""
        return self.store is not None and z <= self.store_max_zoom

    def _stores(self, z: int) -> bool:
        """Whether tiles of zoom ``z`` go through the store now."""
        return self._in_store_zooms(z) and time.monotonic() >= self.store_off_until

    def _keep(self, key: str, entry: tuple[list, bytes]) -> None:
        """Keep an entry in this process's memory (when it is small enough)."""
        if self.size > 0 and len(entry[1]) * 16 <= self.size:
            self.tiles[key] = entry

    async def _stored(self, key: str, z: int) -> tuple[list, bytes] | None:
        """The store's entry of ``key`` (None: none, or the store failed: then it is left alone
        for :data:`OFF_AFTER_ERROR` seconds and tiles are rendered)."""
        try:
            return await anyio.to_thread.run_sync(self.store.get, key, z)
        except StorageError as exc:
            self._store_failed(exc)
            return None

    async def _store_put(self, key: str, z: int, entry: tuple[list, bytes]) -> None:
        try:
            await anyio.to_thread.run_sync(self.store.put, key, z, *entry)
        except StorageError as exc:
            self._store_failed(exc)

    def _store_failed(self, exc: StorageError) -> None:
        self.store_off_until = time.monotonic() + OFF_AFTER_ERROR
        log.warning("tile store off for %.0f s: %s", OFF_AFTER_ERROR, exc.message)

    async def _readable_version(self, service, scope, collection: str | None, search: str | None) -> str | None:
        """The version of the tile's collections, or None when the caller may not read them, the
        search is unknown or the versions cannot be read (then the route answers).

        Raises:
            DatabaseUnavailable / psycopg.Error: from the access decision or the version lookup,
                when :func:`is_outage`.
        """
        # the access rows and the versions in one statement (the route reuses the rows): a tile
        # takes no more connections of the pool than without the cache
        wanted = (collection,) if collection is not None else (known_search_collections(search) or None)
        try:
            versions = await service.view_and_versions(scope, wanted)
        except (*DB_ERRORS, StacubeError) as exc:
            if is_outage(exc):
                raise
            self.off_until = time.monotonic() + OFF_AFTER_ERROR
            log.warning("tile cache off for %.0f s: the catalog versions cannot be read (%s: %s)",
                        OFF_AFTER_ERROR, type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            return None
        access = await mosaic_access(service, scope, collection=collection, search=search)
        if not access.readable or access.collections is None:
            return None
        drawn = sorted(access.collections) if access.collections else sorted(versions)  # none named: all
        return ("c:" if collection is not None else "s:") + catalog_version(versions, drawn)

    async def _render(self, scope, receive, send, key: str | None, etag: str, version: str,
                      store_z: int | None = None) -> None:
        """The route's answer, with ``etag``; a 200 is kept under ``key`` (None: not kept), and
        written to the store after it is sent when ``store_z`` (its zoom) is given."""
        start: dict | None = None
        chunks: list[bytes] = []
        kept: tuple[list, bytes] | None = None

        async def capture(message):
            nonlocal start, kept
            if message["type"] == "http.response.start":
                start = message
                if message["status"] == 200:
                    message = {**message, "headers": [*(message.get("headers") or []),
                                                      (b"etag", etag.encode()), (b"x-tile-cache", b"miss")]}
            elif message["type"] == "http.response.body" and start is not None and start["status"] == 200:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and key is not None:
                    kept = ([(k, v) for k, v in start.get("headers") or [] if k.lower() not in DROPPED_HEADERS],
                            b"".join(chunks))
                    self._keep(key, kept)
            await send(message)

        token = CATALOG_VERSION.set(version)
        try:
            await self.app(scope, receive, capture)
        finally:
            CATALOG_VERSION.reset(token)
        if kept is not None and store_z is not None:  # the answer is sent: the store may take its time
            await self._store_put(key, store_z, kept)


def is_outage(exc: BaseException) -> bool:
    """Whether a database error (or the :class:`DatabaseUnavailable` made of one) means the
    catalog cannot be reached now (:data:`UNAVAILABLE`), not a missing table or grant."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, UNAVAILABLE):
            return True
        seen = seen.__cause__
    return isinstance(exc, DatabaseUnavailable) and exc.__cause__ is None  # the pool is not open


def catalog_version(versions: dict[str, int], collections: list[str]) -> str:
    """The version of the catalog for ``collections`` (sorted): ``id:version`` of each that has
    one, comma-separated (empty when none has)."""
    return ",".join(f"{c}:{versions[c]}" for c in collections if c in versions)


def tile_key(path: str, query_string: bytes, accept: bytes, version: str) -> str:
    """The cache key (hex) of a tile request (see the module docstring)."""
    query = sorted(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True), key=lambda kv: kv[0])
    named_format = "." in path.rsplit("/", 1)[-1]
    parts = [path, "&".join(f"{k}={v}" for k, v in query), "" if named_format else accept.decode("latin-1"), version]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


async def _send_entry(send, entry, etag: str, state: bytes) -> None:
    headers, body = entry
    await send({"type": "http.response.start", "status": 200,
                "headers": [*headers, (b"etag", etag.encode()), (b"x-tile-cache", state)]})
    await send({"type": "http.response.body", "body": body})


class VersionedBackend(PGSTACBackend):
    """titiler-pgstac's mosaic backend whose asset lists per tile are cached per catalog version
    (:data:`CATALOG_VERSION`, set by :class:`TileCache`) instead of for 5 minutes; without a
    version (the tile cache off), titiler-pgstac's own cache."""

    _assets: TTLCache = TTLCache(maxsize=512, ttl=300)
    _lock = threading.Lock()

    def get_assets(self, geom, **kwargs):
        version = CATALOG_VERSION.get()
        if version is None:
            return super().get_assets(geom, **kwargs)
        key = hashkey(str(self.input), str(geom), version, **kwargs)
        with self._lock:
            found = self._assets.get(key)
        if found is None:
            found = PGSTACBackend.get_assets.__wrapped__(self, geom, **kwargs)
            with self._lock:
                self._assets[key] = found
        return found

