"""Time series at a point or over a polygon: per date, band and index values with the
clear/cloud flag and the share of valid pixels (xcube's ``/timeseries`` is the model).

Two sources give the same answer on the same grid:

* a Zarr cube of masked observations (:func:`from_cube`): reads only the chunks under the
  geometry (filling missing units first, unless told not to);
* the source items (:func:`from_items`): catalog search, odc-stac load of the pixels under the
  geometry, the product's quality rule, scenes of one solar day merged as in a cube.

Per date (a solar day; a period for composite cubes):

* point: the values of the pixel that contains the point; ``status`` is ``clear``, ``nodata``,
  or, observed but not clear, the name the mask gives the reason (``cloud``, ``cloud_shadow``,
  ``snow``...: :meth:`stacube.catalog.quality.QualityRule.reason_table`; ``not_clear`` when
  the mask names none);
* polygon: the means over the clear pixels whose centres fall inside the polygon (every touched
  pixel when no centre does); ``status`` is ``clear`` when any pixel is clear, else the most
  frequent reason among its observed pixels.

Reasons come from the rule alone when it has one (s2cloudless: ``cloud``), else from the raw
masks of that date's items (read only for dates that are observed but not clear).

Also per date: ``pixel_count`` (pixels of the geometry), ``valid_count`` / ``valid_share``
(observed) and ``clear_count`` / ``clear_share``. Values are physical (reflectance,
unitless indices); missing values are NaN (``null`` in JSON, empty in CSV).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from shapely.geometry import box

from stacube.algo.load import Source, load_masks, load_stack
from stacube.algo.observations import CLEAR, NO_OBSERVATION, NOT_CLEAR, merge_observations
from stacube.catalog.bands import resolve_band_assets
from stacube.catalog.pgstac import Catalog
from stacube.catalog.quality import parse_rule, rule_of
from stacube.core.crs import crs_text
from stacube.core.geobox import source_grid
from stacube.core.grids import parse_grid
from stacube.core.indices import get_index, required_bands
from stacube.core.times import format_interval, item_datetime, parse_rfc3339, parse_time, solar_day
from stacube.cubes.arrays import open_level
from stacube.cubes.definition import QUALITY, CubeDefinition, default_bands
from stacube.cubes.fill import fill_region, load_definition, steps_for, window_for
from stacube.cubes.records import CubeRecords
from stacube.errors import InvalidInput, NoData, listing
from stacube.settings import Settings

NOT_CLEAR_STATUS = "not_clear"
COUNT_COLUMNS = ("status", "clear_share", "valid_share", "clear_count", "valid_count", "pixel_count")


@dataclass
class TimeSeries:
    """A time series (see the module docstring).

    Attributes:
        source: ``cube`` or ``items``.
        kind: ``point`` or ``polygon``.
        geometry: GeoJSON geometry (lon/lat) of the request.
        variables: bands then indices, in column order.
        rows: per date ``{"datetime", variables..., "status", "clear_share", ...}``.
    """

    source: str
    kind: str
    geometry: dict
    variables: list[str]
    rows: list[dict]
    cube: str | None = None
    collections: list[str] = field(default_factory=list)
    crs: str | None = None

    def to_json(self) -> dict:
        """A JSON-ready document (NaN as null)."""
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "type": "TimeSeries", "source": self.source, "cube": self.cube, "collections": self.collections,
            "kind": self.kind, "geometry": self.geometry, "crs": self.crs, "variables": self.variables,
            "units": {v: "1" for v in self.variables},
            "series": [{k: clean(v) for k, v in row.items()} for row in self.rows],
        }

    def to_csv(self) -> str:
        """CSV with a header: datetime, the variables, then the status and counts."""
        out = io.StringIO()
        columns = ["datetime", *self.variables, *COUNT_COLUMNS]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in self.rows:
            writer.writerow(["" if isinstance(row.get(c), float) and not math.isfinite(row[c])
                             else ("" if row.get(c) is None else row[c]) for c in columns])
        return out.getvalue()

    def to_frame(self):
        """A pandas DataFrame indexed by datetime."""
        import pandas as pd

        frame = pd.DataFrame(self.rows)
        if frame.empty:
            return frame
        frame["datetime"] = pd.to_datetime(frame["datetime"])
        return frame.set_index("datetime")


# -- geometry ---------------------------------------------------------------------------------
def parse_geometry(*, lon: float | None = None, lat: float | None = None, geometry=None):
    """A shapely geometry (lon/lat) and its kind from a point or a GeoJSON object.

    Accepts ``lon``/``lat``, or a GeoJSON Point, Polygon, MultiPolygon, Feature or a
    FeatureCollection of one feature.

    Raises:
        InvalidInput: neither or both given, malformed GeoJSON, other geometry types,
            coordinates outside lon/lat ranges.
    """
    from shapely.geometry import Point, shape

    if geometry is not None and (lon is not None or lat is not None):
        raise InvalidInput("give a point (lon, lat) or a geometry, not both")
    if geometry is None:
        if lon is None or lat is None:
            raise InvalidInput("give lon and lat, or a GeoJSON geometry")
        try:
            lon, lat = float(lon), float(lat)
        except (TypeError, ValueError) as exc:
            raise InvalidInput("lon and lat must be numbers") from exc
        if not (-180 <= lon <= 180 and -90 <= lat <= 90) or not (math.isfinite(lon) and math.isfinite(lat)):
            raise InvalidInput(f"point ({lon}, {lat}) is outside longitude/latitude range")
        return Point(lon, lat), "point"
    doc = geometry
    if isinstance(doc, str):
        import json

        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise InvalidInput(f"geometry is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or "type" not in doc:
        raise InvalidInput("geometry must be a GeoJSON object with a \"type\"")
    if doc["type"] == "FeatureCollection":
        features = doc.get("features") or []
        if len(features) != 1:
            raise InvalidInput(f"a FeatureCollection must hold exactly one feature (it has {len(features)})")
        doc = features[0]
    if doc["type"] == "Feature":
        doc = doc.get("geometry") or {}
    if doc.get("type") not in ("Point", "Polygon", "MultiPolygon"):
        raise InvalidInput(f"geometry type {doc.get('type')!r}: use Point, Polygon or MultiPolygon")
    try:
        geom = shape(doc)
    except Exception as exc:  # shapely raises several types on malformed coordinates
        raise InvalidInput(f"malformed {doc['type']}: {exc}") from exc
    if geom.is_empty:
        raise InvalidInput("the geometry is empty")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InvalidInput(f"geometry bounds {[minx, miny, maxx, maxy]} are outside longitude/latitude range")
    if geom.geom_type == "Point":
        return geom, "point"
    if not geom.is_valid:
        geom = geom.buffer(0)
    if geom.area == 0:
        raise InvalidInput("the polygon has no area")
    return geom, "polygon"


def pixel_mask(geom, kind: str, geobox) -> np.ndarray:
    """Bool ``(y, x)`` over ``geobox``: the pixel holding the point, or the pixels whose centres
    fall in the polygon (every touched pixel when no centre does)."""
    from odc.geo.geom import Geometry
    from odc.geo.xr import rasterize

    ny, nx = geobox.shape.y, geobox.shape.x
    if kind == "point":
        x, y = Geometry(geom, "EPSG:4326").to_crs(geobox.crs).coords[0]
        col, row = ~geobox.affine * (x, y)
        mask = np.zeros((ny, nx), dtype=bool)
        mask[min(ny - 1, max(0, int(math.floor(row)))), min(nx - 1, max(0, int(math.floor(col))))] = True
        return mask
    poly = Geometry(geom, "EPSG:4326")
    mask = rasterize(poly, geobox).values.astype(bool)
    if not mask.any():
        mask = rasterize(poly, geobox, all_touched=True).values.astype(bool)
    return mask


# -- reduction ------------------------------------------------------------------------------
def summarise(times: list[str], layers: dict[str, np.ndarray], quality: np.ndarray | None,
              mask: np.ndarray, kind: str, labels: list[str] | None = None) -> list[dict]:
    """Per-date rows from ``(t, y, x)`` layers (NaN unless clear) and the quality flag.

    Args:
        times: ISO datetime per step.
        layers: ``{variable: float (t, y, x)}``.
        quality: uint8 ``(t, y, x)`` flag (None: clear where the first layer is finite).
        mask: bool ``(y, x)`` pixels of the geometry.
        kind: ``point`` or ``polygon``.
    """
    n = int(mask.sum())
    rows = []
    first = next(iter(layers.values())) if layers else None
    for t, when in enumerate(times):
        if quality is not None:
            q = quality[t][mask]
            clear = int((q == CLEAR).sum())
            valid = int((q != NO_OBSERVATION).sum())
        else:
            finite = np.isfinite(first[t][mask]) if first is not None else np.zeros(n, dtype=bool)
            clear = valid = int(finite.sum())
        row: dict = {"datetime": when}
        if labels:
            row["label"] = labels[t]
        for name, stack in layers.items():
            values = stack[t][mask].astype(np.float64)
            values = values[np.isfinite(values)]
            row[name] = float(values.mean()) if values.size else float("nan")
        row["status"] = "clear" if clear else (NOT_CLEAR_STATUS if valid else "nodata")
        row["clear_share"] = round(clear / n, 6) if n else 0.0
        row["valid_share"] = round(valid / n, 6) if n else 0.0
        row["clear_count"], row["valid_count"], row["pixel_count"] = clear, valid, n
        rows.append(row)
    return rows


def _single_reason(sources: list[Source]) -> str | None:
    """The one not-clear reason every source's rule can give, or None."""
    names = {tuple(s.rule.reason_names()) for s in sources if s.rule is not None}
    return next(iter(names))[0] if len(names) == 1 and len(next(iter(names))) == 1 else None


def name_statuses(rows: list[dict], quality: np.ndarray | None, mask: np.ndarray,
                  step_items: list[list[str]], sources: list[Source], geobox) -> None:
    """Replace the ``not_clear`` statuses of ``rows`` by the reason the masks give (see the
    module docstring), in place.

    Args:
        quality: uint8 ``(t, y, x)`` flags of the rows' steps.
        mask: bool ``(y, x)`` pixels of the geometry.
        step_items: per step, the ids of its items in slice order.
        sources: sources holding (at least) those items, with their rules.
        geobox: the grid of ``quality`` (where raw masks are read).
    """
    todo = [t for t, row in enumerate(rows) if row["status"] == NOT_CLEAR_STATUS]
    if not todo or quality is None or not any(s.rule for s in sources):
        return
    single = _single_reason(sources)
    if single:
        for t in todo:
            rows[t]["status"] = single
        return
    wanted = {i for t in todo for i in step_items[t]}
    subset = [Source(s.collection, [i for i in s.items if i["id"] in wanted], s.assets, s.rule) for s in sources]
    raw = load_masks([s for s in subset if s.items], geobox)
    rule_of_item = {i["id"]: s.rule for s in subset for i in s.items}
    for t in todo:
        counts: Counter = Counter()
        pending = (quality[t] == NOT_CLEAR) & mask
        for item_id in step_items[t]:
            if item_id not in raw or rule_of_item.get(item_id) is None or not pending.any():
                continue
            codes, reason = rule_of_item[item_id].reason_table(raw[item_id])
            here = pending & (codes > 0)
            for code, n in zip(*np.unique(codes[here], return_counts=True)):
                counts[reason[int(code) - 1]] += int(n)
            pending &= ~here
        if counts:
            rows[t]["status"] = counts.most_common(1)[0][0]


def _with_indices(layers: dict[str, np.ndarray], indices: list[str]) -> dict[str, np.ndarray]:
    out = dict(layers)
    for name in indices:
        if name not in out:
            index = get_index(name)
            missing = [c for c in index.bands.values() if c not in layers]
            if missing:
                raise InvalidInput(f"index {name} needs {', '.join(missing)}")
            out[name] = index.compute({c: layers[c] for c in index.bands.values()})
    return out


def _variables(bands, indices) -> tuple[list[str], list[str]]:
    if isinstance(bands, str):
        bands = [b.strip() for b in bands.split(",") if b.strip()]
    if isinstance(indices, str):
        indices = [i.strip() for i in indices.split(",") if i.strip()]
    return list(dict.fromkeys(bands or [])), list(dict.fromkeys(get_index(i).name for i in (indices or [])))


# -- from a cube ------------------------------------------------------------------------------
def from_cube(settings: Settings, cube: str, *, geom, kind: str, time=None, bands=None, indices=None,
              fill: bool = True, workers: int | None = None) -> TimeSeries:
    """The time series from a Zarr cube (see the module docstring).

    Raises:
        NotFound: unknown cube. InvalidInput: a band or index the cube cannot give.
        NoData: the geometry or time is outside the cube.
    """
    definition = load_definition(settings, cube)
    bands, indices = _variables(bands, indices)
    if not bands and not indices:
        bands = list(definition.bands)
        indices = list(definition.indices)
    needed = list(bands)
    for name in indices:
        if name in definition.indices:
            needed.append(name)
        else:
            needed.extend(get_index(name).bands.values())
    unknown = [b for b in dict.fromkeys(needed) if b not in definition.variables]
    if unknown:
        raise InvalidInput(f"cube {cube} has no band {unknown[0]!r}; it holds "
                           f"{listing(definition.variables, none='no variable')}")
    bbox = geom.bounds
    if fill:
        definition, _, steps, (rows, cols) = fill_region(cube, bbox, time, settings=settings, workers=workers)
    else:
        steps = steps_for(definition, time)
        rows, cols = window_for(definition, bbox)
    names = list(dict.fromkeys(needed))
    has_quality = QUALITY in definition.variables
    ds = open_level(definition, settings, 0)[names + ([QUALITY] if has_quality else [])].isel(
        time=slice(steps.start, steps.stop), y=rows, x=cols).load()
    region = definition.geobox[rows, cols]
    mask = pixel_mask(geom, kind, region)
    layers = _with_indices({n: ds[n].values for n in names}, indices)
    steps_docs = definition.steps[steps.start:steps.stop]
    quality = ds[QUALITY].values if has_quality else None
    out_rows = summarise([s["time"] for s in steps_docs], {v: layers[v] for v in [*bands, *indices]},
                         quality, mask, kind,
                         labels=[s["label"] for s in steps_docs] if definition.mode == "composite" else None)
    if any(row["status"] == NOT_CLEAR_STATUS for row in out_rows):
        step_items = [list(s["items"]) for s in steps_docs]
        sources = [Source(src["collection"], [], src["assets"], parse_rule(src["rule"]) if src["rule"] else None)
                   for src in definition.sources]
        if not _single_reason(sources):
            ids = sorted({i for t, row in enumerate(out_rows) if row["status"] == NOT_CLEAR_STATUS
                          for i in step_items[t]})
            sources = definition.make_sources(list(Catalog(settings).search({"ids": ids})))
        name_statuses(out_rows, quality, mask, step_items, sources, region)
    return TimeSeries("cube", kind, geom.__geo_interface__, [*bands, *indices], out_rows, cube=cube,
                      collections=list(definition.spec["collections"]), crs=crs_text(region.crs))


# -- from the items -----------------------------------------------------------------------------
def from_items(settings: Settings, collections: list[str], *, geom, kind: str, time=None, bands=None,
               indices=None, like: CubeDefinition | None = None) -> TimeSeries:
    """The time series straight from the source items (see the module docstring).

    Args:
        like: a cube whose grid and solar-day convention to use (the same pixels as the cube);
            default: the first collection's native grid.

    Raises:
        NotFound: unknown collection. InvalidInput: a band the collection lacks.
        NoData: no item meets the geometry in the time range.
    """
    if isinstance(collections, str):
        collections = [collections]
    catalog = Catalog(settings)
    docs = [catalog.get_collection(c) for c in collections]
    bands, indices = _variables(bands, indices)
    if not bands and not indices:
        bands = default_bands(docs[0])
    load_bands = list(dict.fromkeys([*bands, *required_bands(indices)]))
    start, end = parse_time(time)
    search = {"collections": collections, "intersects": geom.__geo_interface__}
    if start or end:
        search["datetime"] = format_interval(start, end)
    items = list(catalog.search(search))
    if not items:
        raise NoData(f"no item of {', '.join(collections)} meets the geometry"
                     + (f" in {time}" if time else ""))
    sources = []
    for doc in docs:
        mine = [i for i in items if i["collection"] == doc["id"]]
        if mine:
            sources.append(Source(doc, mine, resolve_band_assets(doc, load_bands), rule_of(doc)))
    if like is not None:
        rows, cols = window_for(like, geom.bounds)
        geobox = like.geobox[rows, cols]
        lon = like.solar_lon
    else:
        first = sources[0]
        native = source_grid(first.collection, first.items, first.assets[load_bands[0]])
        grid = parse_grid("native", native=native)
        geobox = grid.domain(geom.bounds, "EPSG:4326", 1)
        lon = geom.centroid.x
    stack = load_stack(sources, geobox, load_bands)
    days: dict[str, int] = {}
    first_time: dict[str, str] = {}
    by_id = {i["id"]: i for i in items}
    slice_steps = []
    for item_id in stack.item_ids:
        when = item_datetime(by_id[item_id])
        day = solar_day(when, lon)
        if day not in days:
            days[day] = len(days)
            first_time[day] = when.isoformat().replace("+00:00", "Z")
        slice_steps.append(days[day])
    merged, quality = merge_observations(stack.bands, stack.observed, stack.clear,
                                         np.array(slice_steps, dtype=np.int64), len(days))
    order = sorted(days, key=lambda d: days[d])
    mask = pixel_mask(geom, kind, geobox)
    layers = _with_indices(merged, indices)
    out_rows = summarise([first_time[d] for d in order], {v: layers[v] for v in [*bands, *indices]},
                         quality, mask, kind)
    step_items: list[list[str]] = [[] for _ in order]
    for item_id, step in zip(stack.item_ids, slice_steps):
        step_items[step].append(item_id)
    name_statuses(out_rows, quality, mask, step_items, sources, geobox)
    return TimeSeries("items", kind, geom.__geo_interface__, [*bands, *indices], out_rows,
                      collections=list(collections), crs=crs_text(geobox.crs))


# -- choosing the source --------------------------------------------------------------------------
def find_cube(settings: Settings, collections: list[str], geom, time=None) -> str | None:
    """A masked-observations cube of exactly these collections whose domain holds the geometry
    (and overlaps the time range), or None."""
    start, end = parse_time(time)
    for row in CubeRecords(settings).list():
        definition = CubeDefinition.from_doc(row["definition"])
        if definition.mode != "observations" or sorted(definition.spec["collections"]) != sorted(collections):
            continue
        if not box(*definition.bbox_lonlat).contains(geom):
            continue
        first, last = definition.steps[0]["start"], definition.steps[-1]["end"]
        if (start and parse_rfc3339(last) < start) or (end and parse_rfc3339(first) > end):
            continue
        return definition.name
    return None


def timeseries(settings: Settings, *, collection=None, cube: str | None = None, lon=None, lat=None,
               geometry=None, time=None, bands=None, indices=None, source: str = "auto",
               fill: bool = True) -> TimeSeries:
    """A time series from a cube when one exists (or is named), else from the source items.

    Args:
        collection: collection id(s) (``source=items`` or ``auto``).
        cube: a cube name (implies ``source=cube``).
        lon, lat / geometry: a point, or a GeoJSON Point/Polygon/MultiPolygon/Feature.
        time: ``START/END`` or a ``(start, end)`` pair.
        bands, indices: names (lists or comma-separated); default: the cube's or the
            collection's red, green, blue, nir.
        source: ``auto``, ``cube`` or ``items``.
        fill: fill missing cube units first (cube source).

    Raises:
        InvalidInput: inconsistent arguments. NotFound / NoData: see the two sources.
    """
    if source not in ("auto", "cube", "items"):
        raise InvalidInput(f"source {source!r}: use auto, cube or items")
    geom, kind = parse_geometry(lon=lon, lat=lat, geometry=geometry)
    collections = [collection] if isinstance(collection, str) else list(collection or [])
    if cube is None and not collections:
        raise InvalidInput("name a collection or a cube")
    if source == "items":
        if not collections:
            collections = list(load_definition(settings, cube).spec["collections"])
        return from_items(settings, collections, geom=geom, kind=kind, time=time, bands=bands, indices=indices)
    if cube is None:
        cube = find_cube(settings, collections, geom, time)
        if cube is None:
            if source == "cube":
                raise NoData(f"no cube of {', '.join(collections)} holds this geometry")
            return from_items(settings, collections, geom=geom, kind=kind, time=time, bands=bands,
                              indices=indices)
    return from_cube(settings, cube, geom=geom, kind=kind, time=time, bands=bands, indices=indices, fill=fill)
