"""Which database errors of the tile cache's lookups are an outage (503 at once) and which only
turn the cache off (the tile is rendered uncached)."""

from __future__ import annotations

import socket

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout

from stacube.errors import DatabaseUnavailable
from stacube_services.access.service import unavailable
from stacube_services.tile_cache import is_outage


def refused() -> psycopg.OperationalError:
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        psycopg.connect(f"host=127.0.0.1 port={port} user=x dbname=x connect_timeout=2")
    except psycopg.OperationalError as exc:
        return exc
    raise AssertionError("connected to a closed port")


def wrapped(exc: BaseException) -> DatabaseUnavailable:
    try:
        raise unavailable(exc) from exc
    except DatabaseUnavailable as out:
        return out


@pytest.mark.parametrize("make", [refused, lambda: PoolTimeout("couldn't get a connection after 5.00 sec"),
                                  lambda: errors.AdminShutdown("terminating connection due to administrator command"),
                                  lambda: ConnectionResetError(104, "reset"),
                                  lambda: DatabaseUnavailable("the catalog database is not connected yet")])
def test_outages(make):
    exc = make()
    assert is_outage(exc)
    if not isinstance(exc, DatabaseUnavailable):
        assert is_outage(wrapped(exc))  # as AccessService.fetch raises it


@pytest.mark.parametrize("make", [lambda: errors.UndefinedTable('relation "stacube.catalog_changes" does not exist'),
                                  lambda: errors.InsufficientPrivilege("permission denied for table catalog_changes"),
                                  lambda: errors.UndefinedColumn("column does not exist")])
def test_not_outages(make):
    exc = make()
    assert not is_outage(exc)
    assert not is_outage(wrapped(exc))
