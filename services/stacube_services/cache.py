"""``Cache-Control`` on the answers of the STAC and raster APIs, for CloudFront and browsers.

What may be cached, and for how long (a header the app already set is kept):

| answer | Cache-Control |
|---|---|
| not a GET/HEAD, or an error | ``no-store`` |
| a request with credentials (``Authorization``, ``X-API-Key``) | ``private, max-age=60`` |
| raster: a tile of an item of a derived collection (a job's output) | ``public, max-age=31536000, immutable`` |
| raster: a tile of any other item | ``public, max-age=86400`` |
| raster: a mosaic tile (collection, search, masked) | ``public, max-age=300`` |
| STAC: a search, a collection's items | ``public, max-age=60`` |
| anything else (landing pages, collections, TileJSON, info) | ``public, max-age=300`` |

Every answer also carries ``Vary: Authorization, X-API-Key`` (added to any ``Vary`` it has): what
a browser kept for one caller (or for none) is not reused when it signs in, out or as another.

A job run again keeps its item ids: invalidate ``/raster/collections/<collection>/items/*`` in
CloudFront after re-running a job whose tiles were viewed (``docs/deploy-aws.md``).

Validators (RFC 9110 8.8.3, 13.1.2): a cacheable (not ``no-store``) 200 answer to a GET gets an
``ETag`` when it has none (a hash of its body; the raster API's tile cache sets one from its key,
see :mod:`stacube_services.tile_cache`), and a GET whose ``If-None-Match`` names that ETag is
answered ``304 Not Modified`` with no body. An answer sent in several body messages (a stream)
is passed through without an ETag.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

IMMUTABLE = "public, max-age=31536000, immutable"
ITEM_TILE = "public, max-age=86400"
MOSAIC_TILE = "public, max-age=300"
SEARCH = "public, max-age=60"
DEFAULT = "public, max-age=300"
PRIVATE = "private, max-age=60"
NO_STORE = "no-store"

_ITEM_TILE = re.compile(r"/collections/([^/]+)/items/[^/]+/(?:[^/]+/)?tiles/")
_MOSAIC_TILE = re.compile(r"/(?:collections|searches)/[^/]+/(?:masked/)?(?:[^/]+/)?tiles/")
_SEARCH = re.compile(r"/(?:search|collections/[^/]+/items)/?$")


def body_etag(body: bytes) -> str:
    """A strong ETag of an answer's body (BLAKE2b, 128 bits)."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return any(t == "*" or t.removeprefix("W/") == etag.removeprefix("W/") for t in tags)


def not_modified_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers of a 304 answering a 200 with ``headers`` (no body, so no content headers)."""
    dropped = {b"content-length", b"content-type", b"content-encoding", b"transfer-encoding"}
    return [(k, v) for k, v in headers if k.lower() not in dropped]


def is_derived(collection: dict) -> bool:
    """Whether a collection holds a job's outputs (processing extension and a Zarr asset)."""
    extensions = collection.get("stac_extensions") or []
    return any("processing" in e for e in extensions) and "zarr" in (collection.get("item_assets") or {})


def cache_control(method: str, path: str, status: int, *, credentials: bool, api: str,
                  derived: Callable[[str], bool] | None = None) -> str:
    """The ``Cache-Control`` value of an answer (see the module docstring).

    Args:
        path: the path within the app (``/collections/x/items/y/tiles/...``).
        api: ``raster`` or ``stac``.
        derived: ``derived(collection id)`` for raster item tiles.
    """
    if method not in ("GET", "HEAD") or status >= 400:
        return NO_STORE
    if credentials:
        return PRIVATE
    if api == "raster":
        item = _ITEM_TILE.search(path)
        if item:
            return IMMUTABLE if derived is not None and derived(item.group(1)) else ITEM_TILE
        if _MOSAIC_TILE.search(path):
            return MOSAIC_TILE
    if api == "stac" and _SEARCH.search(path):
        return SEARCH
    return DEFAULT


#: The request headers an answer depends on besides its URL: the caller's credentials.
VARY = (b"Authorization", b"X-API-Key")


def with_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with the credentials headers added to ``Vary`` (one ``Vary`` header)."""
    names, others = [], []
    for k, v in headers:
        if k.lower() == b"vary":
            names.extend(n.strip() for n in v.split(b",") if n.strip())
        else:
            others.append((k, v))
    if b"*" not in names:
        known = {n.lower() for n in names}
        names.extend(n for n in VARY if n.lower() not in known)
    return [*others, (b"vary", b", ".join(names))]


class CacheHeaders:
    """ASGI middleware adding ``Cache-Control`` (see :func:`cache_control`), ``ETag`` and
    answering ``If-None-Match`` with 304 (see the module docstring).

    Args:
        app: the ASGI app.
        api: ``raster`` or ``stac``.
        derived: ``derived(collection id) -> bool`` (blocking; run in a worker thread, only for
            raster item tiles).
        prefix: only paths under it are this API's (``/stac`` when the STAC app is the root of
            ``stacube up``'s application, whose other APIs are mounted on it).
    """

    def __init__(self, app, api: str, derived: Callable[[str], bool] | None = None, prefix: str = ""):
        self.app = app
        self.api = api
        self.derived = derived
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        credentials = b"authorization" in headers or b"x-api-key" in headers
        root = scope.get("root_path") or ""
        path = scope.get("path") or "/"
        path = path[len(root):] if root and path.startswith(root) else path
        if self.prefix and path != self.prefix and not path.startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return
        derived_now = None
        item = _ITEM_TILE.search(path) if self.api == "raster" and self.derived else None
        if item and not credentials and scope["method"] in ("GET", "HEAD"):
            import anyio

            try:
                derived_now = await anyio.to_thread.run_sync(self.derived, item.group(1))
            except Exception:  # noqa: BLE001 - unknown collection, database down: not immutable
                derived_now = False

        if_none_match = headers.get(b"if-none-match", b"").decode("latin-1") or None
        held: dict | None = None  # a cacheable 200's start, until its body is known

        async def send_with_cache(message):
            nonlocal held
            if message["type"] == "http.response.start":
                out = list(message.get("headers") or [])
                value = next((v.decode("latin-1") for k, v in out if k.lower() == b"cache-control"), None)
                if value is None:
                    value = cache_control(scope["method"], path, message["status"], credentials=credentials,
                                          api=self.api, derived=(lambda _c: bool(derived_now)))
                    out.append((b"cache-control", value.encode()))
                message = {**message, "headers": with_vary(out)}
                if message["status"] == 200 and scope["method"] == "GET" and "no-store" not in value:
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                start, held = held, None
                out = start["headers"]
                etag = next((v.decode("latin-1") for k, v in out if k.lower() == b"etag"), None)
                if etag is None and not message.get("more_body", False):
                    etag = body_etag(message.get("body", b""))
                    out = [*out, (b"etag", etag.encode())]
                if etag is not None and etag_matches(if_none_match, etag):
                    await send({**start, "status": 304, "headers": not_modified_headers(out)})
                    await send({"type": "http.response.body", "body": b""})
                    if message.get("more_body", False):
                        await drain(message)
                    return
                await send({**start, "headers": out})
            await send(message)

        closed = False

        async def drain(message):
            nonlocal closed
            closed = True  # the rest of a streamed body is not sent after a 304

        async def send_guarded(message):
            if closed:
                return
            await send_with_cache(message)

        await self.app(scope, receive, send_guarded)
