"""Access control of the Zarr cubes API (``/cubes``: tiles and time series), as FastAPI
dependencies of its routes.

A Zarr cube is readable when the caller may read every collection it is made of and the
collection it is registered as (its name). Then:

* ``GET /cubes/`` lists only readable cubes;
* ``/cubes/{name}/...`` (description, tiles, TileJSON, time series) of a cube that is not
  readable answers the 404 of an unknown cube;
* ``/cubes/timeseries?collection=...`` answers the 404 of an unknown collection for the first
  collection the caller may not read, and chooses only among the cubes the caller may read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import Request

from stacube.access.policy import AccessView, Principal
from stacube.errors import NotFound
from stacube_services.access.service import AccessService, principal_of

CUBE_SQL = "SELECT definition->'spec'->'collections' FROM stacube.cubes WHERE name = %s"


@dataclass(frozen=True)
class CubeAccess:
    """What one caller may read among the cubes (``view`` None: everything)."""

    principal: Principal
    view: AccessView | None = None

    def collection(self, cid: str) -> bool:
        return self.view is None or self.view.can_read(self.principal, cid)

    def cube(self, name: str, collections) -> bool:
        """A cube named ``name`` made of ``collections``."""
        return self.collection(name) and all(self.collection(c) for c in collections or [])

    def usable(self, definition) -> bool:
        """For :func:`stacube.cubes.timeseries.find_cube`."""
        return self.cube(definition.name, definition.spec.get("collections"))


def cube_dependencies(service: AccessService | None):
    """``(caller, readable_cube, readable_collections)``: the dependencies of the cubes routes
    (open to everyone when ``service`` is None: the app runs without access control)."""

    async def caller(request: Request) -> CubeAccess:
        if service is None:
            return CubeAccess(principal_of(request))
        principal = principal_of(request)
        view = await service.view(request.scope)
        return CubeAccess(principal, view if view.restricts(principal) else None)

    async def readable_cube(request: Request, name: str) -> None:
        access = await caller(request)
        if access.view is None:
            return
        rows = await service.fetch(CUBE_SQL, name)
        if not rows:
            return  # unknown: the route answers its own 404
        collections = rows[0][0]
        if isinstance(collections, str):
            collections = json.loads(collections)
        if not access.cube(name, collections):
            raise NotFound(f"unknown cube {name!r}")

    async def readable_collections(request: Request) -> None:
        access = await caller(request)
        for value in request.query_params.getlist("collection"):
            for cid in (c.strip() for c in value.split(",") if c.strip()):
                if not access.collection(cid):
                    raise NotFound(f"unknown collection {cid!r}")

    return caller, readable_cube, readable_collections
