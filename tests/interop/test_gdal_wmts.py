"""GDAL's WMTS driver (through rasterio) on the WMTS capabilities of collections: the layers of a
collection's default rendering, parameters with commas, and the cloud-masked mosaic."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds

from interop_testing import S2

#: the sample's footprint, lon/lat (inside the 100 x 101 px stack near Ljubljana)
AREA = (14.552, 45.867, 14.563, 45.874)


def read_area(url: str) -> np.ndarray:
    """The area, 64 x 64 px, from a GDAL ``WMTS:`` connection string."""
    with rasterio.open(url) as ds:
        assert ds.crs.to_epsg() == 3857
        window = from_bounds(*transform_bounds("EPSG:4326", ds.crs, *AREA), ds.transform)
        return ds.read(window=window, out_shape=(ds.count, 64, 64))


@pytest.fixture(scope="module")
def raster(interop_server) -> str:
    return f"{interop_server.base}/raster"


def test_capabilities_without_parameters_list_the_default_rendering(raster):
    pixels = read_area(f"WMTS:{raster}/collections/{S2}/WMTSCapabilities.xml,"
                       f"layer={S2}_WebMercatorQuad_true-color")
    assert pixels.shape == (4, 64, 64)
    assert (pixels[3] > 0).all()  # alpha: data everywhere in the area
    assert pixels[:3].std() > 5  # an image, not a flat fill


@pytest.mark.parametrize("comma", ["%2C", "QUOTED"])
def test_parameters_with_commas(raster, comma):
    """GDAL splits a ``WMTS:`` string at commas: a comma in the URL is written %2C, or the URL is
    quoted; the server reads both."""
    query = "assets=B04&rescale=300{}1200&colormap_name=viridis"
    url = f"{raster}/collections/{S2}/WMTSCapabilities.xml?" + query.format("," if comma == "QUOTED" else comma)
    if comma == "QUOTED":
        url = f'"{url}"'
    pixels = read_area(f"WMTS:{url},layer={S2}_WebMercatorQuad_default")
    assert (pixels[3] > 0).all() and pixels[:3].std() > 5


def test_cloud_masked_mosaic_capabilities(raster):
    pixels = read_area(f"WMTS:{raster}/collections/{S2}/masked/WMTSCapabilities.xml,"
                       f"layer={S2}_masked_true-color")
    assert (pixels[3] > 0).mean() > 0.9 and pixels[:3].std() > 5
