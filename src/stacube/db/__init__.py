"""Catalog database: the embedded PostgreSQL cluster, connections, pgSTAC migrations."""

from stacube.db.connection import connect, pgstac_version
from stacube.db.migrate import migrate

__all__ = ["connect", "migrate", "pgstac_version"]
