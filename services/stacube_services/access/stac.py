"""Access control in the STAC API, through stac-fastapi's own hooks.

* :func:`collection_dependency` - a route dependency (``StacApi.add_route_dependencies``) on every
  route: a ``{collection_id}`` the caller may not read answers 404, exactly like a collection
  that does not exist; writes (transactions: POST/PUT/PATCH/DELETE under ``/collections``) answer
  401 without credentials and 403 when the caller may read but not write the collection.
* :class:`AccessCoreClient` - every item search (``GET``/``POST /search``, item lists) runs with
  ``collections`` narrowed to what the caller may read, the restriction applied again on every
  page; a paging token that points into a hidden collection fails exactly like a token of an item
  that does not exist. Collection listings and collection search leave hidden collections out.
  ``limit`` is capped (``STACUBE_MAX_LIMIT``).
* :class:`AccessTransactionsClient` / :class:`AccessBulkTransactionsClient` - the checks run on
  the document that will be stored: a patch (JSON Patch or merge patch) is applied first and the
  result checked exactly like a PUT (its id is the path's, an item's collection is the path's,
  its asset hrefs pass :func:`check_hrefs`), then stored as that result. A collection created by a
  workspace member belongs to the member's workspace (private); deleting a collection drops its
  access row and read prefixes.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import jsonpatch
from buildpg import render
from fastapi import Depends, Request
from json_merge_patch import merge
from stac_fastapi.extensions import BulkTransactionExtension, TransactionExtension
from stac_fastapi.extensions.transaction.request import PatchAddReplaceTest
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.transactions import BulkTransactionsClient, TransactionsClient
from stac_fastapi.types.errors import NotFoundError

from stacube.access.errors import Forbidden, InvalidParameter, Unauthorized
from stacube.access.policy import NO_COLLECTION
from stacube.access.prefixes import ReadPrefixes, locate, shown
from stacube.access.workspaces import CLAIM_SQL, DROP_ANY_SQL, DROP_PREFIXES_SQL, DROP_SQL, WORKSPACE_OF_SQL
from stacube.errors import Conflict
from stacube_services.access.service import AccessService, AsyncpgDb, AuthMiddleware, access_of, principal_of
from stacube_services.assets import restored

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_COLLECTION_IDS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "stacube_collection_ids", default=None)
#: Asset hrefs already registered in readable collections (``%s``: hidden collections, hrefs).
KNOWN_HREFS_SQL = ("SELECT DISTINCT a.value->>'href' FROM pgstac.items i "
                   "CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(i.content->'assets') = 'object' "
                   "THEN i.content->'assets' ELSE '{}'::jsonb END) a "
                   "WHERE NOT (i.collection = ANY(%s)) AND a.value->>'href' = ANY(%s)")
OWN_PREFIXES_SQL = ("SELECT prefix FROM stacube.workspace_prefixes WHERE workspace = %s UNION "
                    "SELECT p.prefix FROM stacube.collection_prefixes p JOIN stacube.collection_access a "
                    "ON a.collection = p.collection WHERE a.workspace = %s")


# -- the route dependency --------------------------------------------------------------------------
def collection_dependency(prefix_path: str, transactions: bool):
    """The dependency checking the caller against the route's ``{collection_id}`` (see the
    module docstring)."""
    collections_root = prefix_path.rstrip("/") + "/collections"

    async def check(request: Request) -> None:
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        principal = principal_of(request)
        writing = transactions and request.method in WRITE_METHODS and path.startswith(collections_root)
        if writing and principal.is_anonymous:
            raise Unauthorized("transactions need an API key or a bearer token")
        cid = request.path_params.get("collection_id")
        if cid is None:
            return
        view = await access_of(request).view(request.scope)
        if not view.can_read(principal, cid):
            if path.endswith("/queryables"):
                raise NotFoundError(f"Collection {cid} not found")
            raise NotFoundError(f"Collection {cid} does not exist.")
        if writing and not view.can_write(principal, cid):
            row = view.get(cid)
            holder = f"workspace {row.workspace}" if row else "the catalog (admins only)"
            raise Forbidden(f"collection {cid} belongs to {holder}: {principal.describe()} may not change it")

    return check


# -- reads --------------------------------------------------------------------------------------
def token_collection(token: str) -> str | None:
    """The collection a pgSTAC paging token (``next:<hex collection>:<hex id>``) points into."""
    parts = str(token).split(":")
    if len(parts) != 3:
        return None
    try:
        return bytes.fromhex(parts[1]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def capped(request, limit):
    """``limit`` no larger than ``STACUBE_MAX_LIMIT`` (a larger one is answered with the largest
    page, as OGC API Features asks)."""
    cap = access_of(request).settings.max_limit
    return min(limit, cap) if isinstance(limit, int) else limit


class AccessCoreClient(CoreCrudClient):
    """stac-fastapi-pgstac's client with every read narrowed to the caller's collections."""

    async def _search_base(self, search_request, request):
        service = access_of(request)
        principal = principal_of(request)
        search_request.limit = capped(request, search_request.limit)
        view = await service.view(request.scope)
        if view.restricts(principal):
            requested = list(search_request.collections or [])
            all_ids = None if requested else await service.collection_ids()
            search_request.collections = view.narrow(principal, requested, all_ids)
            token = getattr(search_request, "token", None)
            if token:
                hidden = token_collection(token)
                if hidden is not None and not view.can_read(principal, hidden):
                    # the answer pgSTAC gives for a token of an item that does not exist
                    raise InvalidParameter(f"Could not find item using token: {token}")
        return await super()._search_base(search_request, request)

    async def all_collections(self, request, **kwargs: Any):
        if "limit" in kwargs:
            kwargs["limit"] = capped(request, kwargs["limit"])
        service = access_of(request)
        principal = principal_of(request)
        view = await service.view(request.scope)
        if not view.restricts(principal):
            return await super().all_collections(request, **kwargs)
        allowed = view.readable_among(principal, await service.collection_ids())
        marker = _COLLECTION_IDS.set(allowed or [NO_COLLECTION])
        try:
            return await super().all_collections(request, **kwargs)
        finally:
            _COLLECTION_IDS.reset(marker)

    def _clean_search_args(self, base_args: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        clean = super()._clean_search_args(base_args, *args, **kwargs)
        allowed = _COLLECTION_IDS.get()
        if allowed is not None:  # a collection search: pgSTAC's collection_search honours "ids"
            clean["ids"] = allowed
        return clean


# -- writes -------------------------------------------------------------------------------------
def asset_hrefs(doc) -> list[str]:
    """Asset hrefs of an Item, an ItemCollection, or a Collection's ``assets``."""
    if not isinstance(doc, dict):
        return []
    if doc.get("type") == "FeatureCollection":
        return [h for f in doc.get("features") or [] for h in asset_hrefs(f)]
    assets = doc.get("assets")
    out = []
    for asset in (assets.values() if isinstance(assets, dict) else []):
        if isinstance(asset, dict):
            out.extend(_nested_hrefs(asset))
    return out


def _nested_hrefs(value) -> list[str]:
    if isinstance(value, dict):
        href = value.get("href")
        return [*([href] if href is not None else []),
                *(h for k, v in value.items() if k != "href" for h in _nested_hrefs(v))]
    if isinstance(value, list):
        return [h for v in value for h in _nested_hrefs(v)]
    return []


async def check_hrefs(request, collection_id: str, hrefs) -> None:
    """The asset hrefs a workspace member stores in ``collection_id`` must pass the read gate
    (:class:`stacube.access.gate.ReadGate`: the server's prefixes, the collection's own, never the
    catalog's files) and belong to the member: lie under its workspace's own prefixes (those
    granted to it and the registered roots of its collections) or be hrefs of assets already
    registered in collections it may read. Admins are trusted like the CLI (the read gate still
    applies when anything is read).

    Raises:
        InvalidParameter: the first href that is none of these (400).
    """
    principal = principal_of(request)
    hrefs = list(dict.fromkeys(hrefs))
    if principal.is_admin or not hrefs:
        return
    service = access_of(request)
    gate = await service.gate()
    reason = (f"workspace {principal.workspace} may store hrefs under its own prefixes or of assets it may "
              "read" if principal.workspace else "anonymous callers may not store hrefs")
    rows = await service.fetch(OWN_PREFIXES_SQL, principal.workspace, principal.workspace) if principal.workspace else []
    own = ReadPrefixes([r[0] for r in rows])
    pending = []
    for href in hrefs:
        if not isinstance(href, str) or not gate.allows(href, collection_id):
            raise InvalidParameter(gate.refusal(href) if isinstance(href, str) else
                                   f"asset href {shown(href)} is not under an allowed prefix (not a string)")
        if not own.covers(locate(href)):
            pending.append(href)
    if not pending:
        return
    view = await service.view(request.scope)
    hidden = sorted(view.unreadable(principal))
    known = {r[0] for r in await service.fetch(KNOWN_HREFS_SQL, hidden, pending)}
    for href in pending:
        if href not in known:
            raise InvalidParameter(f"asset href {shown(href)} is not under an allowed prefix ({reason})")


def _dump(model) -> Any:
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json")
    return model


def as_stored(model):
    """An item (or item collection) model with its storage hrefs back
    (:func:`stacube_services.assets.restored`): the document to check and store."""
    doc = _dump(model)
    if not isinstance(doc, dict) or not restored(doc):
        return model
    return type(model).model_validate(doc) if hasattr(model, "model_validate") else doc


def patched(existing: dict, patch) -> dict:
    """What stac-fastapi-pgstac stores for ``patch`` applied to ``existing`` (JSON Patch ops or
    a merge patch).

    Raises:
        jsonpatch.JsonPatchException / jsonpointer.JsonPointerException: a patch that does not apply.
    """
    if isinstance(patch, list):
        return jsonpatch.JsonPatch([_dump(op) for op in patch]).apply(existing)
    return merge(existing, _dump(patch))


def as_replacement(document: dict) -> list:
    """The patch that stores exactly ``document``."""
    return [PatchAddReplaceTest(op="replace", path="", value=document)]


class AccessTransactionsClient(TransactionsClient):
    """Transactions with ownership, id and href checks on the stored document (module docstring)."""

    async def _current(self, request, sql: str, **params) -> dict | None:
        async with request.app.state.get_connection(request, "r") as conn:
            q, p = render(sql, **params)
            return await conn.fetchval(q, *p)

    async def create_collection(self, collection, request, **kwargs):
        service = access_of(request)
        principal = principal_of(request)
        cid = collection.id
        await check_hrefs(request, cid, asset_hrefs(_dump(collection)))
        claimed = False
        if principal.workspace is not None:
            if await service.fetch("SELECT 1 FROM pgstac.collections WHERE id = %s", cid):
                raise Conflict(f"collection {cid} exists already")
            if await service.execute(CLAIM_SQL, cid, principal.workspace, "private"):
                claimed = True
            else:
                holder = await service.fetch(WORKSPACE_OF_SQL, cid)
                if not holder or holder[0][0] != principal.workspace:
                    raise Conflict(f"collection id {cid} is not available")
        try:
            return await super().create_collection(collection, request, **kwargs)
        except BaseException:
            if claimed:
                await service.execute(DROP_SQL, cid, principal.workspace)
            raise

    async def update_collection(self, collection, request, **kwargs):
        path_id = kwargs.get("collection_id") or request.path_params.get("collection_id")
        self._check_collection_id(collection.id, path_id)
        await check_hrefs(request, collection.id, asset_hrefs(_dump(collection)))
        return await super().update_collection(collection, request, **kwargs)

    @staticmethod
    def _check_collection_id(new_id, path_id) -> None:
        if path_id is not None and new_id != path_id:
            raise InvalidParameter(f"the collection's id {new_id!r} must be the collection of the path "
                                   f"({path_id!r}): a collection's id cannot change")

    async def patch_collection(self, collection_id, patch, request, **kwargs):
        existing = await self._current(request, "SELECT * FROM get_collection(:id::text);", id=collection_id)
        if existing is None:
            raise NotFoundError(f"Collection {collection_id} does not exist.")
        result = patched(existing, patch)
        if not isinstance(result, dict):
            raise InvalidParameter("the patched collection is not a JSON object")
        self._check_collection_id(result.get("id"), collection_id)
        await check_hrefs(request, collection_id, asset_hrefs(result))
        return await super().patch_collection(collection_id, as_replacement(result), request, **kwargs)

    async def delete_collection(self, collection_id, request, **kwargs):
        response = await super().delete_collection(collection_id, request, **kwargs)
        service = access_of(request)
        await service.execute(DROP_ANY_SQL, collection_id)
        await service.execute(DROP_PREFIXES_SQL, collection_id)
        return response

    async def create_item(self, collection_id, item, request, **kwargs):
        item = as_stored(item)
        await check_hrefs(request, collection_id, asset_hrefs(_dump(item)))
        return await super().create_item(collection_id, item, request, **kwargs)

    async def update_item(self, request, collection_id, item_id, item, **kwargs):
        item = as_stored(item)
        await check_hrefs(request, collection_id, asset_hrefs(_dump(item)))
        return await super().update_item(request, collection_id, item_id, item, **kwargs)

    async def patch_item(self, collection_id, item_id, patch, request, **kwargs):
        existing = await self._current(request, "SELECT * FROM get_item(:item_id::text, :collection_id::text);",
                                       item_id=item_id, collection_id=collection_id)
        if existing is None:
            raise NotFoundError(f"Item {item_id} does not exist in collection {collection_id}.")
        result = patched(existing, patch)
        if not isinstance(result, dict):
            raise InvalidParameter("the patched item is not a JSON object")
        restored(result)
        if result.get("id") != item_id:
            raise InvalidParameter(f"the item's id {result.get('id')!r} must be the item of the path ({item_id!r})")
        if result.get("collection", collection_id) != collection_id:
            raise InvalidParameter(f"the item's collection {result.get('collection')!r} must be the collection "
                                   f"of the path ({collection_id!r})")
        await check_hrefs(request, collection_id, asset_hrefs(result))
        return await super().patch_item(collection_id, item_id, as_replacement(result), request, **kwargs)


class AccessBulkTransactionsClient(BulkTransactionsClient):
    """Bulk item inserts with the href check."""

    async def bulk_item_insert(self, items, **kwargs):
        request = kwargs.get("request")
        for item in items.items.values():
            restored(item)
        if request is not None:
            await check_hrefs(request, request.path_params.get("collection_id"),
                              [h for item in items.items.values() for h in asset_hrefs(item)])
        return await super().bulk_item_insert(items, **kwargs)


@dataclass
class AccessExtensions(Extensions):
    """stac-fastapi-pgstac's extensions with the access-checked transaction clients."""

    @property
    def transaction(self):
        from stac_fastapi.api.models import JSONResponse

        if not self.settings.enable_transactions_extensions:
            return []
        return [TransactionExtension(client=AccessTransactionsClient(), settings=self.settings,
                                     response_class=JSONResponse),
                BulkTransactionExtension(client=AccessBulkTransactionsClient())]


def install_stac_access(api, settings, *, prefix_path: str = "", transactions: bool = False) -> AccessService:
    """Add authentication (a middleware) and the collection dependency (on every route) to the
    ``StacApi`` (built with :class:`AccessCoreClient` and :class:`AccessExtensions`); returns the
    app's :class:`AccessService`."""
    service = AccessService(settings, AsyncpgDb(api.app))
    api.app.state.stacube_access = service
    api.add_route_dependencies(scopes=[{"path": "*", "method": "*"}],
                               dependencies=[Depends(collection_dependency(prefix_path, transactions))])
    api.app.add_middleware(AuthMiddleware, service=service)
    return service
