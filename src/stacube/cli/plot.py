"""``stacube plot``: PNG plots of time series and composites."""

from __future__ import annotations

from pathlib import Path

import typer

from stacube.cli.common import console, settings_from, split_list
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
    max_gap: float = typer.Option(60.0, "--max-gap",
                                  help="Days between clear dates over which the line breaks (0: never)."),
) -> None:
    """Plot a time series (values, not-clear dates by the mask's reason, clear and valid shares) to a PNG."""
    from stacube.cubes.timeseries import timeseries  # lazy: start-up
    from stacube.plots import plot_timeseries as draw  # lazy: start-up

    _png(out)
    ts = timeseries(settings_from(), **series_options(collection, cube, lon, lat, geometry, datetime_value,
                                                       bands, index, source))
    draw(ts, out, title=title, max_gap_days=max_gap)
    console.print(f"{out}: {len(ts.rows)} dates of {', '.join(ts.variables)} from {ts.source}")


@app.command("composite")
def plot_composite(
    ref: str = typer.Argument(..., help="A job id, or an item id (ITEM or COLLECTION/ITEM)."),
    out: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    index: str | None = typer.Option(None, help="Index panel (default NDVI when possible)."),
    step: str | None = typer.Option(None, help="Period label of a job with several (default: the first)."),
    rgb: str | None = typer.Option(
        None, "--rgb", help="Three bands shown as red, green, blue (e.g. swir16,nir,red); default true colour, "
                            "else false colour (swir16, nir, red) when blue or green is missing."),
) -> None:
    """Plot a composite: a colour panel with a percentile stretch and an index panel, to a PNG."""
    from stacube.plots import find_composite  # lazy: start-up
    from stacube.plots import plot_composite as draw  # lazy: start-up
    from stacube.storage.objects import configure_gdal  # lazy: start-up

    _png(out)
    settings = settings_from()
    configure_gdal(settings)
    layers = find_composite(settings, ref, step=step)
    draw(layers, out, index=index, rgb=split_list(rgb, "--rgb") or None)
    console.print(f"{out}: {layers.label}, {layers.when}")
