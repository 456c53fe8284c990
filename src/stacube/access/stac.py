"""Access control in the STAC API (stac-fastapi-pgstac).

* :class:`StacAccessMiddleware` - every ``/collections/{id}[/...]`` path: 404 (exactly the answer
  for a collection that does not exist) when the caller may not read the collection; for writes
  (POST/PUT/PATCH/DELETE, transactions) 401 without credentials and 403 when the caller may read
  but not write it. ``POST /collections`` needs credentials.
* :class:`AccessCoreClient` - every item search (``GET``/``POST /search``, item lists, single
  items) runs with ``collections`` narrowed to what the caller may read, the restriction applied
  again on every page; a paging token that points into a hidden collection fails exactly like a
  token of an item that does not exist. Collection listings and collection search leave hidden
  collections out.
* :class:`AccessTransactionsClient` / :class:`AccessBulkTransactionsClient` - a collection
  created by a workspace member belongs to the member's workspace (private); a body cannot rename a
  collection (``PUT``/``PATCH`` id must match the path); items written by non-admins must have
  asset hrefs under the read prefixes; deleting a collection drops its access row.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from stac_fastapi.extensions import BulkTransactionExtension, TransactionExtension
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.transactions import BulkTransactionsClient, TransactionsClient
from stac_fastapi.types.errors import NotFoundError

from stacube.access.asgi import (
    DB_ERRORS,
    AccessService,
    AsyncpgDb,
    AuthMiddleware,
    error_for,
    json_error,
    principal_of,
    relative_path,
)
from stacube.access.errors import Forbidden, InvalidParameter, Unauthorized
from stacube.access.policy import NO_COLLECTION
from stacube.access.workspaces import CLAIM_SQL, DROP_ANY_SQL, DROP_SQL, WORKSPACE_OF_SQL
from stacube.errors import Conflict, StacubeError

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_COLLECTION_IDS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "stacube_collection_ids", default=None)


def service_of(request) -> AccessService:
    return request.app.state.stacube_access


class StacAccessMiddleware:
    """Path checks of the STAC API (see the module docstring).

    Args:
        service: the app's :class:`AccessService`.
        prefix_path: where the STAC API lives in its app (``/stac`` under ``stacube up``).
        transactions: whether the transaction routes exist (without them writes answer 405).
    """

    def __init__(self, app, *, service: AccessService, prefix_path: str = "", transactions: bool = False):
        self.app = app
        self.service = service
        self.prefix = prefix_path.rstrip("/")
        self.transactions = transactions

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            rel = relative_path(scope, self.prefix)
            if rel is not None:
                try:
                    await self.check(scope, rel)
                except (StacubeError, *DB_ERRORS) as exc:
                    await error_for(exc)(scope, receive, send)
                    return
                except NotFoundError as exc:
                    await json_error(404, "NotFoundError", str(exc))(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def check(self, scope, rel: str) -> None:
        parts = rel.strip("/").split("/")
        if parts[0] != "collections":
            return
        principal = principal_of(scope)
        writing = self.transactions and scope["method"] in WRITE_METHODS
        if writing and principal.is_anonymous:
            raise Unauthorized("transactions need an API key or a bearer token")
        if len(parts) < 2 or not parts[1]:
            return
        cid = parts[1]
        view = await self.service.view(scope)
        if not view.can_read(principal, cid):
            if parts[2:] == ["queryables"]:
                raise NotFoundError(f"Collection {cid} not found")
            raise NotFoundError(f"Collection {cid} does not exist.")
        if writing and not view.can_write(principal, cid):
            row = view.get(cid)
            holder = f"workspace {row.workspace}" if row else "the catalog (admins only)"
            raise Forbidden(f"collection {cid} belongs to {holder}: {principal.describe()} may not change it")


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


class AccessCoreClient(CoreCrudClient):
    """stac-fastapi-pgstac's client with every read narrowed to the caller's collections."""

    async def get_collection(self, collection_id: str, request, **kwargs: Any):
        view = await service_of(request).view(request.scope)
        if not view.can_read(principal_of(request), collection_id):
            raise NotFoundError(f"Collection {collection_id} does not exist.")
        return await super().get_collection(collection_id, request, **kwargs)

    async def _search_base(self, search_request, request):
        service = service_of(request)
        principal = principal_of(request)
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
        service = service_of(request)
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
def _asset_hrefs(doc) -> list[str]:
    """Asset hrefs of an Item, an ItemCollection or a partial item document."""
    if not isinstance(doc, dict):
        return []
    if doc.get("type") == "FeatureCollection":
        return [h for f in doc.get("features") or [] for h in _asset_hrefs(f)]
    out = []
    for asset in (doc.get("assets") or {}).values():
        if isinstance(asset, dict):
            out.extend(_nested_hrefs(asset))
    return out


def _nested_hrefs(value) -> list[str]:
    if isinstance(value, dict):
        return [*([value["href"]] if isinstance(value.get("href"), str) else []),
                *(h for k, v in value.items() if k != "href" for h in _nested_hrefs(v))]
    if isinstance(value, list):
        return [h for v in value for h in _nested_hrefs(v)]
    return []


def check_hrefs(request, hrefs) -> None:
    """Non-admin writers may only register hrefs the servers may read.

    Raises:
        InvalidParameter: the first href outside the read prefixes.
    """
    if principal_of(request).is_admin:
        return
    prefixes = service_of(request).prefixes
    for href in hrefs:
        if not prefixes.allows(href):
            raise InvalidParameter(f"asset href {href!r} is not under an allowed prefix "
                                   "(STACUBE_READ_PREFIXES)")


def _dump(model) -> Any:
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", exclude_unset=True)
    return model


class AccessTransactionsClient(TransactionsClient):
    """Transactions with ownership, id and href checks (see the module docstring)."""

    async def create_collection(self, collection, request, **kwargs):
        service = service_of(request)
        principal = principal_of(request)
        cid = collection.id
        claimed = False
        if principal.workspace is not None:
            if await service.db.fetch("SELECT 1 FROM pgstac.collections WHERE id = %s", cid):
                raise Conflict(f"collection {cid} exists already")
            if await service.db.execute(CLAIM_SQL, cid, principal.workspace, "private"):
                claimed = True
            else:
                holder = await service.db.fetch(WORKSPACE_OF_SQL, cid)
                if not holder or holder[0][0] != principal.workspace:
                    raise Conflict(f"collection id {cid} is not available")
        try:
            return await super().create_collection(collection, request, **kwargs)
        except BaseException:
            if claimed:
                await service.db.execute(DROP_SQL, cid, principal.workspace)
            raise

    async def update_collection(self, collection, request, **kwargs):
        path_id = kwargs.get("collection_id") or request.path_params.get("collection_id")
        if path_id is not None and collection.id != path_id:
            raise InvalidParameter(f"the body's id {collection.id!r} must be the collection of the path "
                                   f"({path_id!r})")
        return await super().update_collection(collection, request, **kwargs)

    async def patch_collection(self, collection_id, patch, request, **kwargs):
        if isinstance(patch, list):
            for op in patch:
                doc = _dump(op)
                if str(doc.get("path", "")).rstrip("/") == "/id" or str(doc.get("from", "")) == "/id":
                    raise InvalidParameter("a patch cannot change a collection's id")
        else:
            new_id = getattr(patch, "id", None)
            if new_id is not None and new_id != collection_id:
                raise InvalidParameter("a patch cannot change a collection's id")
        return await super().patch_collection(collection_id, patch, request, **kwargs)

    async def delete_collection(self, collection_id, request, **kwargs):
        response = await super().delete_collection(collection_id, request, **kwargs)
        await service_of(request).db.execute(DROP_ANY_SQL, collection_id)
        return response

    async def create_item(self, collection_id, item, request, **kwargs):
        check_hrefs(request, _asset_hrefs(_dump(item)))
        return await super().create_item(collection_id, item, request, **kwargs)

    async def update_item(self, request, collection_id, item_id, item, **kwargs):
        check_hrefs(request, _asset_hrefs(_dump(item)))
        return await super().update_item(request, collection_id, item_id, item, **kwargs)

    async def patch_item(self, collection_id, item_id, patch, request, **kwargs):
        if isinstance(patch, list):
            hrefs = []
            for op in patch:
                doc = _dump(op)
                if not str(doc.get("path", "")).startswith("/assets"):
                    continue
                value = doc.get("value")
                if str(doc.get("path")).endswith("/href") and isinstance(value, str):
                    hrefs.append(value)
                hrefs.extend(_nested_hrefs(value))
                if doc.get("op") in ("copy", "move"):
                    continue
            check_hrefs(request, hrefs)
        else:
            check_hrefs(request, _asset_hrefs(_dump(patch)))
        return await super().patch_item(collection_id, item_id, patch, request, **kwargs)


class AccessBulkTransactionsClient(BulkTransactionsClient):
    """Bulk item inserts with the href check."""

    async def bulk_item_insert(self, items, **kwargs):
        request = kwargs.get("request")
        if request is not None:
            check_hrefs(request, [h for item in items.items.values() for h in _asset_hrefs(item)])
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


def install_stac_access(app, settings, *, prefix_path: str = "", transactions: bool = False) -> AccessService:
    """Add authentication and the STAC checks to ``app`` (built with :class:`AccessCoreClient`
    and :class:`AccessExtensions`); returns the app's :class:`AccessService`."""
    service = AccessService(settings, AsyncpgDb(app))
    app.state.stacube_access = service
    app.add_middleware(StacAccessMiddleware, service=service, prefix_path=prefix_path,
                       transactions=transactions)
    app.add_middleware(AuthMiddleware, service=service)
    return service
