"""The Open Data Cube facade: list_products, list_measurements, load, clear_mask."""

import numpy as np
import pytest

import stacube
from stacube.errors import InvalidInput, NoData, NotFound

L8 = "landsat-8-c1-l1tp-gdalcubes-sample"


@pytest.fixture(scope="module")
def dc(samples):
    return stacube.Datacube(settings=samples.settings)


def test_list_products_and_measurements(dc):
    products = dc.list_products()
    assert products.loc[L8, "datasets"] == 19 and products.loc[L8, "crs"] == "EPSG:32618"
    measurements = dc.list_measurements()
    row = measurements.loc[(L8, "B4")]
    assert row["dtype"] == "uint16" and row["nodata"] == 0 and "red" in row["aliases"]
    assert measurements.loc[(L8, "BQA")]["quality"]


def test_load_like_an_odc_tutorial(dc):
    ds = dc.load(product=L8, measurements=["red", "nir", "BQA"], x=(-74.5, -73.5), y=(40.5, 41.5),
                 time=("2018-01", "2018-06"), output_crs="EPSG:32618", resolution=(-3000, 3000))
    assert list(ds.data_vars) == ["red", "nir", "BQA"]
    assert ds["red"].dims == ("time", "y", "x") and ds.sizes["time"] == 9
    assert np.all(np.diff(ds.time.values).astype(int) >= 0)
    assert ds["red"].attrs["scale"] == pytest.approx(2e-5) and ds["red"].attrs["nodata"] == 0
    assert ds.odc.geobox.crs.epsg == 32618 and abs(ds.odc.geobox.resolution.x) == 3000
    clear = dc.clear_mask(ds, L8)
    assert clear.dtype == bool and 0.2 < float(clear.mean()) < 0.8


def test_load_native_grid_and_lazy(dc):
    ds = dc.load(product="sentinel-2-l1c-eolearn-sample", measurements=["B04"], dask_chunks={"x": 64, "y": 64})
    assert ds["B04"].chunks is not None and ds.sizes["x"] == 100


def test_load_errors(dc):
    with pytest.raises(NotFound):
        dc.load(product="nope")
    with pytest.raises(InvalidInput, match="no band"):
        dc.load(product=L8, measurements=["purple"])
    with pytest.raises(NoData):
        dc.load(product=L8, measurements=["red"], x=(10, 11), y=(10, 11))
    with pytest.raises(InvalidInput, match="resolution"):
        dc.load(product="sentinel-2-l1c-eolearn-sample", measurements=["red"], output_crs="EPSG:4326")
