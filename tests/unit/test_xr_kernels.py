"""The kernels on xarray objects (stacube.algo.xr) give what numpy written here gives, eagerly and
with Dask, and keep the coordinates and attributes users rely on."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stacube.algo import xr as cx
from stacube.algo.masking import cleanup_mask
from stacube.errors import InvalidInput

T, NY, NX = 7, 9, 11


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(42)
    red = rng.integers(1, 4000, (T, NY, NX)).astype(np.uint16)
    nir = rng.integers(1, 6000, (T, NY, NX)).astype(np.uint16)
    red[2, 3, 4] = 0  # nodata: not an observation
    coords = {"time": pd.date_range("2021-03-01", periods=T, freq="9D"), "y": 100.0 - np.arange(NY) * 10,
              "x": 500.0 + np.arange(NX) * 10, "spatial_ref": 32633}
    ds = xr.Dataset({"red": (("time", "y", "x"), red), "nir": (("time", "y", "x"), nir)}, coords=coords,
                    attrs={"product": "test"})
    for v in ("red", "nir"):
        ds[v].attrs.update(nodata=0, scale=0.0001, units="1")
    clear = xr.DataArray(rng.random((T, NY, NX)) > 0.35, dims=("time", "y", "x"), coords=ds.red.coords)
    return ds, clear


def _masked(ds, clear, name):
    values = ds[name].values.astype(np.float64)
    ok = clear.values & (ds.red.values != 0) & (ds.nir.values != 0)
    return np.where(ok, values, np.nan), ok


def test_median_mean_percentile_match_numpy(stack):
    ds, clear = stack
    med, mean, p25 = cx.median(ds, clear), cx.mean(ds, clear), cx.percentile(ds, clear, 25)
    for name in ("red", "nir"):
        values, ok = _masked(ds, clear, name)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
            np.testing.assert_allclose(med[name].values, np.nanmedian(values, axis=0), rtol=1e-6, equal_nan=True)
            np.testing.assert_allclose(mean[name].values, np.nanmean(values, axis=0), rtol=1e-6, equal_nan=True)
            np.testing.assert_allclose(p25[name].values, np.nanpercentile(values, 25, axis=0), rtol=1e-6,
                                       equal_nan=True)
        assert med[name].dtype == np.float32 and np.isnan(med[name].attrs["nodata"])
        assert med[name].attrs["scale"] == 0.0001 and med[name].attrs["units"] == "1"
    assert (med.clear_count.values == _masked(ds, clear, "red")[1].sum(axis=0)).all()
    assert med.x.equals(ds.x) and med.y.equals(ds.y) and "spatial_ref" in med.coords
    assert med.attrs["stacube:method"] == "median" and med.attrs["product"] == "test"


def test_selection_keeps_the_dtype_and_says_where_each_pixel_comes_from(stack):
    ds, clear = stack
    latest = cx.most_recent(ds, clear)
    _, ok = _masked(ds, clear, "red")
    doy = ds.time.dt.dayofyear.values
    for y in range(NY):
        for x in range(NX):
            picks = np.flatnonzero(ok[:, y, x])
            if len(picks):
                assert latest.red.values[y, x] == ds.red.values[picks[-1], y, x]
                assert latest.provenance.values[y, x] == doy[picks[-1]]
            else:
                assert latest.provenance.values[y, x] == -1 and latest.red.values[y, x] == 0
    assert latest.red.dtype == np.uint16 and latest.red.attrs["nodata"] == 0
    best = cx.best_pixel(ds, clear)
    ranked = np.argsort(-clear.values.mean(axis=(1, 2)), kind="stable")
    first = ranked[0]
    where = ok[first]
    assert (best.red.values[where] == ds.red.values[first][where]).all()


def test_dask_inputs_stay_lazy_and_give_the_same_answer(stack):
    ds, clear = stack
    lazy = cx.median(ds.chunk({"y": 4, "x": 5}), clear.chunk({"y": 4, "x": 5}))
    assert lazy.red.chunks is not None
    xr.testing.assert_allclose(lazy.compute(), cx.median(ds, clear))
    best = cx.best_pixel(ds.chunk({"time": 3}), clear.chunk({"time": 3}))  # time split: rechunked
    xr.testing.assert_equal(best.compute(), cx.best_pixel(ds, clear))


def test_cleanup_mask_is_the_kernels_on_the_cloud_mask(stack):
    _, clear = stack
    cleaned = cx.cleanup_mask(clear, 1, 2)
    np.testing.assert_array_equal(cleaned.values, ~cleanup_mask(~clear.values, 1, 2))
    lazy = cx.cleanup_mask(clear.chunk({"y": 3, "x": 3}), 1, 2)  # whole images per slice
    np.testing.assert_array_equal(lazy.values, cleaned.values)


def test_bad_inputs_are_refused(stack):
    ds, clear = stack
    with pytest.raises(InvalidInput, match="boolean"):
        cx.median(ds, clear.astype(int))
    with pytest.raises(InvalidInput, match="no variable 'blue'"):
        cx.median(ds, clear, bands=["blue"])
    with pytest.raises(InvalidInput, match="dims"):
        cx.median(ds.transpose("y", "x", "time"), clear)
    with pytest.raises(InvalidInput, match="outside 0..100"):
        cx.percentile(ds, clear, 101)
