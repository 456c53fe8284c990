"""Workspaces, API keys and collection access, kept in the catalog database (schema ``stacube``).

Tables (:data:`TABLES`, which ``stacube db migrate`` creates through the entry point
``stacube.tables``):

* ``stacube.workspaces`` - the workspaces (tenants): ``name``, ``title``, ``created``;
* ``stacube.api_keys`` - ``id`` (shown, e.g. ``k3f9a0c1d2b``), ``key_hash`` (SHA-256 hex of the
  key: the key itself is shown once, at creation, and never stored), ``workspace``, ``admin``,
  ``label``, ``created``, ``revoked``;
* ``stacube.collection_access`` - ``collection``, ``workspace`` (a workspace), ``visibility``
  (``private`` | ``shared`` | ``public``), ``shared_with`` (workspace names), ``updated``;
* ``stacube.collection_prefixes`` - read prefixes of a collection (the folders ``stacube dataset
  add`` registered it from); ``stacube.workspace_prefixes`` - read prefixes granted to a
  workspace; both feed the read gate (:mod:`stacube.access.gate`);
* ``stacube.workspaces.job_quota`` / ``max_jobs`` - a workspace's own job limits (NULL: the
  server's), and ``stacube.held_jobs`` - jobs waiting for a slot (:class:`stacube.access.jobs.JobSlots`).

Keys look like ``stk_`` followed by 43 URL-safe characters (256 random bits).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from stacube.access.prefixes import ReadPrefixes
from stacube.access.policy import (
    AccessView,
    CollectionAccess,
    Principal,
    check_visibility,
    check_workspace_name,
)
from stacube.db.connection import DatabaseStore
from stacube.errors import Conflict, InvalidInput, NotFound

TABLES = """
CREATE SCHEMA IF NOT EXISTS stacube;
-- catalogs made before: workspaces were called "cubes" (table access_cubes, columns cube/owner)
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = 'stacube'
               AND table_name = 'access_cubes') THEN
        ALTER TABLE stacube.access_cubes RENAME TO workspaces;
    END IF;
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'stacube'
               AND table_name = 'api_keys' AND column_name = 'cube') THEN
        ALTER TABLE stacube.api_keys RENAME COLUMN cube TO workspace;
    END IF;
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'stacube'
               AND table_name = 'collection_access' AND column_name = 'owner') THEN
        ALTER TABLE stacube.collection_access RENAME COLUMN owner TO workspace;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS stacube.workspaces (
    name text PRIMARY KEY,
    title text,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS stacube.api_keys (
    id text PRIMARY KEY,
    key_hash text NOT NULL UNIQUE,
    workspace text REFERENCES stacube.workspaces (name) ON DELETE CASCADE,
    admin boolean NOT NULL DEFAULT false,
    label text,
    created timestamptz NOT NULL DEFAULT now(),
    revoked timestamptz,
    CHECK (workspace IS NOT NULL OR admin)
);
CREATE TABLE IF NOT EXISTS stacube.collection_access (
    collection text PRIMARY KEY,
    workspace text NOT NULL REFERENCES stacube.workspaces (name),
    visibility text NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'shared', 'public')),
    shared_with text[] NOT NULL DEFAULT '{}',
    updated timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE stacube.workspaces ADD COLUMN IF NOT EXISTS job_quota bigint;
ALTER TABLE stacube.workspaces ADD COLUMN IF NOT EXISTS max_jobs integer;
CREATE TABLE IF NOT EXISTS stacube.collection_prefixes (
    collection text NOT NULL,
    prefix text NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, prefix)
);
CREATE TABLE IF NOT EXISTS stacube.workspace_prefixes (
    workspace text NOT NULL REFERENCES stacube.workspaces (name) ON DELETE CASCADE,
    prefix text NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, prefix)
);
CREATE TABLE IF NOT EXISTS stacube.held_jobs (
    job_id text PRIMARY KEY,
    label text,
    created timestamptz NOT NULL DEFAULT now()
);
"""

KEY_PREFIX = "stk_"

#: The queries the HTTP apps run (``%s`` placeholders; the asyncpg adapter renumbers them).
ACCESS_ROWS_SQL = "SELECT collection, workspace, visibility, shared_with FROM stacube.collection_access"
COLLECTION_IDS_SQL = "SELECT id FROM pgstac.collections"
KEY_SQL = "SELECT id, workspace, admin FROM stacube.api_keys WHERE key_hash = %s AND revoked IS NULL"
WORKSPACE_SQL = "SELECT name FROM stacube.workspaces WHERE name = %s"
CLAIM_SQL = ("INSERT INTO stacube.collection_access (collection, workspace, visibility) VALUES (%s, %s, %s) "
             "ON CONFLICT (collection) DO NOTHING RETURNING collection")
WORKSPACE_OF_SQL = "SELECT workspace FROM stacube.collection_access WHERE collection = %s"
DROP_SQL = "DELETE FROM stacube.collection_access WHERE collection = %s AND workspace = %s"
DROP_ANY_SQL = "DELETE FROM stacube.collection_access WHERE collection = %s"
DROP_PREFIXES_SQL = "DELETE FROM stacube.collection_prefixes WHERE collection = %s"
WORKSPACE_LIMITS_SQL = "SELECT job_quota, max_jobs FROM stacube.workspaces WHERE name = %s"


def hash_key(key: str) -> str:
    """The stored form of an API key: SHA-256, hex (keys are long random secrets)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """``(key id, key)``: a fresh random key and its public id."""
    return "k" + secrets.token_hex(5), KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass
class CreatedKey:
    """A key as created: ``key`` is shown once and not stored."""

    id: str
    key: str
    workspace: str | None
    admin: bool
    label: str | None


class AccessStore(DatabaseStore):
    """Reads and writes workspaces, keys and collection access (the CLI and the jobs use it).

    Args:
        settings: the catalog database.
    """


    # -- workspaces -----------------------------------------------------------------------------
    def create_workspace(self, name: str, title: str | None = None) -> dict:
        """Register a workspace.

        Raises:
            InvalidInput: bad name. Conflict: it exists.
        """
        check_workspace_name(name)
        with self._conn() as conn:
            row = conn.execute("INSERT INTO stacube.workspaces (name, title) VALUES (%s, %s) "
                               "ON CONFLICT DO NOTHING RETURNING name, title, created", (name, title)).fetchone()
        if row is None:
            raise Conflict(f"workspace {name!r} exists already")
        return row

    def workspaces(self) -> list[dict]:
        """Every workspace with its number of collections and active keys."""
        with self._conn() as conn:
            return conn.execute(
                "SELECT c.name, c.title, c.created, "
                "(SELECT count(*) FROM stacube.collection_access a WHERE a.workspace = c.name) AS collections, "
                "(SELECT count(*) FROM stacube.api_keys k WHERE k.workspace = c.name AND k.revoked IS NULL) AS keys, "
                "c.job_quota, c.max_jobs, ARRAY(SELECT p.prefix FROM stacube.workspace_prefixes p "
                "WHERE p.workspace = c.name ORDER BY p.prefix) AS read_prefixes "
                "FROM stacube.workspaces c ORDER BY c.name").fetchall()

    def require_workspaces(self, names) -> None:
        """Raises NotFound for the first name that is not a workspace."""
        names = list(names)
        with self._conn() as conn:
            known = {r["name"] for r in conn.execute(
                "SELECT name FROM stacube.workspaces WHERE name = ANY(%s)", (names,))}
        for name in names:
            if name not in known:
                raise NotFound(f"unknown workspace {name!r} (create it with `stacube workspace create`)")

    # -- keys ------------------------------------------------------------------------------
    def create_key(self, workspace: str | None, *, admin: bool = False, label: str | None = None) -> CreatedKey:
        """Create an API key bound to ``workspace`` (an admin key may have none).

        Raises:
            InvalidInput: neither a workspace nor admin. NotFound: unknown workspace.
        """
        if workspace is None and not admin:
            raise InvalidInput("a key needs a workspace (--workspace) unless it is an admin key (--admin)")
        if workspace is not None:
            self.require_workspaces([workspace])
        key_id, key = new_key()
        with self._conn() as conn:
            conn.execute("INSERT INTO stacube.api_keys (id, key_hash, workspace, admin, label) "
                         "VALUES (%s, %s, %s, %s, %s)", (key_id, hash_key(key), workspace, admin, label))
        return CreatedKey(key_id, key, workspace, admin, label)

    def keys(self, workspace: str | None = None) -> list[dict]:
        """Keys (never their secret), newest first."""
        where, args = ("WHERE workspace = %s", (workspace,)) if workspace else ("", ())
        with self._conn() as conn:
            return conn.execute(f"SELECT id, workspace, admin, label, created, revoked FROM stacube.api_keys "
                                f"{where} ORDER BY created DESC", args).fetchall()

    def revoke_key(self, key_id: str) -> dict:
        """Revoke a key (it stops working at once; the row stays for the record).

        Raises:
            NotFound: no such key.
        """
        with self._conn() as conn:
            row = conn.execute("UPDATE stacube.api_keys SET revoked = COALESCE(revoked, now()) WHERE id = %s "
                               "RETURNING id, workspace, admin, label, created, revoked", (key_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown key {key_id!r}")
        return row

    def has_active_keys(self) -> bool:
        """Whether any API key is active (callers can authenticate)."""
        with self._conn() as conn:
            return conn.execute("SELECT 1 FROM stacube.api_keys WHERE revoked IS NULL LIMIT 1").fetchone() is not None

    def principal_for_key(self, key: str) -> Principal | None:
        """The principal of an active key, or None."""
        with self._conn() as conn:
            row = conn.execute(KEY_SQL, (hash_key(key),)).fetchone()
        if row is None:
            return None
        return Principal("admin" if row["admin"] else "member", row["workspace"], row["id"], "api-key")

    # -- collection access -----------------------------------------------------------------
    def view(self) -> AccessView:
        """All access rows."""
        with self._conn() as conn:
            rows = conn.execute(ACCESS_ROWS_SQL).fetchall()
        return AccessView.from_rows((r["collection"], r["workspace"], r["visibility"], r["shared_with"]) for r in rows)

    def get(self, collection_id: str) -> CollectionAccess | None:
        return self.view().get(collection_id)

    def set_access(self, collection_id: str, *, workspace: str | None = None, visibility: str | None = None,
                   share_with: list[str] | None = None, unshare: list[str] | None = None,
                   replace_shares: bool = False) -> CollectionAccess:
        """Create or change a collection's access row.

        Args:
            workspace: the owning workspace (required when the collection has no row yet).
            visibility: private, shared or public (default for a new row: ``shared`` when workspaces
                are shared with, else ``private``).
            share_with: workspaces to add to ``shared_with`` (all of them when ``replace_shares``).
            unshare: workspaces to remove from ``shared_with``.

        Raises:
            InvalidInput: bad visibility or workspace name, no workspace for a new row.
            NotFound: an unknown workspace.
        """
        share_with = list(dict.fromkeys(share_with or []))
        unshare = list(unshare or [])
        if visibility is not None:
            check_visibility(visibility)
        for name in [*share_with, *unshare, *([workspace] if workspace else [])]:
            check_workspace_name(name)
        self.require_workspaces([*share_with, *([workspace] if workspace else [])])
        current = self.get(collection_id)
        if current is None and workspace is None:
            raise InvalidInput(f"collection {collection_id!r} has no workspace yet: give its workspace (--workspace)")
        shares = [] if replace_shares or current is None else list(current.shared_with)
        shares = [c for c in dict.fromkeys([*shares, *share_with]) if c not in unshare]
        if visibility is None:
            if current is not None and not (share_with and current.visibility == "private"):
                visibility = current.visibility
            else:
                visibility = "shared" if share_with else "private"
        new_workspace = workspace or current.workspace
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO stacube.collection_access (collection, workspace, visibility, shared_with) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (collection) DO UPDATE SET workspace = EXCLUDED.workspace, "
                "visibility = EXCLUDED.visibility, shared_with = EXCLUDED.shared_with, updated = now()",
                (collection_id, new_workspace, visibility, shares))
        return CollectionAccess(collection_id, new_workspace, visibility, tuple(shares))

    def claim(self, collection_id: str, workspace: str, visibility: str = "private") -> CollectionAccess:
        """Give a collection that has no row to ``workspace``; a row of the same workspace is kept.

        Raises:
            Conflict: the collection belongs to another workspace.
        """
        with self._conn() as conn:
            conn.execute(CLAIM_SQL, (collection_id, workspace, visibility))
        row = self.get(collection_id)
        if row is None or row.workspace != workspace:
            raise Conflict(f"collection {collection_id!r} is not available to workspace {workspace}")
        return row

    def drop(self, collection_id: str) -> None:
        """Forget a collection's access row and read prefixes (after deleting the collection)."""
        with self._conn() as conn:
            conn.execute(DROP_ANY_SQL, (collection_id,))
            conn.execute(DROP_PREFIXES_SQL, (collection_id,))

    # -- read prefixes and limits ---------------------------------------------------------------
    def add_collection_prefixes(self, collection_id: str, prefixes) -> list[str]:
        """Record read prefixes of a collection (the roots its assets were registered from).

        Raises:
            InvalidInput: a prefix that is not a directory, ``s3://`` or ``http(s)://`` prefix.
        """
        prefixes = list(dict.fromkeys(prefixes))
        ReadPrefixes(prefixes)  # validates
        with self._conn() as conn:
            for prefix in prefixes:
                conn.execute("INSERT INTO stacube.collection_prefixes (collection, prefix) VALUES (%s, %s) "
                             "ON CONFLICT DO NOTHING", (collection_id, prefix))
        return prefixes

    def collection_prefixes(self, collection_id: str | None = None) -> dict[str, list[str]]:
        """``{collection: [prefix, ...]}`` of the registered roots (one collection's when given)."""
        where, args = ("WHERE collection = %s", (collection_id,)) if collection_id else ("", ())
        with self._conn() as conn:
            rows = conn.execute(f"SELECT collection, prefix FROM stacube.collection_prefixes {where} "
                                "ORDER BY collection, prefix", args).fetchall()
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["collection"], []).append(r["prefix"])
        return out

    def workspace_prefixes(self, workspace: str) -> list[str]:
        """The read prefixes granted to ``workspace``."""
        with self._conn() as conn:
            rows = conn.execute("SELECT prefix FROM stacube.workspace_prefixes WHERE workspace = %s "
                                "ORDER BY prefix", (workspace,)).fetchall()
        return [r["prefix"] for r in rows]

    def set_workspace(self, name: str, *, add_prefixes=(), remove_prefixes=(), job_quota: int | None = None,
                      max_jobs: int | None = None, clear_limits: bool = False) -> dict:
        """Grant or withdraw read prefixes and set the job limits of a workspace.

        Args:
            add_prefixes / remove_prefixes: read prefixes (directories, ``s3://``, ``https://``).
            job_quota: the largest job (output pixels x scenes x bands) the workspace may submit.
            max_jobs: jobs of the workspace running at once (more wait).
            clear_limits: back to the server's defaults (``STACUBE_JOB_QUOTA``, ``STACUBE_MAX_JOBS``).

        Raises:
            NotFound: unknown workspace. InvalidInput: a malformed prefix or a limit below 1.
        """
        self.require_workspaces([name])
        ReadPrefixes(list(add_prefixes))
        for value, what in ((job_quota, "job quota"), (max_jobs, "max jobs")):
            if value is not None and value < 1:
                raise InvalidInput(f"{what} must be at least 1")
        with self._conn() as conn:
            for prefix in dict.fromkeys(add_prefixes):
                conn.execute("INSERT INTO stacube.workspace_prefixes (workspace, prefix) VALUES (%s, %s) "
                             "ON CONFLICT DO NOTHING", (name, prefix))
            for prefix in remove_prefixes:
                conn.execute("DELETE FROM stacube.workspace_prefixes WHERE workspace = %s AND prefix = %s",
                             (name, prefix))
            if clear_limits:
                conn.execute("UPDATE stacube.workspaces SET job_quota = NULL, max_jobs = NULL WHERE name = %s",
                             (name,))
            if job_quota is not None:
                conn.execute("UPDATE stacube.workspaces SET job_quota = %s WHERE name = %s", (job_quota, name))
            if max_jobs is not None:
                conn.execute("UPDATE stacube.workspaces SET max_jobs = %s WHERE name = %s", (max_jobs, name))
            row = conn.execute("SELECT name, title, job_quota, max_jobs FROM stacube.workspaces WHERE name = %s",
                               (name,)).fetchone()
        return {**row, "read_prefixes": self.workspace_prefixes(name)}

    def workspace_limits(self, name: str | None) -> tuple[int | None, int | None]:
        """``(job quota, max jobs)`` set for a workspace (None: the server's default)."""
        if name is None:
            return None, None
        with self._conn() as conn:
            row = conn.execute(WORKSPACE_LIMITS_SQL, (name,)).fetchone()
        return (row["job_quota"], row["max_jobs"]) if row else (None, None)
