"""Errors that reach users.

Every error stacube raises on purpose derives from :class:`StacubeError` and carries a
one-line message saying what is wrong. The CLI prints that line and exits non-zero; the HTTP
services answer a 4xx JSON body ``{"code": ..., "description": ...}`` with it.
"""

from __future__ import annotations


class StacubeError(Exception):
    """Base class: a problem with the input or the environment, explained in one line."""

    status_code = 400
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(StacubeError):
    """A parameter, file or document is malformed or inconsistent."""

    status_code = 400


class NotFound(StacubeError):
    """A collection, item, job or other named thing does not exist."""

    status_code = 404


class Conflict(StacubeError):
    """The request cannot be applied to the current state."""

    status_code = 409


class NoData(StacubeError):
    """The request is well formed but selects no data (no scene, no pixel)."""

    status_code = 422


class DatabaseUnavailable(StacubeError):
    """The catalog database cannot be reached."""

    status_code = 503
    exit_code = 2


class StorageError(StacubeError):
    """An object store or local path cannot be read or written."""

    status_code = 502
    exit_code = 3


def listing(values, *, none: str) -> str:
    """``"a, b, c"`` for an error message that lists choices; ``none`` (why there is nothing
    to choose from) when there are none, so no message ends with an empty list."""
    values = [str(v) for v in values]
    return ", ".join(values) if values else none
