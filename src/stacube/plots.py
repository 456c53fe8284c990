"""PNG plots people can look at: time series and composites (matplotlib, Agg backend).

* :func:`plot_timeseries`: per-date values of indices and bands, clear dates as a line with
  markers (broken across gaps of more than ``max_gap_days`` between clear dates), not-clear
  dates as markers on the time axis, one kind per status the mask names (``cloud``,
  ``cloud_shadow``, ``snow``...), and a panel of the clear and valid shares of the geometry per
  date; dates on the x axis, units on the y axes, legends beside the panels, off the data.
* :func:`plot_composite`: a composite (a job's output or a registered item) as an RGB panel
  with a per-band 2-98 percentile stretch (``rgb`` bands; default true colour, else the false
  colour of :data:`FALSE_COLOUR` the composite has) next to an index panel (colormap and range
  of the index preset, with a colour bar); axes in kilometres of the raster's CRS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stacube.catalog.bands import asset_common_name
from stacube.catalog.pgstac import Catalog
from stacube.core.indices import RENDER, get_index
from stacube.errors import DatabaseUnavailable, InvalidInput, NoData, NotFound, StorageError
from stacube.jobs.state import JobStore

MAX_PLOT_PIXELS = 2048
#: Default ``max_gap_days`` of :func:`plot_timeseries`.
MAX_GAP_DAYS = 60.0
TRUE_COLOUR = ("red", "green", "blue")
#: False-colour combinations tried, in order, when a composite lacks red, green or blue.
FALSE_COLOUR = (("swir16", "nir", "red"), ("swir16", "nir08", "red"), ("swir22", "nir", "red"),
                ("swir22", "nir08", "red"), ("nir", "red", "green"), ("nir08", "red", "green"))
#: Markers and colours of not-clear statuses, in order of first appearance.
STATUS_STYLES = (("x", "0.35"), ("v", "tab:purple"), ("*", "tab:cyan"), ("s", "tab:brown"),
                 ("D", "tab:olive"), ("P", "tab:pink"))
MPL_COLORMAPS = {"rdylgn": "RdYlGn", "rdbu": "RdBu", "rdbu_r": "RdBu_r", "viridis": "viridis"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _where(ts) -> str:
    geom = ts.geometry
    if ts.kind == "point":
        lon, lat = geom["coordinates"][:2]
        return f"{abs(lat):.4f}°{'N' if lat >= 0 else 'S'}, {abs(lon):.4f}°{'E' if lon >= 0 else 'W'}"
    from shapely.geometry import shape

    c = shape(geom).centroid
    return f"polygon around {abs(c.y):.4f}°{'N' if c.y >= 0 else 'S'}, {abs(c.x):.4f}°{'E' if c.x >= 0 else 'W'}"


def line_segments(dates: np.ndarray, max_gap_days: float | None) -> list[np.ndarray]:
    """Indices of ``dates`` (sorted ``datetime64``) cut where consecutive dates are more than
    ``max_gap_days`` apart (None or <= 0: one segment)."""
    index = np.arange(len(dates))
    if not max_gap_days or max_gap_days <= 0 or len(dates) < 2:
        return [index]
    gaps = np.diff(np.asarray(dates, dtype="datetime64[s]").astype(np.int64)) / 86400.0
    return np.split(index, np.flatnonzero(gaps > max_gap_days) + 1)


def plot_timeseries(ts, path: str | Path, *, title: str | None = None,
                    max_gap_days: float | None = MAX_GAP_DAYS) -> Path:
    """Write a time series (:class:`stacube.cubes.timeseries.TimeSeries`) as a PNG.

    Args:
        ts: the series; its variables are indices (unitless) and bands (reflectance).
        path: output file (``.png``).
        title: default: the variables, place and source.
        max_gap_days: clear dates further apart than this are not joined by a line (None or
            0: always joined).

    Returns:
        The path written.

    Raises:
        NoData: the series has no date.
    """
    import matplotlib.dates as mdates
    import pandas as pd

    if not ts.rows:
        raise NoData("the time series has no date to plot")
    plt = _pyplot()
    frame = pd.DataFrame(ts.rows)
    dates = pd.to_datetime(frame["datetime"]).dt.tz_localize(None) if pd.to_datetime(frame["datetime"]).dt.tz \
        else pd.to_datetime(frame["datetime"])
    indices, bands = [], []
    for v in ts.variables:
        try:
            get_index(v)
            indices.append(v)
        except InvalidInput:
            bands.append(v)
    groups = [g for g in (indices, bands) if g]
    fig, axes = plt.subplots(len(groups) + 1, 1, figsize=(10, 3.2 * len(groups) + 2.2), sharex=True,
                             gridspec_kw={"height_ratios": [3] * len(groups) + [1.4]}, squeeze=False)
    axes = axes[:, 0]
    clear = (frame["status"] == "clear").to_numpy()
    statuses = list(dict.fromkeys(s for s in frame["status"] if s not in ("clear", "nodata")))
    clear_dates = dates[clear].to_numpy()
    segments = line_segments(clear_dates, max_gap_days)
    legend = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0, "fontsize": 8,
              "frameon": False}
    for ax, group in zip(axes, groups):
        for v in group:
            values = frame[v].astype(float).to_numpy()[clear]
            colour = None
            for n, part in enumerate(segments):
                (line,) = ax.plot(clear_dates[part], values[part], marker="o", ms=4, lw=1.2, color=colour,
                                  label=v if n == 0 else None)
                colour = line.get_color()
        lo, hi = ax.get_ylim()
        for status, (marker, colour) in zip(statuses, STATUS_STYLES * (len(statuses) // len(STATUS_STYLES) + 1)):
            where = (frame["status"] == status).to_numpy()
            ax.scatter(dates[where], [lo] * int(where.sum()), marker=marker, color=colour, s=30,
                       label=f"{status.replace('_', ' ')} (not clear)", zorder=3, clip_on=False)
        ax.set_ylim(lo, hi)
        ax.set_ylabel("index value (unitless)" if group is indices else "reflectance (unitless)")
        ax.grid(True, alpha=0.3)
        ax.legend(**legend)
    share = axes[-1]
    width = _bar_width(dates)
    share.bar(dates, frame["valid_share"] * 100, width=width, color="0.8", label="valid (observed)")
    share.bar(dates, frame["clear_share"] * 100, width=width, color="tab:blue", label="clear")
    share.set_ylim(0, 105)
    share.set_ylabel("% of pixels")
    share.legend(**legend)
    share.grid(True, axis="y", alpha=0.3)
    locator = mdates.AutoDateLocator()
    share.xaxis.set_major_locator(locator)
    share.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    share.set_xlabel("acquisition date (UTC)")
    source = f"cube {ts.cube}" if ts.source == "cube" else f"items of {', '.join(ts.collections)}"
    pixels = int(frame["pixel_count"].iloc[0]) if len(frame) else 0
    fig.suptitle(title or f"{', '.join(ts.variables)} at {_where(ts)}", fontsize=12)
    gap_note = f"; lines break over gaps > {max_gap_days:g} days" if max_gap_days and max_gap_days > 0 else ""
    axes[0].set_title(f"source: {source}; {len(frame)} dates, {int(clear.sum())} clear; "
                      f"{pixels} pixel{'s' if pixels != 1 else ''}{gap_note}", fontsize=9, color="0.3")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _bar_width(dates) -> float:
    if len(dates) < 2:
        return 5.0
    gaps = np.diff(np.sort(dates.values.astype("datetime64[s]").astype(np.int64))) / 86400.0
    gaps = gaps[gaps > 0]
    return float(max(0.5, min(10.0, 0.8 * gaps.min()))) if len(gaps) else 5.0


# -- composites ---------------------------------------------------------------------------------
@dataclass
class CompositeLayers:
    """Where a composite's rasters are: ``{name: href}`` plus a label and a date."""

    hrefs: dict[str, str]
    label: str
    when: str


def find_composite(settings, ref: str, *, step: str | None = None) -> CompositeLayers:
    """Resolve a job id (a completed compositing job) or an item id (``ITEM`` or
    ``COLLECTION/ITEM``) to its rasters.

    Raises:
        NotFound: neither a job nor an item. InvalidInput: the job is not completed, or
            ``step`` is not one of its periods.
    """
    try:
        job = JobStore(settings).get(ref)
    except NotFound:
        job = None
    except DatabaseUnavailable:
        raise
    if job is not None:
        if job["state"] != "completed" or not job.get("report"):
            raise InvalidInput(f"job {ref} is {job['state']}; plot a completed job")
        report = job["report"]
        labels = [s["label"] for s in report["steps"]]
        label = step or labels[0]
        if label not in report["outputs"]["cogs"]:
            raise InvalidInput(f"job {ref} has no period {label!r}; it has {', '.join(labels)}")
        when = next(f"{s['start'][:10]} .. {s['end'][:10]}" for s in report["steps"] if s["label"] == label)
        return CompositeLayers(dict(report["outputs"]["cogs"][label]), f"job {ref} ({report['parameters']['method']})", when)
    catalog = Catalog(settings)
    collection, _, item_id = ref.rpartition("/")
    query = {"ids": [item_id]}
    if collection:
        query["collections"] = [collection]
    found = list(catalog.search(query, max_items=2))
    if not found:
        raise NotFound(f"{ref!r} is neither a job nor an item")
    item = found[0]
    hrefs = {}
    for key, asset in item.get("assets", {}).items():
        if "image/tiff" not in (asset.get("type") or "image/tiff"):
            continue
        hrefs[key] = asset["href"]
        common = asset_common_name(asset)
        if common and common not in hrefs:
            hrefs[common] = asset["href"]
    props = item.get("properties", {})
    when = props.get("datetime") or f"{(props.get('start_datetime') or '')[:10]} .. {(props.get('end_datetime') or '')[:10]}"
    return CompositeLayers(hrefs, f"item {item['collection']}/{item['id']}", str(when)[:25])


def _read(href: str, max_pixels: int = MAX_PLOT_PIXELS):
    """A raster as float32 (NaN for nodata), decimated to at most ``max_pixels`` per side, and
    its bounds and CRS."""
    import rasterio
    from rasterio.enums import Resampling

    try:
        with rasterio.open(href) as src:
            factor = max(1, math.ceil(max(src.width, src.height) / max_pixels))
            shape = (max(1, src.height // factor), max(1, src.width // factor))
            data = src.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True).astype(np.float32)
            scale, offset = src.scales[0], src.offsets[0]
            values = data.filled(np.nan)
            if (scale, offset) != (1.0, 0.0) and src.dtypes[0] != "float32":
                values = values * scale + offset
            return values, src.bounds, src.crs
    except rasterio.errors.RasterioIOError as exc:
        raise StorageError(f"cannot read {href}: {str(exc).splitlines()[0]}") from exc


def stretch(band: np.ndarray, lo_pct: float = 2.0, hi_pct: float = 98.0) -> np.ndarray:
    """Linear stretch of a band to 0..1 between its percentiles (NaN stays NaN)."""
    finite = band[np.isfinite(band)]
    if not finite.size:
        return np.full(band.shape, np.nan, dtype=np.float32)
    lo, hi = np.percentile(finite, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1e-6
    return np.clip((band - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def rgb_bands(hrefs: dict[str, str], rgb: list[str] | None = None) -> tuple[list[str], str]:
    """The bands of the colour panel and its title.

    Args:
        hrefs: the composite's rasters by name (band names, common names, indices).
        rgb: three names (``--rgb``); default: red, green, blue when all exist, else the first
            combination of :data:`FALSE_COLOUR` that exists, else one band in grey.

    Returns:
        ``(names, title)``: three names or one (grey), possibly none.

    Raises:
        InvalidInput: ``rgb`` is not three names the composite has.
    """
    if rgb:
        if len(rgb) != 3:
            raise InvalidInput(f"--rgb needs three bands (red, green and blue channels), not {len(rgb)}")
        missing = [b for b in rgb if b not in hrefs]
        if missing:
            raise InvalidInput(f"the composite has no {', '.join(missing)}; it has {', '.join(hrefs)}")
        return list(rgb), f"{', '.join(rgb)} as red, green, blue"
    if all(b in hrefs for b in TRUE_COLOUR):
        return list(TRUE_COLOUR), "true colour (red, green, blue)"
    for combo in FALSE_COLOUR:
        if all(b in hrefs for b in combo):
            return list(combo), f"false colour ({', '.join(combo)} as red, green, blue)"
    grey = [b for b in (*TRUE_COLOUR, "nir", "nir08", "swir16", "swir22") if b in hrefs][:1]
    return grey, (f"{grey[0]}" if grey else "")


def plot_composite(layers: CompositeLayers, path: str | Path, *, index: str | None = None,
                   rgb: list[str] | None = None) -> Path:
    """Write a composite as a PNG: a colour panel (2-98 % stretch per band) and an index panel.

    Args:
        layers: from :func:`find_composite`.
        path: output file (``.png``).
        index: index to show (default: NDVI when the composite has it or red and nir).
        rgb: bands of the colour panel (see :func:`rgb_bands`).

    Raises:
        InvalidInput: the composite has no band to show and not the index; ``rgb`` names bands it
            lacks.
        StorageError: a raster cannot be read.
    """
    plt = _pyplot()
    hrefs = layers.hrefs
    rgb_names, rgb_title = rgb_bands(hrefs, rgb)
    index_name = get_index(index).name if index else "NDVI"
    idx = get_index(index_name)
    can_index = index_name in hrefs or all(c in hrefs for c in idx.bands.values())
    if index and not can_index:
        raise InvalidInput(f"the composite has neither {index_name} nor {', '.join(idx.bands.values())}")
    if not rgb_names and not can_index:
        raise InvalidInput(f"{layers.label} has no band to show and no index to plot")
    panels = (1 if rgb_names else 0) + (1 if can_index else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 6.4), squeeze=False)
    axes = list(axes[0])
    bounds = crs = None
    if rgb_names:
        arrays = []
        for name in rgb_names:
            values, bounds, crs = _read(hrefs[name])
            arrays.append(stretch(values))
        ax = axes.pop(0)
        extent = _extent(bounds, crs)
        if len(arrays) == 3:
            image = np.dstack(arrays)
            alpha = np.isfinite(image).all(axis=2)
            ax.imshow(np.dstack([np.nan_to_num(image), alpha.astype(np.float32)]), extent=extent)
        else:
            ax.imshow(arrays[0], cmap="gray", extent=extent)
        ax.set_title(f"{rgb_title}, 2-98 % stretch", fontsize=10)
        _axes_labels(ax, crs)
    if can_index:
        if index_name in hrefs:
            values, bounds, crs = _read(hrefs[index_name])
        else:
            inputs = {}
            for common in idx.bands.values():
                inputs[common], bounds, crs = _read(hrefs[common])
            values = idx.compute(inputs)
        ax = axes.pop(0)
        cmap_name, (lo, hi) = RENDER.get(idx.name, ("viridis", (-1.0, 1.0)))
        im = ax.imshow(values, cmap=MPL_COLORMAPS.get(cmap_name, cmap_name), vmin=lo, vmax=hi,
                       extent=_extent(bounds, crs), interpolation="nearest")
        cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cbar.set_label(f"{idx.name} (unitless)")
        ax.set_title(f"{idx.name}: {idx.formula}", fontsize=10)
        _axes_labels(ax, crs)
    fig.suptitle(f"{layers.label}, {layers.when}", fontsize=12)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _extent(bounds, crs) -> list[float]:
    """imshow extent: kilometres of a projected CRS, degrees of a geographic one."""
    f = 1.0 if (crs and crs.is_geographic) else 1000.0
    return [bounds.left / f, bounds.right / f, bounds.bottom / f, bounds.top / f]


def _axes_labels(ax, crs) -> None:
    name = f"EPSG:{crs.to_epsg()}" if crs and crs.to_epsg() else "CRS"
    if crs and crs.is_geographic:
        ax.set_xlabel(f"longitude (degrees, {name})")
        ax.set_ylabel(f"latitude (degrees, {name})")
    else:
        ax.set_xlabel(f"easting (km, {name})")
        ax.set_ylabel(f"northing (km, {name})")
    ax.ticklabel_format(useOffset=False, style="plain")
