"""CF attributes of the variables stacube writes (Zarr job outputs and cubes), so that xarray,
GDAL and CF-aware tools know what each array holds (CF conventions 1.8: ``long_name``,
``units``, ``flag_values`` / ``flag_meanings``, ``valid_range``, ``comment``;
``coverage_content_type`` from ISO 19115-1 as the ACDD conventions use it).

* bands: reflectance (``units: "1"``, physical values: ``DN * scale + offset`` of the sources);
* indices: the spyndex long name and formula;
* ``provenance``: the day of year (1..366, int16) of the observation a selection method chose
  for the pixel; -1 where none was (a flag value);
* ``clear_count``: clear observations of the pixel in the period; 0 is a count (observed, never
  clear), the nodata (``_FillValue`` 65535) means no observation at all (``valid_count`` 0);
* ``valid_count``: observations of the pixel (not fill, not nodata) in the period; 0 is a count.
"""

from __future__ import annotations

import numpy as np

from stacube.core.indices import get_index


def variable_attrs(var: str, *, bands: list[str], indices: list[str], what: str) -> dict:
    """CF attributes of output variable ``var``.

    Args:
        var: the variable (a band, an index, ``provenance``, ``clear_count``, ``valid_count``).
        bands / indices: the output's bands and indices.
        what: how values were made, e.g. ``"median composite"`` or ``"clear observations"``.
    """
    attrs: dict = {"grid_mapping": "spatial_ref"}
    if var in bands:
        attrs.update(long_name=f"{var} reflectance ({what})", units="1",
                     coverage_content_type="physicalMeasurement")
    elif var in indices:
        idx = get_index(var)
        attrs.update(long_name=f"{idx.long_name} ({idx.name})", units="1", formula=idx.formula,
                     coverage_content_type="physicalMeasurement")
    elif var == "provenance":
        attrs.update(long_name="day of year of the chosen observation", units="1",
                     valid_range=[1, 366], flag_values=[-1], flag_meanings="no_observation_chosen",
                     coverage_content_type="auxiliaryInformation",
                     comment="day of year (1..366, UTC) of the observation the method chose for the "
                             "pixel, within the period the time coordinate starts; -1: none")
    elif var == "clear_count":
        attrs.update(long_name="number of clear observations", units="1",
                     coverage_content_type="qualityInformation",
                     comment="clear observations of the pixel in the period; 0: observed but never "
                             "clear; _FillValue: no observation (valid_count 0)")
    elif var == "valid_count":
        attrs.update(long_name="number of observations", units="1",
                     coverage_content_type="qualityInformation",
                     comment="observations of the pixel in the period (not fill, not nodata); "
                             "0: none")
    else:
        attrs.update(long_name=var.replace("_", " "), units="1")
    return attrs


def to_netcdf(ds, path=None):
    """Write a dataset as NetCDF (what ``stacube cube open -o region.nc`` and the jobs API's
    ``region.nc`` give): attributes NetCDF cannot hold (lists, mappings) are left out.

    Args:
        ds: ``xarray.Dataset``.
        path: the file; None: return the bytes (NetCDF 3, scipy's writer; unsigned integer
            variables widened to signed ones).

    Returns:
        None when written to ``path``, else the file's bytes.
    """
    ds = ds.copy()
    ds.attrs = plain_attrs(ds.attrs)
    if path is None:  # NetCDF 3 has no unsigned integers: the next wider signed type holds them
        for name, var in list(ds.data_vars.items()):
            stored = np.dtype(var.encoding.get("dtype", var.dtype))
            if stored.kind == "u":
                wider = np.dtype(f"int{min(64, stored.itemsize * 16)}")
                encoding = {**var.encoding, "dtype": wider}
                ds[name] = var.astype(wider) if var.dtype.kind == "u" else var
                ds[name].encoding = encoding
                ds[name].attrs = {k: wider.type(v) if k in ("_FillValue", "missing_value") else v
                                  for k, v in var.attrs.items()}
    return ds.to_netcdf(path)


def plain_attrs(attrs: dict) -> dict:
    """The attributes NetCDF and Zarr files can hold: those that are not lists or mappings."""
    return {k: v for k, v in attrs.items() if not isinstance(v, (list, dict))}
