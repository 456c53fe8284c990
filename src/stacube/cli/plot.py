"""``stacube plot``: PNG plots of time series and composites."""

from __future__ import annotations

from pathlib import Path

import typer

from stacube.cli.common import console, settings_from
from stacube.cli.timeseries import (
    SeriesBands,
    SeriesCollections,
    SeriesCube,
    SeriesDatetime,
    SeriesGeometry,
    SeriesIndex,
    SeriesLat,
    SeriesLon,
    SeriesSource,
    series_options,
)

app = typer.Typer(help="PNG plots: timeseries, composite.", no_args_is_help=True)


def _png(path: Path) -> Path:
    from stacube.errors import InvalidInput  # lazy: start-up

    if path.suffix.lower() != ".png":
        raise InvalidInput(f"--output {path}: the plot is a PNG, name it *.png")
    return path


@app.command("timeseries")
def plot_timeseries(
    out: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    collection: SeriesCollections = None,
    cube: SeriesCube = None,
    lon: SeriesLon = None,
    lat: SeriesLat = None,
    geometry: SeriesGeometry = None,
    datetime_value: SeriesDatetime = None,
    bands: SeriesBands = None,
    index: SeriesIndex = None,
    source: SeriesSource = "auto",
    title: str | None = typer.Option(None, help="Plot title."),
) -> None:
    """Plot a time series (values, clear/cloud dates, clear and valid shares) to a PNG."""
    from stacube.cubes.timeseries import timeseries  # lazy: start-up
    from stacube.plots import plot_timeseries as draw  # lazy: start-up

    _png(out)
    ts = timeseries(settings_from(), **series_options(collection, cube, lon, lat, geometry, datetime_value,
                                                       bands, index, source))
    draw(ts, out, title=title)
    console.print(f"{out}: {len(ts.rows)} dates of {', '.join(ts.variables)} from {ts.source}")


@app.command("composite")
def plot_composite(
    ref: str = typer.Argument(..., help="A job id, or an item id (ITEM or COLLECTION/ITEM)."),
    out: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    index: str | None = typer.Option(None, help="Index panel (default NDVI when possible)."),
    step: str | None = typer.Option(None, help="Period label of a job with several (default: the first)."),
) -> None:
    """Plot a composite: RGB with a percentile stretch and an index panel, to a PNG."""
    from stacube.plots import find_composite  # lazy: start-up
    from stacube.plots import plot_composite as draw  # lazy: start-up
    from stacube.storage.objects import configure_gdal  # lazy: start-up

    _png(out)
    settings = settings_from()
    configure_gdal(settings)
    layers = find_composite(settings, ref, step=step)
    draw(layers, out, index=index)
    console.print(f"{out}: {layers.label}, {layers.when}")
