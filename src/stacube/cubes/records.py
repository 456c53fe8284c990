"""Cube records and fill bookkeeping, kept in the catalog database (schema ``stacube``).

``stacube.cubes`` holds each cube's definition; ``stacube.cube_chunks`` one row per fill unit
(a tile of whole chunks times one time chunk, see :mod:`stacube.cubes.definition`) that was
claimed: ``running`` (``worker``: the process computing it; heartbeat ``updated``), ``done`` (its chunks are in the store) or
``failed``. A unit is claimed with one ``INSERT ... ON CONFLICT`` so two processes asking for
the same region never compute the same unit twice; a ``running`` unit older than
:data:`STALE_SECONDS` (its process died) may be claimed again.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from contextlib import contextmanager

from psycopg.types.json import Jsonb

from stacube.db.connection import DatabaseStore, connect
from stacube.errors import Conflict, NotFound

TABLES = """
CREATE SCHEMA IF NOT EXISTS stacube;
CREATE TABLE IF NOT EXISTS stacube.cubes (
    name text PRIMARY KEY,
    definition jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS stacube.cube_chunks (
    cube text NOT NULL REFERENCES stacube.cubes (name) ON DELETE CASCADE,
    tile_y integer NOT NULL,
    tile_x integer NOT NULL,
    time_block integer NOT NULL,
    state text NOT NULL DEFAULT 'running',
    worker text,
    items integer,
    error text,
    updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cube, tile_y, tile_x, time_block)
);
-- catalogs made before: the claiming process was recorded as "owner"
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'stacube'
               AND table_name = 'cube_chunks' AND column_name = 'owner') THEN
        ALTER TABLE stacube.cube_chunks RENAME COLUMN owner TO worker;
    END IF;
END $$;
"""
STALE_SECONDS = 900
Unit = tuple[int, int, int]
_READY: set[str] = set()


def worker_id() -> str:
    """This process, as recorded in ``worker`` (``host:pid:random``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class CubeRecords(DatabaseStore):
    """Reads and writes cube records and fill units; every call is retried on transient
    database errors.

    Reads of a cube check its definition and fill state on every request, and a new connection
    costs more than the read itself: outside a :func:`~stacube.db.connection.session` the calls
    share one connection per thread, kept open between them
    (:attr:`~stacube.db.connection.DatabaseStore.keep_connection`).

    Args:
        settings: the catalog database.
    """

    keep_connection = True

    def run(self, call):
        """``call(conn)`` as :meth:`DatabaseStore.run`, the tables created first in a database
        migrated before cubes existed (once per database and process)."""

        def ready(conn):
            dsn = self.settings.dsn()
            if dsn not in _READY:
                conn.execute(TABLES)
                _READY.add(dsn)
            return call(conn)

        return super().run(ready)

    # -- cubes ------------------------------------------------------------------------------
    def create(self, name: str, definition: dict, *, replace: bool = False) -> None:
        """Record a cube.

        Raises:
            Conflict: a cube of that name exists and ``replace`` is False.
        """

        def call(conn):
            with conn.transaction():
                exists = conn.execute("SELECT 1 FROM stacube.cubes WHERE name = %s FOR UPDATE", (name,)).fetchone()
                if exists and not replace:
                    raise Conflict(f"cube {name!r} exists; open it, or delete it first (stacube cube delete {name})")
                if exists:
                    conn.execute("DELETE FROM stacube.cube_chunks WHERE cube = %s", (name,))
                    conn.execute("UPDATE stacube.cubes SET definition = %s, updated = now() WHERE name = %s",
                                 (Jsonb(definition), name))
                else:
                    conn.execute("INSERT INTO stacube.cubes (name, definition) VALUES (%s, %s)",
                                 (name, Jsonb(definition)))

        self.run(call)

    def get(self, name: str) -> dict:
        """The cube's definition document.

        Raises:
            NotFound: no such cube.
        """
        row = self.run(lambda conn: conn.execute(
            "SELECT definition FROM stacube.cubes WHERE name = %s", (name,)).fetchone())
        if row is None:
            raise NotFound(f"unknown cube {name!r}")
        return row["definition"]

    def list(self) -> list[dict]:
        """``{name, definition, created, filled, units_done}`` of every cube, by name."""
        return self.run(lambda conn: conn.execute(
            "SELECT c.name, c.definition, c.created, "
            "(SELECT count(*) FROM stacube.cube_chunks u WHERE u.cube = c.name AND u.state = 'done') AS units_done "
            "FROM stacube.cubes c ORDER BY c.name").fetchall())

    def delete(self, name: str) -> dict:
        """Forget a cube; returns its definition.

        Raises:
            NotFound: no such cube.
        """
        definition = self.get(name)
        self.run(lambda conn: conn.execute("DELETE FROM stacube.cubes WHERE name = %s", (name,)))
        return definition

    # -- fill units -------------------------------------------------------------------------
    def states(self, name: str, units: Iterable[Unit] | None = None) -> dict[Unit, str]:
        """``{unit: state}`` of the recorded units (all, or those among ``units``)."""
        rows = self.run(lambda conn: conn.execute(
            "SELECT tile_y, tile_x, time_block, state, "
            "extract(epoch FROM now() - updated) AS age FROM stacube.cube_chunks WHERE cube = %s",
            (name,)).fetchall())
        wanted = None if units is None else set(units)
        out = {}
        for r in rows:
            unit = (r["tile_y"], r["tile_x"], r["time_block"])
            if wanted is None or unit in wanted:
                stale = r["state"] == "running" and r["age"] > STALE_SECONDS
                out[unit] = "stale" if stale else r["state"]
        return out

    def claim(self, name: str, units: Iterable[Unit], worker: str) -> list[Unit]:
        """Claim units for ``worker``: new ones, failed ones and stale running ones.

        Returns:
            The units claimed (the others are done, or being filled by someone else).
        """
        units = list(units)
        if not units:
            return []

        def call(conn):
            claimed: list[Unit] = []
            with conn.transaction():
                for iy, ix, tb in units:
                    row = conn.execute(
                        "INSERT INTO stacube.cube_chunks AS u (cube, tile_y, tile_x, time_block, state, worker) "
                        "VALUES (%s, %s, %s, %s, 'running', %s) "
                        "ON CONFLICT (cube, tile_y, tile_x, time_block) DO UPDATE "
                        "SET state = 'running', worker = EXCLUDED.worker, error = NULL, updated = now() "
                        "WHERE u.state = 'failed' OR (u.state = 'running' "
                        "AND u.updated < now() - make_interval(secs => %s)) "
                        "RETURNING tile_y, tile_x, time_block",
                        (name, iy, ix, tb, worker, STALE_SECONDS)).fetchone()
                    if row:
                        claimed.append((row["tile_y"], row["tile_x"], row["time_block"]))
            return claimed

        return self.run(call)

    def finish(self, name: str, unit: Unit, *, items: int | None = None, error: str | None = None) -> None:
        """Record a unit's outcome (``done`` unless ``error``)."""
        self.run(lambda conn: conn.execute(
            "UPDATE stacube.cube_chunks SET state = %s, items = %s, error = %s, updated = now() "
            "WHERE cube = %s AND tile_y = %s AND tile_x = %s AND time_block = %s",
            ("failed" if error else "done", items, error, name, *unit)))

    def release(self, name: str, units: Iterable[Unit], worker: str) -> None:
        """Drop this worker's claims that never ran (an interrupted fill)."""
        units = list(units)

        def call(conn):
            for unit in units:
                conn.execute(
                    "DELETE FROM stacube.cube_chunks WHERE cube = %s AND tile_y = %s AND tile_x = %s "
                    "AND time_block = %s AND worker = %s AND state = 'running'", (name, *unit, worker))

        self.run(call)

    @contextmanager
    def lock(self, name: str):
        """A session-level advisory lock on the cube (pyramid updates of one cube run one at a
        time), held on a connection of its own for the block: a shared connection may be
        replaced after an error, which would end the lock while its block still runs.

        Raises:
            DatabaseUnavailable: no connection could be opened.
        """
        conn = connect(self.settings, autocommit=True)
        try:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"stacube.cube:{name}",))
            yield
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"stacube.cube:{name}",))
            finally:
                conn.close()
