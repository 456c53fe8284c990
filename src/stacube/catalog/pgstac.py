"""Reading and writing the pgSTAC catalog.

All writes go through pgSTAC's own functions or pypgstac's loader, inside one transaction per
call: a batch of items that fails anywhere leaves the catalog as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from stacube.catalog.describe import property_types, refresh_collection, summary_types
from stacube.core.filters import cql2_json
from stacube.db.connection import connect, require_pgstac
from stacube.errors import InvalidInput, NotFound
from stacube.settings import Settings


@dataclass
class LoadResult:
    """Outcome of an item load."""

    items: int
    collections: dict[str, int]


class Catalog:
    """The pgSTAC catalog behind stacube.

    Args:
        settings: database location.
        conn: an open connection to reuse (its transactions are the caller's business).
    """

    def __init__(self, settings: Settings, conn: psycopg.Connection | None = None):
        self.settings = settings
        self._conn = conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection with ``search_path=pgstac,public`` (autocommit)."""
        if self._conn is not None:
            yield self._conn
            return
        conn = connect(self.settings, autocommit=True)
        try:
            require_pgstac(conn)
            yield conn
        finally:
            conn.close()

    # -- collections ---------------------------------------------------------------------------
    def upsert_collection(self, doc: dict) -> None:
        """Create or replace a collection (pgSTAC ``upsert_collection``), with typed queryables
        for the properties its summaries describe."""
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT upsert_collection(%s)", (Jsonb(doc),))
            _store_descriptions(conn, [(doc["id"], None,
                                        queryable_changes(conn, doc["id"], [], doc.get("summaries")))])

    def get_collection(self, collection_id: str) -> dict:
        """The collection document.

        Raises:
            NotFound: no such collection.
        """
        with self.connection() as conn:
            row = conn.execute("SELECT content FROM collections WHERE id = %s", (collection_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown collection {collection_id!r}")
        return row[0]

    def collections(self) -> list[dict]:
        """Every collection document, by id."""
        with self.connection() as conn:
            return [r[0] for r in conn.execute("SELECT content FROM collections ORDER BY id")]

    def collection_ids(self) -> set[str]:
        with self.connection() as conn:
            return {r[0] for r in conn.execute("SELECT id FROM collections")}

    def item_counts(self) -> dict[str, int]:
        """``{collection id: number of items}``."""
        with self.connection() as conn:
            rows = conn.execute("SELECT collection, count(*) FROM items GROUP BY collection")
            return {c: n for c, n in rows}

    def delete_collection(self, collection_id: str) -> None:
        """Delete a collection and its items.

        Raises:
            NotFound: no such collection.
        """
        self.get_collection(collection_id)
        with self.connection() as conn:
            conn.execute("SELECT delete_collection(%s)", (collection_id,))

    # -- items ----------------------------------------------------------------------------------
    def load_items(self, items: Iterable[dict], *, mode: str = "upsert") -> LoadResult:
        """Load already-validated items in one transaction with pypgstac's loader.

        In the same transaction, each collection's ``item_assets``, ``summaries`` and typed
        queryables are refined from the items (:mod:`stacube.catalog.describe`).

        Args:
            items: STAC Item documents whose collections exist.
            mode: pypgstac insert mode: ``upsert`` (default; idempotent), ``insert``, ``ignore``.

        Raises:
            InvalidInput: pgSTAC rejected the batch; nothing was written.
        """
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        items = list(items)
        counts: dict[str, int] = {}
        for item in items:
            counts[item["collection"]] = counts.get(item["collection"], 0) + 1
        if not items:
            return LoadResult(0, counts)
        with self.connection() as conn:
            db = PgstacDB(connection=conn)
            loader = Loader(db=db)
            try:
                with conn.transaction():
                    if mode == "upsert" and not _any_exists(conn, items):
                        mode = "insert"  # same result; pgSTAC's plain insert skips the staging table
                    loader.load_items(iter(items), insert_mode=Methods(mode))
                    # after the load: the documents then hold the extents pgSTAC computed
                    _store_descriptions(conn, _describe(conn, items))
            except psycopg.errors.UniqueViolation:  # written meanwhile by someone else: upsert after all
                return self.load_items(items, mode="upsert")
            except psycopg.Error as exc:
                raise InvalidInput(
                    f"the catalog rejected the batch, nothing was loaded: {_pg_message(exc)}"
                ) from exc
        return LoadResult(len(items), counts)

    def get_item(self, collection_id: str, item_id: str) -> dict:
        """One item, hydrated.

        Raises:
            NotFound: no such item.
        """
        with self.connection() as conn:
            row = conn.execute("SELECT get_item(%s, %s)", (item_id, collection_id)).fetchone()
        if row is None or row[0] is None:
            raise NotFound(f"unknown item {item_id!r} in collection {collection_id!r}")
        return row[0]

    def delete_items(self, collection_id: str, item_ids: Iterable[str]) -> int:
        """Delete items by id; returns how many existed."""
        ids = list(item_ids)
        with self.connection() as conn:
            cur = conn.execute(
                "DELETE FROM items WHERE collection = %s AND id = ANY(%s)", (collection_id, ids)
            )
            return cur.rowcount

    def search(self, query: dict, *, page_size: int = 1000, max_items: int | None = None) -> Iterator[dict]:
        """Items matching a STAC API search body (``collections``, ``bbox``, ``datetime``,
        ``intersects``, ``ids``, ``filter``, ``sortby``...), following pgSTAC paging tokens.

        Raises:
            InvalidInput: pgSTAC rejected the query (bad CQL2, bad datetime...).
        """
        body = {k: v for k, v in query.items() if v is not None}
        if isinstance(body.get("filter"), str) or body.get("filter-lang") == "cql2-text":
            body["filter"] = cql2_json(body["filter"])
            body["filter-lang"] = "cql2-json"
        body["limit"] = page_size if max_items is None else min(page_size, max_items)
        yielded = 0
        with self.connection() as conn:
            while True:
                try:
                    row = conn.execute("SELECT search(%s)", (Jsonb(body),)).fetchone()
                except psycopg.Error as exc:
                    raise InvalidInput(f"invalid search: {_pg_message(exc)}") from exc
                page = row[0] or {}
                for feature in page.get("features", []):
                    yield feature
                    yielded += 1
                    if max_items is not None and yielded >= max_items:
                        return
                token = page.get("next")
                if not token:
                    return
                body["token"] = f"next:{token}"


def _pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    return (primary or str(exc)).strip().splitlines()[0]


def dumps(doc: dict) -> str:
    """Compact JSON."""
    return json.dumps(doc, separators=(",", ":"))


def _describe(conn: psycopg.Connection, items: list[dict]) -> list[tuple[str, dict | None, dict]]:
    """Per collection of the batch (locked until the transaction ends): the refreshed document
    (None: unchanged) and the queryables to write."""
    by_collection: dict[str, list[dict]] = {}
    for item in items:
        by_collection.setdefault(item["collection"], []).append(item)
    out = []
    for cid in sorted(by_collection):
        row = conn.execute("SELECT content FROM collections WHERE id = %s FOR UPDATE", (cid,)).fetchone()
        if row is None:
            continue  # the loader names the missing collection
        refreshed = refresh_collection(row[0], by_collection[cid])
        out.append((cid, refreshed, queryable_changes(conn, cid, by_collection[cid],
                                                      (refreshed or row[0]).get("summaries"))))
    return out


def queryable_changes(conn: psycopg.Connection, cid: str, items: list[dict],
                      summaries: dict | None) -> dict[str, dict]:
    """``{name: definition}`` of the per-collection queryables to (re)write for ``cid``: the
    properties of ``items`` and of the collection's summaries, typed, widened with what is
    registered; names pgSTAC or another row already covers for every collection are left alone."""
    rows = conn.execute(
        "SELECT name, collection_ids, definition FROM queryables "
        "WHERE collection_ids IS NULL OR %s = ANY(collection_ids)", (cid,)).fetchall()
    mine = {name: definition for name, ids, definition in rows if ids == [cid]}
    others = {name for name, ids, _ in rows if ids != [cid]}
    wanted = property_types(items, {**summary_types(summaries or {}), **mine})
    return {name: definition for name, definition in wanted.items()
            if name not in others and mine.get(name) != definition}


def _store_descriptions(conn: psycopg.Connection, described) -> None:
    for cid, doc, queryables in described:
        if doc is not None:
            conn.execute("SELECT update_collection(%s)", (Jsonb(doc),))
        for name, definition in sorted(queryables.items()):
            conn.execute("SELECT upsert_queryable(%s, %s, NULL, NULL, ARRAY[%s])",
                         (name, Jsonb(definition), cid))


def _any_exists(conn: psycopg.Connection, items: list[dict]) -> bool:
    """Whether any of ``items`` (by collection and id) is already in the catalog."""
    ids: dict[str, list[str]] = {}
    for item in items:
        ids.setdefault(item["collection"], []).append(item["id"])
    for collection, members in ids.items():
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM items WHERE collection = %s AND id = ANY(%s))",
                           (collection, members)).fetchone()
        if row[0]:
            return True
    return False
