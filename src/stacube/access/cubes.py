"""Access control of the Zarr cubes API (``/cubes``: tiles and time series).

A Zarr cube is readable when the caller may read every collection it is made of and the
collection it is registered as (its name). Then:

* ``GET /cubes/`` lists only readable cubes;
* ``/cubes/{name}/...`` (description, tiles, TileJSON, time series) of a cube that is not
  readable answers the 404 of an unknown cube;
* ``/cubes/timeseries?collection=...`` answers the 404 of an unknown collection for the first
  collection the caller may not read.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from stacube.access.asgi import (
    DB_ERRORS,
    AccessService,
    error_for,
    json_error,
    principal_of,
    relative_path,
    rewrite_json_response,
)
from stacube.errors import StacubeError

CUBE_SQL = "SELECT definition->'spec'->'collections' FROM stacube.cubes WHERE name = %s"
RESERVED = {"", "timeseries", "api", "api.html", "docs", "openapi.json"}


class CubesAccessMiddleware:
    """Wraps the cubes app; see the module docstring.

    Args:
        service: the :class:`AccessService` of the enclosing app (the principal comes from its
            authentication middleware).
    """

    def __init__(self, app, *, service: AccessService):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parts = [p for p in (relative_path(scope) or "").split("/") if p]
        try:
            principal = principal_of(scope)
            view = await self.service.view(scope)
            if not view.restricts(principal):
                await self.app(scope, receive, send)
                return
            if not parts and scope["method"] == "GET":
                await self._filtered_list(scope, receive, send, view, principal)
                return
            if parts[:1] == ["timeseries"]:
                query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
                for value in (v for k, v in query if k == "collection"):
                    for cid in (c.strip() for c in value.split(",") if c.strip()):
                        if not view.can_read(principal, cid):
                            await json_error(404, "NotFound", f"unknown collection {cid!r}")(scope, receive, send)
                            return
            elif parts and parts[0] not in RESERVED and not await self._readable(parts[0], view, principal):
                await json_error(404, "NotFound", f"unknown cube {parts[0]!r}")(scope, receive, send)
                return
        except (StacubeError, *DB_ERRORS) as exc:
            await error_for(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _readable(self, name: str, view, principal) -> bool:
        rows = await self.service.db.fetch(CUBE_SQL, name)
        if not rows:
            return True  # unknown: the app answers its own 404
        collections = rows[0][0]
        if isinstance(collections, str):
            collections = json.loads(collections)
        return view.can_read(principal, name) and all(view.can_read(principal, c) for c in collections or [])

    async def _filtered_list(self, scope, receive, send, view, principal) -> None:
        def readable(cubes: list) -> list:
            return [c for c in cubes if view.can_read(principal, c.get("name", ""))
                    and all(view.can_read(principal, x) for x in c.get("collections") or [])]

        await rewrite_json_response(self.app, scope, receive, send, readable, fallback=b"[]")
