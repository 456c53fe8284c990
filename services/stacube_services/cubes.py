"""The cubes API: tiles of Zarr cubes with time selection, and time series.

Mounted at ``/cubes``:

* ``GET /`` - the cubes; ``GET /{name}`` - one cube (variables, time steps, levels, links);
* ``GET /{name}/tiles/{tileMatrixSetId}/{z}/{x}/{y}[@2x][.png|.webp|.jpg]`` - a map tile read
  from the Zarr store with rio-tiler's ``XarrayReader``: ``time`` (ISO date or datetime: the
  nearest step) or ``time_index``; ``variables=red,green,blue`` (one or three, stretched by
  ``rescale``, default 0..0.3 reflectance) or ``index=NDVI`` (computed from the cube's bands,
  spyndex formula, default colormap and range); ``colormap_name``; ``level`` (default: the
  pyramid level matching the zoom). Tiles read what is in the store (parts never filled are
  transparent) unless ``fill=true``: then the units under the tile at its time step are computed
  first when they are at most :data:`MAX_TILE_FILL_UNITS`;
* ``GET /{name}/{tileMatrixSetId}/tilejson.json`` - TileJSON with the same query;
* ``POST /`` (create a cube), ``POST /ingestion-config``, ``GET /{name}/ingestion-config`` and
  ``GET /{name}/filled`` (the filled units as GeoJSON): :mod:`stacube_services.cube_builder`;
* ``GET /{name}/timeseries?lon=&lat=`` and ``POST /{name}/timeseries`` (a GeoJSON Point,
  Polygon, MultiPolygon or Feature as the body) - per-date values of ``bands`` and ``index``
  with the status (clear, nodata or the mask's reason) and valid-pixel share (``format=json`` or ``csv``);
* ``GET /timeseries?collection=...`` and ``POST /timeseries?collection=...`` - the same from a
  cube of that collection when one holds the geometry, else from the source items
  (``source=auto|cube|items``).

Bad input answers 4xx JSON ``{"code", "description"}``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from stacube.core.grids import webmercator_zoom
from stacube.core.indices import RENDER, get_index
from stacube.cubes.arrays import level_for_resolution, open_level
from stacube.cubes.definition import CubeDefinition
from stacube.cubes.fill import fill_bounded, fill_state, load_definition
from stacube.cubes.records import CubeRecords
from stacube.cubes.register import level_href
from stacube.cubes.timeseries import timeseries
from stacube.errors import InvalidInput, NotFound
from stacube.core.times import parse_datetime_range
from stacube.settings import Settings
from stacube_services.access.cubes import CubeAccess, cube_dependencies
from stacube_services.access.service import AccessService, GateCache
from stacube_services.cube_builder import add_builder_routes
from stacube_services.errors import JsonBodyMiddleware, add_error_handlers
from stacube_services.tms import checked_tile_matrix_set

TILE_NAME = re.compile(r"^(\d+)(?:@([1-4])x)?(?:\.(png|webp|jpg|jpeg))?$")
MEDIA = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg"}
DRIVER = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG", "jpeg": "JPEG"}
DEFAULT_RESCALE = (0.0, 0.3)
MAX_TILESIZE = 1024
#: Fill units a tile request with ``fill=true`` may compute (more: it renders what is there).
MAX_TILE_FILL_UNITS = 4


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _rescale(text: str | None, default: tuple[float, float]) -> tuple[float, float]:
    if not text:
        return default
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise InvalidInput(f"rescale {text!r}: expected MIN,MAX") from exc
    if not lo < hi:
        raise InvalidInput(f"rescale {text!r}: MIN must be less than MAX")
    return lo, hi


def pick_step(definition, time: str | None, time_index: int | None) -> int:
    """The step of a ``time`` (nearest) or ``time_index`` (default: the last step).

    Raises:
        InvalidInput: both given, a bad time, an index out of range.
    """
    import numpy as np

    n = len(definition.steps)
    if time is not None and time_index is not None:
        raise InvalidInput("give time or time_index, not both")
    if time_index is not None:
        if not -n <= time_index < n:
            raise InvalidInput(f"time_index {time_index}: the cube has {n} time steps")
        return time_index % n
    if time is None:
        return n - 1

    start, _ = parse_datetime_range(time)
    if start is None:
        raise InvalidInput(f"time {time!r}: expected an ISO date or datetime")
    target = np.datetime64(start.replace(tzinfo=None), "ns")
    return int(np.argmin(np.abs(definition.times - target)))


def render_tile(settings: Settings, name: str, tms_id: str, z: int, x: int, y: int, *, variables: list[str],
                index: str | None, time: str | None, time_index: int | None, level: int | None,
                rescale: str | None, colormap_name: str | None, tilesize: int, fmt: str,
                fill: bool = False, gate=None) -> tuple[bytes, dict]:
    """A rendered tile and response headers (``X-Cube-Time``, ``X-Cube-Level``; with ``fill``,
    ``X-Cube-Fill``: the number of units computed, or ``skipped`` when the tile needs more than
    :data:`MAX_TILE_FILL_UNITS`).

    Raises:
        InvalidInput: bad parameters, a tile outside the tile matrix set.
        NotFound: unknown cube, or a tile outside the cube.
    """
    import morecantile
    import numpy as np
    import rioxarray  # noqa: F401  (registers .rio for XarrayReader)
    from rio_tiler.colormap import cmap
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io.xarray import XarrayReader
    from rio_tiler.models import ImageData


    definition = load_definition(settings, name)
    tms = checked_tile_matrix_set(tms_id, z, x, y)
    if index and variables:
        raise InvalidInput("give variables or index, not both")
    if index:
        idx = get_index(index)
        if idx.name in definition.variables:
            needed = [idx.name]
        else:
            needed = list(dict.fromkeys(idx.bands.values()))
    else:
        needed = variables or [b for b in ("red", "green", "blue") if b in definition.variables] or definition.variables[:1]
        if len(needed) not in (1, 3):
            raise InvalidInput(f"variables: give one or three, not {len(needed)}")
    missing = [v for v in needed if v not in definition.variables]
    if missing:
        raise InvalidInput(f"cube {name} has no variable {missing[0]!r}; it has {', '.join(definition.variables)}")
    step = pick_step(definition, time, time_index)
    if level is None:
        from odc.geo.geom import BoundingBox

        west, south, east, north = tms.bounds(morecantile.Tile(x, y, z))
        span = BoundingBox(west, south, east, north, crs="EPSG:4326").to_crs(definition.geobox.crs).span_x
        level = level_for_resolution(definition, span / tilesize)
    elif not 0 <= level < definition.levels:
        raise InvalidInput(f"level {level}: cube {name} has levels 0..{definition.levels - 1}")
    headers = {"X-Cube-Time": definition.steps[step]["time"], "X-Cube-Level": str(level)}
    if fill:
        west, south, east, north = tms.bounds(morecantile.Tile(x, y, z))
        report = fill_bounded(settings, definition, (west, south, east, north), range(step, step + 1), level=level,
                              max_units=MAX_TILE_FILL_UNITS, gate=gate)
        headers["X-Cube-Fill"] = "skipped" if report is None else str(report.computed)
    ds = open_level(definition, settings, level)
    arrays = []
    try:
        for var in needed:
            da = ds[var].isel(time=step)
            if da.dtype.kind != "f":
                da = da.astype("float32")
            with XarrayReader(da, tms=tms) as reader:
                img = reader.tile(x, y, z, tilesize=tilesize, nodata=np.nan)
            arrays.append(np.ma.filled(img.array.astype(np.float32), np.nan))
    except TileOutsideBounds as exc:
        raise NotFound(f"tile {z}/{x}/{y} is outside cube {name}") from exc
    data = np.stack([a[0] for a in arrays])
    if index and len(needed) > 1:
        idx = get_index(index)
        data = idx.compute({c: data[needed.index(c)] for c in idx.bands.values()})[None]
    valid = np.isfinite(data).all(axis=0)
    colormap = None
    if index:
        default_cmap, default_range = RENDER.get(get_index(index).name, ("viridis", (-1.0, 1.0)))
        lo, hi = _rescale(rescale, default_range)
        colormap = cmap.get(colormap_name or default_cmap)
    else:
        lo, hi = _rescale(rescale, DEFAULT_RESCALE)
        if colormap_name:
            colormap = cmap.get(colormap_name)
    scaled = np.clip((np.nan_to_num(data, nan=lo) - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    image = ImageData(np.ma.MaskedArray(scaled, mask=np.broadcast_to(~valid, scaled.shape)))
    content = image.render(img_format=DRIVER[fmt], colormap=colormap, add_mask=fmt != "jpg" and fmt != "jpeg")
    return content, headers


def cube_summary(definition, base: str) -> dict:
    """The JSON description of a cube."""
    link = f"{base}/{definition.name}"
    return {
        "name": definition.name, "mode": definition.mode, "collections": definition.spec["collections"],
        "grid": definition.grid.to_doc(), "bbox": definition.bbox_lonlat,
        "crs": f"EPSG:{definition.geobox.crs.epsg}" if definition.geobox.crs.epsg else definition.geobox.crs.to_wkt(),
        "shape": [len(definition.steps), definition.geobox.shape.y, definition.geobox.shape.x],
        "chunks": list(definition.chunks), "variables": definition.variables,
        "bands": definition.bands, "indices": definition.indices,
        "time": [s["time"] for s in definition.steps],
        "levels": [{"level": k, "resolution": abs(definition.level_geobox(k).resolution.x),
                    "href": level_href(definition, k)} for k in range(definition.levels)],
        "links": [
            {"rel": "self", "href": link},
            {"rel": "tilejson", "href": f"{link}/WebMercatorQuad/tilejson.json"},
            {"rel": "tiles", "href": f"{link}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png", "templated": True},
            {"rel": "timeseries", "href": f"{link}/timeseries?lon={{lon}}&lat={{lat}}", "templated": True},
            {"rel": "filled", "href": f"{link}/filled", "type": "application/geo+json"},
            {"rel": "ingestion-config", "href": f"{link}/ingestion-config", "type": "application/yaml"},
            {"rel": "collection", "href": f"{base.rsplit('/cubes', 1)[0]}/stac/collections/{definition.name}"},
        ],
    }


def _series_response(ts, fmt: str) -> Response:
    if fmt == "csv":
        name = (ts.cube or "-".join(ts.collections) or "timeseries").replace("/", "_")
        return Response(ts.to_csv(), media_type="text/csv",
                        headers={"Content-Disposition": f'inline; filename="{name}-timeseries.csv"'})
    return JSONResponse(ts.to_json())


def create_cubes_app(settings: Settings, *, access: AccessService | None = None) -> FastAPI:
    """The cubes application (a factory: no global state).

    Args:
        access: the access service of the app this one is mounted in (its callers' principals
            and access rows); None: no access control (every cube is readable). Either way
            every source href a fill or time series reads goes through the read gate.
    """
    app = FastAPI(title="stacube cubes API", openapi_url="/api", docs_url="/api.html",
                  description="Tiles and time series of stacube's Zarr cubes.")
    add_error_handlers(app)
    app.add_middleware(JsonBodyMiddleware)
    caller, readable_cube, readable_collections = cube_dependencies(access)
    gates = access.gates if access is not None else GateCache(settings)
    Caller = Depends(caller)
    cube_routes = [Depends(readable_cube)]

    def base(request: Request) -> str:
        root = request.scope.get("app_root_path") or request.scope.get("root_path", "")
        return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")

    def series(fmt: str, who: CubeAccess, **kwargs) -> Response:
        if fmt not in ("json", "csv"):
            raise InvalidInput(f"format {fmt!r}: use json or csv")
        return _series_response(timeseries(settings, gate=gates.current(), usable=who.usable, **kwargs), fmt)

    @app.get("/", summary="Cubes")
    def list_cubes(request: Request, who: CubeAccess = Caller) -> list[dict]:
        definitions = [CubeDefinition.from_doc(r["definition"]) for r in CubeRecords(settings).list()]
        return [cube_summary(d, base(request)) for d in definitions if who.usable(d)]

    @app.get("/timeseries", summary="Time series of a collection at a point",
             dependencies=[Depends(readable_collections)])
    def collection_series(
        who: CubeAccess = Caller,
        collection: list[str] = Query(..., description="Collection id (repeatable)."),
        lon: float = Query(...), lat: float = Query(...),
        datetime: str | None = Query(None, description="START/END"),
        bands: list[str] | None = Query(None, description="Bands (comma-separated or repeated)."),
        index: list[str] | None = Query(None, description="Index names (NDVI...)."),
        source: str = Query("auto", description="auto | cube | items"),
        format: str = Query("json", description="json | csv"),
    ):
        return series(format, who, collection=_split(collection), lon=lon, lat=lat, time=datetime,
                      bands=_split(bands), indices=_split(index), source=source)

    @app.post("/timeseries", summary="Time series of a collection over a GeoJSON geometry",
              dependencies=[Depends(readable_collections)])
    def collection_series_post(
        who: CubeAccess = Caller,
        geometry: dict[str, Any] = Body(..., description="GeoJSON Point, Polygon, MultiPolygon or Feature."),
        collection: list[str] = Query(...), datetime: str | None = Query(None),
        bands: list[str] | None = Query(None), index: list[str] | None = Query(None),
        source: str = Query("auto"), format: str = Query("json"),
    ):
        return series(format, who, collection=_split(collection), geometry=geometry, time=datetime,
                      bands=_split(bands), indices=_split(index), source=source)

    add_builder_routes(app, settings, caller=caller, readable_cube=readable_cube,
                       summary=lambda definition, request: cube_summary(definition, base(request)),
                       gate=gates.current)

    @app.get("/{name}", summary="A cube (with its fill state)", dependencies=cube_routes)
    def get_cube(name: str, request: Request) -> dict:
        definition = load_definition(settings, name)
        return {**cube_summary(definition, base(request)), "fill": fill_state(settings, definition)}

    @app.get("/{name}/timeseries", summary="Time series of a cube at a point", dependencies=cube_routes)
    def cube_series(
        name: str, who: CubeAccess = Caller, lon: float = Query(...), lat: float = Query(...), datetime: str | None = Query(None),
        bands: list[str] | None = Query(None), index: list[str] | None = Query(None),
        source: str = Query("cube", description="cube | items"), format: str = Query("json"),
        fill: bool = Query(True, description="Fill missing parts of the cube first."),
    ):
        return series(format, who, cube=name, lon=lon, lat=lat, time=datetime, bands=_split(bands),
                      indices=_split(index), source=source, fill=fill)

    @app.post("/{name}/timeseries", summary="Time series of a cube over a GeoJSON geometry",
              dependencies=cube_routes)
    def cube_series_post(
        name: str, who: CubeAccess = Caller, geometry: dict[str, Any] = Body(...), datetime: str | None = Query(None),
        bands: list[str] | None = Query(None), index: list[str] | None = Query(None),
        source: str = Query("cube"), format: str = Query("json"), fill: bool = Query(True),
    ):
        return series(format, who, cube=name, geometry=geometry, time=datetime, bands=_split(bands),
                      indices=_split(index), source=source, fill=fill)

    @app.get("/{name}/tiles/{tileMatrixSetId}/{z}/{x}/{tile}", summary="A map tile of a cube",
             response_class=Response, dependencies=cube_routes)
    def tile(
        name: str, tileMatrixSetId: str, z: int, x: int, tile: str,
        variables: list[str] | None = Query(None, description="One or three variables (RGB)."),
        index: str | None = Query(None, description="Index computed from the cube's bands."),
        time: str | None = Query(None, description="ISO date or datetime (nearest step)."),
        time_index: int | None = Query(None), level: int | None = Query(None),
        rescale: str | None = Query(None, description="MIN,MAX"), colormap_name: str | None = Query(None),
        tilesize: int = Query(256, ge=64, le=MAX_TILESIZE),
        fill: bool = Query(False, description="Compute the missing units under the tile first (at most "
                                              f"{MAX_TILE_FILL_UNITS}; more: render what is there)."),
    ):
        m = TILE_NAME.match(tile)
        if not m:
            raise InvalidInput(f"tile {tile!r}: expected Y[@2x][.png|.webp|.jpg]")
        y, scale, fmt = int(m.group(1)), int(m.group(2) or 1), m.group(3) or "png"
        if tilesize * scale > MAX_TILESIZE:
            raise InvalidInput(f"tile size {tilesize * scale} px exceeds the limit of {MAX_TILESIZE} px")
        content, headers = render_tile(
            settings, name, tileMatrixSetId, z, x, y, variables=_split(variables), index=index, time=time,
            time_index=time_index, level=level, rescale=rescale, colormap_name=colormap_name,
            tilesize=tilesize * scale, fmt=fmt, fill=fill, gate=gates.current() if fill else None)
        return Response(content, media_type=MEDIA[fmt], headers=headers)

    @app.get("/{name}/{tileMatrixSetId}/tilejson.json", summary="TileJSON of a cube", dependencies=cube_routes)
    def tilejson(name: str, tileMatrixSetId: str, request: Request) -> dict:
        import math


        definition = load_definition(settings, name)
        west, south, east, north = definition.bbox_lonlat
        res = abs(definition.geobox.resolution.x)
        metres = res * (111320.0 if definition.geobox.crs.geographic else 1.0)
        maxzoom = webmercator_zoom(metres, (south + north) / 2)
        minzoom = max(0, maxzoom - definition.levels - 3)
        query = str(request.url.query)
        url = f"{base(request)}/{name}/tiles/{tileMatrixSetId}/{{z}}/{{x}}/{{y}}.png" + (f"?{query}" if query else "")
        return {"tilejson": "3.0.0", "name": name, "tiles": [url], "minzoom": minzoom, "maxzoom": maxzoom,
                "bounds": [west, south, east, north],
                "center": [(west + east) / 2, (south + north) / 2, min(maxzoom, max(minzoom, math.floor((minzoom + maxzoom) / 2)))]}

    return app
