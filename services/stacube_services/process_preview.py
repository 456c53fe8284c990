"""A preview of a process: a map page whose XYZ tiles run the process on demand, as mapchete's
development server does (``stacube process serve CONFIG``).

* ``GET /`` — a Leaflet map of the configuration's area with the tiles over an OpenStreetMap
  base layer;
* ``GET /tiles/{z}/{x}/{y}.png`` (WebMercatorQuad) — the process run on the scenes over the
  tile (the configuration's collections, bands, time range and quality rule; the whole time
  range, not per period; the halo around the tile read too), one output rendered: ``output``
  (default: the first), ``rescale=MIN,MAX`` (default ``0,1``), ``colormap_name`` (rio-tiler's
  colormaps, default ``viridis``). Transparent where the output is NaN or nodata.

Tiles are computed once per process and kept (``cache`` tiles, least recently used first).
Errors answer JSON ``{"code", "description"}``: 404 for a tile without scenes or outputs, 400
for a bad parameter or a tile outside the matrix set, 422 with the one-line error when the
process raised. The server runs the configuration's code: it listens on loopback unless told
otherwise, and is a development tool, not a service to expose.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from threading import Lock

import numpy as np
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, Response

from stacube.algo.process import ProcessFailed, execute_on
from stacube.catalog.pgstac import Catalog
from stacube.errors import InvalidInput, NoData, NotFound, StacubeError
from stacube.jobs.plan import make_plan
from stacube.jobs.processes import process_of
from stacube.jobs.spec import ProcessSpec
from stacube.settings import Settings
from stacube_services.errors import error_response
from stacube_services.tms import shared_tile_matrix_set

MAX_ZOOM = 22
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>stacube process {name}</title>
<link rel="stylesheet" href="https://unpkg.com/leaflet@1.9.4/dist/leaflet.css">
<script src="https://unpkg.com/leaflet@1.9.4/dist/leaflet.js"></script>
<style>html,body,#map{{height:100%;margin:0}}</style></head>
<body><div id="map"></div><script>
const map = L.map("map");
L.tileLayer("https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png",
            {{maxZoom: 19, attribution: "&copy; OpenStreetMap contributors"}}).addTo(map);
L.tileLayer("tiles/{{z}}/{{x}}/{{y}}.png{query}",
            {{maxZoom: {max_zoom}, attribution: "stacube process {name}"}}).addTo(map);
map.fitBounds({bounds});
</script></body></html>
"""


def _tile_geobox(z: int, x: int, y: int):
    from odc.geo.geobox import GeoBox

    if not 0 <= z <= MAX_ZOOM or not (0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise InvalidInput(f"tile {z}/{x}/{y} is outside WebMercatorQuad (zoom 0..{MAX_ZOOM})")
    tms = shared_tile_matrix_set("WebMercatorQuad")
    return GeoBox.from_bbox(tuple(tms.xy_bounds(x, y, z)), "EPSG:3857", shape=(256, 256)), tuple(tms.bounds(x, y, z))


def _render(values: np.ndarray, nodata, rescale: tuple[float, float], colormap: str) -> bytes:
    from rio_tiler.colormap import cmap
    from rio_tiler.utils import render

    values = values.astype("float64")
    mask = np.isfinite(values) & (values != nodata if nodata is not None else True)
    low, high = rescale
    scaled = np.clip((np.nan_to_num(values) - low) / ((high - low) or 1.0) * 255, 0, 255).astype("uint8")
    return render(scaled[None], mask=(mask * 255).astype("uint8"), img_format="PNG",
                  colormap=cmap.get(colormap))


def create_preview_app(settings: Settings, spec: ProcessSpec, *, cache: int = 256) -> FastAPI:
    """The preview app of one process configuration (a factory: no global state)."""
    process = process_of(spec)
    catalog = Catalog(settings)
    app = FastAPI(title=f"stacube process {spec.process_name}", docs_url=None, redoc_url=None)
    tiles: OrderedDict[tuple[int, int, int], dict | None] = OrderedDict()
    lock = Lock()

    def arrays(z: int, x: int, y: int) -> dict | None:
        key = (z, x, y)
        with lock:
            if key in tiles:
                tiles.move_to_end(key)
                return tiles[key]
        geobox, lonlat = _tile_geobox(z, x, y)
        try:
            plan = make_plan(spec.model_copy(update={"bbox": lonlat, "bbox_crs": "EPSG:4326", "grid": None,
                                                     "crs": "EPSG:3857", "anchor": None, "grid_tiles": False,
                                                     "resolution": abs(geobox.resolution.x)}),
                             catalog, "unused")
            result = execute_on(plan.inputs, geobox, process.execute, spec.parameters, margin=spec.halo)
        except NoData:
            result = None
        with lock:
            tiles[key] = result
            while len(tiles) > cache:
                tiles.popitem(last=False)
        return result

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(output: str | None = None, rescale: str | None = None, colormap_name: str | None = None):
        west, south, east, north = _area(spec)
        params = {k: v for k, v in (("output", output), ("rescale", rescale), ("colormap_name", colormap_name)) if v}
        query = ("?" + "&".join(f"{k}={v}" for k, v in params.items())) if params else ""
        query = json.dumps(query)[1:-1].replace("<", "\\u003c")  # inside a JavaScript string
        return PAGE.format(name=spec.process_name, query=query, max_zoom=MAX_ZOOM,
                           bounds=json.dumps([[south, west], [north, east]]))

    @app.get("/tiles/{z}/{x}/{y}.png", summary="A tile of the process's output, computed on demand")
    def tile(z: int, x: int, y: int, output: str | None = Query(None), rescale: str = Query("0,1"),
             colormap_name: str = Query("viridis")) -> Response:
        from rio_tiler.colormap import cmap

        try:
            low, high = (float(v) for v in rescale.split(","))
        except ValueError:
            raise InvalidInput("rescale: MIN,MAX") from None
        if colormap_name not in cmap.list():
            raise InvalidInput(f"colormap_name: unknown colormap {colormap_name!r}")
        result = arrays(z, x, y)
        if not result:
            raise NotFound(f"no output of the process over tile {z}/{x}/{y}")
        name = output or next(iter(result))
        if name not in result:
            raise InvalidInput(f"output: the process writes {', '.join(result)}, not {name!r}")
        nodata = (spec.outputs or {}).get(name)
        return Response(_render(result[name], nodata.nodata if nodata else None, (low, high), colormap_name),
                        media_type="image/png")

    @app.exception_handler(ProcessFailed)
    async def _failed(request, exc: ProcessFailed):
        return error_response(422, "ProcessFailed", exc.message)

    @app.exception_handler(StacubeError)
    async def _error(request, exc: StacubeError):
        return error_response(exc.status_code, type(exc).__name__, exc.message)

    return app


def _area(spec: ProcessSpec) -> tuple[float, float, float, float]:
    from odc.geo.geom import BoundingBox

    return tuple(BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs("EPSG:4326"))
