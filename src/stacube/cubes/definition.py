"""A cube resolved against the catalog: grid, GeoBox, time axis, variables, fill units, levels.

The definition is a JSON document stored with the cube (``stacube.cubes``) and read by every
worker, so filling a tile needs no planning. Time axis:

* masked observations: one step per *solar day* (Open Data Cube's ``group_by="solar_day"``: the
  UTC acquisition time shifted by ``longitude / 15`` hours at the domain's centre), stamped with
  the day's earliest acquisition time; scenes of one overpass that meet in the domain become one
  step;
* composites: one step per period that holds at least one item, stamped with the period start
  (as compositing jobs do).

Fill units: a tile of ``tile_size`` px (whole chunks) times one time chunk; unit ``(iy, ix, tb)``
covers rows ``iy*tile ..``, columns ``ix*tile ..`` and steps ``tb*time_chunk ..`` of level 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import BoundingBox

from stacube.algo.load import Source, raster_band
from stacube.algo.tile import CompositeInputs, variable_dtype, variable_fill
from stacube.catalog.bands import resolve_band_assets
from stacube.catalog.pgstac import Catalog
from stacube.catalog.quality import parse_rule, rule_of
from stacube.core.geobox import geobox_from_doc, geobox_to_doc, source_grid
from stacube.core.grids import Grid, parse_grid
from stacube.core.indices import get_index, required_bands
from stacube.core.methods import output_variables
from stacube.core.period import make_periods
from stacube.core.times import format_interval, item_datetime, item_order_key, iso, parse_datetime_range, solar_day
from stacube.cubes.spec import CubeSpec
from stacube.errors import InvalidInput, NoData

DEFAULT_BANDS = ("red", "green", "blue", "nir")
MAX_PIXELS = 4_000_000_000
#: Pixels of a level-0 side below which no further pyramid level is made.
LEVEL_STOP = 256
QUALITY = "quality"
QUALITY_ATTRS = {
    "long_name": "observation quality of the pixel",
    "flag_values": [0, 1, 2],
    "flag_meanings": "no_observation not_clear clear",
}


@dataclass
class CubeDefinition:
    """Everything needed to fill and read a cube (see the module docstring).

    Attributes:
        geobox: level-0 ``odc.geo.geobox.GeoBox``; its shape is a multiple of ``tile``.
        chunks: Zarr chunk shape ``(time, y, x)`` of every variable of every level.
        steps: per time step ``{"time", "start", "end", "label", "items": [item ids]}``.
        sources: per collection ``{"collection": doc, "assets": {band: asset key}, "rule": doc}``.
        levels: number of pyramid levels, level 0 included.
        uri: root of the cube's stores (``<uri>/<level>.zarr``).
        encodings: per band stored as integers ``{"dtype", "nodata", "scale_factor",
            "add_offset"}`` (physical value = DN * scale_factor + add_offset, CF); bands not
            listed are float32 with NaN.
    """

    name: str
    spec: dict
    grid: Grid
    geobox: GeoBox
    tile: int
    chunks: tuple[int, int, int]
    bands: list[str]
    indices: list[str]
    load_bands: list[str]
    steps: list[dict]
    sources: list[dict]
    solar_lon: float
    levels: int
    uri: str
    created: str = ""
    encodings: dict = field(default_factory=dict)

    # -- derived ------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "composite" if self.spec.get("method") else "observations"

    @property
    def cube_spec(self) -> CubeSpec:
        return CubeSpec.model_validate(self.spec)

    @property
    def variables(self) -> list[str]:
        """Stored variables: bands, indices, then ``quality`` (observations) or the compositing
        outputs (``provenance`` for selection methods, ``clear_count``, ``valid_count``)."""
        if self.mode == "observations":
            return [*self.bands, *self.indices, QUALITY]
        return output_variables(self.bands, self.indices, self.spec["method"])

    def dtype(self, var: str) -> str:
        if var in self.encodings:
            return self.encodings[var]["dtype"]
        return "uint8" if var == QUALITY else variable_dtype(var)

    def fill_value(self, var: str):
        if var in self.encodings:
            return self.encodings[var]["nodata"]
        return 0 if var == QUALITY else variable_fill(var)

    @property
    def times(self) -> np.ndarray:
        return np.array([np.datetime64(s["time"].replace("Z", ""), "ns") for s in self.steps])

    @property
    def tiles_shape(self) -> tuple[int, int]:
        return self.geobox.shape.y // self.tile, self.geobox.shape.x // self.tile

    @property
    def n_blocks(self) -> int:
        return max(1, math.ceil(len(self.steps) / self.chunks[0]))

    def block_steps(self, block: int) -> range:
        t = self.chunks[0]
        return range(block * t, min(len(self.steps), (block + 1) * t))

    def unit_geobox(self, iy: int, ix: int) -> GeoBox:
        """GeoBox of fill tile ``(iy, ix)`` of level 0."""
        t = self.tile
        return self.geobox[iy * t:(iy + 1) * t, ix * t:(ix + 1) * t]

    def level_geobox(self, level: int) -> GeoBox:
        """GeoBox of pyramid level ``level`` (pixels ``2**level`` times larger)."""
        if level == 0:
            return self.geobox
        f = 2 ** level
        a = self.geobox.affine
        shape = (math.ceil(self.geobox.shape.y / f), math.ceil(self.geobox.shape.x / f))
        return GeoBox(shape, Affine(a.a * f, a.b, a.c, a.d, a.e * f, a.f), self.geobox.crs)

    def level_chunks(self, level: int) -> tuple[int, int, int]:
        gb = self.level_geobox(level)
        return (self.chunks[0], min(self.chunks[1], gb.shape.y), min(self.chunks[2], gb.shape.x))

    def level_uri(self, level: int) -> str:
        return f"{self.uri.rstrip('/')}/{level}.zarr"

    def item_ids(self, steps) -> list[str]:
        return [i for s in steps for i in self.steps[s]["items"]]

    def step_of_item(self) -> dict[str, int]:
        return {i: n for n, s in enumerate(self.steps) for i in s["items"]}

    def make_sources(self, items: list[dict]) -> list[Source]:
        """``load_stack`` sources holding ``items`` (by their collection)."""
        out = []
        for src in self.sources:
            mine = [i for i in items if i.get("collection") == src["collection"]["id"]]
            if mine:
                rule = parse_rule(src["rule"]) if src["rule"] else None
                out.append(Source(src["collection"], mine, src["assets"], rule,
                                  self.spec.get("resampling") or None))
        return out

    def composite_inputs(self, items: list[dict]) -> CompositeInputs:
        """What a composite cube's fill unit reads and computes, over ``items``."""
        return CompositeInputs(self.make_sources(items), self.bands, self.indices, self.spec["method"])

    @property
    def bbox_lonlat(self) -> list[float]:
        return list(self.geobox.extent.to_crs("EPSG:4326").boundingbox)

    # -- (de)serialisation ------------------------------------------------------------------
    def to_doc(self) -> dict:
        return {
            "name": self.name, "spec": self.spec, "grid": self.grid.to_doc(),
            "geobox": geobox_to_doc(self.geobox),
            "tile": self.tile, "chunks": list(self.chunks), "bands": self.bands, "indices": self.indices,
            "load_bands": self.load_bands, "steps": self.steps, "sources": self.sources,
            "solar_lon": self.solar_lon, "levels": self.levels, "uri": self.uri, "created": self.created,
            "encodings": self.encodings,
        }

    @classmethod
    def from_doc(cls, doc: dict) -> CubeDefinition:
        return cls(
            name=doc["name"], spec=doc["spec"], grid=Grid.from_doc(doc["grid"]),
            geobox=geobox_from_doc(doc["geobox"]), tile=doc["tile"],
            chunks=tuple(doc["chunks"]), bands=doc["bands"], indices=doc["indices"],
            load_bands=doc["load_bands"], steps=doc["steps"], sources=doc["sources"],
            solar_lon=doc["solar_lon"], levels=doc["levels"], uri=doc["uri"], created=doc.get("created", ""),
            encodings=doc.get("encodings") or {},
        )


# -- resolution against the catalog ------------------------------------------------------------
def default_bands(collection: dict) -> list[str]:
    """The first of red, green, blue, nir the collection has.

    Raises:
        InvalidInput: it has none of them.
    """
    out = []
    for band in DEFAULT_BANDS:
        try:
            resolve_band_assets(collection, [band])
            out.append(band)
        except InvalidInput:
            continue
    if not out:
        raise InvalidInput(f"collection {collection['id']!r} has none of {', '.join(DEFAULT_BANDS)}: pass --bands")
    return out


def band_encodings(spec: CubeSpec, collection: dict, assets: dict[str, str]) -> dict:
    """``{band: {"dtype", "nodata", "scale_factor", "add_offset"}}`` of the bands the spec stores
    as integers: the scale and offset are the source collection's (``item_assets`` ``raster:bands``
    ``scale``/``offset``; 1 and 0 when it has none), so the integers are the source's DN."""
    out = {}
    for band, dtype in spec.dtypes.items():
        if dtype == "float32":
            continue
        meta = raster_band({}, collection, assets[band])
        out[band] = {"dtype": dtype, "nodata": int(spec.nodata[band]),
                     "scale_factor": float(meta.get("scale", 1.0) or 1.0),
                     "add_offset": float(meta.get("offset", 0.0) or 0.0)}
    return out


def _union_bbox(items: list[dict]) -> tuple[float, float, float, float]:
    boxes = np.array([i["bbox"][:4] if len(i.get("bbox") or []) == 4 else
                      [i["bbox"][0], i["bbox"][1], i["bbox"][3], i["bbox"][4]] for i in items if i.get("bbox")])
    if not len(boxes):
        raise InvalidInput("the items carry no bbox: pass --bbox")
    return (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))


def _observation_steps(items: list[dict], lon: float) -> list[dict]:
    days: dict[str, list[dict]] = {}
    for item in sorted(items, key=item_order_key):
        days.setdefault(solar_day(item_datetime(item), lon), []).append(item)
    steps = []
    for day, members in sorted(days.items()):
        first = item_datetime(members[0])
        steps.append({"time": iso(first), "start": iso(first), "end": iso(item_datetime(members[-1])),
                      "label": day.replace("-", ""), "items": [i["id"] for i in members]})
    return steps


def _composite_steps(spec: CubeSpec, items: list[dict]) -> list[dict]:
    start, end = parse_datetime_range(spec.datetime)
    steps = []
    for period in make_periods(spec.period, start, end):
        members = [i for i in sorted(items, key=item_order_key) if period.contains(item_datetime(i))]
        if members:
            steps.append({"time": iso(period.start), "start": iso(period.start), "end": iso(period.end),
                          "label": period.label, "items": [i["id"] for i in members]})
    return steps


def auto_levels(shape: tuple[int, int]) -> int:
    """Levels until the larger side is at most :data:`LEVEL_STOP` px (at least 1)."""
    side = max(shape)
    levels = 1
    while side > LEVEL_STOP:
        side = math.ceil(side / 2)
        levels += 1
    return levels


def define_cube(spec: CubeSpec, catalog: Catalog, root: str) -> CubeDefinition:
    """Resolve a spec: collections, bands, items, grid, domain, time axis, levels.

    Args:
        spec: validated parameters.
        catalog: the catalog to search.
        root: root URI of cubes; the cube lives in ``<root>/<name>``.

    Raises:
        NotFound: unknown collection.
        InvalidInput: a band a collection lacks, an unusable grid, a domain too large.
        NoData: no item in the domain and time range.
    """
    collections = [catalog.get_collection(c) for c in spec.collections]
    bands = list(spec.bands) or default_bands(collections[0])
    load_bands = list(dict.fromkeys([*bands, *required_bands(spec.indices)]))
    start, end = parse_datetime_range(spec.datetime)
    search_bbox = list(BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs("EPSG:4326")) if spec.bbox else None
    sources, items = [], []
    for coll in collections:
        assets = resolve_band_assets(coll, load_bands)
        rule = rule_of(coll)
        found = list(catalog.search({"collections": [coll["id"]], "bbox": search_bbox,
                                     "datetime": format_interval(start, end)}))
        if spec.max_cloud_cover is not None:
            found = [i for i in found if (i["properties"].get("eo:cloud_cover") or 0) <= spec.max_cloud_cover]
        items.extend(found)
        sources.append({"collection": coll, "assets": assets, "rule": rule.to_stac() if rule else None,
                        "_items": found})
    if not items:
        raise NoData(f"no item of {', '.join(spec.collections)} in "
                     f"{'bbox ' + str(list(spec.bbox)) if spec.bbox else 'the catalog'} during {spec.datetime}")
    if spec.bbox:
        bbox, bbox_crs = spec.bbox, spec.bbox_crs
    else:
        bbox, bbox_crs = _union_bbox(items), "EPSG:4326"
    lonlat = BoundingBox(*bbox, crs=bbox_crs).to_crs("EPSG:4326")
    centre = ((lonlat.left + lonlat.right) / 2, (lonlat.bottom + lonlat.top) / 2)
    first = next(s for s in sources if s["_items"])
    native = source_grid(first["collection"], first["_items"], first["assets"][load_bands[0]])
    grid = parse_grid(spec.grid, native=native, centre=centre)
    geobox = grid.domain(bbox, bbox_crs, spec.tile_size)
    if geobox.shape.x * geobox.shape.y > MAX_PIXELS:
        raise InvalidInput(f"the cube would be {geobox.shape.x} x {geobox.shape.y} px on grid {grid.name}; "
                           "choose a smaller bbox or a coarser grid")
    steps = _composite_steps(spec, items) if spec.method else _observation_steps(items, centre[0])
    levels = spec.levels or auto_levels((geobox.shape.y, geobox.shape.x))
    missing = [b for b in spec.dtypes if b not in bands]
    if missing:
        raise InvalidInput(f"dtype of {missing[0]!r}, which is not among the bands {', '.join(bands)}")
    encodings = band_encodings(spec, sources[0]["collection"], sources[0]["assets"])
    for s in sources:
        s.pop("_items")
    return CubeDefinition(
        name=spec.name, spec=spec.model_dump(mode="json"), grid=grid, geobox=geobox,
        tile=spec.tile_size, chunks=(min(spec.time_chunk, len(steps)), spec.chunk, spec.chunk),
        bands=bands, indices=list(spec.indices), load_bands=load_bands, steps=steps, sources=sources,
        solar_lon=centre[0], levels=levels, uri=f"{root.rstrip('/')}/{spec.name}",
        created=iso(datetime.now(timezone.utc)), encodings=encodings,
    )


def check_index_inputs(indices: list[str], available: list[str]) -> None:
    """Raise InvalidInput when an index needs a band that is not in ``available``."""
    for name in indices:
        missing = [c for c in get_index(name).bands.values() if c not in available]
        if missing:
            raise InvalidInput(f"index {name} needs {', '.join(missing)}, which this cube does not hold")
