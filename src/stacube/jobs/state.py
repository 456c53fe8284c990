"""Job and tile state, kept in the catalog database (schema ``stacube``).

A job moves ``queued -> running -> completed | failed | cancelled``; while running it goes
through the stages of :mod:`stacube.jobs.stages` (a ``cube`` job, a cube's fill, through one
stage, ``fill``, whose tiles are the cube's fill units: :mod:`stacube.jobs.cube_fill`). Each tile of a stage has a row, so an
interrupted job resumes where it stopped; the job row counts the stage's tiles
(``tiles_total``, ``tiles_done``, ``tiles_failed``) and a tile's completion updates its row and
the counter in one statement, guarded so that a tile is counted once however often it is
delivered: recording a tile costs the same in a job of 10 tiles as in one of 10,000.

Stage moves (``advance_stage``) succeed for exactly one caller. Whoever moves a job to a stage
of tiles holds a *lease* (``lease_until``) while it sends the stage's messages and records that
they were sent (``sent_stage``); another caller takes over (``claim``) only when the lease has
run out, so messages are sent once unless their sender died.

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
ALTER TABLE stacube.jobs ADD COLUMN IF NOT EXISTS plan_uri text;
ALTER TABLE stacube.jobs ADD COLUMN IF NOT EXISTS sent_stage text;
ALTER TABLE stacube.jobs ADD COLUMN IF NOT EXISTS lease_until timestamptz;
ALTER TABLE stacube.jobs ADD COLUMN IF NOT EXISTS committed timestamptz;
CREATE INDEX IF NOT EXISTS jobs_created_idx ON stacube.jobs (created DESC);
CREATE INDEX IF NOT EXISTS jobs_active_idx ON stacube.jobs (updated) WHERE state IN ('queued', 'running');
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


def stale_sql(alias: str = "") -> str:
    """The one rule of a *stuck* job, in SQL (one parameter: ``stale_after``, seconds; the
    callers pass ``settings.job_max_age``): an active job whose row recorded no progress
    (``updated``: a tile, a stage move, a lease) for that long. Submitting such a job again
    starts it afresh (:meth:`JobStore.submit`), and the job slots of the access layer (the
    callers that admit jobs) do not count it.

    Args:
        alias: the jobs table's alias with its dot (``"j."``), or nothing.
    """
    return f"{alias}updated < now() - make_interval(secs => %s)"


#: The states a job ends in (none of them is left by a later write; only :meth:`JobStore.submit`
#: starts such a job afresh).
ENDED = ("completed", "failed", "cancelled")
#: ``JobStore.list(workspace=...)`` default: jobs of every workspace.
ANY_WORKSPACE = object()
SUMMARY_COLUMNS = ("id, kind, parameters, state, stage, error, workspace, tiles_total, tiles_done, "
                   "tiles_failed, run, created, started, finished, updated, plan_uri, sent_stage, "
                   "lease_until, committed")
_JOB_COLUMNS = ", ".join(f"j.{c.strip()}" for c in SUMMARY_COLUMNS.split(","))

# The tile's row, locked, if the job is still at that run and stage.
_OLD_TILE = """
WITH old AS (
    SELECT t.state FROM stacube.job_tiles t JOIN stacube.jobs j ON j.id = t.job_id
    WHERE t.job_id = %(job)s AND t.stage = %(stage)s AND t.tile = %(tile)s AND j.run = %(run)s
        AND j.stage = %(stage)s
    FOR UPDATE OF t
)"""
# One statement records a finished tile and counts it: the tile's row changes only when it was
# not done yet (a duplicate delivery changes nothing), and only then does the job's counter move.
_TILE_DONE = _OLD_TILE + """, changed AS (
    UPDATE stacube.job_tiles t SET state = 'done', result = %(result)s, error = NULL,
        attempts = t.attempts + 1, updated = now()
    FROM old WHERE t.job_id = %(job)s AND t.stage = %(stage)s AND t.tile = %(tile)s AND old.state <> 'done'
    RETURNING old.state AS before
)
UPDATE stacube.jobs j SET tiles_done = j.tiles_done + 1,
    tiles_failed = j.tiles_failed - (CASE WHEN changed.before = 'failed' THEN 1 ELSE 0 END), updated = now()
FROM changed WHERE j.id = %(job)s
RETURNING j.tiles_done, j.tiles_total
"""
_TILE_FAILED = _OLD_TILE + """, changed AS (
    UPDATE stacube.job_tiles t SET state = 'failed', error = %(error)s, attempts = t.attempts + 1, updated = now()
    FROM old WHERE t.job_id = %(job)s AND t.stage = %(stage)s AND t.tile = %(tile)s AND old.state <> 'done'
    RETURNING old.state AS before
)
UPDATE stacube.jobs j SET tiles_failed = j.tiles_failed + (CASE WHEN changed.before = 'failed' THEN 0 ELSE 1 END),
    updated = now()
FROM changed WHERE j.id = %(job)s
RETURNING j.tiles_failed
"""


def tile_key(tile: tuple[int, int]) -> str:
    return f"{tile[0]}_{tile[1]}"


def tile_index(key: str) -> tuple[int, int]:
    row, col = key.split("_")
    return int(row), int(col)


class JobStore(DatabaseStore):
    """Reads and writes job state; every call is retried on transient database errors.

    Args:
        settings: the catalog database.
    """

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, job_id: str, parameters: dict, *, kind: str = "composite",
               workspace: str | None = None, stale_after: float | None = None) -> tuple[dict, bool]:
        """Record a job, or start it afresh if it already ended.

        Args:
            stale_after: seconds after which an active job that made no progress counts as
                stuck (:func:`stale_sql`): it is started afresh (its earlier run's messages are
                then ignored).

        Returns:
            ``(job, created)``: ``created`` is False when the same job is already queued or
            running (submitting twice does not run it twice).
        """

        def call(conn):
            with conn.transaction():
                row = conn.execute(
                    f"SELECT state, (%s::float IS NOT NULL AND {stale_sql()}) "
                    "AS stale FROM stacube.jobs WHERE id = %s FOR UPDATE",
                    (stale_after, stale_after, job_id)).fetchone()
                if row and row["state"] in ACTIVE and not row["stale"]:
                    return self._get(conn, job_id, full=True), False
                if row:
                    conn.execute("DELETE FROM stacube.job_tiles WHERE job_id = %s", (job_id,))
                    conn.execute(
                        "UPDATE stacube.jobs SET parameters = %s, state = 'queued', stage = NULL, plan = NULL, "
                        "selection = NULL, report = NULL, error = NULL, tiles_total = 0, tiles_done = 0, "
                        "tiles_failed = 0, run = run + 1, created = now(), started = NULL, finished = NULL, "
                        "updated = now(), workspace = %s, plan_uri = NULL, sent_stage = NULL, "
                        "lease_until = NULL, committed = NULL WHERE id = %s",
                        (Jsonb(parameters), workspace, job_id),
                    )
                else:
                    conn.execute(
                        "INSERT INTO stacube.jobs (id, kind, parameters, workspace) VALUES (%s, %s, %s, %s)",
                        (job_id, kind, Jsonb(parameters), workspace),
                    )
                return self._get(conn, job_id, full=True), True

        return self.run(call)

    @staticmethod
    def _get(conn, job_id: str, *, full: bool) -> dict:
        columns = "*" if full else SUMMARY_COLUMNS
        row = conn.execute(f"SELECT {columns} FROM stacube.jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown job {job_id!r}")
        return row

    def get(self, job_id: str, *, conn=None, full: bool = True) -> dict:
        """One job (with plan, selection and report when ``full``).

        Raises:
            NotFound: no such job.
        """
        if conn is not None:
            return self._get(conn, job_id, full=full)
        return self.run(lambda c: self._get(c, job_id, full=full))

    def list(self, *, state: str | None = None, limit: int = 50, offset: int = 0,
             workspace: object = ANY_WORKSPACE) -> list[dict]:
        """Job summaries, newest first (only ``workspace``'s when given; None: jobs without one)."""
        clauses, args = (["state = %s"], [state]) if state else ([], [])
        if workspace is not ANY_WORKSPACE:
            clauses.append("workspace IS NOT DISTINCT FROM %s")
            args.append(workspace)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self.run(lambda conn: conn.execute(
            f"SELECT {SUMMARY_COLUMNS}, report->'throughput' AS throughput, "
            f"report->>'collection' AS collection FROM stacube.jobs {where} "
            "ORDER BY created DESC LIMIT %s OFFSET %s", (*args, limit, offset),
        ).fetchall())

    def update(self, job_id: str, **fields) -> bool:
        """Set columns (``state``, ``stage``, ``plan``, ``selection``, ``report``, ``error``...).

        A write of ``state`` applies only to an active job (``queued`` or ``running``), in the
        same statement: a job that ended meanwhile (cancelled while a step was running, failed
        by another caller) keeps its state and nothing is written.

        Returns:
            True when the row was written (False: no such job, or ``state`` was given and the
            job had ended).
        """
        sets, args = [], []
        for name, value in fields.items():
            sets.append(f"{name} = %s")
            args.append(Jsonb(value) if isinstance(value, (dict, list)) else value)
        if fields.get("state") == "running":
            sets.append("started = COALESCE(started, now())")
        if fields.get("state") in ENDED:
            sets.append("finished = now()")
            sets.append("lease_until = NULL")
        guard = " AND state IN ('queued', 'running')" if "state" in fields else ""
        row = self.run(lambda conn: conn.execute(
            f"UPDATE stacube.jobs SET {', '.join(sets)}, updated = now() WHERE id = %s{guard} RETURNING id",
            (*args, job_id)).fetchone())
        return row is not None

    def start(self, job_id: str) -> bool:
        """Mark a queued (or running) job running; False when it ended meanwhile (cancelled...)."""
        row = self.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET state = 'running', started = COALESCE(started, now()), updated = now() "
            "WHERE id = %s AND state IN ('queued', 'running') RETURNING id", (job_id,)).fetchone())
        return row is not None

    def complete(self, job_id: str, report: dict) -> bool:
        """Mark a running job completed with its report; False when it ended meanwhile."""
        row = self.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET state = 'completed', report = %s, finished = now(), updated = now(), "
            "lease_until = NULL WHERE id = %s AND state = 'running' RETURNING id", (Jsonb(report), job_id)).fetchone())
        return row is not None

    def fail_active(self, job_id: str, reason: str, *, run: int | None = None) -> bool:
        """Mark a queued or running job (of ``run``, when given) failed; True when this call did."""
        row = self.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET state = 'failed', error = %s, finished = now(), updated = now(), "
            "lease_until = NULL WHERE id = %s AND state IN ('queued', 'running') "
            "AND (%s::int IS NULL OR run = %s) RETURNING id", (reason, job_id, run, run)).fetchone())
        return row is not None

    def state(self, job_id: str) -> str:
        row = self.run(lambda conn: conn.execute(
            "SELECT state FROM stacube.jobs WHERE id = %s", (job_id,)).fetchone())
        if row is None:
            raise NotFound(f"unknown job {job_id!r}")
        return row["state"]

    def advance_stage(self, job_id: str, from_stage: str | None, to_stage: str, *,
                      lease: float | None = None, total: int | None = None) -> bool:
        """Move a running job from one stage to the next; True for exactly one caller.

        Args:
            lease: seconds the caller holds the move (its messages, its preparation) before
                another may take over (:meth:`claim`).
            total: the new stage's tile count (its counters start at zero).
        """
        sets = ["stage = %(to)s", "updated = now()",
                "lease_until = CASE WHEN %(lease)s::float IS NULL THEN NULL "
                "ELSE now() + make_interval(secs => %(lease)s) END"]
        if total is not None:
            sets += ["tiles_total = %(total)s", "tiles_done = 0", "tiles_failed = 0"]
        row = self.run(lambda conn: conn.execute(
            f"UPDATE stacube.jobs SET {', '.join(sets)} WHERE id = %(job)s AND state = 'running' "
            "AND stage IS NOT DISTINCT FROM %(from)s RETURNING id",
            {"to": to_stage, "lease": lease, "total": total, "job": job_id, "from": from_stage}).fetchone())
        return row is not None

    def claim(self, job_id: str, run: int, stage: str, lease: float, *, force: bool = False) -> bool:
        """Take over a stage whose messages are not recorded as sent and whose lease ran out
        (``force``: whatever the lease; the local runner, sole driver of its job); True for
        exactly one caller."""
        row = self.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET lease_until = now() + make_interval(secs => %(lease)s), updated = now() "
            "WHERE id = %(job)s AND run = %(run)s AND state = 'running' AND stage = %(stage)s "
            "AND sent_stage IS DISTINCT FROM %(stage)s "
            "AND (%(force)s OR lease_until IS NULL OR lease_until < now()) RETURNING id",
            {"lease": lease, "job": job_id, "run": run, "stage": stage, "force": force}).fetchone())
        return row is not None

    def claim_planning(self, job_id: str, run: int, lease: float) -> bool:
        """Take a queued job's planning (one planner at a time, until the lease runs out)."""
        row = self.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET lease_until = now() + make_interval(secs => %s), updated = now() "
            "WHERE id = %s AND run = %s AND state = 'queued' "
            "AND (lease_until IS NULL OR lease_until < now()) RETURNING id", (lease, job_id, run)).fetchone())
        return row is not None

    def mark_sent(self, job_id: str, run: int, stage: str) -> None:
        """Record that every message of ``stage`` was sent (and release the lease)."""
        self.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET sent_stage = %s, lease_until = NULL, updated = now() "
            "WHERE id = %s AND run = %s AND stage = %s", (stage, job_id, run, stage)))

    def release(self, job_id: str) -> None:
        """End the caller's lease now (it failed: the next delivery or the reaper takes over)."""
        self.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET lease_until = now() WHERE id = %s AND lease_until IS NOT NULL", (job_id,)))

    def touch(self, job_id: str) -> None:
        """Mark the job as seen now (``updated``)."""
        self.run(lambda conn: conn.execute("UPDATE stacube.jobs SET updated = now() WHERE id = %s", (job_id,)))

    def mark_committed(self, job_id: str) -> None:
        """Record that the job's outputs are committed (a retried finalize registers only)."""
        self.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET committed = now(), updated = now() WHERE id = %s", (job_id,)))

    def cancel(self, job_id: str) -> dict:
        """Mark an active job cancelled (its workers stop at their next tile); a job that ended
        already keeps its state. Returns the job's summary.

        Raises:
            NotFound: no such job.
        """
        self.update(job_id, state="cancelled", error="cancelled on request")
        return self.get(job_id, full=False)

    # -- reaping ---------------------------------------------------------------------------
    def overdue(self, max_age: float, *, limit: int = 100) -> list[dict]:
        """Active jobs whose run began more than ``max_age`` seconds ago."""
        return self.run(lambda conn: conn.execute(
            f"SELECT {SUMMARY_COLUMNS} FROM stacube.jobs WHERE state IN ('queued', 'running') "
            "AND COALESCE(started, created) < now() - make_interval(secs => %s) ORDER BY created LIMIT %s",
            (max_age, limit)).fetchall())

    def lapsed(self, waited: float, *, limit: int = 100) -> list[dict]:
        """Running jobs whose holder's lease ran out before it finished its move or sent its
        messages, and queued jobs no planner took within ``waited`` seconds (their plan message
        may be lost; not cube fills, which no planner takes)."""
        return self.run(lambda conn: conn.execute(
            f"SELECT {SUMMARY_COLUMNS} FROM stacube.jobs WHERE (state = 'running' AND lease_until < now() "
            "AND sent_stage IS DISTINCT FROM stage) OR (state = 'queued' AND kind <> 'cube' AND (lease_until IS NULL "
            "OR lease_until < now()) AND updated < now() - make_interval(secs => %s)) ORDER BY updated LIMIT %s",
            (waited, limit)).fetchall())

    # -- tiles -----------------------------------------------------------------------------
    def add_tiles(self, job_id: str, stage: str, tiles: Iterable[str]) -> int:
        """Create the stage's tile rows (kept when they exist: resuming does not redo them)."""
        tiles = list(tiles)

        def call(conn):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO stacube.job_tiles (job_id, stage, tile) SELECT %s, %s, unnest(%s::text[]) "
                    "ON CONFLICT DO NOTHING", (job_id, stage, tiles))
                self._count(conn, job_id, stage)

        self.run(call)
        return len(tiles)

    def _count(self, conn, job_id: str, stage: str) -> None:
        """Set the counters from the rows (once per stage, when its rows are created)."""
        conn.execute(
            "UPDATE stacube.jobs j SET tiles_total = c.total, tiles_done = c.done, tiles_failed = c.failed, "
            "updated = now() FROM (SELECT count(*) AS total, count(*) FILTER (WHERE state = 'done') AS done, "
            "count(*) FILTER (WHERE state = 'failed') AS failed FROM stacube.job_tiles "
            "WHERE job_id = %s AND stage = %s) c WHERE j.id = %s", (job_id, stage, job_id))

    def pending_tiles(self, job_id: str, stage: str) -> list[str]:
        """Tiles of a stage that are not done yet (a listing: to resume, or to send again)."""
        rows = self.run(lambda conn: conn.execute(
            "SELECT tile FROM stacube.job_tiles WHERE job_id = %s AND stage = %s AND state <> 'done' "
            "ORDER BY tile", (job_id, stage)).fetchall())
        return [r["tile"] for r in rows]

    def done_tiles(self, job_id: str, stage: str) -> set[str]:
        """Tiles of a stage that are done."""
        rows = self.run(lambda conn: conn.execute(
            "SELECT tile FROM stacube.job_tiles WHERE job_id = %s AND stage = %s AND state = 'done'",
            (job_id, stage)).fetchall())
        return {r["tile"] for r in rows}

    def tile_context(self, job_id: str, stage: str, tile: str) -> dict | None:
        """The job's summary and ``tile_state`` (None: no such tile), in one query; None when
        the job does not exist."""
        return self.run(lambda conn: conn.execute(
            f"SELECT {_JOB_COLUMNS}, t.state AS tile_state FROM stacube.jobs j LEFT JOIN stacube.job_tiles t "
            "ON t.job_id = j.id AND t.stage = %s AND t.tile = %s WHERE j.id = %s",
            (stage, tile, job_id)).fetchone())

    def finish_tile(self, job_id: str, stage: str, tile: str, *, run: int, result=None,
                    error: str | None = None) -> tuple[int, int] | None:
        """Record a tile's outcome (constant work whatever the job's size).

        Returns:
            For a tile done now: ``(tiles_done, tiles_total)`` of the stage after counting it;
            None when nothing was counted (the tile was done already, it failed, or the job is
            no longer at that stage or run).
        """
        params = {"job": job_id, "stage": stage, "tile": tile, "run": run,
                  "result": Jsonb(result) if result is not None else None, "error": error}
        if error is not None:
            self.run(lambda conn: conn.execute(_TILE_FAILED, params))
            return None
        row = self.run(lambda conn: conn.execute(_TILE_DONE, params).fetchone())
        return (row["tiles_done"], row["tiles_total"]) if row else None

    def tile_attempts(self, job_id: str, stage: str, tile: str) -> int:
        row = self.run(lambda conn: conn.execute(
            "SELECT attempts FROM stacube.job_tiles WHERE job_id = %s AND stage = %s AND tile = %s",
            (job_id, stage, tile)).fetchone())
        return row["attempts"] if row else 0

    def tile_error(self, job_id: str, stage: str, tile: str) -> tuple[str | None, str | None]:
        """A tile's state and last error (``(None, None)``: no such tile)."""
        row = self.run(lambda conn: conn.execute(
            "SELECT state, error FROM stacube.job_tiles WHERE job_id = %s AND stage = %s AND tile = %s",
            (job_id, stage, tile)).fetchone())
        return (row["state"], row["error"]) if row else (None, None)

    def tile_results(self, job_id: str, stage: str) -> list[dict]:
        rows = self.run(lambda conn: conn.execute(
            "SELECT result FROM stacube.job_tiles WHERE job_id = %s AND stage = %s AND state = 'done'",
            (job_id, stage)).fetchall())
        return [r["result"] for r in rows]

    def result_values(self, job_id: str, stage: str, key: str, *, limit: int = 1000) -> tuple[list, int]:
        """The ``key`` entries of the stage's done tiles' results that have one, in tile order
        (at most ``limit``), and how many tiles have one."""
        rows = self.run(lambda conn: conn.execute(
            "SELECT tile, result -> %s AS value, count(*) OVER () AS n FROM stacube.job_tiles "
            "WHERE job_id = %s AND stage = %s AND state = 'done' AND result ? %s ORDER BY tile LIMIT %s",
            (key, job_id, stage, key, limit)).fetchall())
        return [r["value"] for r in rows], (rows[0]["n"] if rows else 0)

    def result_sums(self, job_id: str, stage: str, keys: Iterable[str]) -> dict[str, dict[str, int]]:
        """Per ``key`` of the tiles' results (``{key: {name: count}}``), the counts summed over
        the stage's done tiles, in the database (one row per name comes back, not one per tile)."""
        keys = list(keys)
        rows = self.run(lambda conn: conn.execute(
            "SELECT k.key, e.key AS name, sum(e.value::bigint) AS total FROM stacube.job_tiles t "
            "CROSS JOIN unnest(%s::text[]) AS k(key) CROSS JOIN LATERAL jsonb_each_text(t.result -> k.key) e "
            "WHERE t.job_id = %s AND t.stage = %s AND t.state = 'done' GROUP BY k.key, e.key",
            (keys, job_id, stage)).fetchall())
        sums: dict[str, dict[str, int]] = {k: {} for k in keys}
        for r in rows:
            sums[r["key"]][r["name"]] = int(r["total"])
        return sums
