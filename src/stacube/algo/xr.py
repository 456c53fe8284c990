"""The compositing kernels on ``xarray`` objects: ``Datacube.load`` output in, Datasets out.

Each function here is a thin wrapper over a numpy kernel of :mod:`stacube.algo` (the odc-algo
pattern): it takes the ``(time, y, x)`` variables of a Dataset, with a boolean ``clear``
DataArray of the same dims, runs the kernel, and returns an ``xarray.Dataset`` on the input's
``y``/``x`` coordinates (and ``spatial_ref``, so ``.odc.geobox`` / ``.rio.crs`` keep working)
with the variables' attributes (``nodata``, ``scale``, ``offset``, ``units``) and
``clear_count`` / ``valid_count`` (uint16). Dask-backed inputs are computed block by block
along ``y`` and ``x`` (``xarray.apply_ufunc`` with ``dask="parallelized"``; the time axis must
be one chunk) and the result stays lazy.

Inputs: every data variable of ``ds`` (or those named in ``bands``) is composited, in its own
dtype; values equal to the variable's ``nodata`` attribute (or NaN) are not observations.
``clear``: where the quality rule says clear (``Datacube.clear_mask``); pixels not clear are
never used by the statistical methods. Values are composited as stored: apply ``scale`` and
``offset`` to the result (median and percentiles commute with a positive affine map).

Example::

    import stacube
    from stacube.algo import xr as cx

    dc = stacube.Datacube()
    ds = dc.load(product="sentinel-2-l1c-eolearn-sample", measurements=["red", "nir", "CLM"],
                 x=(14.5514, 14.5642), y=(45.8659, 45.8750), time=("2015-07", "2015-09"))
    clear = cx.cleanup_mask(dc.clear_mask(ds, "sentinel-2-l1c-eolearn-sample"), 1, 2)
    med = cx.median(ds[["red", "nir"]], clear)      # Dataset: red, nir (float32), counts
    best = cx.best_pixel(ds[["red", "nir"]], clear)  # Dataset: red, nir (uint16), provenance, counts

The algorithms and their sources are documented with the kernels: selection and median/mean in
:mod:`stacube.algo.composite` / :mod:`stacube.algo.reduce`, percentiles and the geometric
median in :mod:`stacube.algo.methods`, mask cleanup in :mod:`stacube.algo.masking`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from stacube.algo.blocks import valid_mask
from stacube.algo.composite import composite
from stacube.algo.masking import cleanup_mask as _cleanup_mask
from stacube.errors import InvalidInput

__all__ = ["best_pixel", "cleanup_mask", "composite_dataset", "geomedian", "least_recent", "mean",
           "median", "most_recent", "percentile"]

_DIMS = ("time", "y", "x")


def _nodata(var: xr.DataArray):
    value = var.attrs.get("nodata", var.encoding.get("_FillValue"))
    if value is None:
        return None
    try:
        return var.dtype.type(value) if var.dtype.kind in "iu" else float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _check(ds: xr.Dataset, clear: xr.DataArray, bands: Sequence[str] | None) -> list[str]:
    names = list(bands) if bands is not None else [str(n) for n in ds.data_vars]
    if not names:
        raise InvalidInput("no variable to composite")
    for name in names:
        if name not in ds.data_vars:
            raise InvalidInput(f"the dataset has no variable {name!r}; it has {', '.join(map(str, ds.data_vars))}")
        if tuple(ds.variables[name].dims) != _DIMS:
            raise InvalidInput(f"variable {name!r} has dims {ds.variables[name].dims}; expected {_DIMS}")
    if tuple(clear.dims) != _DIMS or clear.dtype != bool:
        raise InvalidInput(f"clear must be a boolean DataArray with dims {_DIMS}")
    if clear.shape != ds.variables[names[0]].shape:
        raise InvalidInput(f"clear has shape {clear.shape}, the data {ds.variables[names[0]].shape}")
    return names


def _observed(stacks: dict[str, np.ndarray], nodata: dict, clear: np.ndarray) -> np.ndarray:
    """Observed: every band valid (finite, not nodata)."""
    ok = np.ones(clear.shape, dtype=bool)
    for name, stack in stacks.items():
        ok = valid_mask(stack, ok, nodata.get(name))
    return ok


def composite_dataset(ds: xr.Dataset, clear: xr.DataArray, method: str, *,
                      bands: Sequence[str] | None = None, threads: int | None = None) -> xr.Dataset:
    """Composite the ``(time, y, x)`` variables of ``ds`` over ``time`` with ``method``.

    Args:
        ds: Dataset of ``(time, y, x)`` variables (``Datacube.load`` output), any numeric dtype;
            ``time`` holds ``datetime64`` values (ordering and provenance).
        clear: boolean ``(time, y, x)``: observations to use.
        method: any method of :mod:`stacube.core.methods` (``median``, ``mean``, ``best-pixel``,
            ``most-recent``, ``least-recent``, ``geomedian``, ``medoid``, ``max-ndvi``, ``pNN``).
        bands: variables to composite (default: all data variables).
        threads: threads of the row-block kernels (default: one per core).

    Returns:
        ``xarray.Dataset`` of ``(y, x)`` variables: each band (selection methods keep the dtype
        and ``nodata``; statistics are float32 with NaN where no clear observation), plus
        ``provenance`` (day of year, int16, -1 = none) for selection methods, ``clear_count``
        and ``valid_count`` (uint16).

    Raises:
        InvalidInput: missing or misshapen variables, a ``clear`` that is not boolean, a time
            axis split into several Dask chunks.
    """
    names = _check(ds, clear, bands)
    times = np.asarray(ds["time"].values).astype("datetime64[ns]")
    variables = {n: ds.variables[n] for n in names}
    nodata = {n: _nodata(v) for n, v in variables.items()}
    lazy = any(v.chunks is not None for v in variables.values()) or clear.chunks is not None
    clear_ratio = None
    if method == "best-pixel":  # ranked by each scene's clear share of the whole area
        clear_ratio = np.asarray(clear.mean(dim=("y", "x")).values, dtype=np.float64)
    if lazy:
        result = _composite_lazy(ds, clear, names, method, times=times, clear_ratio=clear_ratio,
                                 nodata=nodata, threads=threads)
    else:  # in memory: the kernel on the (time, y, x) arrays as they are, no apply_ufunc
        stacks = {n: np.asarray(v.data) for n, v in variables.items()}
        ok = np.asarray(clear.data)
        observed = _observed(stacks, nodata, ok)
        result = {k: xr.Variable(("y", "x"), a) for k, a in composite(
            stacks, observed, ok & observed, method=method, times=times, clear_ratio=clear_ratio,
            nodata=nodata, threads=threads).items()}
    for name in names:
        attrs = {k: v for k, v in variables[name].attrs.items() if k in ("nodata", "scale", "offset", "units")}
        if result[name].dtype.kind == "f":
            attrs["nodata"] = float("nan")
        result[name].attrs.update(attrs)
    if "provenance" in result:
        result["provenance"].attrs.update(nodata=-1, long_name="day of year of the chosen observation")
    for count in ("clear_count", "valid_count"):
        result[count].attrs["long_name"] = count.replace("_", " ") + " of observations"
    out = xr.Dataset(result, coords={k: c.variable for k, c in ds.coords.items() if "time" not in c.dims})
    out.attrs.update({k: v for k, v in ds.attrs.items() if isinstance(v, (str, int, float))})
    out.attrs["stacube:method"] = method
    return out


def _composite_lazy(ds: xr.Dataset, clear: xr.DataArray, names: list[str], method: str, *, times,
                    clear_ratio, nodata, threads) -> dict[str, xr.Variable]:
    """The ``(y, x)`` output variables of :func:`composite_dataset` for Dask-backed inputs
    (``xarray.apply_ufunc``, ``dask="parallelized"``)."""
    # output variables and dtypes, from the kernel on an empty block
    probe = composite({n: np.zeros((len(times), 1, 1), dtype=ds.variables[n].dtype) for n in names},
                      np.zeros((len(times), 1, 1), bool), np.zeros((len(times), 1, 1), bool),
                      method=method, times=times, clear_ratio=clear_ratio, nodata=nodata, threads=1)
    outputs = list(probe)

    def kernel(*arrays):  # apply_ufunc puts the core dimension (time) last
        *data, ok = (np.moveaxis(a, -1, 0) for a in arrays)
        stacks = dict(zip(names, data))
        observed = _observed(stacks, nodata, ok)
        result = composite(stacks, observed, ok & observed, method=method, times=times,
                           clear_ratio=clear_ratio, nodata=nodata, threads=threads)
        return tuple(result[v] for v in outputs)

    args = [ds[n] for n in names] + [clear]
    results = xr.apply_ufunc(
        kernel, *args, input_core_dims=[["time"]] * len(args), output_core_dims=[[]] * len(outputs),
        dask="parallelized", output_dtypes=[probe[v].dtype for v in outputs],
        dask_gufunc_kwargs={"allow_rechunk": True}, keep_attrs=False,
    )
    return {v: r.transpose("y", "x").variable for v, r in zip(outputs, results)}


def median(ds: xr.Dataset, clear: xr.DataArray, **kw) -> xr.Dataset:
    """Per pixel the median of the clear observations (:func:`composite_dataset`, ``median``)."""
    return composite_dataset(ds, clear, "median", **kw)


def mean(ds: xr.Dataset, clear: xr.DataArray, **kw) -> xr.Dataset:
    """Per pixel the mean of the clear observations (:func:`composite_dataset`, ``mean``)."""
    return composite_dataset(ds, clear, "mean", **kw)


def percentile(ds: xr.Dataset, clear: xr.DataArray, q: int, **kw) -> xr.Dataset:
    """Per pixel the ``q``-th percentile (0..100, linear interpolation as ``numpy.percentile``)
    of the clear observations."""
    if not 0 <= int(q) <= 100:
        raise InvalidInput(f"percentile {q} is outside 0..100")
    return composite_dataset(ds, clear, f"p{int(q)}", **kw)


def geomedian(ds: xr.Dataset, clear: xr.DataArray, **kw) -> xr.Dataset:
    """The geometric median of the bands over the clear observations (Roberts et al. 2017)."""
    return composite_dataset(ds, clear, "geomedian", **kw)


def best_pixel(ds: xr.Dataset, clear: xr.DataArray, **kw) -> xr.Dataset:
    """Per pixel the observation of the clearest scene (scenes ranked by their clear share of
    the area), falling back to any observation; ``provenance`` says which date."""
    return composite_dataset(ds, clear, "best-pixel", **kw)


def most_recent(ds: xr.Dataset, clear: xr.DataArray, **kw) -> xr.Dataset:
    """Per pixel the latest clear observation."""
    return composite_dataset(ds, clear, "most-recent", **kw)


def least_recent(ds: xr.Dataset, clear: xr.DataArray, **kw) -> xr.Dataset:
    """Per pixel the earliest clear observation."""
    return composite_dataset(ds, clear, "least-recent", **kw)


def cleanup_mask(clear: xr.DataArray, opening: int, dilation: int) -> xr.DataArray:
    """``clear`` with its not-clear part cleaned: a binary opening by a disc of radius
    ``opening`` pixels removes specks, then a dilation by a disc of radius ``dilation`` grows
    clouds over their edges (odc-algo ``mask_cleanup``, :func:`stacube.algo.masking.cleanup_mask`).

    Args:
        clear: boolean ``(..., y, x)`` DataArray (each leading index is cleaned alone).

    Returns:
        Boolean DataArray like ``clear``.
    """
    if clear.dtype != bool:
        raise InvalidInput("cleanup_mask takes a boolean clear mask")
    cloud = xr.apply_ufunc(lambda a: _cleanup_mask(~a, int(opening), int(dilation)), clear,
                           input_core_dims=[["y", "x"]], output_core_dims=[["y", "x"]],
                           dask="parallelized", output_dtypes=[bool],
                           dask_gufunc_kwargs={"allow_rechunk": True})
    return (~cloud).transpose(*clear.dims).rename(clear.name)
