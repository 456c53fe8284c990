"""Planning a compositing job: collections, items, bands, output GeoBox, tiles and periods.

A :class:`Plan` is resolved once from a :class:`~stacube.jobs.spec.CompositeSpec` and the
catalog, stored with the job as JSON (:func:`plan_to_doc`) and read back by every worker
(:func:`plan_from_doc`), so tiles need no catalog search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from odc.geo import resxy_
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.geom import BoundingBox

from stacube.algo.load import Source
from stacube.algo.process import Output
from stacube.algo.tile import CompositeInputs, variable_dtype, variable_fill
from stacube.catalog.bands import resolve_band_assets
from stacube.catalog.pgstac import Catalog
from stacube.catalog.quality import QualityRule, clear_values_rule, parse_rule, rule_of
from stacube.core.geobox import geobox_from_doc, geobox_to_doc, output_anchor, source_grid, source_grid_in
from stacube.core.grids import parse_grid
from stacube.core.period import Period, make_periods
from stacube.core.times import format_interval, item_datetime
from stacube.errors import InvalidInput, NoData
from stacube.jobs.spec import CompositeSpec, ProcessSpec, spec_from_doc

DEFAULT_BANDS = ["red", "green", "blue"]
#: Memory a tile needs whatever its size: item documents, odc-stac and GDAL bookkeeping, and,
#: when AWS credentials are set, the boto3 session rasterio opens per read (about 2 MiB measured).
FIXED_TILE_OVERHEAD = 8 << 20
MAX_OUTPUT_PIXELS = 4_000_000_000


@dataclass
class Plan:
    """Everything a job needs to run, resolved from a :class:`CompositeSpec` and the catalog.

    Attributes:
        job_id: the job's id (scoped by its workspace when it has one).
        inputs: sources, bands, indices, method and mask cleanup of every tile.
        geobox: the output GeoBox; ``tile_shape`` cuts it into tiles.
        periods: output time steps.
        items: every input item by id.
        outputs: a process job's outputs (dtype, nodata); None for a composite, or a process
            whose outputs are not known yet.
    """

    spec: CompositeSpec
    job_id: str
    inputs: CompositeInputs
    geobox: GeoBox
    tile_shape: tuple[int, int]
    periods: list[Period]
    output_root: str
    output_collection: str
    items: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, Output] | None = None

    @property
    def is_process(self) -> bool:
        return isinstance(self.spec, ProcessSpec)

    @property
    def what(self) -> str:
        """What the job makes, in words (``median composite``, ``process ndwi``)."""
        return f"process {self.spec.process_name}" if self.is_process else f"{self.spec.method} composite"

    def dtype_of(self, var: str) -> str:
        """The dtype of an output variable."""
        return self.outputs[var].dtype if self.outputs and var in self.outputs else variable_dtype(var)

    def fill_of(self, var: str):
        """The nodata of an output variable (NaN for floats)."""
        return self.outputs[var].fill if self.outputs and var in self.outputs else variable_fill(var)

    @property
    def sources(self) -> list[Source]:
        return self.inputs.sources

    @property
    def bands(self) -> list[str]:
        return self.inputs.bands

    @property
    def indices(self) -> list[str]:
        return self.inputs.indices

    @property
    def load_bands(self) -> list[str]:
        return self.inputs.load_bands

    @property
    def variables(self) -> list[str]:
        """Output variables: bands, indices, provenance (selection methods), counts; a
        process's outputs."""
        if self.is_process:
            return list(self.outputs or {})
        return self.inputs.variables

    @property
    def tiles(self) -> GeoboxTiles:
        return GeoboxTiles(self.geobox, self.tile_shape)

    def tile_indices(self) -> list[tuple[int, int]]:
        ny, nx = self.tiles.shape.y, self.tiles.shape.x
        return [(iy, ix) for iy in range(ny) for ix in range(nx)]


def _rule(spec: CompositeSpec, collection: dict) -> QualityRule | None:
    if spec.mask_asset:
        meta = ((collection.get("item_assets") or {}).get(spec.mask_asset) or {})
        if collection.get("item_assets") and not meta:
            raise InvalidInput(f"collection {collection['id']!r} has no asset {spec.mask_asset!r} (--mask-asset)")
        nodata = ((meta.get("raster:bands") or [{}])[0]).get("nodata")
        return clear_values_rule(spec.mask_asset, list(spec.clear or []),
                                 int(nodata) if isinstance(nodata, (int, float)) else None)
    return rule_of(collection)


def _check_size(geobox: GeoBox, where: str) -> GeoBox:
    if geobox.shape.x * geobox.shape.y > MAX_OUTPUT_PIXELS:
        raise InvalidInput(f"the output would be {geobox.shape.x} x {geobox.shape.y} pixels{where}; "
                           "choose a smaller bbox or a coarser resolution")
    return geobox


def make_geobox(spec: CompositeSpec, sources: list[Source], ref_band: str) -> GeoBox:
    """The output GeoBox of a job without ``--grid``.

    CRS: ``--crs``, else the first collection's source grid (``stacube:storage``, else its first
    item's native grid). Resolution: ``--resolution``, else that of the source grid in the output
    CRS (the storage grid, else the native one), else the native one scaled to the output CRS.
    Pixel edges: ``--anchor`` (:func:`stacube.core.geobox.output_anchor`); by default those of the
    source grid when it is in the output CRS, so outputs coincide with the source pixels; the
    extent covers the area in whole pixels.

    Raises:
        InvalidInput: no CRS can be found, or the output would be absurdly large.
    """
    first = sources[0]
    asset = first.assets[ref_band]
    native = source_grid(first.collection, first.items, asset)
    crs = spec.crs or (native.crs if native else None)
    if crs is None:
        raise InvalidInput(f"collection {first.id!r} declares no CRS: pass --crs")
    bbox = BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs(crs)
    on_grid = source_grid_in(crs, first.collection, first.items, asset)
    if spec.resolution:
        res = resxy_(spec.resolution, -spec.resolution)
    elif on_grid:
        res = resxy_(abs(on_grid.resolution[0]), -abs(on_grid.resolution[1]))
    elif native:
        native_box = BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs(native.crs)
        scale = bbox.span_x / max(native_box.span_x, 1e-12)
        res = resxy_(abs(native.resolution[0]) * scale, -abs(native.resolution[1]) * scale)
    else:
        raise InvalidInput(f"cannot tell the resolution of {first.id!r}: pass --resolution")
    anchor = output_anchor(spec.anchor, on_grid, (res.x, res.y))
    return _check_size(GeoBox.from_bbox(bbox, crs, resolution=res, anchor=anchor), "")


def grid_geobox(spec: CompositeSpec, sources: list[Source], ref_band: str, tile: int) -> GeoBox:
    """The output GeoBox on a named grid (``--grid``, see :mod:`stacube.core.grids`): the area in
    whole pixels of the grid, or, with ``--grid-tiles``, the whole ``tile`` x ``tile`` px tiles of
    the grid that meet it (every job on a grid then cuts the same tiles).

    Raises:
        InvalidInput: unknown grid name; the output would be absurdly large.
    """
    first = sources[0]
    native = source_grid(first.collection, first.items, first.assets[ref_band])
    box = BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs("EPSG:4326")
    grid = parse_grid(spec.grid, native=native, centre=((box.left + box.right) / 2, (box.bottom + box.top) / 2))
    domain = grid.domain(spec.bbox, spec.bbox_crs, tile if spec.grid_tiles else 1)
    return _check_size(domain, f" on grid {grid.name}")


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


def make_plan(spec: CompositeSpec, catalog: Catalog, output_root: str, *, job_id: str | None = None) -> Plan:
    """Resolve a spec against the catalog.

    Args:
        job_id: the job's id (default: the parameters' own, :meth:`CompositeSpec.job_id`).

    Raises:
        NotFound: unknown collection.
        InvalidInput: a band or mask asset a collection lacks; no CRS/resolution.
        NoData: no item in the bbox and time range.
    """
    collections = [catalog.get_collection(c) for c in spec.collections]
    bands = list(spec.bands)
    if not bands and not spec.indices:
        bands = list(DEFAULT_BANDS)
    wanted = CompositeInputs([], bands, list(spec.indices), spec.method, spec.mask_cleanup)
    search_bbox = list(BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs("EPSG:4326"))
    start, end = spec.time_range
    sources: list[Source] = []
    for coll in collections:
        assets = resolve_band_assets(coll, wanted.load_bands)
        items = list(catalog.search({
            "collections": [coll["id"]], "bbox": search_bbox, "datetime": format_interval(start, end),
        }))
        sources.append(Source(coll, items, assets, _rule(spec, coll)))
    all_items = [i for s in sources for i in s.items]
    if not all_items:
        raise NoData(
            f"no scene of {', '.join(spec.collections)} intersects bbox "
            f"{[round(v, 6) for v in spec.bbox]} ({spec.bbox_crs}) in {spec.datetime}"
        )
    sources = [s for s in sources if s.items] or sources
    inputs = CompositeInputs(sources, bands, list(spec.indices), spec.method, spec.mask_cleanup)
    times = sorted(item_datetime(i) for i in all_items)
    periods = make_periods(spec.period, start or times[0], end or times[-1])
    name = spec.process_name if isinstance(spec, ProcessSpec) else spec.method
    output_collection = spec.output_collection or f"{spec.collections[0]}-{name}"
    tile = spec.tile_size or tile_edge(catalog.settings.tile_memory, dates=len(all_items),
                                       bands=len(inputs.load_bands), variables=len(inputs.variables),
                                       steps=len(periods))
    if spec.grid:
        geobox = grid_geobox(spec, sources, inputs.load_bands[0], tile)
    else:
        geobox = make_geobox(spec, sources, inputs.load_bands[0])
    if not spec.grid_tiles:
        tile = min(tile, max(geobox.shape.x, geobox.shape.y))
    return Plan(
        spec=spec, job_id=job_id or spec.job_id(), inputs=inputs, geobox=geobox, tile_shape=(tile, tile),
        periods=periods, output_root=output_root, output_collection=output_collection,
        items={i["id"]: i for i in all_items},
        outputs=None if not isinstance(spec, ProcessSpec) or spec.outputs is None else {
            k: Output(o.dtype, o.nodata) for k, o in spec.outputs.items()},
    )


def plan_to_doc(plan: Plan) -> dict:
    """A JSON document of the plan (stored with the job, read back by every worker)."""
    return {
        "spec": plan.spec.model_dump(mode="json"),
        "job_id": plan.job_id,
        "sources": [
            {"collection": s.collection, "items": s.items, "assets": s.assets,
             "rule": s.rule.to_stac() if s.rule else None}
            for s in plan.sources
        ],
        "bands": plan.bands, "indices": plan.indices,
        "geobox": geobox_to_doc(plan.geobox),
        "tile_shape": list(plan.tile_shape),
        "periods": [{"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label}
                    for p in plan.periods],
        "output_root": plan.output_root,
        "output_collection": plan.output_collection,
        "outputs": None if plan.outputs is None else {k: {"dtype": o.dtype, "nodata": o.nodata}
                                                      for k, o in plan.outputs.items()},
    }


def plan_from_doc(doc: dict) -> Plan:
    """The inverse of :func:`plan_to_doc`."""
    spec = spec_from_doc(doc["spec"])
    sources = [
        Source(s["collection"], s["items"], s["assets"], parse_rule(s["rule"]) if s["rule"] else None)
        for s in doc["sources"]
    ]
    return Plan(
        spec=spec, job_id=doc["job_id"],
        inputs=CompositeInputs(sources, doc["bands"], doc["indices"], spec.method, spec.mask_cleanup),
        geobox=geobox_from_doc(doc["geobox"]), tile_shape=tuple(doc["tile_shape"]),
        periods=[Period(datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"]), p["label"])
                 for p in doc["periods"]],
        output_root=doc["output_root"], output_collection=doc["output_collection"],
        items={i["id"]: i for s in sources for i in s.items},
        outputs=None if doc.get("outputs") is None else {k: Output(o["dtype"], o["nodata"])
                                                          for k, o in doc["outputs"].items()},
    )
