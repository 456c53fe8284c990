"""Planning a compositing job: collections, items, bands, output GeoBox, tiles and periods."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from stacube.catalog.bands import resolve_band_assets
from stacube.catalog.quality import QualityRule, clear_values_rule, rule_of
from stacube.catalog.store import Catalog
from stacube.cube.indices import required_bands
from stacube.cube.load import Source, item_order_key
from stacube.errors import InvalidInput, NoData
from stacube.jobs.spec import PERIOD_PATTERN, CompositeSpec, format_interval

DEFAULT_BANDS = ["red", "green", "blue"]
#: Memory a tile needs whatever its size: item documents, odc-stac and GDAL bookkeeping, and,
#: when AWS credentials are set, the boto3 session rasterio opens per read (about 2 MiB measured).
FIXED_TILE_OVERHEAD = 8 << 20
MAX_OUTPUT_PIXELS = 4_000_000_000


@dataclass(frozen=True)
class Period:
    """One output time step: ``[start, end]`` (UTC); ``label`` is used in ids and paths."""

    start: datetime
    end: datetime
    label: str

    def contains(self, when: datetime) -> bool:
        return self.start <= when <= self.end


@dataclass
class Plan:
    """Everything a job needs to run, resolved from a :class:`CompositeSpec` and the catalog."""

    spec: CompositeSpec
    job_id: str
    sources: list[Source]
    bands: list[str]
    indices: list[str]
    load_bands: list[str]
    geobox: object
    tile_shape: tuple[int, int]
    periods: list[Period]
    output_root: str
    output_collection: str
    items: dict[str, dict] = field(default_factory=dict)

    @property
    def tiles(self):
        from odc.geo.geobox import GeoboxTiles

        return GeoboxTiles(self.geobox, self.tile_shape)

    def tile_indices(self) -> list[tuple[int, int]]:
        ny, nx = self.tiles.shape.y, self.tiles.shape.x
        return [(iy, ix) for iy in range(ny) for ix in range(nx)]

    @property
    def variables(self) -> list[str]:
        """Output variables: bands, indices, provenance (selection methods), counts."""
        from stacube.jobs.spec import SELECTION_METHODS

        extra = ["provenance"] if self.spec.method in SELECTION_METHODS else []
        return [*self.bands, *self.indices, *extra, "clear_count", "valid_count"]


def _rule(spec: CompositeSpec, collection: dict) -> QualityRule | None:
    if spec.mask_asset:
        meta = ((collection.get("item_assets") or {}).get(spec.mask_asset) or {})
        if collection.get("item_assets") and not meta:
            raise InvalidInput(f"collection {collection['id']!r} has no asset {spec.mask_asset!r} (--mask-asset)")
        nodata = ((meta.get("raster:bands") or [{}])[0]).get("nodata")
        return clear_values_rule(spec.mask_asset, list(spec.clear or []),
                                 int(nodata) if isinstance(nodata, (int, float)) else None)
    return rule_of(collection)


def make_periods(spec: CompositeSpec, first: datetime, last: datetime) -> list[Period]:
    """Periods covering the job's time range (clamped to the items' range where open)."""
    start, end = spec.time_range
    start = start or first
    end = end or last
    if spec.period is None:
        return [Period(start, end, start.strftime("%Y%m%d") + "_" + end.strftime("%Y%m%d"))]
    m = PERIOD_PATTERN.match(spec.period)
    n, unit = int(m.group(1)), m.group(2)
    periods = []
    cursor = start
    while cursor <= end:
        if unit in "DW":
            nxt = cursor + timedelta(days=n * (7 if unit == "W" else 1))
        else:
            months = n * (12 if unit == "Y" else 1)
            total = cursor.month - 1 + months
            nxt = cursor.replace(year=cursor.year + total // 12, month=total % 12 + 1, day=1) \
                if cursor.day == 1 else _add_months(cursor, months)
        stop = min(end, nxt - timedelta(microseconds=1))
        periods.append(Period(cursor, stop, cursor.strftime("%Y%m%d")))
        cursor = nxt
    return periods


def _add_months(when: datetime, months: int) -> datetime:
    total = when.month - 1 + months
    year, month = when.year + total // 12, total % 12 + 1
    import calendar

    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def _item_datetime(item: dict) -> datetime:
    text = item_order_key(item)[0]
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _native_grid(source: Source, band: str) -> tuple[str | None, tuple[float, float] | None, tuple[float, float] | None]:
    """CRS, (xres, yres) and origin (x0, y0) of the first item's asset for ``band``."""
    item = sorted(source.items, key=item_order_key)[0]
    asset = item["assets"].get(source.assets[band], {})
    props = item.get("properties", {})
    code = asset.get("proj:code") or props.get("proj:code")
    epsg = asset.get("proj:epsg") or props.get("proj:epsg")
    crs = code or (f"EPSG:{epsg}" if epsg else None)
    transform = asset.get("proj:transform") or props.get("proj:transform")
    if transform and len(transform) >= 6:
        return crs, (float(transform[0]), float(transform[4])), (float(transform[2]), float(transform[5]))
    return crs, None, None


def make_geobox(spec: CompositeSpec, sources: list[Source], ref_band: str):
    """The output GeoBox: CRS and resolution from the spec, else the first collection's storage
    settings, else its first item's native grid (whose pixel edges the output then follows).

    Raises:
        InvalidInput: no CRS can be found, or the output would be absurdly large.
    """
    from odc.geo import resxy_, xy_
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import BoundingBox

    first = sources[0]
    storage = first.collection.get("stacube:storage") or {}
    native_crs, native_res, origin = _native_grid(first, ref_band)
    crs = spec.crs or storage.get("crs") or native_crs
    if crs is None:
        raise InvalidInput(f"collection {first.id!r} declares no CRS: pass --crs")
    bbox = BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs(crs)
    anchor = "default"
    if spec.resolution:
        res = resxy_(spec.resolution, -spec.resolution)
    elif storage.get("resolution") and (spec.crs is None or spec.crs == storage.get("crs")):
        rx, ry = storage["resolution"]
        res = resxy_(abs(rx), -abs(ry))
    elif native_res and native_crs and _same_crs(crs, native_crs):
        res = resxy_(abs(native_res[0]), -abs(native_res[1]))
        anchor = xy_((origin[0] / res.x) % 1, (origin[1] / res.y) % 1)
    elif native_res and native_crs:
        native_box = BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs(native_crs)
        scale = bbox.span_x / max(native_box.span_x, 1e-12)
        res = resxy_(abs(native_res[0]) * scale, -abs(native_res[1]) * scale)
    else:
        raise InvalidInput(f"cannot tell the resolution of {first.id!r}: pass --resolution")
    geobox = GeoBox.from_bbox(bbox, crs, resolution=res, anchor=anchor)
    pixels = geobox.shape.x * geobox.shape.y
    if pixels > MAX_OUTPUT_PIXELS:
        raise InvalidInput(
            f"the output would be {geobox.shape.x} x {geobox.shape.y} pixels; "
            "choose a smaller bbox or a coarser --resolution"
        )
    return geobox


def grid_geobox(spec: CompositeSpec, sources: list[Source], ref_band: str, tile: int):
    """The output GeoBox on a named grid (``--grid``, see :mod:`stacube.cubes.grids`): the whole
    ``tile`` x ``tile`` px tiles of the grid that intersect the bbox, so every job on a grid cuts
    the same tiles and their outputs line up.

    Raises:
        InvalidInput: unknown grid name; the output would be absurdly large.
    """
    from odc.geo.geom import BoundingBox

    from stacube.cubes.grids import parse_grid

    first = sources[0]
    storage = first.collection.get("stacube:storage") or {}
    native_crs, native_res, origin = _native_grid(first, ref_band)
    native = None
    if storage.get("crs") and storage.get("resolution"):
        native = (storage["crs"], float(storage["resolution"][0]), origin or (0.0, 0.0))
    elif native_crs and native_res:
        native = (native_crs, abs(native_res[0]), origin)
    box = BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs("EPSG:4326")
    grid = parse_grid(spec.grid, native=native, centre=((box.left + box.right) / 2, (box.bottom + box.top) / 2))
    geobox = grid.domain(spec.bbox, spec.bbox_crs, tile)
    if geobox.shape.x * geobox.shape.y > MAX_OUTPUT_PIXELS:
        raise InvalidInput(f"the output would be {geobox.shape.x} x {geobox.shape.y} pixels on grid "
                           f"{grid.name}; choose a smaller bbox or a coarser grid")
    return geobox


def _same_crs(a: str, b: str) -> bool:
    from pyproj import CRS

    return CRS.from_user_input(a) == CRS.from_user_input(b)


def tile_bytes_per_pixel(dates: int, bands: int, variables: int, steps: int) -> int:
    """Peak bytes per output pixel while a tile is composited.

    Per date: the raw bands and quality band as read (assumed 2 bytes each), the float32
    physical values of each band, the ``observed`` and ``clear`` masks (1 byte each), the
    quality decoding's temporaries (about 6 bytes) and the sort/gather work of one band
    (4 bytes); plus the float32 outputs of every variable and step. Calibrated against
    tracemalloc peaks of real tiles (see the tests).
    """
    per_date = 2 * (bands + 1) + 4 * bands + 2 + 6 + 4
    return dates * per_date + 4 * variables * steps


def tile_edge(budget: int, *, dates: int, bands: int, variables: int, steps: int,
              multiple: int = 256, largest: int = 4096) -> int:
    """The tile edge (a multiple of ``multiple`` px, so tiles align with cube chunks) whose
    estimated peak memory (:func:`tile_bytes_per_pixel`) fits ``budget`` bytes.

    Example: 40 dates x 6 bands in 2 GiB -> 1024 px tiles.
    """
    per_px = tile_bytes_per_pixel(max(dates, 1), max(bands, 1), variables, max(steps, 1))
    budget = max(budget - FIXED_TILE_OVERHEAD, budget // 2)
    edge = int(math.sqrt(budget / per_px)) // multiple * multiple
    return max(multiple // 4, min(largest, edge)) if edge else max(16, int(math.sqrt(budget / per_px)))


def make_plan(spec: CompositeSpec, catalog: Catalog, output_root: str) -> Plan:
    """Resolve a spec against the catalog.

    Raises:
        NotFound: unknown collection.
        InvalidInput: a band or mask asset a collection lacks; no CRS/resolution.
        NoData: no item in the bbox and time range.
    """
    from odc.geo.geom import BoundingBox

    collections = [catalog.get_collection(c) for c in spec.collections]
    bands = list(spec.bands)
    if not bands and not spec.indices:
        bands = list(DEFAULT_BANDS)
    load_bands = list(dict.fromkeys([*bands, *required_bands(spec.indices),
                                     *(required_bands(["NDVI"]) if spec.method == "max-ndvi" else [])]))
    search_bbox = list(BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs("EPSG:4326"))
    start, end = spec.time_range
    sources: list[Source] = []
    for coll in collections:
        assets = resolve_band_assets(coll, load_bands)
        rule = _rule(spec, coll)
        items = list(catalog.search({
            "collections": [coll["id"]],
            "bbox": search_bbox,
            "datetime": format_interval(start, end),
        }))
        sources.append(Source(coll, items, assets, rule))
    all_items = [i for s in sources for i in s.items]
    if not all_items:
        raise NoData(
            f"no scene of {', '.join(spec.collections)} intersects bbox "
            f"{[round(v, 6) for v in spec.bbox]} ({spec.bbox_crs}) in {spec.datetime}"
        )
    sources = [s for s in sources if s.items] or sources
    times = sorted(_item_datetime(i) for i in all_items)
    periods = make_periods(spec, times[0], times[-1])
    job_id = spec.job_id()
    output_collection = spec.output_collection or f"{spec.collections[0]}-{spec.method}"
    n_vars = len(bands) + len(spec.indices) + 3
    tile = spec.tile_size or tile_edge(catalog.settings.tile_memory, dates=len(all_items),
                                       bands=len(load_bands), variables=n_vars, steps=len(periods))
    if spec.grid:
        geobox = grid_geobox(spec, sources, load_bands[0], tile)
    else:
        geobox = make_geobox(spec, sources, load_bands[0])
        tile = min(tile, max(geobox.shape.x, geobox.shape.y))
    return Plan(
        spec=spec, job_id=job_id, sources=sources, bands=bands, indices=list(spec.indices),
        load_bands=load_bands, geobox=geobox, tile_shape=(tile, tile), periods=periods,
        output_root=output_root, output_collection=output_collection,
        items={i["id"]: i for i in all_items},
    )




def plan_to_doc(plan: Plan) -> dict:
    """A JSON document of the plan (stored with the job, read back by every worker)."""
    gb = plan.geobox
    return {
        "spec": plan.spec.model_dump(mode="json"),
        "job_id": plan.job_id,
        "sources": [
            {"collection": s.collection, "items": s.items, "assets": s.assets,
             "rule": s.rule.to_stac() if s.rule else None}
            for s in plan.sources
        ],
        "bands": plan.bands, "indices": plan.indices, "load_bands": plan.load_bands,
        "geobox": {"crs": gb.crs.to_wkt(), "affine": list(gb.affine)[:6], "shape": [gb.shape.y, gb.shape.x]},
        "tile_shape": list(plan.tile_shape),
        "periods": [{"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label}
                    for p in plan.periods],
        "output_root": plan.output_root,
        "output_collection": plan.output_collection,
    }


def plan_from_doc(doc: dict) -> Plan:
    """The inverse of :func:`plan_to_doc`."""
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from stacube.catalog.quality import parse_rule

    sources = [
        Source(s["collection"], s["items"], s["assets"], parse_rule(s["rule"]) if s["rule"] else None)
        for s in doc["sources"]
    ]
    g = doc["geobox"]
    geobox = GeoBox(tuple(g["shape"]), Affine(*g["affine"]), g["crs"])
    return Plan(
        spec=CompositeSpec.model_validate(doc["spec"]), job_id=doc["job_id"], sources=sources,
        bands=doc["bands"], indices=doc["indices"], load_bands=doc["load_bands"], geobox=geobox,
        tile_shape=tuple(doc["tile_shape"]),
        periods=[Period(datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"]), p["label"])
                 for p in doc["periods"]],
        output_root=doc["output_root"], output_collection=doc["output_collection"],
        items={i["id"]: i for s in sources for i in s.items},
    )
