"""Errors of authentication, authorisation and reading limits (all :class:`StacubeError`)."""

from __future__ import annotations

from stacube.errors import InvalidInput, StacubeError


class Unauthorized(StacubeError):
    """Credentials were given but are not valid (unknown or revoked key, bad or expired token)."""

    status_code = 401


class Forbidden(StacubeError):
    """The caller is known but may not do this (e.g. write into another cube's collection)."""

    status_code = 403


class AssetNotAllowed(InvalidInput):
    """An asset href lies outside the storage prefixes the server may read (an input no retry
    can fix, answered 403)."""

    status_code = 403


class InvalidParameter(InvalidInput):
    """A request parameter is not acceptable (named like the database's own input errors)."""


class OidcUnavailable(StacubeError):
    """Bearer tokens are configured but cannot be verified in this deployment."""

    status_code = 503
