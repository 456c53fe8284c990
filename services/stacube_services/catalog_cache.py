"""Collection documents and registered searches, read through the raster API's pool with a TTL
cache (the index and masked-mosaic routes look them up on every request)."""

from __future__ import annotations

import time
from threading import Lock

from fastapi import FastAPI

from stacube.errors import InvalidInput, NotFound


class CollectionCache:
    """Collection documents and registered searches, read through the app's pool (TTL cache)."""

    def __init__(self, app: FastAPI, ttl: float = 30.0):
        self.app = app
        self.ttl = ttl
        self._data: dict[tuple, tuple[float, object]] = {}
        self._lock = Lock()

    def _get(self, key: tuple, sql: str, args: tuple):
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        with self.app.state.dbpool.connection() as conn:
            row = conn.execute(sql, args).fetchone()
        value = row[0] if row else None
        with self._lock:
            self._data[key] = (now, value)
        return value

    def collection(self, collection_id: str) -> dict:
        doc = self._get(("c", collection_id), "SELECT content FROM pgstac.collections WHERE id=%s", (collection_id,))
        if doc is None:
            raise NotFound(f"unknown collection {collection_id!r}")
        return doc

    def search_collections(self, search_id: str) -> list[str]:
        search = self._get(("s", search_id), "SELECT search FROM pgstac.searches WHERE hash=%s", (search_id,))
        if search is None:
            raise NotFound(f"unknown search {search_id!r}")
        collections = search.get("collections") or []
        if not collections:
            raise InvalidInput("index= needs a search restricted to collections (\"collections\": [...])")
        return collections
