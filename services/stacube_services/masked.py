"""Cloud-masked mosaic tiles, rendered on the fly (no job): each pixel from the first item, in
the requested order, whose quality band says *clear* there.

titiler-pgstac's mosaics stop at the first pixel that is not nodata, so a cloud in the most
recent scene hides everything below it. These routes apply each collection's quality rule
(``stacube:quality``, :mod:`stacube.catalog.quality`) per pixel instead:

* ``GET /collections/{collection_id}/masked/tiles/{tileMatrixSetId}/{z}/{x}/{y}[@{scale}x].{format}``
  (with titiler-pgstac's collection filters ``ids``, ``bbox``, ``datetime``, ``query``,
  ``filter``, ``filter-lang``);
* ``GET /searches/{search_id}/masked/tiles/{tileMatrixSetId}/{z}/{x}/{y}[@{scale}x].{format}``
  (a registered search, one or more collections).

Parameters like the plain tiles: ``assets`` (repeatable), ``expression`` (``b1``..``bn`` over
the assets' bands in order), ``unscale``, ``rescale``, ``color_formula``, ``colormap_name`` /
``colormap``, ``return_mask``, ``tilesize``; ``index=NDVI`` works too (the raster app's middleware
turns it into ``assets``/``expression``/``unscale``/rendering before this route). And:

* ``order=most-recent`` (default: ``datetime`` descending) or ``best-clear`` (``eo:cloud_cover``
  ascending, items without it last; ties: the more recent first);
* ``max_items`` (default 20, at most 100): items considered, first in that order;
* ``mask_cleanup=OPEN,DILATE``: opening then dilation of each item's cloud mask
  (:mod:`stacube.algo.masking`), read with a halo of ``2*OPEN+DILATE`` pixels so tile edges match.

How a tile is made: the items of the mosaic that intersect the tile are found with
``pgstac.search`` (the mosaic's own query AND ``s_intersects`` with the tile, sorted by
``order``, ``max_items`` at most); per item, its quality asset is read with rio-tiler onto the
tile grid (nearest), decoded with its collection's rule, and its bands are read only if it is
clear somewhere still empty. Pixels are filled in order until every pixel is clear; reading stops
there. A pixel with no clear observation in the first ``max_items`` items stays **nodata**
(transparent): a masked mosaic never falls back to a cloudy value. With ``unscale=true`` each
item's ``raster:bands`` scale/offset is applied (else the COG's own), Sentinel-2 reflectance put
on one scale across processing baseline 04.00 (:mod:`stacube.algo.harmonize`).

Errors answer 4xx JSON: unknown collection or search 404, a collection without a quality rule
400, an unknown tile matrix set or a tile outside it 400, no item over the tile 404. The
``X-Assets`` response header lists the items that gave pixels, in order.
"""


import json
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor
from threading import Lock
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import numpy as np
from cachetools import TTLCache
from attrs import define
from fastapi import Depends, Path, Query, Request
from starlette.responses import Response
from titiler.core.dependencies import ColorMapParams, ImageRenderingParams
from titiler.core.factory import FactoryExtension
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

from stacube.algo.harmonize import harmonized_scale_offset
from stacube.algo.load import gate_items, raster_band
from stacube.algo.masking import cleanup_clear, halo, parse_mask_cleanup
from stacube.catalog.quality import rule_of
from stacube.catalog.renders import render_query, render_zooms
from stacube.errors import InvalidInput, NotFound, StorageError
from stacube_services.catalog_cache import CollectionCache
from stacube_services.local_reads import local_item
from stacube_services.tms import checked_tile_matrix_set, shared_tile_matrix_set

MAX_ITEMS = 100
READ_THREADS = 4
TAGS = ["Cloud-masked mosaics"]


# -- catalog ---------------------------------------------------------------------------------
def _state_cache(request: Request):
    """Collection documents and registered searches of this app (TTL cache)."""
    app = request.app
    cache = getattr(app.state, "stacube_masked_cache", None)
    if cache is None:
        cache = CollectionCache(app)
        app.state.stacube_masked_cache = cache
    return cache


def registered_search(request: Request, search_id: str) -> dict:
    """The search document registered under ``search_id`` (pgstac.searches).

    Raises:
        NotFound: no such search.
    """
    cache = _state_cache(request)
    doc = cache._get(("search-doc", search_id), "SELECT search FROM pgstac.searches WHERE hash=%s", (search_id,))
    if doc is None:
        raise NotFound(f"unknown search {search_id!r}")
    return doc


def tile_polygon(tms, z: int, x: int, y: int) -> dict:
    """The tile's footprint as a GeoJSON polygon in longitude/latitude."""
    from morecantile import Tile

    w, s, e, n = tms.bounds(Tile(x, y, z))
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def search_body(search: dict, polygon: dict, order: str, limit: int) -> dict:
    """A ``pgstac.search`` body: the mosaic's query, AND intersecting ``polygon``, in ``order``.

    Raises:
        InvalidInput: a stored CQL2-text filter that does not parse.
    """
    body = {k: v for k, v in search.items() if k not in ("sortby", "limit", "fields", "token", "conf")}
    tile_filter = {"op": "s_intersects", "args": [{"property": "geometry"}, polygon]}
    own = body.pop("filter", None)
    lang = body.pop("filter-lang", None) or body.pop("filter_lang", None)
    if own is not None and (isinstance(own, str) or lang == "cql2-text"):
        import cql2

        try:
            own = cql2.Expr(own).to_json()
        except Exception as exc:  # cql2 raises its own error types
            raise InvalidInput(f"the mosaic's filter does not parse: {exc}") from exc
    body["filter"] = {"op": "and", "args": [own, tile_filter]} if own else tile_filter
    body["filter-lang"] = "cql2-json"
    if order == "best-clear":
        body["sortby"] = [{"field": "properties.eo:cloud_cover", "direction": "asc"},
                          {"field": "properties.datetime", "direction": "desc"}]
    else:
        body["sortby"] = [{"field": "properties.datetime", "direction": "desc"}]
    body["limit"] = limit
    return body


def _items_cache(request: Request) -> tuple[TTLCache, Lock]:
    state = request.app.state
    if getattr(state, "stacube_masked_items", None) is None:
        state.stacube_masked_items = (TTLCache(maxsize=512, ttl=60), Lock())
    return state.stacube_masked_items


def find_items(request: Request, search_id: str, search: dict, polygon: dict, order: str, limit: int) -> list[dict]:
    """Items of the mosaic intersecting ``polygon``, first ``limit`` in ``order`` (cached 60 s
    per app, as titiler-pgstac caches its mosaic searches)."""
    cache, lock = _items_cache(request)
    key = (search_id, json.dumps(polygon), order, limit)
    with lock:
        if key in cache:
            return cache[key]
    body = search_body(search, polygon, order, limit)
    with request.app.state.dbpool.connection() as conn:
        result = conn.execute("SELECT pgstac.search(%s::text::jsonb)", (json.dumps(body),)).fetchone()[0]
    items = list((result or {}).get("features") or [])
    if order == "best-clear":  # items without eo:cloud_cover last (stable: the sort order stays)
        items.sort(key=lambda i: (i.get("properties", {}).get("eo:cloud_cover") is None,))
    with lock:
        cache[key] = items
    return items


# -- pixels ----------------------------------------------------------------------------------
def _read(href: str, tms, z: int, x: int, y: int, size: int, buffer: int):
    """``(data (bands, h, w), valid (h, w), scales, offsets)`` of one asset on the tile grid, or
    None when the asset does not cover the tile."""
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io import Reader

    try:
        with Reader(href, tms=tms) as src:
            image = src.tile(x, y, z, tilesize=size, buffer=buffer or None)
            scales, offsets = list(src.dataset.scales), list(src.dataset.offsets)
    except TileOutsideBounds:
        return None
    except Exception as exc:  # rasterio/GDAL errors: one answer, whatever the cause (existence stays unknown)
        raise StorageError("cannot read an asset: GDAL could not open or read it (missing, unreachable, or "
                           "not a raster it reads)") from exc
    array = image.array
    data = np.ma.getdata(array)
    valid = ~np.ma.getmaskarray(array).any(axis=0)
    return data, valid, scales, offsets


class ItemReader:
    """Reads one item's quality and band assets for one tile (thread-safe: no shared state)."""

    def __init__(self, rules: dict, collections: dict, assets: list[str], tms, z: int, x: int, y: int,
                 size: int, unscale: bool, cleanup: tuple[int, int] | None):
        self.rules, self.collections, self.assets = rules, collections, assets
        self.tms, self.z, self.x, self.y, self.size = tms, z, x, y, size
        self.unscale, self.cleanup = unscale, cleanup
        self.halo = halo(cleanup)

    def footprint(self, item: dict) -> np.ndarray:
        """Tile pixels whose centre lies in the item's geometry (bool ``(h, w)``); all True when
        the item has no usable geometry. Only used to skip items that cannot fill a pixel (as
        pgSTAC's ``skipcovered`` does for plain mosaics)."""
        from morecantile import Tile
        from rasterio.features import rasterize
        from rasterio.transform import from_bounds
        from rasterio.warp import transform_geom

        shape = (self.size, self.size)
        geometry = item.get("geometry")
        if not geometry:
            return np.ones(shape, dtype=bool)
        try:
            geom = transform_geom("EPSG:4326", self.tms.rasterio_crs, geometry)
            transform = from_bounds(*self.tms.xy_bounds(Tile(self.x, self.y, self.z)), self.size, self.size)
            inside = rasterize([geom], out_shape=shape, transform=transform, dtype="uint8")
        except Exception:  # a geometry rasterio cannot project or burn: do not skip the item
            return np.ones(shape, dtype=bool)
        return inside.astype(bool)

    def clear(self, item: dict) -> np.ndarray | None:
        """Where the item is clear on the tile (bool ``(h, w)``), None when it is not there."""
        rule = self.rules[item["collection"]]
        asset = (item.get("assets") or {}).get(rule.asset)
        if not asset:
            return None
        read = _read(asset["href"], self.tms, self.z, self.x, self.y, self.size, self.halo)
        if read is None:
            return None
        data, valid, _, _ = read
        observed, clear = rule.decode(data[0])
        observed &= valid
        clear &= observed
        if self.cleanup:
            clear = cleanup_clear(observed, clear, self.cleanup)
        if self.halo:
            h = self.halo
            clear = clear[h:-h, h:-h]
        return clear

    def bands(self, item: dict) -> tuple[np.ndarray, np.ndarray] | None:
        """``(values (bands, h, w), valid (h, w))`` of the requested assets, physical values
        when ``unscale``; None when an asset is missing or off the tile."""

        collection = self.collections[item["collection"]]
        layers, valid = [], None
        for key in self.assets:
            asset = (item.get("assets") or {}).get(key)
            if not asset:
                return None
            read = _read(asset["href"], self.tms, self.z, self.x, self.y, self.size, 0)
            if read is None:
                return None
            data, ok, scales, offsets = read
            if self.unscale:
                meta = raster_band(item, collection, key)
                scale = float(meta["scale"]) if meta.get("scale") is not None else float(scales[0] or 1.0)
                offset = float(meta["offset"]) if meta.get("offset") is not None else float(offsets[0] or 0.0)
                scale, offset = harmonized_scale_offset(item, key, scale, offset, collection)
                data = data.astype(np.float32) * np.float32(scale) + np.float32(offset)
            layers.append(data)
            valid = ok if valid is None else valid & ok
        return np.concatenate(layers, axis=0), valid


def masked_mosaic(items: list[dict], reader: ItemReader, shape: tuple[int, int],
                  threads: int = READ_THREADS) -> tuple[np.ndarray | None, np.ndarray, list[str]]:
    """Fill a tile from ``items`` (first first) with clear pixels only.

    Items whose footprint (``geometry``) misses every still-empty pixel are skipped unread.
    Items go in batches of 1, 2, 4... up to ``threads``: the batch's quality masks are read in
    parallel, the items that would fill still-empty pixels are worked out from the masks, and
    only their bands are read (in parallel). Pixels are then filled strictly in item order (an
    item whose band turns out to be nodata where its mask is clear leaves those pixels to the
    next items). Reading stops as soon as every pixel is filled. ``threads=1`` reads item after
    item in the calling thread (the route's choice when the assets read are local files: see
    :mod:`stacube_services.local_reads`).

    Returns:
        ``(values (bands, h, w) or None, filled (h, w) bool, ids of the items used)``.
    """
    free = np.ones(shape, dtype=bool)
    values: np.ndarray | None = None
    used: list[str] = []
    pending = list(items)
    size = 1
    with ThreadPoolExecutor(max_workers=threads) if threads > 1 else nullcontext() as pool:
        while pending and free.any():
            batch = []
            while pending and len(batch) < size:
                item = pending.pop(0)
                if (reader.footprint(item) & free).any():
                    batch.append(item)
            if not batch:
                break
            size = min(size * 2, max(1, threads))
            clears = list(pool.map(reader.clear, batch) if pool else map(reader.clear, batch))
            expected = free.copy()
            prefetch = {}
            for k, (item, clear) in enumerate(zip(batch, clears)):
                if clear is None:
                    continue
                take = clear & expected
                if take.any() and pool:
                    prefetch[k] = pool.submit(reader.bands, item)
                    expected &= ~take
            for k, (item, clear) in enumerate(zip(batch, clears)):
                if clear is None:
                    continue
                take = clear & free
                if not take.any():
                    continue
                got = prefetch[k].result() if k in prefetch else reader.bands(item)
                if got is None:
                    continue
                data, valid = got
                take &= valid
                if not take.any():
                    continue
                if values is None:
                    values = np.zeros(data.shape, dtype=data.dtype)
                values[:, take] = data[:, take]
                free &= ~take
                used.append(item["id"])
    return values, ~free, used


# -- routes ----------------------------------------------------------------------------------
@define
class MaskedTilesExtension(FactoryExtension):
    """The masked-tiles routes of a titiler-pgstac mosaic factory (collections or searches): they
    take the factory's ``path_dependency`` (the search hash), and so its route dependencies
    (access) and the raster app's middleware (``index=``, tile checks) apply to them too."""

    def register(self, factory) -> None:
        path_dependency = factory.path_dependency

        def tile(
            request: Request,
            search_id: Annotated[str, Depends(path_dependency)],
            tileMatrixSetId: Annotated[str, Path(description="Tile matrix set identifier")],
            z: Annotated[int, Path(description="Zoom level")],
            x: Annotated[int, Path(description="Column")],
            y: Annotated[int, Path(description="Row")],
            format: Annotated[ImageType, Path(description="Output image format")],
            render: Annotated[ImageRenderingParams, Depends()],
            colormap: Annotated[Any, Depends(ColorMapParams)],
            scale: int = 1,
            assets: Annotated[list[str] | None, Query(description="Asset keys, in band order")] = None,
            expression: Annotated[str | None, Query(description="Band math over b1..bn")] = None,
            unscale: Annotated[bool, Query(description="Apply scale/offset (physical values)")] = False,
            order: Annotated[Literal["most-recent", "best-clear"],
                             Query(description="most-recent: datetime desc; best-clear: eo:cloud_cover asc")] = "most-recent",
            max_items: Annotated[int, Query(ge=1, le=MAX_ITEMS, description="Items considered at most")] = 20,
            mask_cleanup: Annotated[str | None, Query(description="OPEN,DILATE pixels, e.g. 2,3")] = None,
            tilesize: Annotated[int | None, Query(ge=16, le=4096, description="Tile size in pixels")] = None,
        ) -> Response:
            tms = checked_tile_matrix_set(tileMatrixSetId, z, x, y)
            if not assets:
                raise InvalidInput("assets is required (or index=NAME)")
            if not 1 <= scale <= 4:
                raise InvalidInput("scale must be 1..4 (@1x..@4x)")
            cleanup = parse_mask_cleanup(mask_cleanup)
            size = (tilesize or 256) * scale

            search = registered_search(request, search_id)
            cache = _state_cache(request)
            collection_ids = list(search.get("collections") or [])
            if not collection_ids:
                raise InvalidInput("a masked mosaic needs a search restricted to collections (\"collections\": [...])")
            collections = {c: cache.collection(c) for c in collection_ids}
            rules = {}
            for cid, doc in collections.items():
                rule = rule_of(doc)
                if rule is None:
                    raise InvalidInput(f"collection {cid!r} has no quality rule (stacube:quality): "
                                       "a masked mosaic needs one")
                rules[cid] = rule
                known = set((doc.get("item_assets") or {}))
                missing = [a for a in assets if known and a not in known]
                if missing:
                    raise InvalidInput(f"collection {cid!r} has no asset {missing[0]!r}")

            polygon = tile_polygon(tms, z, x, y)
            items = find_items(request, search_id, search, polygon, order, max_items)
            items = [i for i in items if i.get("collection") in rules]
            if not items:
                raise NotFound(f"no item of the mosaic intersects tile {tileMatrixSetId}/{z}/{x}/{y}")
            # every href through the read gate before any is read; the checked href is the one opened
            gate = request.app.state.stacube_access.gates.current()
            read = list(dict.fromkeys([*assets, *(r.asset for r in rules.values())]))
            local = all(local_item(i, read) for i in items)  # the hrefs as stored, before the gate
            items = gate_items(items, read, gate)
            reader = ItemReader(rules, collections, list(assets), tms, z, x, y, size, unscale, cleanup)
            threads = 1 if local else READ_THREADS
            values, filled, used = masked_mosaic(items, reader, (size, size), threads)
            if values is None:
                values = np.zeros((len(assets), size, size), dtype=np.float32 if unscale else np.uint16)
            return _render(values, filled, used, tms, z, x, y, expression, format, colormap, render)

        suffix = "/masked/tiles/{tileMatrixSetId}/{z}/{x}/{y}"
        doc = ("Cloud-masked mosaic tile: per pixel the first clear observation (quality rule of the "
               "collection), most recent or clearest item first; nodata where no item is clear.")
        # the scaled route first: "{y}.{format}" would also match "5837@2x.png"
        factory.router.add_api_route(suffix + "@{scale}x.{format}", tile, methods=["GET"], tags=TAGS,
                                     name="masked_tile_scaled",
                                     summary="Cloud-masked mosaic tile (scaled)", description=doc,
                                     response_class=Response)
        factory.router.add_api_route(suffix + ".{format}", tile, methods=["GET"], tags=TAGS,
                                     summary="Cloud-masked mosaic tile", name="masked_tile", description=doc,
                                     response_class=Response)

        def tilejson(
            request: Request,
            search_id: Annotated[str, Depends(path_dependency)],
            tileMatrixSetId: Annotated[str, Path(description="Tile matrix set identifier")],
            tile_format: Annotated[ImageType, Query(description="Tile format (default png)")] = ImageType.png,
            minzoom: Annotated[int | None, Query(description="Overwrite the zoom range's start")] = None,
            maxzoom: Annotated[int | None, Query(description="Overwrite the zoom range's end")] = None,
        ) -> dict:
            """TileJSON 3.0.0 of the masked mosaic (the tile parameters of the request carry over)."""
            tms = _tms(tileMatrixSetId)
            bounds = mosaic_bounds(request, search_id)
            low, high = minzoom if minzoom is not None else tms.minzoom, maxzoom if maxzoom is not None else tms.maxzoom
            query = [(k, v) for k, v in request.query_params.multi_items() if k not in TILEJSON_ONLY]
            url = str(request.url_for("masked_tile", tileMatrixSetId=tileMatrixSetId, z="{z}", x="{x}", y="{y}",
                                      format=tile_format.value, **_path_ids(request)))
            url = url.replace("%7B", "{").replace("%7D", "}")
            return {
                "tilejson": "3.0.0", "name": f"{_label(request)} (cloud-masked)", "scheme": "xyz",
                "tiles": [f"{url}?{urlencode(query)}" if query else url],
                "minzoom": low, "maxzoom": high, "bounds": bounds,
                "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, low],
            }

        def wmts(
            request: Request,
            search_id: Annotated[str, Depends(path_dependency)],
            tile_format: Annotated[ImageType, Query(description="Tile format (default png)")] = ImageType.png,
        ) -> Response:
            """WMTS capabilities of the masked mosaic in WebMercatorQuad: one layer per rendering of
            the collection (STAC renders), and one for the request's own tile parameters."""
            from titiler.core.utils import tms_limits
            from titiler.mosaic.extensions.wmts import DEFAULT_TEMPLATES

            tms = _tms("WebMercatorQuad")
            bounds = mosaic_bounds(request, search_id)
            collections = [_state_cache(request).collection(c) for c in registered_search(request, search_id)
                           .get("collections") or []]
            renders = dict(_renders_of(collections[0])) if collections else {}
            own = [(k, v) for k, v in request.query_params.multi_items() if k.lower() not in WMTS_ONLY]
            if any(k in ("assets", "index", "expression") for k, _ in own):
                renders["default"] = {"query": own, "zooms": (tms.minzoom, tms.maxzoom)}
            if not renders:
                raise InvalidInput("no layer: the collection has no rendering (STAC renders); "
                                   "give assets= (or index=)")
            url = str(request.url_for("masked_tile", tileMatrixSetId="WebMercatorQuad", z="{TileMatrix}",
                                      x="{TileCol}", y="{TileRow}", format=tile_format.value, **_path_ids(request)))
            url = url.replace("%7B", "{").replace("%7D", "}")
            layers = []
            for name, render in renders.items():
                identifier = f"{_label(request)}_masked_{name}"
                layers.append({
                    "title": identifier, "identifier": identifier, "tms_identifier": "WebMercatorQuad",
                    "tms_limits": tms_limits(tms, bounds, zooms=render["zooms"]), "tiles_url": url,
                    "query_string": urlencode(render["query"]), "bbox_crs_type": "WGS84BoundingBox",
                    "bbox_crs_uri": "urn:ogc:def:crs:OGC:2:84", "bbox": bounds,
                })
            matrices = [{"id": "WebMercatorQuad", "crs": tms.crs.srs, "matrices": tms.tileMatrices}]
            return DEFAULT_TEMPLATES.TemplateResponse(
                request, name="wmts.xml", media_type="application/xml",
                context={"layers": layers, "tileMatrixSets": matrices, "media_type": tile_format.mediatype})

        factory.router.add_api_route("/masked/{tileMatrixSetId}/tilejson.json", tilejson, methods=["GET"],
                                     tags=TAGS, summary="TileJSON of the cloud-masked mosaic", name="masked_tilejson")
        factory.router.add_api_route("/masked/WMTSCapabilities.xml", wmts, methods=["GET"],
                                     response_class=Response, tags=TAGS, name="masked_wmts",
                                     summary="WMTS capabilities of the cloud-masked mosaic")


#: TileJSON / WMTS request parameters that do not go into tile URLs
TILEJSON_ONLY = {"tile_format", "minzoom", "maxzoom"}
WMTS_ONLY = {"tile_format", "service", "request", "acceptversions", "sections", "updatesequence",
             "acceptformats", "tilesize", "minzoom", "maxzoom"}


def _tms(tms_id: str):
    try:
        return shared_tile_matrix_set(tms_id)
    except Exception as exc:  # morecantile's own error types
        raise InvalidInput(f"unknown tile matrix set {tms_id!r}") from exc


def _path_ids(request: Request) -> dict:
    return {k: v for k, v in request.path_params.items() if k in ("collection_id", "search_id")}


def _label(request: Request) -> str:
    ids = request.path_params
    return ids.get("collection_id") or f"search-{ids.get('search_id')}"


def _renders_of(collection: dict):
    """``(name, {"query": [(param, value)], "zooms": (min, max)})`` of a collection's renders."""
    for name, render in (collection.get("renders") or {}).items():
        if isinstance(render, dict) and render.get("assets"):
            yield name, {"query": render_query(render), "zooms": render_zooms(render) or (0, 24)}


def mosaic_bounds(request: Request, search_id: str) -> list[float]:
    """Longitude/latitude bounds of a mosaic: its search's bbox, else its collections' extents."""
    search = registered_search(request, search_id)
    bbox = search.get("bbox")
    if isinstance(bbox, list) and len(bbox) in (4, 6):
        return [float(v) for v in bbox[:2] + bbox[-2:]]
    boxes = []
    for cid in search.get("collections") or []:
        try:
            box = _state_cache(request).collection(cid)["extent"]["spatial"]["bbox"][0]
            boxes.append(box[:2] + box[-2:])
        except (KeyError, IndexError, TypeError):
            continue
    if not boxes:
        return [-180.0, -85.0511287798066, 180.0, 85.0511287798066]
    return [min(b[0] for b in boxes), max(-85.0511287798066, min(b[1] for b in boxes)),
            max(b[2] for b in boxes), min(85.0511287798066, max(b[3] for b in boxes))]


def _render(values, filled, used, tms, z, x, y, expression, fmt, colormap, render) -> Response:
    from morecantile import Tile
    from rio_tiler.models import ImageData

    mask = np.broadcast_to(~filled, values.shape)
    image = ImageData(np.ma.MaskedArray(values, mask=mask.copy()), crs=tms.rasterio_crs,
                      bounds=tuple(tms.xy_bounds(Tile(x, y, z))), assets=used,
                      band_names=[f"b{i + 1}" for i in range(values.shape[0])])
    if expression:
        try:
            image = image.apply_expression(expression)
        except Exception as exc:  # rio-tiler/numexpr reject the expression
            raise InvalidInput(f"expression {expression!r}: {exc}") from exc
    content, media_type = render_image(image, output_format=fmt, colormap=colormap, **render.as_dict())
    return Response(content, media_type=media_type, headers={"X-Assets": ",".join(used)})
