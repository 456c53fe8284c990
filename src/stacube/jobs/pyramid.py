"""Static tile pyramids of job outputs: WebMercatorQuad XYZ tiles a bucket or CDN serves as files.

For each output step, :func:`write_pyramid` cuts the tiles of zooms ``minzoom..maxzoom`` that
meet the job's area (morecantile's ``WebMercatorQuad``, 256 px) out of the step's COGs with
rio-tiler (each COG read through its overviews and warped to the tile, as titiler does),
renders them (expression, ``rescale``, colormap: rio-tiler's :meth:`ImageData.rescale` and
:meth:`ImageData.render`) and writes ``<dst>/{z}/{x}/{y}.<png|webp>`` and a TileJSON 3.0.0
``<dst>/tilejson.json``. Tiles without a valid pixel are not written (map clients show them
empty, a bucket answers 403/404).

Writes are atomic (a temporary file renamed), and a tile already on disk is kept: a job resumed
in the same run finishes the pyramid without redrawing it. The pyramid is written into the
job's staging area, so a failed job leaves none behind and nothing registers it.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import attr
import numpy as np
from rio_tiler.errors import InvalidExpression, TileOutsideBounds
from rio_tiler.expression import get_expression_blocks, parse_expression
from rio_tiler.io import Reader
from rio_tiler.io.base import MultiBaseReader
from rio_tiler.types import AssetInfo

from stacube.catalog.renders import REFLECTANCE
from stacube.core.indices import RENDER
from stacube.errors import InvalidInput
from stacube.jobs.spec import PyramidSpec

#: Tile edge in pixels (WebMercatorQuad's own).
TILE_SIZE = 256
#: Tiles a job's pyramid may have (over every zoom and step): beyond it the job is refused.
MAX_TILES = 1_000_000
MEDIA_TYPES = {"png": "image/png", "webp": "image/webp"}
DRIVERS = {"png": "PNG", "webp": "WEBP"}


@dataclass(frozen=True)
class Render:
    """How tiles are drawn, every default resolved against the job's outputs."""

    bands: list[str]
    expression: str | None
    rescale: list[tuple[float, float]]
    colormap_name: str | None
    format: str


def resolve_render(pyramid: PyramidSpec, variables: list[str], dtypes: dict[str, str],
                   reflectance: set[str] = frozenset()) -> Render:
    """The rendering of a pyramid over a job's outputs.

    Args:
        pyramid: the job's ``pyramid`` parameters.
        variables: the job's outputs (COG variables), in order.
        dtypes: ``{variable: numpy dtype name}``.
        reflectance: outputs that are surface reflectance (default range 0..0.3).

    Defaults: the bands ``red, green, blue`` when written, else the first output; the rescale
    range of a spectral index is its own (:data:`stacube.core.indices.RENDER`, with its
    colormap), of reflectance 0..0.3; 8-bit outputs need none.

    Raises:
        InvalidInput: a band that is not an output, an expression naming no band or one past
            the bands read, not 1 or 3 bands drawn, a range missing for an output that is not
            8-bit, a colormap over several bands.
    """
    bands = list(pyramid.bands) or ([b for b in ("red", "green", "blue") if b in variables]
                                    if all(b in variables for b in ("red", "green", "blue")) else variables[:1])
    missing = [b for b in bands if b not in variables]
    if missing:
        raise InvalidInput(f"pyramid: {missing[0]!r} is not an output of the job ({', '.join(variables)})")
    drawn = len(get_expression_blocks(pyramid.expression)) if pyramid.expression else len(bands)
    if pyramid.expression:
        try:
            used = parse_expression(pyramid.expression)
        except InvalidExpression as exc:
            raise InvalidInput(f"pyramid: expression {pyramid.expression!r}: {exc} (name the bands b1..b{len(bands)})") \
                from None
        if max(used) > len(bands):
            raise InvalidInput(f"pyramid: expression {pyramid.expression!r} uses b{max(used)}, but "
                               f"{len(bands)} band(s) are read ({', '.join(bands)})")
    if drawn not in (1, 3):
        raise InvalidInput(f"pyramid: draws one band (grey or colormap) or three (RGB), not {drawn}")
    colormap = pyramid.colormap_name
    rescale = list(pyramid.rescale)
    if not rescale and not pyramid.expression:
        index = RENDER.get(bands[0]) if drawn == 1 else None
        if index is not None:
            colormap = colormap or index[0]
            rescale = [index[1]]
        elif all(b in reflectance for b in bands):
            rescale = [REFLECTANCE]
        elif not all(dtypes.get(b) == "uint8" for b in bands):
            raise InvalidInput(f"pyramid: give the rescale range (MIN,MAX) of {', '.join(bands)}")
    elif not rescale:
        raise InvalidInput("pyramid: give the rescale range (MIN,MAX) of the expression's values")
    if len(rescale) not in (1, drawn):
        raise InvalidInput(f"pyramid: give one rescale range or one per band ({drawn}), not {len(rescale)}")
    if colormap and drawn != 1:
        raise InvalidInput("pyramid: a colormap draws one band, not three")
    return Render(bands=bands, expression=pyramid.expression, rescale=rescale, colormap_name=colormap,
                  format=pyramid.format)


def pyramid_tiles(bounds: tuple[float, float, float, float], minzoom: int, maxzoom: int) -> list:
    """The WebMercatorQuad tiles (``morecantile.Tile``) of zooms ``minzoom..maxzoom`` that meet
    ``bounds`` (west, south, east, north in degrees, EPSG:4326)."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    return list(tms.tiles(*bounds, zooms=list(range(minzoom, maxzoom + 1))))


def count_tiles(bounds: tuple[float, float, float, float], minzoom: int, maxzoom: int) -> int:
    """How many tiles :func:`pyramid_tiles` gives, counted from each zoom's corner tiles."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    west, south, east, north = bounds
    total = 0
    for z in range(minzoom, maxzoom + 1):
        ul, lr = tms.tile(west, north, z), tms.tile(east, south, z)
        total += (lr.x - ul.x + 1) * (lr.y - ul.y + 1)
    return total


def check_size(bounds: tuple[float, float, float, float], pyramid: PyramidSpec, steps: int = 1) -> int:
    """The number of tiles of the job's pyramids.

    Raises:
        InvalidInput: more than :data:`MAX_TILES`.
    """
    count = count_tiles(bounds, pyramid.minzoom, pyramid.maxzoom) * steps
    if count > MAX_TILES:
        raise InvalidInput(f"pyramid: zooms {pyramid.minzoom}-{pyramid.maxzoom} over the area make {count:,} "
                           f"tiles (at most {MAX_TILES:,}): lower maxzoom")
    return count


@attr.s
class OutputReader(MultiBaseReader):
    """rio-tiler's multi-asset reader over one step of a job's outputs: ``input`` is
    ``{variable: COG path or URI}``; each asset is read with :class:`rio_tiler.io.Reader` and the
    bands are stacked in the order asked (``b1..bN`` in expressions)."""

    reader: type = attr.ib(init=False, default=Reader)

    def __attrs_post_init__(self):
        self.assets = list(self.input)
        with Reader(next(iter(self.input.values())), tms=self.tms) as src:
            self.bounds, self.crs = src.bounds, src.crs
            self.minzoom = self.minzoom if self.minzoom is not None else src.minzoom
            self.maxzoom = self.maxzoom if self.maxzoom is not None else src.maxzoom

    def _get_asset_info(self, asset: str) -> AssetInfo:
        if asset not in self.input:
            raise InvalidInput(f"no output {asset!r} (the job writes {', '.join(self.input)})")
        return AssetInfo(url=self.input[asset], name=asset, media_type=None, reader_options={}, method_options={})


def render_tile(reader: OutputReader, tile, render: Render) -> bytes | None:
    """One tile drawn as titiler draws it (rio-tiler ``tile`` → expression → ``rescale`` →
    ``render``); None when it has no valid pixel."""
    from rio_tiler.colormap import cmap

    try:
        img = reader.tile(tile.x, tile.y, tile.z, assets=render.bands, expression=render.expression,
                          tilesize=TILE_SIZE)
    except TileOutsideBounds:
        return None
    if np.ma.getmaskarray(img.array).all():  # every band masked everywhere (nodata, outside the data)
        return None
    if render.rescale:
        img = img.rescale(in_range=render.rescale)
    colormap = cmap.get(render.colormap_name) if render.colormap_name else None
    return img.render(img_format=DRIVERS[render.format], colormap=colormap)


def tilejson(template: str, bounds: tuple[float, float, float, float], minzoom: int, maxzoom: int,
             name: str) -> dict:
    """A TileJSON 3.0.0 document of a pyramid (https://github.com/mapbox/tilejson-spec)."""
    west, south, east, north = bounds
    return {"tilejson": "3.0.0", "name": name, "scheme": "xyz", "tiles": [template],
            "minzoom": minzoom, "maxzoom": maxzoom, "bounds": [west, south, east, north],
            "center": [(west + east) / 2, (south + north) / 2, minzoom]}


def write_pyramid(sources: dict[str, str], render: Render, bounds: tuple[float, float, float, float],
                  minzoom: int, maxzoom: int, dst: Path, template: str, *, name: str, threads: int = 1,
                  on_tile=None) -> dict:
    """Write one pyramid: ``dst/{z}/{x}/{y}.<format>`` and ``dst/tilejson.json``.

    Args:
        sources: ``{variable: COG path or URI}`` of one output step (``s3://`` is read through
            GDAL's /vsis3/).
        bounds: the area (west, south, east, north, EPSG:4326): the tiles that meet it are cut.
        template: the tile URL template the TileJSON names (``.../{z}/{x}/{y}.png``).
        threads: tiles drawn at once (GDAL reads and warps without the GIL).
        on_tile: ``on_tile(done, total)`` progress callback.

    Returns:
        ``{"tiles": written (or already there), "empty": skipped, "minzoom", "maxzoom"}``.
    """
    tiles = pyramid_tiles(bounds, minzoom, maxzoom)
    ext = render.format
    reader = OutputReader({b: sources[b] for b in render.bands})

    def one(tile) -> bool:
        path = dst / str(tile.z) / str(tile.x) / f"{tile.y}.{ext}"
        if path.exists():  # drawn by an earlier attempt of this run (written atomically)
            return True
        data = render_tile(reader, tile, render)
        if data is None:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True

    written = 0
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for done, wrote in enumerate(pool.map(one, tiles), start=1):
            written += wrote
            if on_tile:
                on_tile(done, len(tiles))
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "tilejson.json").write_text(json.dumps(tilejson(template, bounds, minzoom, maxzoom, name), indent=2))
    return {"tiles": written, "empty": len(tiles) - written, "minzoom": minzoom, "maxzoom": maxzoom}


def lonlat_bounds(geobox) -> tuple[float, float, float, float]:
    """The GeoBox's extent in longitude/latitude (west, south, east, north), clipped to
    WebMercatorQuad's latitudes."""
    west, south, east, north = geobox.extent.to_crs("EPSG:4326").boundingbox
    limit = math.degrees(math.atan(math.sinh(math.pi)))  # 85.0511...
    return west, max(south, -limit), east, min(north, limit)
