"""How big a compositing job is, known before it is planned: for submission checks.

:func:`estimate` resolves a :class:`~stacube.jobs.spec.CompositeSpec` against the catalog as
planning would (:func:`stacube.jobs.plan.make_geobox` / :func:`~stacube.jobs.plan.grid_geobox`
for the output grid, from one item per collection), but counts the scenes instead of reading
them, so its cost does not grow with the request: a job over the whole world at 1 m is
estimated (and refused) in milliseconds.

Its measure is the work a job reads: ``samples = output pixels x scenes x bands read``.
"""

from __future__ import annotations

from dataclasses import dataclass

from odc.geo.geom import BoundingBox

from stacube.algo.load import Source
from stacube.algo.tile import CompositeInputs
from stacube.catalog.bands import resolve_band_assets
from stacube.catalog.pgstac import Catalog
from stacube.core.period import make_periods
from stacube.core.times import item_datetime
from stacube.errors import NoData
from stacube.catalog.quality import rule_of
from stacube.jobs.plan import DEFAULT_BANDS, grid_geobox, make_geobox, tile_bytes_per_pixel, tile_edge
from stacube.jobs.spec import CompositeSpec

#: Scenes counted at most (a job over more is refused on that count alone).
MAX_SCENES = 100_000
#: pgSTAC items of some collections that meet a bbox (WGS 84) and an interval, counted up to a cap.
COUNT_SQL = ("SELECT count(*) FROM (SELECT 1 FROM pgstac.items WHERE collection = ANY(%s) "
             "AND datetime <= %s AND end_datetime >= %s "
             "AND st_intersects(geometry, st_makeenvelope(%s, %s, %s, %s, 4326)) LIMIT %s) found")


@dataclass(frozen=True)
class JobSize:
    """A job's size.

    Attributes:
        pixels: output pixels (width x height of the output grid).
        scenes: input scenes (items) in the bbox and time range (at most :data:`MAX_SCENES`).
        bands: bands read per scene (outputs, those the indices need, the quality band).
        steps: output time steps (periods).
        variables: output variables.
        tile_edge: the largest tile edge (px) whose estimated memory fits the tile budget.
    """

    pixels: int
    scenes: int
    bands: int
    steps: int
    variables: int
    tile_edge: int

    @property
    def samples(self) -> int:
        """``pixels x scenes x bands``: the values a job reads."""
        return self.pixels * self.scenes * self.bands

    def tile_bytes(self, edge: int) -> int:
        """Estimated peak memory of one ``edge`` x ``edge`` tile (:func:`tile_bytes_per_pixel`)."""
        per_pixel = tile_bytes_per_pixel(max(self.scenes, 1), max(self.bands, 1), self.variables, max(self.steps, 1))
        return edge * edge * per_pixel


def estimate(spec: CompositeSpec, catalog: Catalog) -> JobSize:
    """The size of ``spec``'s job (see the module docstring).

    Raises:
        NotFound: unknown collection. InvalidInput: a band the collections lack, no CRS or
            resolution, or an output grid absurdly large (planning's own checks).
        NoData: no scene in the bbox and time range.
    """
    collections = [catalog.get_collection(c) for c in spec.collections]
    bands = list(spec.bands) or ([] if spec.indices else list(DEFAULT_BANDS))
    wanted = CompositeInputs([], bands, list(spec.indices), spec.method, spec.mask_cleanup)
    west, south, east, north = BoundingBox(*spec.bbox, crs=spec.bbox_crs).to_crs("EPSG:4326")
    start, end = spec.time_range
    low = start.isoformat() if start else "-infinity"
    high = end.isoformat() if end else "infinity"
    with catalog.connection() as conn:
        scenes = conn.execute(COUNT_SQL, ([c["id"] for c in collections], high, low, west, south, east, north,
                                          MAX_SCENES)).fetchone()[0]
    if not scenes:
        raise NoData(f"no scene of {', '.join(spec.collections)} intersects bbox "
                     f"{[round(v, 6) for v in spec.bbox]} ({spec.bbox_crs}) in {spec.datetime}")
    sources = []
    for coll in collections:
        sample = list(catalog.search({"collections": [coll["id"]], "bbox": [west, south, east, north],
                                      "datetime": spec.datetime}, max_items=1, page_size=1))
        sources.append(Source(coll, sample, resolve_band_assets(coll, wanted.load_bands), None))
    sources = [s for s in sources if s.items] or sources
    first = [i for s in sources for i in s.items]
    when = [item_datetime(i) for i in first]
    steps = len(make_periods(spec.period, start or min(when), end or max(when)))
    n_bands = len(wanted.load_bands) + int(bool(spec.mask_asset) or any(rule_of(c) for c in collections))
    edge = tile_edge(catalog.settings.tile_memory, dates=scenes, bands=n_bands,
                     variables=len(wanted.variables), steps=steps)
    if spec.grid:
        geobox = grid_geobox(spec, sources, wanted.load_bands[0], spec.tile_size or edge)
    else:
        geobox = make_geobox(spec, sources, wanted.load_bands[0])
    return JobSize(int(geobox.shape.x) * int(geobox.shape.y), int(scenes), n_bands, steps,
                   len(wanted.variables), edge)
