"""Connections to the pgSTAC database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from stacube.errors import DatabaseUnavailable, StacubeError
from stacube.settings import Settings

if TYPE_CHECKING:  # psycopg is imported when a connection is made (the STAC function never does)
    import psycopg

PGSTAC_OPTIONS = "-c search_path=pgstac,public -c application_name=stacube"


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection to the catalog with ``search_path=pgstac,public``.

    Raises:
        DatabaseUnavailable: the server cannot be reached or refuses the connection.
    """
    import psycopg

    dsn = settings.dsn()
    try:
        return psycopg.connect(dsn, autocommit=autocommit, options=PGSTAC_OPTIONS, connect_timeout=10)
    except psycopg.OperationalError as exc:
        hint = (
            "run `stacube db start`"
            if settings.uses_embedded_db
            else "check STACUBE_DATABASE_URL / PG* settings"
        )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to the catalog database {redact(dsn)} ({reason}); {hint}"
        ) from exc


class DatabaseStore:
    """Base of the stores of stacube's own tables (jobs, access): one autocommit connection per
    call, rows as dicts.

    Args:
        settings: the catalog database.
    """

    def __init__(self, settings: Settings):
        self.settings = settings

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        from psycopg.rows import dict_row

        conn = connect(self.settings, autocommit=True)
        try:
            conn.row_factory = dict_row
            yield conn
        finally:
            conn.close()


def pgstac_version(conn: psycopg.Connection) -> str | None:
    """The installed pgSTAC version, or None when pgSTAC is not installed."""
    row = conn.execute(
        "SELECT 1 FROM pg_namespace WHERE nspname = 'pgstac'"
    ).fetchone()
    if row is None:
        return None
    return conn.execute("SELECT pgstac.get_version()").fetchone()[0]


def require_pgstac(conn: psycopg.Connection) -> str:
    """The pgSTAC version; raises when the database has not been migrated."""
    version = pgstac_version(conn)
    if version is None:
        raise StacubeError("the catalog database has no pgSTAC schema: run `stacube db migrate`")
    return version
