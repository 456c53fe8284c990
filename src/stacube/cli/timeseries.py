"""``stacube timeseries``: per-date values at a point or over a polygon (CSV or JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from stacube.cli.common import console, settings_from, split_list


def series_options(collection, cube, lon, lat, geometry, datetime_value, bands, index, source):
    """Keyword arguments of :func:`stacube.cubes.timeseries.timeseries` from CLI options."""
    from stacube.errors import InvalidInput  # lazy: start-up

    geo = None
    if geometry is not None:
        try:
            geo = json.loads(geometry.read_text())
        except OSError as exc:
            raise InvalidInput(f"--geometry {geometry}: {exc.strerror}") from exc
        except ValueError as exc:
            raise InvalidInput(f"--geometry {geometry}: not valid JSON ({exc})") from exc
    return dict(collection=collection or None, cube=cube, lon=lon, lat=lat, geometry=geo, time=datetime_value,
                bands=split_list(bands, "--bands"), indices=index or [], source=source)


# the options of a time series request, shared by `stacube timeseries` and `stacube plot timeseries`
SeriesCollections = Annotated[list[str], typer.Option("--collection", "-c", help="Collection id (repeatable).")]
SeriesCube = Annotated[Optional[str], typer.Option(help="Read this cube.")]
SeriesLon = Annotated[Optional[float], typer.Option(help="Longitude of a point.")]
SeriesLat = Annotated[Optional[float], typer.Option(help="Latitude of a point.")]
SeriesGeometry = Annotated[Optional[Path],
                           typer.Option(help="GeoJSON file: Point, Polygon, MultiPolygon or Feature.")]
SeriesDatetime = Annotated[Optional[str], typer.Option("--datetime", help="START/END.")]
SeriesBands = Annotated[Optional[str], typer.Option(help="Comma-separated bands.")]
SeriesIndex = Annotated[list[str], typer.Option("--index", help="Index (NDVI...); repeatable.")]
SeriesSource = Annotated[str, typer.Option(help="auto (a cube if one holds the geometry) | cube | items.")]


def timeseries(
    collection: SeriesCollections = None,
    cube: SeriesCube = None,
    lon: SeriesLon = None,
    lat: SeriesLat = None,
    geometry: SeriesGeometry = None,
    datetime_value: SeriesDatetime = None,
    bands: SeriesBands = None,
    index: SeriesIndex = None,
    source: SeriesSource = "auto",
    fmt: str = typer.Option("csv", "--format", help="csv | json."),
    out: Path | None = typer.Option(None, "--output", "-o", help="Write to a file instead of stdout."),
) -> None:
    """Per-date values at a point or over a polygon, with clear/cloud flags and valid shares."""
    from stacube.cubes.timeseries import timeseries as make  # lazy: start-up
    from stacube.errors import InvalidInput  # lazy: start-up

    if fmt not in ("csv", "json"):
        raise InvalidInput(f"--format {fmt!r}: use csv or json")
    ts = make(settings_from(), **series_options(collection, cube, lon, lat, geometry, datetime_value, bands,
                                                 index, source))
    text = ts.to_csv() if fmt == "csv" else json.dumps(ts.to_json(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        console.print(f"{len(ts.rows)} dates from {ts.source} written to {out}")
