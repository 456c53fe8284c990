"""``stacube tiles``: the tile store shared by the raster API's processes."""

from __future__ import annotations

import os
from itertools import islice

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stacube.cli.common import console, err_console, settings_from
from stacube.errors import InvalidInput

app = typer.Typer(help="The tile store the raster API's processes share (STACUBE_TILE_STORE): seed.",
                  no_args_is_help=True)


@app.command("seed")
def seed(
    template: str = typer.Argument(
        ..., help="A tile URL of the raster API with {z}/{x}/{y} and a format, as a map asks for it: "
                  "'/raster/collections/ID/tiles/WebMercatorQuad/{z}/{x}/{y}.png?assets=B04&rescale=0,3000' "
                  "(searches/ID/..., collections/ID/items/ID/... and masked/ tiles too; a full URL works)."),
    min_zoom: int = typer.Option(0, min=0, help="Lowest zoom level (tile matrix) seeded."),
    max_zoom: int | None = typer.Option(None, min=0, help="Highest zoom level seeded "
                                                          "(default: STACUBE_TILE_STORE_MAX_ZOOM)."),
    bbox: str | None = typer.Option(None, help="MINX,MINY,MAXX,MAXY in longitude/latitude "
                                               "(default: the collection's or item's extent)."),
    limit: int = typer.Option(10_000, min=1, help="Refuse to seed more tiles than this."),
    concurrency: int = typer.Option(0, min=0, help="Tiles rendered at once (0 = number of cores)."),
) -> None:
    """Render the low-zoom tiles of a mosaic into the tile store ahead of its first viewer.

    The tiles are rendered by the raster API in this process and stored under the key a server
    looks up for the same URL (path, query parameters, the catalog version of its collections),
    so every raster API process of this catalog and store answers them without rendering, until
    an item or the collection changes. Tiles no item meets are skipped.
    """
    from stacube.core.bbox import check_lonlat, parse_bbox  # lazy: start-up
    from stacube_services.tile_seed import NO_STORE, extent_of, parse_template, tiles_of  # lazy: start-up
    from stacube_services.tile_seed import seed as seed_tiles  # lazy: start-up

    settings = settings_from()
    if not settings.tile_store:
        raise InvalidInput(NO_STORE)
    top = settings.tile_store_max_zoom if max_zoom is None else max_zoom
    if top > settings.tile_store_max_zoom:
        raise InvalidInput(f"--max-zoom {top}: the raster API reads tiles up to zoom {settings.tile_store_max_zoom} "
                           "from the store (STACUBE_TILE_STORE_MAX_ZOOM)")
    if min_zoom > top:
        raise InvalidInput(f"--min-zoom {min_zoom} is above --max-zoom {top}")
    parsed = parse_template(template)
    box = check_lonlat(parse_bbox(bbox)) if bbox else extent_of(parsed, settings)
    zooms = range(min_zoom, top + 1)
    tiles = list(islice(tiles_of(parsed, box, zooms), limit + 1))
    if len(tiles) > limit:
        raise InvalidInput(f"more than {limit} tiles at zooms {min_zoom}-{top} over {list(box)}: "
                           "lower --max-zoom, give a smaller --bbox or raise --limit")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(f"seeding zooms {min_zoom}-{top}", total=len(tiles))
        done = seed_tiles(settings, parsed, tiles,
                          concurrency=concurrency or os.cpu_count() or 1, on_tile=lambda: bar.advance(task))
    console.print(f"{done.rendered + done.stored} tiles of zooms {min_zoom}-{top} in {settings.tile_store} "
                  f"({done.rendered} rendered, {done.stored} there already; {done.empty} without items skipped)")
