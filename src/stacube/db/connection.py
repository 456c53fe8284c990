"""Connections to the pgSTAC database.

Two ways to reach PostgreSQL (``STACUBE_DB_POOL_MODE``):

* ``session`` (default): straight to the server; each connection sets ``search_path`` and
  ``application_name`` in its startup options.
* ``transaction``: through a transaction pooler (PgBouncer ``pool_mode = transaction``, RDS
  Proxy), which hands each transaction whatever server connection is free. Nothing may outlive a
  transaction on the server side, so connections send no startup ``options`` (the role's own
  ``search_path``, set by ``db-bootstrap``, applies) and psycopg prepares no statement
  (``prepare_threshold=None``).

A unit of work that makes many small calls (a worker invocation: the tile's state, its
completion, the stage move) runs them on one connection: :func:`session` opens it lazily and
every :class:`DatabaseStore` call and :class:`~stacube.catalog.pgstac.Catalog` call inside
reuses it. Outside a session a call opens a connection and closes it after, unless its store
keeps one (:attr:`DatabaseStore.keep_connection`: a store read on every request, whose reads
cost less than a new connection): that store's calls then share one connection per thread,
kept open between calls (:func:`borrow` with ``keep``), checked after :data:`IDLE_CHECK_SECONDS`
idle and replaced when the server ended it. Transient errors (a dropped connection, a server restarting, a deadlock, a
serialization failure) are retried a few times on a fresh connection (:meth:`DatabaseStore.run`,
:func:`retrying`) and then raised as :class:`~stacube.errors.DatabaseUnavailable` (503,
retried by queues), never as invalid input.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from stacube.errors import DatabaseUnavailable, StacubeError
from stacube.settings import Settings

if TYPE_CHECKING:  # psycopg is imported when a connection is made (the STAC function never does)
    import psycopg

PGSTAC_OPTIONS = "-c search_path=pgstac,public -c application_name=stacube"
#: Seconds between the tries of a call that met a transient error (then DatabaseUnavailable):
#: a request answers 503 quickly, a unit of work (a :func:`session`: a worker invocation)
#: rides out a server restart.
RETRY_DELAYS = (0.1, 0.3)
SESSION_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 4.0)
#: A kept connection idle longer than this (seconds) is checked before use (one empty query).
IDLE_CHECK_SECONDS = 1.0
T = TypeVar("T")


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def connect_kwargs(settings: Settings, application_name: str = "stacube") -> dict:
    """psycopg connection arguments for ``settings.db_pool_mode`` (see the module docstring)."""
    if settings.db_pool_mode == "transaction":
        return {"application_name": application_name, "prepare_threshold": None}
    return {"options": f"-c search_path=pgstac,public -c application_name={application_name}"}


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection to the catalog (``search_path`` pgstac, public).

    Raises:
        DatabaseUnavailable: the server cannot be reached or refuses the connection.
    """
    import psycopg

    dsn = settings.dsn()
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10, **connect_kwargs(settings))
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


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` on a fresh connection may succeed: the connection dropped or was
    refused (server restarting, pooler recycling), a deadlock, a serialization failure. A
    statement cancelled by ``statement_timeout`` is not (the same statement would time out
    again): it is a :class:`DatabaseUnavailable` without a retry here."""
    import psycopg
    from psycopg import errors

    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, errors.QueryCanceled):
        return False
    return isinstance(exc, (psycopg.OperationalError, errors.DeadlockDetected,
                            errors.SerializationFailure, psycopg.InterfaceError))


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """A one-line :class:`DatabaseUnavailable` for a transient or timed-out database error."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(f"the catalog database is unavailable ({type(exc).__name__}: {text}); "
                               "try again shortly")


def retrying(call: Callable[[], T], *, delays: tuple[float, ...] | None = None,
             on_retry: Callable[[], None] | None = None) -> T:
    """``call()``, tried again after each delay while it raises a transient error (default
    delays: :data:`SESSION_RETRY_DELAYS` inside a :func:`session`, else :data:`RETRY_DELAYS`).

    ``call`` must be safe to repeat: a transaction that failed was rolled back, and statements
    that commit on their own are guarded (``WHERE state <> 'done'``...).

    Raises:
        DatabaseUnavailable: the last try failed transiently (or a statement timed out).
        Exception: any other error, at once.
    """
    from psycopg import errors

    if delays is None:
        delays = SESSION_RETRY_DELAYS if _SESSION.get() is not None else RETRY_DELAYS
    for delay in (*delays, None):
        try:
            return call()
        except Exception as exc:
            if isinstance(exc, errors.QueryCanceled):
                raise unavailable(exc) from exc
            if not is_transient(exc):
                raise
            if delay is None:
                raise unavailable(exc) from exc
            if on_retry is not None:
                on_retry()
            time.sleep(delay)
    raise AssertionError("unreachable")


# -- one connection per unit of work ---------------------------------------------------------------
class Session:
    """A connection shared by the calls of one unit of work (opened at first use)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dsn = settings.dsn()
        self.conn: psycopg.Connection | None = None
        self.opened = 0
        self.checked_pgstac = False

    def connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.discard()
            self.conn = connect(self.settings, autocommit=True)
            self.opened += 1
        return self.conn

    def discard(self) -> None:
        """Drop the connection (after an error that may have broken it)."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self.conn = None
        self.checked_pgstac = False


_SESSION: ContextVar[Session | None] = ContextVar("stacube_db_session", default=None)


@contextmanager
def session(settings: Settings) -> Iterator[Session]:
    """Run the enclosed calls on one connection (opened at first use, closed at the end).

    A session already open for the same database is reused (nested units of work share it).
    """
    current = _SESSION.get()
    if current is not None and current.dsn == settings.dsn():
        yield current
        return
    new = Session(settings)
    token = _SESSION.set(new)
    try:
        yield new
    finally:
        _SESSION.reset(token)
        new.discard()


def current_session(settings: Settings) -> Session | None:
    """The open session for ``settings``' database, if any."""
    current = _SESSION.get()
    return current if current is not None and current.dsn == settings.dsn() else None


# -- one kept connection per thread ---------------------------------------------------------------
class _Kept(threading.local):
    """This thread's kept connections, by database and process (a forked child opens its own)."""

    def __init__(self):
        self.conns: dict[tuple[str, int], psycopg.Connection] = {}
        self.used: dict[tuple[str, int], float] = {}


_KEPT = _Kept()


def _kept_connection(settings: Settings) -> tuple[tuple[str, int], psycopg.Connection]:
    """This thread's kept connection to ``settings``' database (opened at first use; one idle
    for more than :data:`IDLE_CHECK_SECONDS` is checked first, and replaced when dead)."""
    key = (settings.dsn(), os.getpid())
    conn = _KEPT.conns.get(key)
    if conn is not None and not (conn.closed or conn.broken) \
            and time.monotonic() - _KEPT.used.get(key, 0.0) > IDLE_CHECK_SECONDS:
        import psycopg
        from psycopg_pool import ConnectionPool

        try:  # a server restarted since the last call left it dead: psycopg_pool's check
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            conn.close()
    if conn is None or conn.closed or conn.broken:
        conn = connect(settings, autocommit=True)
        _KEPT.conns[key] = conn
    return key, conn


@contextmanager
def borrow(settings: Settings, *, keep: bool = False) -> Iterator[psycopg.Connection]:
    """An autocommit connection: the session's when one is open, else (``keep``) this thread's
    kept connection, else a new one closed after.

    Raises:
        DatabaseUnavailable: no connection could be opened.
    """
    shared = current_session(settings)
    if shared is None and not keep:
        conn = connect(settings, autocommit=True)
        try:
            yield conn
        finally:
            conn.close()
        return
    if shared is None:
        key, conn = _kept_connection(settings)

        def discard() -> None:
            _KEPT.conns.pop(key, None)
            conn.close()
    else:
        conn, discard = shared.connection(), shared.discard
    try:
        yield conn
    except BaseException as exc:
        if conn.broken or is_transient(exc):
            discard()
        elif not conn.closed and conn.info.transaction_status != 0:  # not idle: a failed block
            conn.rollback()
        raise
    finally:
        if shared is None:
            _KEPT.used[key] = time.monotonic()


class DatabaseStore:
    """Base of the stores of stacube's own tables (jobs, access, cubes): rows as dicts, one
    autocommit connection per call (the open :func:`session`'s when there is one; this thread's
    kept one when :attr:`keep_connection`); :meth:`run` retries a call that met a transient error.

    Args:
        settings: the catalog database.
    """

    #: Keep a connection per thread between calls outside a session (see the module docstring).
    keep_connection = False

    def __init__(self, settings: Settings):
        self.settings = settings

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        from psycopg.rows import dict_row, tuple_row

        with borrow(self.settings, keep=self.keep_connection) as conn:
            conn.row_factory = dict_row
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.row_factory = tuple_row

    def run(self, call: Callable[[psycopg.Connection], T]) -> T:
        """``call(conn)`` with retries of transient errors (see :func:`retrying`)."""

        def once() -> T:
            with self._conn() as conn:
                return call(conn)

        return retrying(once)


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
