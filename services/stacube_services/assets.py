"""Local asset files of the STAC API's items, served over HTTP to every client.

Items keep the storage paths they were registered with (``/srv/scenes/.../B04.tif``,
``file:///...``): stacube's own readers (the raster API, jobs, Zarr cubes, ``stacube.Datacube``)
open those. A client outside the server cannot, and pystac resolves a bare path against the
item's ``self`` link, so the STAC API answers each such asset's ``href`` as a URL of this route
(:func:`served_item`, on the way out; the stored documents do not change):

``GET|HEAD {STAC API}/collections/{collection}/items/{item}/assets/{key}`` - the asset's file
(Starlette's ``FileResponse``: ``Accept-Ranges: bytes``, ``206`` answers to ``Range`` requests,
``Content-Length``, ``ETag``/``Last-Modified``, streamed in chunks; a malformed or
unsatisfiable ``Range`` answers 400/416 JSON: :mod:`stacube_services.ranges`). A folder asset (a Zarr
store) serves its files below it: ``.../assets/{key}/{path in the folder}``.

The storage path stays in the asset as an alternate (STAC alternate-assets extension):
``"alternate": {"local": {"href": "<stored href>"}}``. Hrefs of other kinds (``s3://``,
``https://``, GDAL ``/vsi`` paths, relative paths) are answered as stored.

What is served is decided on the stored item, not on the request: the route is a STAC route
with a ``{collection_id}`` (the STAC API's access dependency answers 404 for a collection the
caller may not read, exactly as for its item), the href is the item's as stored, and the file
opened is the one the read gate (:class:`stacube.access.gate.ReadGate`) returns for it -
symbolic links resolved, inside the server's or the collection's read prefixes, never the
catalog's own files (403 otherwise). A path inside a folder asset is resolved the same way and
must stay inside the folder. Missing items, assets, files and folders answer 404 JSON.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import re
import stat
from urllib.parse import quote, unquote, urlsplit

import anyio
import orjson
from fastapi import FastAPI, Request
from stac_fastapi.types.errors import NotFoundError
from starlette.responses import FileResponse

from stacube.access.gate import ReadGate
from stacube.access.prefixes import is_local
from stacube.errors import NotFound
from stacube_services.access.service import access_of
from stacube_services.ranges import file_range_refusal

#: The STAC alternate-assets extension (https://github.com/stac-extensions/alternate-assets).
ALTERNATE_ASSETS = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
#: The name of the storage path among an asset's alternates.
LOCAL = "local"
ITEM_SQL = "SELECT get_item(%s, %s)"
COLLECTION_SQL = "SELECT 1 FROM pgstac.collections WHERE id = %s"
_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+\-\"]+)*$")


@functools.lru_cache(maxsize=4096)
def _segment(name: str) -> str:
    return quote(name, safe="")


def assets_url(stac_base: str, collection: str, item: str) -> str:
    """The URL the asset route's URLs of ``item`` start with (``stac_base``: the STAC API's
    root, ending with ``/``)."""
    return f"{stac_base}collections/{_segment(collection)}/items/{quote(item, safe='')}/assets/"


def asset_url(stac_base: str, collection: str, item: str, key: str) -> str:
    """The URL of the asset route for ``key`` of ``item``."""
    return assets_url(stac_base, collection, item) + _segment(key)


def servable_key(*names) -> bool:
    """Whether the names fit in the route's path (no ``/``: it would split a segment)."""
    return all(isinstance(n, str) and n and "/" not in n for n in names)


def served_item(item: dict, stac_base: str, collection: str | None = None, item_id: str | None = None) -> dict:
    """``item`` with each local asset's ``href`` the URL of the asset route, and its stored
    href kept as the alternate ``local`` (the extension added to ``stac_extensions``).

    Args:
        item: a STAC Item as served (changed in place: its asset dicts are replaced by copies,
            so documents shared with a cache stay as they were).
        stac_base: the STAC API's root URL, ending with ``/``.
        collection, item_id: the item's collection and id when the document lacks them (the
            fields extension may leave them out).

    Returns:
        ``item``.
    """
    assets = item.get("assets")
    collection = item.get("collection") or collection
    item_id = item.get("id") or item_id
    if not isinstance(assets, dict) or not servable_key(collection, item_id):
        return item
    prefix = None
    for key, asset in list(assets.items()):
        if not isinstance(asset, dict) or not is_local(asset.get("href")) or not servable_key(key):
            continue
        prefix = prefix or assets_url(stac_base, collection, item_id)
        alternate = asset.get("alternate")
        alternate = {**alternate, LOCAL: {"href": asset["href"]}} if isinstance(alternate, dict) else {
            LOCAL: {"href": asset["href"]}}
        assets[key] = {**asset, "href": prefix + _segment(key), "alternate": alternate}
    if prefix is not None:
        extensions = item.get("stac_extensions")
        extensions = list(extensions) if isinstance(extensions, list) else []
        if ALTERNATE_ASSETS not in extensions:
            item["stac_extensions"] = [*extensions, ALTERNATE_ASSETS]
    return item


def self_ids(item: dict) -> tuple[str | None, str | None]:
    """``(collection, item id)`` from an item's ``self`` link (what the STAC API builds them from
    when the fields extension leaves the members out)."""
    for link in item.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "self" and isinstance(link.get("href"), str):
            parts = urlsplit(link["href"]).path.split("/")
            if len(parts) >= 4 and parts[-2] == "items" and parts[-4] == "collections":
                return unquote(parts[-3]), unquote(parts[-1])
    return None, None


def served_features(features: list, stac_base: str) -> None:
    """:func:`served_item` on every feature of a search or item list answer."""
    for feature in features:
        if isinstance(feature, dict) and isinstance(feature.get("assets"), dict):
            served_item(feature, stac_base, *self_ids(feature))


#: An href of the asset route (any host: the item may have been fetched through a proxy).
_SERVED = re.compile(r"^https?://[^?#]*/collections/[^/?#]+/items/[^/?#]+/assets/[^/?#]+/?$")


def restored(doc) -> bool:
    """Put the storage hrefs back in an Item (or the features of an ItemCollection) a client
    writes: an asset whose ``href`` is a URL of the asset route and which has a ``local``
    alternate gets that href back, and the alternate is dropped - so an item fetched from the
    API and written back (updated, copied) stores what was stored. Changes ``doc`` in place;
    what is stored is then checked like any other document.

    Returns:
        Whether anything changed.
    """
    if not isinstance(doc, dict):
        return False
    if doc.get("type") == "FeatureCollection":
        return any([restored(f) for f in doc.get("features") or []])  # every feature, no short cut
    assets = doc.get("assets")
    changed = False
    for asset in (assets.values() if isinstance(assets, dict) else []):
        alternate = asset.get("alternate") if isinstance(asset, dict) else None
        local = alternate.get(LOCAL) if isinstance(alternate, dict) else None
        href = asset.get("href") if isinstance(asset, dict) else None
        if not (isinstance(local, dict) and isinstance(href, str) and _SERVED.match(href)):
            continue
        asset["href"] = local.get("href")
        rest = {k: v for k, v in alternate.items() if k != LOCAL}
        if rest:
            asset["alternate"] = rest
        else:
            asset.pop("alternate")
        changed = True
    still = any(isinstance(a, dict) and a.get("alternate") for a in (assets or {}).values())
    extensions = doc.get("stac_extensions")
    if changed and not still and isinstance(extensions, list) and ALTERNATE_ASSETS in extensions:
        doc["stac_extensions"] = [e for e in extensions if e != ALTERNATE_ASSETS]
    return changed


# -- the route --------------------------------------------------------------------------------
def _media_type(asset: dict, path: str, inside: bool) -> str:
    declared = asset.get("type")
    if not inside and isinstance(declared, str) and _MEDIA_TYPE.match(declared):
        return declared
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def asset_file(gate: ReadGate, collection: str, href: str, path: str = "") -> tuple[str, os.stat_result]:
    """The file to serve for an asset's stored ``href`` (and a ``path`` inside a folder asset),
    with its ``stat``.

    Raises:
        AssetNotAllowed: the href (or the file inside it) is not under the collection's read
            prefixes, or is one of the catalog's own files (403).
        NotFound: no such file, a folder, or a path leaving the asset's folder (404).
    """
    real = gate.check(href, collection)
    if path:
        if not os.path.isdir(real):
            raise NotFound("the asset is a file: there is nothing below its URL")
        try:
            target = os.path.realpath(os.path.join(real, path))
        except ValueError:  # a NUL byte
            raise NotFound("no such file in the asset") from None
        if os.path.commonpath([real, target]) != real or target == real:
            raise NotFound("no such file in the asset")
        real = gate.check(target, collection)
    try:
        st = os.stat(real)
    except (OSError, ValueError):
        raise NotFound("the asset's file is missing") from None
    if stat.S_ISDIR(st.st_mode):
        raise NotFound("the asset is a folder: its files are served below its URL")
    if not stat.S_ISREG(st.st_mode):
        raise NotFound("the asset's file is missing")
    return real, st


async def stored_item(request: Request, collection: str, item_id: str) -> dict:
    """The item as stored (hydrated by pgSTAC).

    Raises:
        NotFoundError: no such collection, or no such item in it (the STAC API's item route's
            answers).
    """
    service = access_of(request)
    rows = await service.fetch(ITEM_SQL, item_id, collection)
    item = rows[0][0] if rows else None
    if isinstance(item, (str, bytes)):
        item = orjson.loads(item)
    if isinstance(item, dict):
        return item
    if not await service.fetch(COLLECTION_SQL, collection):
        raise NotFoundError(f"Collection {collection} does not exist.")
    raise NotFoundError(f"Item {item_id} in Collection {collection} does not exist.")


async def serve_asset(request: Request, collection_id: str, item_id: str, asset_key: str, path: str = ""):
    """The asset route: the file of asset ``asset_key`` of the stored item (``path``: a file
    inside a folder asset), as :func:`asset_file` finds it (module docstring)."""
    item = await stored_item(request, collection_id, item_id)
    assets = item.get("assets")
    asset = assets.get(asset_key) if isinstance(assets, dict) else None
    if not isinstance(asset, dict):
        raise NotFound(f"item {item_id} has no asset {asset_key!r}")
    href = asset.get("href")
    if not is_local(href):
        raise NotFound(f"asset {asset_key!r} of item {item_id} is not a file of this server: open its href")
    gate = await access_of(request).gate()
    real, st = await anyio.to_thread.run_sync(asset_file, gate, collection_id, href, path)
    response = FileResponse(real, stat_result=st, media_type=_media_type(asset, real, bool(path)))
    refused = file_range_refusal(request.scope, response, st.st_size)
    return response if refused is None else refused


def add_asset_routes(app: FastAPI, prefix_path: str = "") -> None:
    """Add the asset route to the STAC API's app (before its access dependency is installed, so
    that the dependency covers it)."""
    base = f"{prefix_path}/collections/{{collection_id}}/items/{{item_id}}/assets/{{asset_key}}"
    options = {"methods": ["GET", "HEAD"], "include_in_schema": False}
    app.add_api_route(base, serve_asset, name="Asset file", **options)
    app.add_api_route(base + "/{path:path}", serve_asset, name="File of a folder asset", **options)
