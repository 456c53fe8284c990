"""Catalog database: the embedded PostgreSQL cluster, connections, pgSTAC migrations.

The names below load on first use: importing ``stacube.db.connection`` (every API does) must not
import pypgstac's migrations (boto3, smart_open), which only :func:`stacube.db.migrate.migrate` needs.
"""

from __future__ import annotations

import importlib

_NAMES = {"connect": "stacube.db.connection", "pgstac_version": "stacube.db.connection"}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'stacube.db' has no attribute {name!r}")
