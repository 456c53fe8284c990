"""Compositing jobs on the real sample stacks, checked against independent computations."""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from stacube_testing import SAMPLES
from stacube.catalog.quality import preset
from stacube.errors import NoData, NotFound, StorageError
from stacube.jobs.runner import run_composite
from stacube.jobs.spec import build_spec

SLOVENIA = dict(collections=["sentinel-2-l1c-eolearn-sample"], bbox="14.5514,45.8659,14.5642,45.8750",
                datetime="2015-07-01/2015-09-30")
NEW_YORK = dict(collections=["landsat-8-c1-l1tp-gdalcubes-sample"], bbox="-76.2,39.3,-71.95,42.8",
                datetime="2018-01-01/2018-12-31")
WORLDCEREAL = dict(collections=["sentinel-2-l2a-worldcereal-sample", "landsat-8-l2-worldcereal-sample"],
                   bbox="34.45289,-3.17635,34.45341,-3.17582", datetime="2018-10-01/2019-09-30")


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.nodata


@pytest.fixture(scope="module")
def slovenia_median(samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    spec = build_spec(**SLOVENIA, method="median", bands=["red", "nir"], indices=["NDVI"], output=str(out))
    return run_composite(spec, samples.settings, workers=1)


def _slovenia_expected_ndvi():
    """Median NDVI over CLM-clear scenes, computed straight from the COGs with rasterio."""
    manifest = json.loads((SAMPLES / "s2-l1c-slovenia-eolearn" / "manifest.json").read_text())
    stack, clear = [], []
    for item in manifest["items"]:
        folder = SAMPLES / "s2-l1c-slovenia-eolearn" / item["item_id"]
        red = read(folder / "B04.tif")[0] * 1e-4
        nir = read(folder / "B08.tif")[0] * 1e-4
        clm, transform, _ = read(folder / "CLM.tif")
        stack.append((nir - red) / (nir + red))
        clear.append(clm == 0)
    values = np.ma.masked_array(np.stack(stack), ~np.stack(clear))
    return np.ma.median(values, axis=0).filled(np.nan), np.stack(clear).sum(0), transform


def test_median_ndvi_matches_direct_computation(slovenia_median):
    report = slovenia_median
    path = report["outputs"]["cogs"][report["steps"][0]["label"]]["NDVI"]
    got, transform, nodata = read(path)
    expected, clear_count, src_transform = _slovenia_expected_ndvi()
    # the output grid follows the source pixel edges: find the offset
    dx = round((src_transform.c - transform.c) / transform.a)
    dy = round((src_transform.f - transform.f) / transform.e)
    window = got[dy:dy + expected.shape[0], dx:dx + expected.shape[1]]
    assert window.shape == expected.shape
    assert np.allclose(window, expected, atol=1e-6, equal_nan=True)
    counts, _, _ = read(report["outputs"]["cogs"][report["steps"][0]["label"]]["clear_count"])
    assert np.array_equal(counts[dy:dy + 101, dx:dx + 100], clear_count)
    assert np.isnan(nodata)


def test_report_lists_every_scene_with_counts(slovenia_median):
    scenes = {s["item_id"]: s for s in slovenia_median["scenes"]}
    assert len(scenes) == 5
    cloudy = scenes["S2_L1C_20150731T100009"]
    assert cloudy["clear_pixels"] == 0 and cloudy["valid_pixels"] == 101 * 100
    clear = scenes["S2_L1C_20150711T100008"]
    assert clear["clear_percent"] == 100.0 and clear["total_pixels"] >= 101 * 100
    assert all(s["used"] for s in scenes.values())
    assert slovenia_median["throughput"]["pixels_x_scenes_per_second"] > 0


def test_outputs_are_valid_cogs_and_a_georeferenced_zarr(slovenia_median):
    report = slovenia_median
    cogs = report["outputs"]["cogs"][report["steps"][0]["label"]]
    assert set(cogs) == {"red", "nir", "NDVI", "clear_count", "valid_count"}
    for path in cogs.values():
        valid, errors, _ = cog_validate(path, quiet=True)
        assert valid, errors
    with rasterio.open(cogs["clear_count"]) as src:
        assert src.dtypes[0] == "uint16"
    ds = xr.open_zarr(report["outputs"]["zarr"])
    assert ds["NDVI"].dims == ("time", "y", "x") and ds.sizes["time"] == 1
    # stored as uint16 with a nodata (65535: no observation), which xarray masks as NaN
    assert ds["clear_count"].encoding["dtype"] == np.uint16 and ds["clear_count"].encoding["_FillValue"] == 65535
    from odc.geo.xr import ODCExtensionDa  # noqa: F401 (registers .odc)
    assert ds["NDVI"].odc.geobox.crs.epsg == 32633
    assert ds["NDVI"].odc.geobox.shape == tuple(report["grid"]["shape"])
    assert np.allclose(ds["NDVI"].isel(time=0).values, read(cogs["NDVI"])[0], equal_nan=True)
    assert Path(report["outputs"]["report"]).exists()


def test_results_are_registered_with_provenance_links(samples, slovenia_median):
    item = samples.get_item(slovenia_median["collection"], slovenia_median["items"][0])
    assert item["properties"]["processing:software"]["stacube"]
    assert item["properties"]["stacube:method"] == "median"
    derived = [link for link in item["links"] if link["rel"] == "derived_from"]
    assert len(derived) == 5 and derived[0]["href"].endswith("/items/S2_L1C_20150711T100008")
    assert item["assets"]["NDVI"]["href"].endswith("NDVI.tif")
    assert item["assets"]["red"]["eo:bands"][0]["common_name"] == "red"
    coll = samples.get_collection(slovenia_median["collection"])
    assert "red" in coll["item_assets"] and coll["item_assets"]["zarr"]["type"] == "application/vnd+zarr"


def test_rerunning_a_job_is_idempotent(samples, slovenia_median):
    spec = build_spec(**SLOVENIA, method="median", bands=["red", "nir"], indices=["NDVI"],
                      output=slovenia_median["parameters"]["output"])
    before = samples.item_counts()[slovenia_median["collection"]]
    again = run_composite(spec, samples.settings, workers=1)
    assert again["job_id"] == slovenia_median["job_id"] and again["items"] == slovenia_median["items"]
    assert samples.item_counts()[slovenia_median["collection"]] == before
    root = Path(again["outputs"]["zarr"]).parent.parent
    assert sorted(p.name for p in root.iterdir()) == sorted({again["job_id"], "tmp"})
    assert not list((root / "tmp").iterdir())


def _bqa_masks(item_ids):
    rule = preset("landsat-c1-bqa", "BQA")
    return rule


@pytest.fixture(scope="module")
def new_york_best(samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("ny")
    spec = build_spec(**NEW_YORK, method="best-pixel", max_cloud=20, bands=["red", "nir"], indices=["NDVI"],
                      output=str(out))
    return run_composite(spec, samples.settings, workers=1)


def test_cloud_filter_drops_scenes_above_the_threshold(new_york_best):
    for s in new_york_best["scenes"]:
        cloud = 100 - s["clear_percent"]
        if s["valid_pixels"] and cloud > 20:
            assert not s["used"] and "max-cloud 20%" in s["reason"]
        elif s["valid_pixels"]:
            assert s["used"]
    assert {s["item_id"][10:16] for s in new_york_best["scenes"] if s["used"]} == {"013032", "014031", "014032"}


def test_best_pixel_against_an_independent_load(samples, new_york_best):
    """Reload the used scenes with the ODC facade on the output grid and re-check each pixel."""
    import stacube
    from odc.geo.geobox import GeoBox
    from affine import Affine

    report = new_york_best
    grid = report["grid"]
    geobox = GeoBox((grid["shape"][0], grid["shape"][1]), Affine(*grid["transform"]), grid["crs"])
    used = [s for s in report["scenes"] if s["used"]]
    dc = stacube.Datacube(settings=samples.settings)
    items = [samples.get_item(s["collection"], s["item_id"]) for s in used]
    ds = dc.load(product="landsat-8-c1-l1tp-gdalcubes-sample", measurements=["red", "BQA"], like=geobox,
                 datasets=items)
    order = {i["id"]: n for n, i in enumerate(sorted(items, key=lambda i: i["properties"]["datetime"]))}
    rule = preset("landsat-c1-bqa", "BQA")
    observed, clear = rule.decode(ds["BQA"].values)
    observed &= ds["red"].values != 0
    clear &= observed
    label = report["steps"][0]["label"]
    red, _, _ = read(report["outputs"]["cogs"][label]["red"])
    provenance, _, _ = read(report["outputs"]["cogs"][label]["provenance"])
    clear_count, _, _ = read(report["outputs"]["cogs"][label]["clear_count"])
    # 0 is a count (observed, never clear); no observation at all is the nodata, 65535
    assert np.array_equal(clear_count, np.where(observed.any(0), clear.sum(0), 65535))
    # scene stats of the report equal the independent mask counts
    for s in used:
        t = order[s["item_id"]]
        assert s["clear_pixels"] == int(clear[t].sum()) and s["valid_pixels"] == int(observed[t].sum())
    ranked = sorted(used, key=lambda s: s["rank"])
    doy = {s["item_id"]: np.datetime64(s["datetime"][:19]).astype("datetime64[D]") for s in used}
    scale, offset = 2e-5, -0.1
    checked = 0
    for y, x in zip(*np.nonzero(observed.any(0))):
        if clear[:, y, x].any():
            pick = next(s for s in ranked if clear[order[s["item_id"]], y, x])
        else:
            pick = next(s for s in ranked if observed[order[s["item_id"]], y, x])
        t = order[pick["item_id"]]
        assert red[y, x] == pytest.approx(ds["red"].values[t, y, x] * scale + offset, abs=1e-6)
        day = doy[pick["item_id"]]
        assert provenance[y, x] == int((day - day.astype("datetime64[Y]")).astype(int) + 1)
        checked += 1
    assert checked > 1000
    assert (provenance[~observed.any(0)] == -1).all()


def test_cross_collection_median_per_period(samples, tmp_path):
    spec = build_spec(**WORLDCEREAL, method="median", period="P3M", bands=["red", "nir"], output=str(tmp_path))
    report = run_composite(spec, samples.settings, workers=1)
    assert [s["label"] for s in report["steps"]] == ["20181001", "20190701"]
    collections = {samples.get_item(s["collection"], s["item_id"])["collection"] for s in report["scenes"] if s["used"]}
    assert collections == {"sentinel-2-l2a-worldcereal-sample", "landsat-8-l2-worldcereal-sample"}
    # independent computation for the first quarter: physical values of both sensors, MASK==1
    import stacube
    from affine import Affine
    from odc.geo.geobox import GeoBox

    grid = report["grid"]
    geobox = GeoBox((grid["shape"][0], grid["shape"][1]), Affine(*grid["transform"]), grid["crs"])
    dc = stacube.Datacube(settings=samples.settings)
    values, clears = [], []
    step_items = set(report["steps"][0]["items"])
    for product in spec.collections:
        items = [i for i in dc.find_datasets(product, time=("2018-10-01", "2018-12-31")) if i["id"] in step_items]
        ds = dc.load(product=product, measurements=["B04", "MASK"], like=geobox, datasets=items)
        for t, item in enumerate(sorted(items, key=lambda i: i["properties"]["datetime"])):
            band = item["assets"]["B04"]["raster:bands"][0]
            raw = ds["B04"].values[t].astype(np.float64)
            values.append(np.where(raw == 0, np.nan, raw * band.get("scale", 1) + band.get("offset", 0)))
            clears.append((ds["MASK"].values[t] == 1) & (raw != 0))
    expected = np.ma.median(np.ma.masked_array(np.stack(values), ~np.stack(clears)), axis=0).filled(np.nan)
    got, _, _ = read(report["outputs"]["cogs"]["20181001"]["red"])
    assert np.allclose(got, expected, atol=1e-6, equal_nan=True)
    assert np.isfinite(got).sum() > 0


def test_every_method_runs_on_a_real_stack(samples, tmp_path):
    for method in ("most-recent", "least-recent", "mean"):
        spec = build_spec(**SLOVENIA, method=method, bands=["red"], output=str(tmp_path))
        report = run_composite(spec, samples.settings, workers=1)
        red, _, _ = read(report["outputs"]["cogs"][report["steps"][0]["label"]]["red"])
        assert np.isfinite(red).sum() == 101 * 100
    # most-recent over the clear scenes: 2015-09-09 (the last clear one)
    spec = build_spec(**SLOVENIA, method="most-recent", bands=["red"], output=str(tmp_path))
    report = run_composite(spec, samples.settings, workers=1)
    prov, _, _ = read(report["outputs"]["cogs"][report["steps"][0]["label"]]["provenance"])
    assert set(np.unique(prov[prov >= 0]).tolist()) == {252}


def test_mask_override_with_clear_values(samples, tmp_path):
    # treat CLM value 1 ("cloud") as clear: the two cloudy scenes become usable
    spec = build_spec(**SLOVENIA, method="median", bands=["red"], mask_asset="CLM", clear=[0, 1], output=str(tmp_path))
    report = run_composite(spec, samples.settings, workers=1)
    assert all(s["clear_percent"] == 100.0 for s in report["scenes"])


def test_no_scene_passing_the_cloud_filter(samples, tmp_path):
    spec = build_spec(**NEW_YORK, method="median", max_cloud=0.001, output=str(tmp_path))
    with pytest.raises(NoData, match="no scene passes the cloud filter"):
        run_composite(spec, samples.settings, workers=1)
    assert not any(p.name != "tmp" for p in tmp_path.iterdir())


def test_unknown_collection_and_empty_area(samples, tmp_path):
    with pytest.raises(NotFound, match="unknown collection"):
        run_composite(build_spec(**{**SLOVENIA, "collections": ["nope"]}, method="median"), samples.settings)
    with pytest.raises(NoData, match="no scene"):
        run_composite(build_spec(**{**SLOVENIA, "bbox": "100,10,101,11"}, method="median"), samples.settings)


def test_unreadable_asset_leaves_no_outputs_and_no_items(samples, tmp_path):
    """A truncated COG fails the job; nothing is committed or registered."""
    import shutil

    from stacube.catalog.register import add_datasets, add_product
    from stacube_testing import PRODUCTS

    stack = tmp_path / "stack"
    shutil.copytree(SAMPLES / "s2-l1c-slovenia-eolearn", stack)
    doc = json.loads((PRODUCTS.parent / "products" / "sentinel-2-l1c-eolearn-sample.odc.yaml").read_text()
                     if False else "{}")
    del doc
    # a separate product so the shared one keeps pointing at intact files
    product = tmp_path / "p.yaml"
    product.write_text((PRODUCTS / "sentinel-2-l1c-eolearn-sample.odc.yaml").read_text()
                       .replace("name: sentinel-2-l1c-eolearn-sample", "name: broken-sample"))
    manifest = json.loads((stack / "manifest.json").read_text())
    for item in manifest["items"]:
        item["collection"] = "broken-sample"
    (stack / "manifest.json").write_text(json.dumps(manifest))
    add_product(samples, product)
    add_datasets(samples, [stack])
    victim = stack / "S2_L1C_20150830T100547" / "B04.tif"
    victim.write_bytes(victim.read_bytes()[:2000])
    out = tmp_path / "out"
    spec = build_spec(**{**SLOVENIA, "collections": ["broken-sample"]}, method="median", bands=["red"],
                      output=str(out))
    with pytest.raises(StorageError, match="cannot read"):
        run_composite(spec, samples.settings, workers=1)
    assert not [p for p in out.iterdir() if p.name != "tmp"] if out.exists() else True
    assert not list((out / "tmp").iterdir()) if (out / "tmp").exists() else True
    assert "broken-sample-median" not in samples.collection_ids()


@pytest.mark.parametrize("grid, crs", [("equal-area-3km", "EPSG:6933"), ("webmercator-z6", "EPSG:3857"),
                                       ("native", "EPSG:32618")])
def test_jobs_on_named_grids_cover_whole_grid_tiles(samples, tmp_path, grid, crs):
    from stacube.core.grids import EASE2_LOWER_LEFT, WEBMERCATOR_ORIGIN

    spec = build_spec(**NEW_YORK, method="median", bands=["red"], grid=grid, grid_tiles=True, tile_size=64,
                      output=str(tmp_path))
    report = run_composite(spec, samples.settings, workers=1)
    g = report["grid"]
    assert g["crs"] == crs
    ny, nx = g["shape"]
    assert ny % 64 == 0 and nx % 64 == 0 and g["tiles"] == (ny // 64) * (nx // 64)
    res, x0, y0 = g["transform"][0], g["transform"][2], g["transform"][5]
    anchor = {"EPSG:6933": EASE2_LOWER_LEFT, "EPSG:3857": WEBMERCATOR_ORIGIN}.get(crs)
    if anchor:  # tile edges fall on the grid's global tiling
        assert abs(((x0 - anchor[0]) / (res * 64)) - round((x0 - anchor[0]) / (res * 64))) < 1e-6
        assert abs(((y0 - anchor[1]) / (res * 64)) - round((y0 - anchor[1]) / (res * 64))) < 1e-6
    red, _, _ = read(report["outputs"]["cogs"][report["steps"][0]["label"]]["red"])
    assert np.isfinite(red).sum() > 100
