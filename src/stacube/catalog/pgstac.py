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
from psycopg.types.json import Jsonb

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
        """Create or replace a collection (pgSTAC ``upsert_collection``)."""
        with self.connection() as conn:
            conn.execute("SELECT upsert_collection(%s)", (Jsonb(doc),))

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
                    if method == "upsert" and not _any_exists(conn, items):
                        method = "insert"  # same result; pgSTAC's plain insert skips the staging table
                    loader.load_items(iter(items), insert_mode=Methods(method))

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
                    yield feature
                    yielded += 1
                    if max_items is not None and yielded >= max_items:
                        return
                token = page.get("next")
                if not token:
                    return
                body["token"] = f"next:{token}"


def cql2_json(text) -> dict:
    """A CQL2-text filter as CQL2-JSON (pgSTAC evaluates CQL2-JSON).

    Raises:
        InvalidInput: the filter does not parse.
    """
    import cql2

    if isinstance(text, dict):
        return text
    try:
        return cql2.Expr(str(text)).to_json()
    except Exception as exc:  # cql2 raises its own ValueError subclasses
        raise InvalidInput(f"invalid CQL2 filter {text!r}: {str(exc).splitlines()[0]}") from exc


def _pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    return (primary or str(exc)).strip().splitlines()[0]


def dumps(doc: dict) -> str:
    """Compact JSON."""
    return json.dumps(doc, separators=(",", ":"))


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
