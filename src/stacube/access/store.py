"""Cubes, API keys and collection access, kept in the catalog database (schema ``stacube``).

Tables (created by :func:`ensure_access_schema`, which ``stacube db migrate`` runs):

* ``stacube.access_cubes`` - the cubes (tenants): ``name``, ``title``, ``created``;
* ``stacube.api_keys`` - ``id`` (shown, e.g. ``k3f9a0c1d2b``), ``key_hash`` (SHA-256 hex of the
  key: the key itself is shown once, at creation, and never stored), ``cube``, ``admin``,
  ``label``, ``created``, ``revoked``;
* ``stacube.collection_access`` - ``collection``, ``owner`` (a cube), ``visibility``
  (``private`` | ``shared`` | ``public``), ``shared_with`` (cube names), ``updated``.

Keys look like ``stk_`` followed by 43 URL-safe characters (256 random bits).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stacube.access.policy import (
    AccessView,
    CollectionAccess,
    Principal,
    check_cube_name,
    check_visibility,
)
from stacube.db.connection import DatabaseStore
from stacube.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    import psycopg

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS stacube;
CREATE TABLE IF NOT EXISTS stacube.access_cubes (
    name text PRIMARY KEY,
    title text,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS stacube.api_keys (
    id text PRIMARY KEY,
    key_hash text NOT NULL UNIQUE,
    cube text REFERENCES stacube.access_cubes (name) ON DELETE CASCADE,
    admin boolean NOT NULL DEFAULT false,
    label text,
    created timestamptz NOT NULL DEFAULT now(),
    revoked timestamptz,
    CHECK (cube IS NOT NULL OR admin)
);
CREATE TABLE IF NOT EXISTS stacube.collection_access (
    collection text PRIMARY KEY,
    owner text NOT NULL REFERENCES stacube.access_cubes (name),
    visibility text NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'shared', 'public')),
    shared_with text[] NOT NULL DEFAULT '{}',
    updated timestamptz NOT NULL DEFAULT now()
);
"""

KEY_PREFIX = "stk_"

#: The queries the HTTP apps run (``%s`` placeholders; the asyncpg adapter renumbers them).
ACCESS_ROWS_SQL = "SELECT collection, owner, visibility, shared_with FROM stacube.collection_access"
COLLECTION_IDS_SQL = "SELECT id FROM pgstac.collections"
KEY_SQL = "SELECT id, cube, admin FROM stacube.api_keys WHERE key_hash = %s AND revoked IS NULL"
CUBE_SQL = "SELECT name FROM stacube.access_cubes WHERE name = %s"
CLAIM_SQL = ("INSERT INTO stacube.collection_access (collection, owner, visibility) VALUES (%s, %s, %s) "
             "ON CONFLICT (collection) DO NOTHING RETURNING collection")
OWNER_SQL = "SELECT owner FROM stacube.collection_access WHERE collection = %s"
DROP_SQL = "DELETE FROM stacube.collection_access WHERE collection = %s AND owner = %s"
DROP_ANY_SQL = "DELETE FROM stacube.collection_access WHERE collection = %s"


def ensure_access_schema(conn: psycopg.Connection) -> None:
    """Create the access tables if they are missing (idempotent)."""
    conn.execute(SCHEMA)


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
    cube: str | None
    admin: bool
    label: str | None


class AccessStore(DatabaseStore):
    """Reads and writes cubes, keys and collection access (the CLI and the jobs use it).

    Args:
        settings: the catalog database.
    """


    # -- cubes -----------------------------------------------------------------------------
    def create_cube(self, name: str, title: str | None = None) -> dict:
        """Register a cube.

        Raises:
            InvalidInput: bad name. Conflict: it exists.
        """
        check_cube_name(name)
        with self._conn() as conn:
            row = conn.execute("INSERT INTO stacube.access_cubes (name, title) VALUES (%s, %s) "
                               "ON CONFLICT DO NOTHING RETURNING name, title, created", (name, title)).fetchone()
        if row is None:
            raise Conflict(f"cube {name!r} exists already")
        return row

    def cubes(self) -> list[dict]:
        """Every cube with its number of collections and active keys."""
        with self._conn() as conn:
            return conn.execute(
                "SELECT c.name, c.title, c.created, "
                "(SELECT count(*) FROM stacube.collection_access a WHERE a.owner = c.name) AS collections, "
                "(SELECT count(*) FROM stacube.api_keys k WHERE k.cube = c.name AND k.revoked IS NULL) AS keys "
                "FROM stacube.access_cubes c ORDER BY c.name").fetchall()

    def require_cubes(self, names) -> None:
        """Raises NotFound for the first name that is not a cube."""
        names = list(names)
        with self._conn() as conn:
            known = {r["name"] for r in conn.execute(
                "SELECT name FROM stacube.access_cubes WHERE name = ANY(%s)", (names,))}
        for name in names:
            if name not in known:
                raise NotFound(f"unknown cube {name!r} (create it with `stacube cubes create`)")

    # -- keys ------------------------------------------------------------------------------
    def create_key(self, cube: str | None, *, admin: bool = False, label: str | None = None) -> CreatedKey:
        """Create an API key bound to ``cube`` (an admin key may have none).

        Raises:
            InvalidInput: neither a cube nor admin. NotFound: unknown cube.
        """
        if cube is None and not admin:
            raise InvalidInput("a key needs a cube (--cube) unless it is an admin key (--admin)")
        if cube is not None:
            self.require_cubes([cube])
        key_id, key = new_key()
        with self._conn() as conn:
            conn.execute("INSERT INTO stacube.api_keys (id, key_hash, cube, admin, label) "
                         "VALUES (%s, %s, %s, %s, %s)", (key_id, hash_key(key), cube, admin, label))
        return CreatedKey(key_id, key, cube, admin, label)

    def keys(self, cube: str | None = None) -> list[dict]:
        """Keys (never their secret), newest first."""
        where, args = ("WHERE cube = %s", (cube,)) if cube else ("", ())
        with self._conn() as conn:
            return conn.execute(f"SELECT id, cube, admin, label, created, revoked FROM stacube.api_keys "
                                f"{where} ORDER BY created DESC", args).fetchall()

    def revoke_key(self, key_id: str) -> dict:
        """Revoke a key (it stops working at once; the row stays for the record).

        Raises:
            NotFound: no such key.
        """
        with self._conn() as conn:
            row = conn.execute("UPDATE stacube.api_keys SET revoked = COALESCE(revoked, now()) WHERE id = %s "
                               "RETURNING id, cube, admin, label, created, revoked", (key_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown key {key_id!r}")
        return row

    def principal_for_key(self, key: str) -> Principal | None:
        """The principal of an active key, or None."""
        with self._conn() as conn:
            row = conn.execute(KEY_SQL, (hash_key(key),)).fetchone()
        if row is None:
            return None
        return Principal("admin" if row["admin"] else "member", row["cube"], row["id"], "api-key")

    # -- collection access -----------------------------------------------------------------
    def view(self) -> AccessView:
        """All access rows."""
        with self._conn() as conn:
            rows = conn.execute(ACCESS_ROWS_SQL).fetchall()
        return AccessView.from_rows((r["collection"], r["owner"], r["visibility"], r["shared_with"]) for r in rows)

    def get(self, collection_id: str) -> CollectionAccess | None:
        return self.view().get(collection_id)

    def set_access(self, collection_id: str, *, owner: str | None = None, visibility: str | None = None,
                   share_with: list[str] | None = None, unshare: list[str] | None = None,
                   replace_shares: bool = False) -> CollectionAccess:
        """Create or change a collection's access row.

        Args:
            owner: the owning cube (required when the collection has no row yet).
            visibility: private, shared or public (default for a new row: ``shared`` when cubes
                are shared with, else ``private``).
            share_with: cubes to add to ``shared_with`` (all of them when ``replace_shares``).
            unshare: cubes to remove from ``shared_with``.

        Raises:
            InvalidInput: bad visibility or cube name, no owner for a new row.
            NotFound: an unknown cube.
        """
        share_with = list(dict.fromkeys(share_with or []))
        unshare = list(unshare or [])
        if visibility is not None:
            check_visibility(visibility)
        for name in [*share_with, *unshare, *([owner] if owner else [])]:
            check_cube_name(name)
        self.require_cubes([*share_with, *([owner] if owner else [])])
        current = self.get(collection_id)
        if current is None and owner is None:
            raise InvalidInput(f"collection {collection_id!r} has no owner yet: give its cube (--cube)")
        shares = [] if replace_shares or current is None else list(current.shared_with)
        shares = [c for c in dict.fromkeys([*shares, *share_with]) if c not in unshare]
        if visibility is None:
            if current is not None and not (share_with and current.visibility == "private"):
                visibility = current.visibility
            else:
                visibility = "shared" if share_with else "private"
        new_owner = owner or current.owner
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO stacube.collection_access (collection, owner, visibility, shared_with) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (collection) DO UPDATE SET owner = EXCLUDED.owner, "
                "visibility = EXCLUDED.visibility, shared_with = EXCLUDED.shared_with, updated = now()",
                (collection_id, new_owner, visibility, shares))
        return CollectionAccess(collection_id, new_owner, visibility, tuple(shares))

    def claim(self, collection_id: str, owner: str, visibility: str = "private") -> CollectionAccess:
        """Give a collection that has no row to ``owner``; a row of the same owner is kept.

        Raises:
            Conflict: the collection belongs to another cube.
        """
        with self._conn() as conn:
            conn.execute(CLAIM_SQL, (collection_id, owner, visibility))
        row = self.get(collection_id)
        if row is None or row.owner != owner:
            raise Conflict(f"collection {collection_id!r} is not available to cube {owner}")
        return row

    def drop(self, collection_id: str) -> None:
        """Forget a collection's access row (after deleting the collection)."""
        with self._conn() as conn:
            conn.execute(DROP_ANY_SQL, (collection_id,))
