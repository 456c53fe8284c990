"""Who is calling, and the sharing of collections, over HTTP (routes of the STAC API).

* ``GET {stac}/access``: ``{"principal": {"kind", "workspace", "subject", "via"}, "collections":
  [...]}``: the caller (``kind``: ``anonymous``, ``member`` or ``admin``) and the access of every
  readable collection that has an access row (:func:`stacube.access.policy.access_summary`:
  ``collection``, ``workspace``, ``visibility``, ``manage``, and ``shared_with`` for those who
  manage it). A collection left out has no row: it is public and belongs to no workspace.
* ``GET {stac}/collections/{collection_id}/access``: one collection's (404 unless readable, like
  the collection).
* ``PATCH {stac}/collections/{collection_id}/access``: change it, as ``stacube product share``
  does (:meth:`stacube.access.workspaces.AccessStore.set_access`). Body (JSON object, every member
  optional): ``visibility`` (``private`` | ``shared`` | ``public``), ``share_with`` and
  ``unshare`` (lists of workspace names; sharing a private collection makes it shared), and, for
  admins only, ``workspace`` (hand the collection to another workspace). Answers the new access.
  Only the owning workspace and admins may change it: 401 anonymous, 404 unreadable, 403 readable
  but someone else's, 400 for a malformed body or name, 404 for an unknown workspace.

Every answer is ``Cache-Control: no-store`` (it depends on the caller and changes at once).
"""

from __future__ import annotations

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from stac_fastapi.types.errors import NotFoundError

from stacube.access.errors import Forbidden, InvalidParameter, Unauthorized
from stacube.access.policy import access_summary, can_write
from stacube.access.workspaces import AccessStore
from stacube_services.access.service import access_of, principal_of

NO_STORE = {"Cache-Control": "no-store"}
#: The members a PATCH body may have.
FIELDS = ("visibility", "share_with", "unshare", "workspace")


def _names(body: dict, key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"{key!r} must be a list of workspace names")
    return value


def parse_change(body) -> dict:
    """The keyword arguments of ``set_access`` a PATCH body asks for.

    Raises:
        InvalidParameter: not a JSON object, an unknown member, or members of the wrong type.
    """
    if not isinstance(body, dict):
        raise InvalidParameter("the body must be a JSON object with visibility, share_with, unshare or workspace")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidParameter(f"unknown member {unknown[0]!r}: use {', '.join(FIELDS)}")
    for key in ("visibility", "workspace"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidParameter(f"{key!r} must be a string")
    change = {"visibility": body.get("visibility"), "workspace": body.get("workspace"),
              "share_with": _names(body, "share_with"), "unshare": _names(body, "unshare")}
    if not any((change["visibility"], change["workspace"], change["share_with"], change["unshare"])):
        raise InvalidParameter("nothing to change: give visibility, share_with, unshare or workspace")
    return change


async def _readable(request: Request, collection_id: str):
    """The access row of a collection the caller may read (404 otherwise, as for the collection)."""
    service = access_of(request)
    principal = principal_of(request)
    view = await service.view(request.scope)
    exists = await service.fetch("SELECT 1 FROM pgstac.collections WHERE id = %s", collection_id)
    if not exists or not view.can_read(principal, collection_id):
        raise NotFoundError(f"Collection {collection_id} does not exist.")
    return principal, view.get(collection_id)


def add_access_routes(app: FastAPI, prefix_path: str = "") -> None:
    """Add the routes of the module docstring to the STAC API's app (before its access
    dependency is installed, which then covers them too)."""
    prefix = prefix_path.rstrip("/")

    @app.get(f"{prefix}/access", tags=["Access"], summary="The caller and the access of its collections")
    async def caller_access(request: Request) -> JSONResponse:
        service = access_of(request)
        principal = principal_of(request)
        view = await service.view(request.scope)
        rows = [access_summary(principal, cid, row) for cid, row in sorted(view.rows.items())
                if view.can_read(principal, cid)]
        who = {"kind": principal.kind, "workspace": principal.workspace, "subject": principal.subject,
               "via": principal.via}
        return JSONResponse({"principal": who, "collections": rows}, headers=NO_STORE)

    @app.get(f"{prefix}/collections/{{collection_id}}/access", tags=["Access"],
             summary="Who may read a collection")
    async def collection_access(collection_id: str, request: Request) -> JSONResponse:
        principal, row = await _readable(request, collection_id)
        return JSONResponse(access_summary(principal, collection_id, row), headers=NO_STORE)

    @app.patch(f"{prefix}/collections/{{collection_id}}/access", tags=["Access"],
               summary="Change who may read a collection (its workspace or an admin)")
    async def share_collection(collection_id: str, request: Request) -> JSONResponse:
        principal = principal_of(request)
        if principal.is_anonymous:
            raise Unauthorized("changing who may read a collection needs an API key or a bearer token")
        principal, row = await _readable(request, collection_id)
        if not can_write(principal, row):
            holder = f"workspace {row.workspace}" if row else "the catalog (admins only)"
            raise Forbidden(f"collection {collection_id} belongs to {holder}: "
                            f"{principal.describe()} may not change who reads it")
        try:
            body = await request.json()
        except ValueError as exc:
            raise InvalidParameter("the body must be a JSON object") from exc
        change = parse_change(body)
        if change["workspace"] is not None and not principal.is_admin:
            raise Forbidden("only admins hand a collection to another workspace")
        store = AccessStore(access_of(request).settings)
        new = await anyio.to_thread.run_sync(lambda: store.set_access(collection_id, **change))
        return JSONResponse(access_summary(principal, collection_id, new), headers=NO_STORE)
