"""An Open Data Cube style facade: ``stacube.Datacube()``.

Open Data Cube tutorials port with few changes::

    import stacube
    dc = stacube.Datacube()
    dc.list_products()                      # pandas DataFrame
    dc.list_measurements()                  # pandas DataFrame indexed by (product, measurement)
    ds = dc.load(product="landsat-8-c1-l1tp-gdalcubes-sample", measurements=["red", "nir"],
                 x=(-74.5, -73.5), y=(40.5, 41.5), time=("2018-01", "2018-06"),
                 output_crs="EPSG:32618", resolution=(-3000, 3000))
    clear = dc.clear_mask(ds, "landsat-8-c1-l1tp-gdalcubes-sample")

``load`` reads through odc-stac and returns an ``xarray.Dataset`` (time, y, x) of the raw
measurement values (as ODC does: apply ``scale``/``offset`` from the variable attributes for
physical units), with ``nodata`` in each variable's attributes. Measurement names may be asset
keys, STAC common names or ODC aliases; the variables carry the requested names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stacube.catalog.bands import asset_common_name, data_bands, resolve_bands
from stacube.catalog.quality import rule_of
from stacube.catalog.pgstac import Catalog
from stacube.core.geobox import check_anchor, output_anchor, source_grid_in
from stacube.core.times import format_interval, parse_datetime_range
from stacube.errors import InvalidInput, NoData
from stacube.settings import Settings


def _range(value, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value), float(value)
    try:
        lo, hi = value
        return (min(float(lo), float(hi)), max(float(lo), float(hi)))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a number or a (min, max) pair") from exc


def _time_range(time) -> str | None:
    """ODC ``time`` (``"2018"``, ``"2018-01"``, ``("2018-01", "2018-06")``...) -> STAC interval."""
    if time is None:
        return None
    if isinstance(time, (tuple, list)) and len(time) == 2:
        text = f"{time[0] or '..'}/{time[1] or '..'}"
    elif isinstance(time, str):
        text = time
    else:
        raise InvalidInput("time must be a string or a (start, end) pair")
    return format_interval(*parse_datetime_range(str(text)))


class Datacube:
    """The catalog seen through Open Data Cube's ``Datacube`` API.

    Args:
        app: accepted for compatibility (ODC's application name); unused.
        settings: catalog configuration (default: from the environment).
    """

    def __init__(self, app: str | None = None, settings: Settings | None = None, **_: Any):
        self.settings = settings or Settings()
        self.catalog = Catalog(self.settings)

    # -- discovery -------------------------------------------------------------------------
    def list_products(self):
        """Products as a DataFrame indexed by name: description, platform, instrument,
        product type, default CRS and resolution, dataset count and time range."""
        import pandas as pd

        counts = self.catalog.item_counts()
        rows = []
        for c in self.catalog.collections():
            summaries = c.get("summaries") or {}
            storage = c.get("stacube:storage") or {}
            interval = ((c.get("extent") or {}).get("temporal") or {}).get("interval") or [[None, None]]
            rows.append({
                "name": c["id"], "description": c.get("title") or c.get("description"),
                "platform": ", ".join(map(str, summaries.get("platform", []))) or None,
                "instrument": ", ".join(map(str, summaries.get("instruments", []))) or None,
                "product_type": ", ".join(map(str, summaries.get("odc:product_type", []))) or None,
                "crs": storage.get("crs"), "resolution": tuple(storage["resolution"]) if storage.get("resolution") else None,
                "datasets": counts.get(c["id"], 0),
                "time_start": interval[0][0], "time_end": interval[0][1],
            })
        return pd.DataFrame(rows).set_index("name") if rows else pd.DataFrame(
            columns=["description", "platform", "instrument", "product_type", "crs", "resolution",
                     "datasets", "time_start", "time_end"])

    def list_measurements(self):
        """Measurements as a DataFrame indexed by (product, measurement): dtype, nodata, units,
        aliases (common name and ODC aliases), scale, offset, flags_definition."""
        import pandas as pd

        rows = []
        for c in self.catalog.collections():
            quality = (c.get("stacube:quality") or {}).get("asset")
            for key, asset in (c.get("item_assets") or {}).items():
                band = (asset.get("raster:bands") or [{}])[0]
                aliases = list(dict.fromkeys(
                    a for a in [asset_common_name(asset), *(asset.get("stacube:aliases") or [])] if a))
                flags = asset.get("classification:classes") or asset.get("classification:bitfields")
                rows.append({
                    "product": c["id"], "measurement": key, "name": key,
                    "dtype": band.get("data_type"), "nodata": band.get("nodata"),
                    "units": band.get("unit", "1"), "aliases": aliases,
                    "scale": band.get("scale"), "offset": band.get("offset"),
                    "flags_definition": flags, "quality": key == quality,
                })
        return pd.DataFrame(rows).set_index(["product", "measurement"])

    def find_datasets(self, product: str, **query) -> list[dict]:
        """STAC Items of ``product`` matching ``x``/``y`` (or ``lon``/``lat``), ``time``, ``crs``."""
        collection = self.catalog.get_collection(product)
        bbox = self._bbox(query)
        return list(self.catalog.search({
            "collections": [collection["id"]], "bbox": bbox, "datetime": _time_range(query.get("time")),
        }))

    # -- loading ---------------------------------------------------------------------------
    @staticmethod
    def _bbox(query: dict) -> list[float] | None:
        xr_ = _range(query.get("x", query.get("lon")), "x/lon")
        yr_ = _range(query.get("y", query.get("lat")), "y/lat")
        if xr_ is None and yr_ is None:
            return None
        if xr_ is None or yr_ is None:
            raise InvalidInput("give both x and y (or lon and lat)")
        crs = query.get("crs") or "EPSG:4326"
        if crs != "EPSG:4326":
            from odc.geo.geom import BoundingBox

            return list(BoundingBox(xr_[0], yr_[0], xr_[1], yr_[1], crs=crs).to_crs("EPSG:4326"))
        return [xr_[0], yr_[0], xr_[1], yr_[1]]

    def load(
        self,
        product: str | None = None,
        measurements: Sequence[str] | None = None,
        *,
        output_crs: str | None = None,
        resolution: float | tuple[float, float] | None = None,
        group_by: str | None = None,
        dask_chunks: dict | None = None,
        like: Any = None,
        datasets: list[dict] | None = None,
        resampling: str = "nearest",
        anchor: str | None = None,
        **query: Any,
    ):
        """Load measurements of a product as an ``xarray.Dataset`` (see the module docstring).

        Args:
            product: product (collection) id.
            measurements: names, common names or aliases (default: all data measurements).
            output_crs / resolution: output grid (ODC style ``(-y, x)`` tuples accepted);
                default: the product's storage settings, else its native grid.
            anchor: where pixel edges fall (:func:`stacube.core.geobox.check_anchor`): by default
                on the datasets' own pixel edges when the output CRS is theirs (odc-stac's own
                default is multiples of the resolution).
            group_by: ``solar_day`` (ODC's default for most products), ``time`` or None (one
                slice per dataset).
            dask_chunks: e.g. ``{"x": 2048, "y": 2048}`` for a lazy Dask-backed load.
            like: an ``xarray`` object or GeoBox whose grid to reuse.
            datasets: items to load instead of searching.
            **query: ``x``/``y`` or ``lon``/``lat`` ranges, ``time``, ``crs`` of x/y.

        Raises:
            NotFound: unknown product. InvalidInput: unknown measurement, bad query.
            NoData: no dataset matches.
        """
        import odc.stac
        import pystac

        if product is None:
            raise InvalidInput("load() needs product=")
        collection = self.catalog.get_collection(product)
        names = list(measurements) if measurements else data_bands(collection)
        mapping = resolve_bands(collection, names)
        items = datasets if datasets is not None else self.find_datasets(product, **query)
        if not items:
            raise NoData(f"no dataset of {product} matches the query")
        kwargs: dict[str, Any] = {}
        storage = collection.get("stacube:storage") or {}
        if like is not None:
            kwargs["like"] = like
        else:
            res = resolution if resolution is not None else (
                storage.get("resolution") if output_crs in (None, storage.get("crs")) else None)
            crs = output_crs or (storage.get("crs") if res is not None else None)
            if output_crs and res is None:
                raise InvalidInput("output_crs needs resolution= as well")
            if crs:  # otherwise odc-stac uses the native grid of the data
                size = abs(float(res[-1] if isinstance(res, (tuple, list)) else res))
                grid = source_grid_in(crs, collection, items, mapping[names[0]])
                kwargs.update(crs=crs, resolution=size,
                              anchor=output_anchor(check_anchor(anchor), grid, (size, -size)))
            bbox = self._bbox(query)
            if bbox is not None:
                kwargs["bbox"] = bbox
        groupby = {"solar_day": "solar_day", "time": "time", None: "id"}.get(group_by, group_by)
        ds = odc.stac.load(
            [pystac.Item.from_dict(i) for i in items], bands=list(dict.fromkeys(mapping.values())),
            groupby=groupby, chunks=dask_chunks, resampling=resampling, **kwargs,
        )
        out = ds[[mapping[n] for n in dict.fromkeys(names)]]
        renamed = {mapping[n]: n for n in names if mapping[n] != n}
        out = out.rename(renamed) if renamed else out
        for name in names:
            meta = ((collection.get("item_assets") or {}).get(mapping[name]) or {}).get("raster:bands") or [{}]
            for field in ("scale", "offset", "unit"):
                if meta[0].get(field) is not None:
                    out[name].attrs[field if field != "unit" else "units"] = meta[0][field]
        out.attrs["product"] = product
        return out.sortby("time")

    def clear_mask(self, ds, product: str, *, measurement: str | None = None):
        """Boolean DataArray: where the product's quality rule says clear.

        Args:
            ds: a Dataset from :meth:`load` that includes the quality measurement.
            product: its product (for the rule).
            measurement: the variable holding the quality band (default: the rule's asset key).

        Raises:
            InvalidInput: the product has no quality rule or ``ds`` lacks the band.
        """
        import xarray as xr

        rule = rule_of(self.catalog.get_collection(product))
        if rule is None:
            raise InvalidInput(f"{product} declares no quality band")
        var = measurement or rule.asset
        if var not in ds:
            raise InvalidInput(f"load the quality measurement {rule.asset!r} to build a clear mask")
        observed, clear = rule.decode(np.asarray(ds[var].values))
        return xr.DataArray(clear, coords=ds[var].coords, dims=ds[var].dims, name="clear")
