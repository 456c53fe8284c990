"""Reading assets: files on the output grid are read directly, with the pixels odc-stac gives."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.warp import transform_geom

from stacube.algo.load import _direct_load, _odc_load, decode_quality, read_assets
from stacube.catalog.quality import preset

ORIGIN = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def write(path, array, transform=ORIGIN, nodata=None, crs="EPSG:32633"):
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype, crs=crs, transform=transform, nodata=nodata, tiled=True,
                       blockxsize=16, blockysize=16) as dst:
        dst.write(array, 1)
    return str(path)


@pytest.fixture
def items(tmp_path):
    rng = np.random.default_rng(3)
    docs = []
    for i in range(3):
        data = rng.integers(1, 5000, size=(40, 50)).astype(np.uint16)
        data[:3] = 0
        mask = rng.integers(0, 2, size=(40, 50)).astype(np.uint8)
        # the third file starts 5 pixels further east and 2 pixels further south
        transform = ORIGIN * Affine.translation(5, 2) if i == 2 else ORIGIN
        west, north = transform * (0, 0)
        east, south = transform * (50, 40)
        footprint = transform_geom("EPSG:32633", "EPSG:4326", {"type": "Polygon", "coordinates": [[
            (west, south), (east, south), (east, north), (west, north), (west, south)]]})
        lons = [p[0] for p in footprint["coordinates"][0]]
        lats = [p[1] for p in footprint["coordinates"][0]]
        docs.append({"id": f"s{i}", "type": "Feature", "stac_version": "1.0.0",
                     "properties": {"datetime": f"2020-01-0{i + 1}T00:00:00Z"}, "geometry": footprint,
                     "bbox": [min(lons), min(lats), max(lons), max(lats)], "links": [], "assets": {
                         "B04": {"href": write(tmp_path / f"b{i}.tif", data, transform, nodata=0),
                                 "raster:bands": [{"data_type": "uint16", "nodata": 0}]},
                         "CLM": {"href": write(tmp_path / f"m{i}.tif", mask, transform, nodata=255),
                                 "raster:bands": [{"data_type": "uint8", "nodata": 255}]}}})
    return docs


@pytest.mark.parametrize("shift", [(0, 0), (-7, -4), (30, 25)])
def test_direct_read_equals_odc_stac(items, shift):
    """Windows inside, across and partly outside the files: the same pixels and fill."""
    geobox = GeoBox((32, 45), ORIGIN * Affine.translation(*shift), "EPSG:32633")
    direct = _direct_load(items, ["B04", "CLM"], geobox, 2)
    assert direct is not None
    reference = _odc_load(items, ["B04", "CLM"], geobox, 1)
    for key in ("B04", "CLM"):
        assert direct[key][0].dtype == reference[key].dtype
        assert np.array_equal(direct[key][0], reference[key].values)


def test_files_off_the_grid_go_through_odc_stac(items):
    half = GeoBox((20, 20), ORIGIN * Affine.translation(0.5, 0), "EPSG:32633")
    assert _direct_load(items, ["B04"], half, 1) is None
    coarse = GeoBox((20, 20), ORIGIN * Affine.scale(2), "EPSG:32633")
    assert _direct_load(items, ["B04"], coarse, 1) is None
    reference = _odc_load(items, ["B04"], half, 1)
    assert np.array_equal(read_assets(items, ["B04"], half)["B04"][0], reference["B04"].values)


@pytest.mark.parametrize("name,asset,dtype", [("binary-cloud", "CLM", np.uint8),
                                              ("landsat-c1-bqa", "BQA", np.uint16),
                                              ("sentinel-2-scl", "SCL", np.uint8)])
def test_quality_decoding_in_one_pass_equals_the_rule(name, asset, dtype):
    rule = preset(name, asset)
    rng = np.random.default_rng(4)
    mask = rng.integers(0, np.iinfo(dtype).max, size=(6, 21, 33), endpoint=True).astype(dtype)
    reference = rng.random(mask.shape).astype(np.float32)
    reference[reference < 0.1] = np.nan
    observed, clear = decode_quality(rule, mask, reference, threads=2)
    expected_observed, expected_clear = rule.decode(mask)
    expected_observed &= np.isfinite(reference)
    assert np.array_equal(observed, expected_observed)
    assert np.array_equal(clear, expected_clear & expected_observed)
    observed, clear = decode_quality(rule, mask)
    assert np.array_equal(observed, rule.decode(mask)[0]) and np.array_equal(clear, rule.decode(mask)[1])


def test_open_files_are_reused_within_a_job_and_closed_after(items, monkeypatch):
    """Inside ``reuse_open_files`` a file read for several tiles is opened once (the pixels are
    the same as without it); idle handles are bounded and all are closed when it ends."""
    from stacube.algo import files

    opened = []
    real_open = rasterio.open

    def counting_open(href, *args, **kwargs):
        opened.append(href)
        return real_open(href, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", counting_open)
    tiles = [GeoBox((20, 25), ORIGIN * Affine.translation(x, y), "EPSG:32633") for x in (0, 25) for y in (0, 20)]
    alone = [_direct_load(items, ["B04", "CLM"], g, 1) for g in tiles]
    assert len(opened) == 4 * (2 + 6)  # per tile: the two probes, then the six files
    opened.clear()
    with files.reuse_open_files() as pool:
        pooled = [_direct_load(items, ["B04", "CLM"], g, 1) for g in tiles]
        assert sorted(opened) == sorted({i["assets"][k]["href"] for i in items for k in ("B04", "CLM")})
        handles = list(pool._idle.values())
        assert len(handles) == 6 and not any(h.closed for h in handles)
    assert all(h.closed for h in handles) and files._pool.current is None
    for a, b in zip(alone, pooled):
        for key in ("B04", "CLM"):
            assert np.array_equal(a[key][0], b[key][0])

    small = files.OpenFiles(capacity=2)
    for item in items:
        with small.open(item["assets"]["B04"]["href"]):
            pass
    assert len(small._idle) == 2  # the least recently used was closed
    small.close()


def test_a_handle_that_failed_is_not_kept(items):
    """An error inside the block closes the handle instead of pooling it."""
    from stacube.algo.files import OpenFiles

    pool = OpenFiles()
    href = items[0]["assets"]["B04"]["href"]
    with pytest.raises(RuntimeError):
        with pool.open(href) as src:
            raise RuntimeError("read failed")
    assert src.closed and not pool._idle


@pytest.mark.parametrize("float_band", [False, True])
def test_a_loaded_stack_never_shares_memory_with_the_buffers_it_gave_back(items, tmp_path, monkeypatch, float_band):
    """In a job (a buffer pool active), loading gives back the files' raw arrays it does not
    keep (the quality codes; integer bands once converted to float32) and keeps float32 bands
    read as they are: no free buffer may be memory of the stack."""
    from stacube.algo import buffers
    from stacube.algo.load import Source, load_stack

    monkeypatch.setattr(buffers, "MIN_BYTES", 1)
    if float_band:  # NDVI-like float32 files: the raw array is the band (no copy)
        for i, item in enumerate(items):
            with rasterio.open(item["assets"]["B04"]["href"]) as src:
                data = src.read(1).astype(np.float32) / 5000
            item["assets"]["B04"] = {"href": write(tmp_path / f"f{i}.tif", data),
                                     "raster:bands": [{"data_type": "float32"}]}
    rule = preset("binary-cloud", "CLM")
    source = Source({"id": "c", "item_assets": {}}, items, {"red": "B04"}, rule)
    geobox = GeoBox((32, 45), ORIGIN, "EPSG:32633")
    plain = load_stack([source], geobox, ["red"])
    with buffers.reuse_buffers() as pool:
        stack = load_stack([source], geobox, ["red"])
        kept = [*stack.bands.values(), stack.observed, stack.clear]
        assert pool._free, "nothing given back"
        assert not any(np.may_share_memory(b, k) for b in pool._free for k in kept)
        taken = [buffers.empty(b.shape, b.dtype) for b in list(pool._free)]
        for t in taken:
            t[...] = 7  # whatever the next tile writes there
        assert np.array_equal(stack.bands["red"], plain.bands["red"], equal_nan=True)
        assert np.array_equal(stack.clear, plain.clear) and np.array_equal(stack.observed, plain.observed)
