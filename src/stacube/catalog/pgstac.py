"""Reading and writing the pgSTAC catalog.

All writes go through pgSTAC's own functions or pypgstac's loader, inside one transaction per
call: a batch of items that fails anywhere leaves the catalog as it was. A batch that meets a
transient database error (a dropped connection, a deadlock, a serialization failure) is loaded
again; when that keeps failing the error is :class:`~stacube.errors.DatabaseUnavailable`
(retried later by whoever called), never invalid input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from hydraters import hydrate
from psycopg.types.json import Jsonb

from stacube.catalog.derive import (
    STANDARD_QUERYABLES, property_types, refresh_collection, summary_types,
)
from stacube.core.filters import cql2_json
from stacube.db.connection import borrow, current_session, is_transient, require_pgstac, retrying, unavailable
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
        """A connection with ``search_path=pgstac,public`` (autocommit): the one given, the open
        :func:`~stacube.db.connection.session`'s, or a new one."""
        if self._conn is not None:
            yield self._conn
            return
        shared = current_session(self.settings)
        with borrow(self.settings) as conn:
            if shared is None or not shared.checked_pgstac:
                require_pgstac(conn)
                if shared is not None:
                    shared.checked_pgstac = True
            yield conn

    # -- collections ---------------------------------------------------------------------------
    def upsert_collection(self, doc: dict) -> None:
        """Create or replace a collection (pgSTAC ``upsert_collection``), with typed queryables
        for the properties its summaries describe."""
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT upsert_collection(%s)", (Jsonb(doc),))
            _store_queryables(conn, doc["id"], queryable_changes(conn, doc["id"], [], doc.get("summaries")))

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
        queryables are refined from the items (:mod:`stacube.catalog.derive`).

        Args:
            items: STAC Item documents whose collections exist.
            mode: pypgstac insert mode: ``upsert`` (default; idempotent), ``insert``, ``ignore``.

        Raises:
            InvalidInput: pgSTAC rejected the batch; nothing was written.
            DatabaseUnavailable: the database kept failing transiently (or the load timed out);
                nothing was written.
        """
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        items = list(items)
        counts: dict[str, int] = {}
        for item in items:
            counts[item["collection"]] = counts.get(item["collection"], 0) + 1
        if not items:
            return LoadResult(0, counts)

        def load(method: str) -> None:
            with self.connection() as conn:
                loader = Loader(db=PgstacDB(connection=conn))
                with conn.transaction():
                    batches = _describe_before(conn, items)
                    if method == "upsert" and not _any_exists(conn, items):
                        method = "insert"  # same result; pgSTAC's plain insert skips the staging table
                    loader.load_items(iter(items), insert_mode=Methods(method))
                    _describe_after(conn, batches)

        def attempt() -> None:
            try:
                load(mode)
            except psycopg.errors.UniqueViolation:  # written meanwhile by someone else: upsert after all
                load("upsert")

        try:
            retrying(attempt) if self._conn is None else attempt()
        except psycopg.Error as exc:
            if is_transient(exc) or isinstance(exc, psycopg.errors.QueryCanceled):
                raise unavailable(exc) from exc
            raise InvalidInput(
                f"the catalog rejected the batch, nothing was loaded: {_pg_message(exc)}"
            ) from exc
        return LoadResult(len(items), counts)

    def describe_items(self, items: list[dict]) -> None:
        """Refine the collections of items stored by other means (STAC transactions) from them,
        as :meth:`load_items` does (:mod:`stacube.catalog.derive`)."""
        with self.connection() as conn, conn.transaction():
            _describe_after(conn, _describe_before(conn, items))

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
            DatabaseUnavailable: the connection dropped, or the search timed out.
        """
        body = {k: v for k, v in query.items() if v is not None}
        if isinstance(body.get("filter"), str) or body.get("filter-lang") == "cql2-text":
            body["filter"] = cql2_json(body["filter"])
            body["filter-lang"] = "cql2-json"
        body["limit"] = page_size if max_items is None else min(page_size, max_items)
        # items are hydrated here, as stac-fastapi-pgstac does (``use_api_hydrate``): pgSTAC's
        # PL/pgSQL hydration costs ~10 ms an item, the compiled hydrater a few microseconds
        hydrated = "fields" not in body
        if hydrated:
            body["conf"] = {**body.get("conf", {}), "nohydrate": True}
        yielded = 0
        with self.connection() as conn:
            while True:
                try:
                    row = conn.execute("SELECT search(%s)", (Jsonb(body),)).fetchone()
                except psycopg.Error as exc:
                    if is_transient(exc) or isinstance(exc, psycopg.errors.QueryCanceled):
                        raise unavailable(exc) from exc
                    raise InvalidInput(f"invalid search: {_pg_message(exc)}") from exc
                page = row[0] or {}
                for feature in page.get("features", []):
                    yield hydrate_item(conn, feature) if hydrated else feature
                    yielded += 1
                    if max_items is not None and yielded >= max_items:
                        return
                token = page.get("next")
                if not token:
                    return
                body["token"] = f"next:{token}"


def hydrate_item(conn: psycopg.Connection, item: dict) -> dict:
    """A dehydrated item of pgSTAC's ``search`` (``conf.nohydrate``) made whole with its
    collection's base item (the item's own ``pgstac:base_item``, which pgSTAC >= 0.10 returns,
    else ``collection_base_item``), by the hydrater stac-fastapi-pgstac uses; the same document
    pgSTAC's own hydration gives."""
    base = item.pop("pgstac:base_item", None)
    if not isinstance(base, dict):
        base = conn.execute("SELECT collection_base_item(%s)", (item.get("collection"),)).fetchone()[0] or {}
    return hydrate({k: v for k, v in base.items() if v is not None}, item, strip_unmatched_markers=True)


def _pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    return (primary or str(exc)).strip().splitlines()[0]


def dumps(doc: dict) -> str:
    """Compact JSON."""
    return json.dumps(doc, separators=(",", ":"))


def _by_collection(conn: psycopg.Connection, items: list[dict]) -> dict[str, list[dict]]:
    """The items of each existing collection of the batch, the collections locked (FOR UPDATE)
    until the transaction ends, so concurrent loads refine their documents one after the other."""
    by: dict[str, list[dict]] = {}
    for item in items:
        by.setdefault(item["collection"], []).append(item)
    known = {r[0] for r in conn.execute(
        "SELECT id FROM collections WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sorted(by),))}
    return {cid: batch for cid, batch in sorted(by.items()) if cid in known}  # the loader names others


def _describe_before(conn: psycopg.Connection, items: list[dict]) -> dict[str, list[dict]]:
    """Lock the batch's collections and write their queryables; the batch by collection.

    Queryables go before the load: the partition of a new collection does not exist yet, so
    pgSTAC has no index of it to maintain (~0.15 s a statement otherwise)."""
    _ensure_standard_queryables(conn)
    batches = _by_collection(conn, items)
    for cid, batch in batches.items():
        _store_queryables(conn, cid, queryable_changes(
            conn, cid, batch, (_content(conn, cid) or {}).get("summaries")))
    return batches


def _describe_after(conn: psycopg.Connection, batches: dict[str, list[dict]]) -> None:
    """Refine the collection documents (after the load: they then hold the extents pgSTAC
    computed)."""
    for cid, batch in batches.items():
        refreshed = refresh_collection(_content(conn, cid), batch)
        if refreshed is not None:
            conn.execute("SELECT update_collection(%s)", (Jsonb(refreshed),))


def _content(conn: psycopg.Connection, cid: str) -> dict | None:
    row = conn.execute("SELECT content FROM collections WHERE id = %s", (cid,)).fetchone()
    return row[0] if row else None


#: queryable types registered with pgSTAC: those it reads through a wrapper other than text
#: (numbers compare and sort as numbers, date-times as instants); a property of another type
#: needs no row (pgSTAC reads it as text), and every row makes pgSTAC's partition maintenance
#: slower (it looks each one up when a collection's partition is created)
TYPED = ({"type": "number"}, {"type": "string", "format": "date-time"})


def queryable_changes(conn: psycopg.Connection, cid: str, items: list[dict],
                      summaries: dict | None) -> dict[str, dict | None]:
    """``{name: definition}`` of the per-collection queryables to write for ``cid`` (``None``:
    delete its row): the numeric and date-time properties of ``items`` and of the collection's
    summaries (:data:`TYPED`), widened with what is registered; names another row already covers
    are left alone."""
    rows = conn.execute(
        "SELECT name, collection_ids, definition FROM queryables "
        "WHERE collection_ids IS NULL OR %s = ANY(collection_ids)", (cid,)).fetchall()
    mine = {name: definition for name, ids, definition in rows if ids == [cid]}
    others = {name for name, ids, _ in rows if ids != [cid]}
    wanted = property_types(items, {**summary_types(summaries or {}), **mine})
    out: dict[str, dict | None] = {}
    for name, definition in wanted.items():
        if name in others or mine.get(name) == definition:
            continue
        if definition in TYPED:
            out[name] = definition
        elif name in mine:
            out[name] = None  # widened: pgSTAC's text reading again
    return out


def _ensure_standard_queryables(conn: psycopg.Connection) -> None:
    """The queryables of :data:`STANDARD_QUERYABLES`, for every collection (written once per
    catalog: a row for every collection makes pgSTAC maintain every partition)."""
    rows = conn.execute("SELECT name FROM queryables WHERE collection_ids IS NULL AND name = ANY(%s)",
                        (sorted(STANDARD_QUERYABLES),)).fetchall()
    missing = {k: v for k, v in STANDARD_QUERYABLES.items() if k not in {r[0] for r in rows}}
    if not missing:
        return
    conn.execute("DELETE FROM queryables WHERE name = ANY(%s)", (sorted(missing),))
    conn.execute("INSERT INTO queryables (name, definition) SELECT key, value FROM jsonb_each(%s) ORDER BY key",
                 (Jsonb(missing),))


def _store_queryables(conn: psycopg.Connection, cid: str, queryables: dict[str, dict | None]) -> None:
    """Replace (or delete, for ``None``) the collection's own rows of these queryables, in two
    statements (pgSTAC maintains the partition's indexes once per statement)."""
    if not queryables:
        return
    conn.execute("DELETE FROM queryables WHERE collection_ids = ARRAY[%s] AND name = ANY(%s)",
                 (cid, sorted(queryables)))
    written = {k: v for k, v in queryables.items() if v is not None}
    if written:
        conn.execute("INSERT INTO queryables (name, definition, collection_ids) "
                     "SELECT key, value, ARRAY[%s] FROM jsonb_each(%s) ORDER BY key", (cid, Jsonb(written)))


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
