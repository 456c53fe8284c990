"""Seeding: render the low-zoom tiles of a mosaic (or an item) into the tile store ahead of the
first viewer (``stacube tiles seed``).

A tile is rendered by the raster API itself, in this process (its application on an ASGI
transport, with its middlewares: limits, access, the tile cache), so the stored entry is the
one a server would have written for the same request: same key (path, query, catalog
version), same bytes. A server of the same catalog then answers those tiles from the store,
until an item or the collection changes (the key changes with the catalog version).

The tiles are those of a URL template (``.../tiles/{tms}/{z}/{x}/{y}.png?...``, as a map asks
for them) over a bounding box (WGS84; by default the collection's or item's extent) for a
range of zoom levels, in order of zoom.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stacube.catalog.pgstac import Catalog
from stacube.core.bbox import BBox, check_lonlat, parse_bbox
from stacube.errors import InvalidInput, NotFound, StacubeError
from stacube.settings import Settings
from stacube_services.raster import create_raster_app
from stacube_services.tms import SUPPORTED_TMS

#: a tile URL template of the raster API: the route from ``collections/`` or ``searches/`` on
#: (whatever prefix a deployment mounts it under), ``{z}/{x}/{y}``, a named format
TEMPLATE = re.compile(
    r"(?P<route>(?:collections/(?P<collection>[^/]+)(?:/items/(?P<item>[^/]+))?|searches/(?P<search>[^/]+))"
    r"/(?:masked/)?tiles/(?P<tms>[^/{}]+)/\{z\}/\{x\}/\{y\}(?P<suffix>(?:@[1-4]x)?\.[A-Za-z0-9]+))$")


NO_STORE = ("STACUBE_TILE_STORE is not set: seeded tiles go to that folder or s3://bucket/prefix, "
            "which the raster API's processes read")


@dataclass
class Template:
    """A parsed tile URL template."""

    route: str  # from ``collections/`` or ``searches/`` to the format, with {z}/{x}/{y}
    query: str
    tms: str
    collection: str | None = None
    item: str | None = None
    search: str | None = None

    @property
    def base(self) -> str:
        """The mosaic's (or item's) route: ``collections/{id}``, ``searches/{id}``, ``.../items/{id}``."""
        return re.split(r"/(?:masked/)?tiles/", self.route, maxsplit=1)[0]

    def path(self, z: int, x: int, y: int) -> str:
        tail = f"/{self.route}".replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
        return tail + (f"?{self.query}" if self.query else "")


def parse_template(text: str) -> Template:
    """The route, query and tile matrix set of a tile URL template (a full URL or a path).

    Raises:
        InvalidInput: not a tile route of the raster API with ``{z}/{x}/{y}`` and a format, or an
            unknown tile matrix set.
    """
    parts = urlsplit(text.strip())
    start = min((i for i in (parts.path.find("collections/"), parts.path.find("searches/")) if i >= 0), default=-1)
    match = TEMPLATE.fullmatch(parts.path[start:]) if start >= 0 else None
    if match is None:
        raise InvalidInput(f"{text!r} is not a tile URL template of the raster API: expected "
                           ".../collections/ID/tiles/TMS/{z}/{x}/{y}.FORMAT?... (or searches/ID/..., "
                           "collections/ID/items/ID/..., with masked/ before tiles/); name the format "
                           "(.png, .webp...): tiles without one are keyed on the browser's Accept header")
    if match["tms"] not in SUPPORTED_TMS.list():
        raise InvalidInput(f"unknown tile matrix set {match['tms']!r}")
    return Template(match["route"], parts.query, match["tms"], match["collection"], match["item"], match["search"])


def extent_of(template: Template, settings: Settings) -> BBox:
    """The WGS84 bounding box of the template's collection or item.

    Raises:
        InvalidInput: a search (give ``--bbox``) or a collection without a spatial extent.
        NotFound: no such collection or item.
    """
    if template.search is not None:
        raise InvalidInput("a registered search has no extent of its own: give --bbox")
    catalog = Catalog(settings)
    if template.item is not None:
        bbox = catalog.get_item(template.collection, template.item).get("bbox")
    else:
        boxes = (catalog.get_collection(template.collection).get("extent") or {}).get("spatial", {}).get("bbox")
        bbox = boxes[0] if boxes else None
    if not bbox or len(bbox) not in (4, 6):
        raise InvalidInput(f"{template.collection}: no spatial extent to seed: give --bbox")
    box = bbox if len(bbox) == 4 else (bbox[0], bbox[1], bbox[3], bbox[4])
    return check_lonlat(parse_bbox(box))


def tiles_of(template: Template, bbox: BBox, zooms: range) -> Iterator[tuple[int, int, int]]:
    """The tiles ``(z, x, y)`` of the tile matrix set over ``bbox`` (WGS84), zoom by zoom."""
    tms = SUPPORTED_TMS.get(template.tms)
    west, south, east, north = bbox
    for z in zooms:
        for tile in tms.tiles(west, south, east, north, [z], truncate=True):
            yield tile.z, tile.x, tile.y


@dataclass
class Seeded:
    """What a seeding did: tiles rendered into the store, found there already, and empty (no
    item meets the tile, or no pixel of one: a 204 or a "no item here" 404, nothing stored)."""

    rendered: int = 0
    stored: int = 0
    empty: int = 0
    failures: list[str] = field(default_factory=list)


def seed(settings: Settings, template: Template, tiles: list[tuple[int, int, int]], *, concurrency: int = 2,
         on_tile: Callable[[], None] | None = None) -> Seeded:
    """Request every tile of ``tiles`` from the raster API in this process (see the module
    docstring), ``concurrency`` at once, once the mosaic answered its ``/info`` (an item: its
    ``/assets``); a tile answered 204, or 404 saying that no item meets it (:data:`EMPTY_TILE`),
    is empty; the first other failure stops the rest.

    Raises:
        InvalidInput: ``STACUBE_TILE_STORE`` is not set.
        NotFound: no such collection, search or item.
        StacubeError: a tile failed (the message is the raster API's reason).
    """
    if not settings.tile_store:
        raise InvalidInput(NO_STORE)
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():  # a rendering's warnings are a server log's, not a command's output
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return asyncio.run(_seed(settings, template, tiles, concurrency, on_tile or (lambda: None)))


async def _seed(settings, template, tiles, concurrency, on_tile) -> Seeded:
    import httpx

    app = create_raster_app(settings)
    headers = {"X-API-Key": settings.api_key} if settings.api_key else {}  # the catalog's administrator
    done = Seeded()
    queue = iter(tiles)

    async def worker(client) -> None:
        for z, x, y in queue:
            if done.failures:
                return
            answer = await client.get(template.path(z, x, y), headers=headers)
            if answer.status_code == 200:
                if answer.headers.get("x-tile-cache") == "hit":
                    done.stored += 1
                else:
                    done.rendered += 1
            elif answer.status_code == 204 or (answer.status_code == 404 and _no_items(answer)):
                done.empty += 1
            else:
                done.failures.append(f"tile {z}/{x}/{y}: {answer.status_code} {_reason(answer)}")
            on_tile()

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stacube-seed", timeout=None) as client:
            # the mosaic, search or item exists (then a 404 of a tile means: no item meets it)
            info = await client.get(f"/{template.base}/{'assets' if template.item else 'info'}", headers=headers)
            if info.status_code != 200:
                hint = ("" if settings.api_key or info.status_code != 404 else
                        " (or not readable anonymously: with access control on, seed with the catalog's "
                        "admin key in STACUBE_API_KEY)")
                raise (NotFound if info.status_code == 404 else StacubeError)(
                    f"{template.base}: {info.status_code} {_reason(info)}{hint}")
            await asyncio.gather(*(worker(client) for _ in range(max(1, concurrency))))
    if done.failures:
        raise StacubeError(f"seeding stopped: {done.failures[0]} ({done.rendered + done.stored} tiles seeded before)")
    return done


#: what the raster API's 404s say when no item meets a tile (titiler-pgstac's mosaics, the
#: masked mosaics, rio-tiler's item readers); any other 404 (an asset name the items do not
#: have...) stops the seeding with its reason
EMPTY_TILE = re.compile(r"no assets found|no item of the mosaic|is outside", re.IGNORECASE)


def _no_items(answer) -> bool:
    """Whether a 404 says that no item meets the tile."""
    return EMPTY_TILE.search(_reason(answer)) is not None


def _reason(answer) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    return str(body.get("detail") or body.get("description") or body)[:300] if isinstance(body, dict) else str(body)[:300]
