"""Job and tile state, kept in the catalog database (schema ``stacube``).

A job moves ``queued -> running -> completed | failed | cancelled``; while running it goes
through the stages of :mod:`stacube.jobs.stages`. Each stage's tiles have their own rows, so an
interrupted job resumes where it stopped, and a worker that finishes the last tile of a stage
can tell (``advance_stage`` lets exactly one caller move the job on).

``workspace`` is a label the caller records with a job (the HTTP API lists a workspace's jobs
by it); the engine does not interpret it. The tables are :data:`TABLES`, which ``stacube db
migrate`` creates (entry point ``stacube.tables``).
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg.types.json import Jsonb

from stacube.db.connection import DatabaseStore
from stacube.errors import NotFound

TABLES = """
CREATE SCHEMA IF NOT EXISTS stacube;
CREATE TABLE IF NOT EXISTS stacube.jobs (
    id text PRIMARY KEY,
    kind text NOT NULL DEFAULT 'composite',
    parameters jsonb NOT NULL,
    state text NOT NULL DEFAULT 'queued',
    stage text,
    plan jsonb,
    selection jsonb,
    report jsonb,
    error text,
    workspace text,
    tiles_total integer NOT NULL DEFAULT 0,
    tiles_done integer NOT NULL DEFAULT 0,
    tiles_failed integer NOT NULL DEFAULT 0,
    run integer NOT NULL DEFAULT 1,
    created timestamptz NOT NULL DEFAULT now(),
    started timestamptz,
    finished timestamptz,
    updated timestamptz NOT NULL DEFAULT now()
);
-- catalogs made before jobs had workspaces recorded them as "owner"
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'stacube'
               AND table_name = 'jobs' AND column_name = 'owner') THEN
        ALTER TABLE stacube.jobs RENAME COLUMN owner TO workspace;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS jobs_created_idx ON stacube.jobs (created DESC);
CREATE TABLE IF NOT EXISTS stacube.job_tiles (
    job_id text NOT NULL REFERENCES stacube.jobs (id) ON DELETE CASCADE,
    stage text NOT NULL,
    tile text NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    result jsonb,
    error text,
    updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, stage, tile)
);
"""

ACTIVE = ("queued", "running")
#: ``JobStore.list(workspace=...)`` default: jobs of every workspace.
ANY_WORKSPACE = object()
SUMMARY_COLUMNS = ("id, kind, parameters, state, stage, error, workspace, tiles_total, tiles_done, "
                   "tiles_failed, run, created, started, finished, updated")


def tile_key(tile: tuple[int, int]) -> str:
    return f"{tile[0]}_{tile[1]}"


def tile_index(key: str) -> tuple[int, int]:
    row, col = key.split("_")
    return int(row), int(col)


class JobStore(DatabaseStore):
    """Reads and writes job state.

    Args:
        settings: the catalog database.
    """


    # -- jobs ------------------------------------------------------------------------------
    def submit(self, job_id: str, parameters: dict, *, kind: str = "composite",
               workspace: str | None = None) -> tuple[dict, bool]:
        """Record a job, or start it afresh if it already ended.

        Returns:
            ``(job, created)``: ``created`` is False when the same job is already queued or
            running (submitting twice does not run it twice).
        """
        with self._conn() as conn, conn.transaction():
            row = conn.execute("SELECT state FROM stacube.jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
            if row and row["state"] in ACTIVE:
                return self.get(job_id, conn=conn), False
            if row:
                conn.execute("DELETE FROM stacube.job_tiles WHERE job_id = %s", (job_id,))
                conn.execute(
                    "UPDATE stacube.jobs SET parameters = %s, state = 'queued', stage = NULL, plan = NULL, "
                    "selection = NULL, report = NULL, error = NULL, tiles_total = 0, tiles_done = 0, "
                    "tiles_failed = 0, run = run + 1, created = now(), started = NULL, finished = NULL, "
                    "updated = now(), workspace = %s WHERE id = %s",
                    (Jsonb(parameters), workspace, job_id),
                )
            else:
                conn.execute(
                    "INSERT INTO stacube.jobs (id, kind, parameters, workspace) VALUES (%s, %s, %s, %s)",
                    (job_id, kind, Jsonb(parameters), workspace),
                )
            return self.get(job_id, conn=conn), True

    def get(self, job_id: str, *, conn=None, full: bool = True) -> dict:
        """One job (with plan, selection and report when ``full``).

        Raises:
            NotFound: no such job.
        """
        columns = "*" if full else SUMMARY_COLUMNS
        if conn is None:
            with self._conn() as c:
                return self.get(job_id, conn=c, full=full)
        row = conn.execute(f"SELECT {columns} FROM stacube.jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown job {job_id!r}")
        return row

    def list(self, *, state: str | None = None, limit: int = 50, offset: int = 0,
             workspace: object = ANY_WORKSPACE) -> list[dict]:
        """Job summaries, newest first (only ``workspace``'s when given; None: jobs without one)."""
        with self._conn() as conn:
            clauses, args = (["state = %s"], [state]) if state else ([], [])
            if workspace is not ANY_WORKSPACE:
                clauses.append("workspace IS NOT DISTINCT FROM %s")
                args.append(workspace)
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            return conn.execute(
                f"SELECT {SUMMARY_COLUMNS}, report->'throughput' AS throughput, "
                f"report->>'collection' AS collection FROM stacube.jobs {where} "
                "ORDER BY created DESC LIMIT %s OFFSET %s", (*args, limit, offset),
            ).fetchall()

    def update(self, job_id: str, **fields) -> None:
        """Set columns (``state``, ``stage``, ``plan``, ``selection``, ``report``, ``error``...)."""
        sets, args = [], []
        for name, value in fields.items():
            sets.append(f"{name} = %s")
            args.append(Jsonb(value) if isinstance(value, (dict, list)) else value)
        if fields.get("state") == "running":
            sets.append("started = COALESCE(started, now())")
        if fields.get("state") in ("completed", "failed", "cancelled"):
            sets.append("finished = now()")
        with self._conn() as conn:
            conn.execute(f"UPDATE stacube.jobs SET {', '.join(sets)}, updated = now() WHERE id = %s",
                         (*args, job_id))

    def state(self, job_id: str) -> str:
        with self._conn() as conn:
            row = conn.execute("SELECT state FROM stacube.jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown job {job_id!r}")
        return row["state"]

    def advance_stage(self, job_id: str, from_stage: str | None, to_stage: str) -> bool:
        """Move a running job from one stage to the next; True for exactly one caller."""
        with self._conn() as conn:
            cur = conn.execute(
                "UPDATE stacube.jobs SET stage = %s, updated = now() WHERE id = %s AND state = 'running' "
                "AND stage IS NOT DISTINCT FROM %s RETURNING id", (to_stage, job_id, from_stage),
            )
            return cur.fetchone() is not None

    def cancel(self, job_id: str) -> dict:
        """Mark an active job cancelled (its workers stop at their next tile).

        Raises:
            NotFound: no such job.
        """
        job = self.get(job_id, full=False)
        if job["state"] in ACTIVE:
            self.update(job_id, state="cancelled", error="cancelled on request")
        return self.get(job_id, full=False)

    # -- tiles -----------------------------------------------------------------------------
    def add_tiles(self, job_id: str, stage: str, tiles: Iterable[str]) -> int:
        """Create the stage's tile rows (kept when they exist: resuming does not redo them)."""
        tiles = list(tiles)
        with self._conn() as conn, conn.transaction():
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO stacube.job_tiles (job_id, stage, tile) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING", [(job_id, stage, t) for t in tiles])
            self._count(conn, job_id, stage)
        return len(tiles)

    def _count(self, conn, job_id: str, stage: str) -> None:
        conn.execute(
            "UPDATE stacube.jobs j SET tiles_total = c.total, tiles_done = c.done, tiles_failed = c.failed, "
            "updated = now() FROM (SELECT count(*) AS total, count(*) FILTER (WHERE state = 'done') AS done, "
            "count(*) FILTER (WHERE state = 'failed') AS failed FROM stacube.job_tiles "
            "WHERE job_id = %s AND stage = %s) c WHERE j.id = %s", (job_id, stage, job_id))

    def pending_tiles(self, job_id: str, stage: str) -> list[str]:
        """Tiles of a stage that are not done yet."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT tile FROM stacube.job_tiles WHERE job_id = %s AND stage = %s AND state <> 'done' "
                "ORDER BY tile", (job_id, stage)).fetchall()
        return [r["tile"] for r in rows]

    def finish_tile(self, job_id: str, stage: str, tile: str, *, result=None, error: str | None = None) -> int:
        """Record a tile's outcome; returns how many tiles of the stage are still not done."""
        state = "failed" if error else "done"
        with self._conn() as conn, conn.transaction():
            conn.execute(
                "UPDATE stacube.job_tiles SET state = %s, result = %s, error = %s, attempts = attempts + 1, "
                "updated = now() WHERE job_id = %s AND stage = %s AND tile = %s",
                (state, Jsonb(result) if result is not None else None, error, job_id, stage, tile))
            self._count(conn, job_id, stage)
            row = conn.execute(
                "SELECT count(*) AS n FROM stacube.job_tiles WHERE job_id = %s AND stage = %s AND state <> 'done'",
                (job_id, stage)).fetchone()
        return row["n"]

    def tile_attempts(self, job_id: str, stage: str, tile: str) -> int:
        with self._conn() as conn:
            row = conn.execute("SELECT attempts FROM stacube.job_tiles WHERE job_id = %s AND stage = %s "
                               "AND tile = %s", (job_id, stage, tile)).fetchone()
        return row["attempts"] if row else 0

    def tile_results(self, job_id: str, stage: str) -> list[dict]:
        with self._conn() as conn:
            rows = conn.execute("SELECT result FROM stacube.job_tiles WHERE job_id = %s AND stage = %s "
                                "AND state = 'done'", (job_id, stage)).fetchall()
        return [r["result"] for r in rows]
