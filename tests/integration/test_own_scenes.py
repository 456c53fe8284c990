"""Bring your own scenes: folders of COGs stacube did not make become a dated, described,
servable product, composited on their own pixels, through the commands a user types.

The scenes are written by :mod:`own_scenes` from the real Landsat 8 sample (folders named by
Landsat scene and product IDs, one dated only by a GeoTIFF tag).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import urllib.request
import warnings

import numpy as np
import pytest
import rasterio
import yaml

import own_scenes
from stacube.catalog.from_cogs import describe_cogs, parse_band_options
from stacube.catalog.products import odc_to_collection
from stacube.catalog.register import upsert_product
from stacube.cubes.timeseries import timeseries
from stacube.errors import InvalidInput
from stacube_testing import STACUBE, free_port

NAME = "own-scenes-l8"
AREA = f"{own_scenes.ORIGIN[0] + 100},{own_scenes.ORIGIN[1] - own_scenes.RES * own_scenes.SHAPE[0] + 100}," \
       f"{own_scenes.ORIGIN[0] + own_scenes.RES * own_scenes.SHAPE[1] - 100},{own_scenes.ORIGIN[1] - 100}"

pytestmark = pytest.mark.skipif(not own_scenes.available(),
                                reason="the Landsat 8 sample stack (data/samples) is not present")


def ok(result):
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def read_scene(folder, band):
    path = next(p for p in folder.iterdir() if p.stem.endswith(band) and (p.stem == band or p.stem.endswith("_" + band)))
    with rasterio.open(path) as src:
        return src.read(1), src.transform


def bqa_decode(bqa):
    """Landsat Collection 1 BQA, decoded by hand (USGS LSDS-1656): fill bit 0; clear = cloud bit 4
    unset and cloud-shadow confidence (bits 7-8) not high."""
    observed = (bqa & 1) == 0
    clear = observed & (((bqa >> 4) & 1) == 0) & (((bqa >> 7) & 3) < 3)
    return observed, clear


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return own_scenes.build_scenes(tmp_path_factory.mktemp("own-scenes"))


@pytest.fixture(scope="module")
def registered(catalog, scenes, cli):
    ok(cli("product", "create", NAME, "--from-cogs", str(scenes), "--title", "Landsat 8 scenes of my own"))
    out = ok(cli("dataset", "add", "-c", NAME, str(scenes)))
    assert "registered 4 items" in out.stdout
    return {i["id"]: i for i in catalog.search({"collections": [NAME]})}


@pytest.fixture(scope="module")
def cli():
    from stacube_testing import run_cli

    return run_cli


def test_product_create_and_add_of_its_yaml_give_one_collection(catalog, scenes, cli, tmp_path):
    ok(cli("product", "create", "own-scenes-yaml", "--from-cogs", str(scenes), "--title", "mine"))
    created = catalog.get_collection("own-scenes-yaml")
    printed = ok(cli("product", "create", "own-scenes-yaml", "--from-cogs", str(scenes), "--title", "mine",
                     "--print-yaml")).stdout
    definition = yaml.safe_load(printed)
    assert definition["storage"] == {"crs": "EPSG:32618", "resolution": {"y": -3000.0, "x": 3000.0}}
    assert definition["metadata"]["platform"]["code"] == "landsat-8"
    assert definition["quality"] == {"asset": "BQA", "preset": "landsat-c1-bqa"}
    path = tmp_path / "product.yaml"
    path.write_text(printed)
    ok(cli("product", "add", str(path)))
    assert catalog.get_collection("own-scenes-yaml") == created
    assets = created["item_assets"]
    assert [assets[k]["eo:bands"][0].get("common_name") for k in ("B2", "B3", "B4", "B5", "B6", "B7")] == \
        ["blue", "green", "red", "nir08", "swir16", "swir22"]
    assert assets["B4"]["raster:bands"][0] == {"data_type": "uint16", "unit": "1", "nodata": 0,
                                              "scale": 2e-05, "offset": -0.1}
    # the user's words win: --band and --clear
    definition = describe_cogs("x", scenes, bands=parse_band_options(["B5=nir"]), quality_asset="BQA",
                               clear=[2720, 2752])
    assert next(m for m in definition["measurements"] if m["name"] == "B5")["aliases"] == ["nir"]
    assert definition["quality"]["clear"] == [{"values": [2720, 2752], "name": "clear"}]
    with pytest.raises(InvalidInput, match="not a STAC common name"):
        parse_band_options(["B5=infrared"])
    with pytest.raises(InvalidInput, match="not a band of"):
        describe_cogs("x", scenes, bands={"B9": "cirrus"})


def test_every_item_is_dated_described_and_clouded_from_its_files(registered, scenes):
    assert set(registered) == set(own_scenes.EXPECTED_DATETIMES)
    for item_id, item in registered.items():
        props = item["properties"]
        assert props["datetime"] == own_scenes.EXPECTED_DATETIMES[item_id], item_id
        assert props["platform"] == "landsat-8" and props["instruments"] == ["oli", "tirs"], item_id
        assert sorted(item["assets"]) == sorted(own_scenes.BANDS), item_id
        bqa, _ = read_scene(scenes / item_id, "BQA")
        observed, clear = bqa_decode(bqa)
        expected = round(100.0 * (observed & ~clear).sum() / observed.sum(), 2)
        assert props["eo:cloud_cover"] == pytest.approx(expected, abs=0.005), item_id
    covers = {i: it["properties"]["eo:cloud_cover"] for i, it in registered.items()}
    assert max(covers.values()) > 10 > min(covers.values())  # real clouds: the filter has work to do


def test_the_cloud_filter_works_on_own_scenes(registered, cli):
    out = ok(cli("dataset", "search", "-c", NAME, "--filter", "eo:cloud_cover < 10", "--json")).stdout
    got = {f["id"] for f in json.loads(out)["features"]}
    assert got == {i for i, it in registered.items() if it["properties"]["eo:cloud_cover"] < 10} and got


def test_a_scene_without_a_time_is_refused_and_nothing_is_registered(registered, catalog, scenes, cli, tmp_path):
    mystery = tmp_path / "mystery"
    mystery.mkdir()
    for band in own_scenes.BANDS:  # the scene's files, without a tag or a date anywhere
        (mystery / f"{band}.tif").write_bytes((scenes / "LC80130322018031LGN00" / f"{band}.tif").read_bytes())
    before = catalog.item_counts()[NAME]
    out = cli("dataset", "add", "-c", NAME, str(scenes), str(mystery))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert str(mystery) in out.stderr and "TIFFTAG_DATETIME" in out.stderr and "--datetime-pattern" in out.stderr
    assert catalog.item_counts()[NAME] == before
    dated = tmp_path / "site_2018_152"
    mystery.rename(dated)
    upsert_product(catalog, odc_to_collection(describe_cogs("own-scenes-pattern", dated, platform="landsat-8")))
    assert catalog.get_collection("own-scenes-pattern")["item_assets"]["B4"]["eo:bands"][0]["common_name"] == "red"
    ok(cli("dataset", "add", "-c", "own-scenes-pattern", str(dated), "--datetime-pattern", "%Y_%j"))
    item = catalog.get_item("own-scenes-pattern", "site_2018_152")
    assert item["properties"]["datetime"] == "2018-06-01T00:00:00Z"
    assert item["properties"]["platform"] == "landsat-8"  # the product's one platform


@pytest.fixture(scope="module")
def composite(registered, cli):
    out = ok(cli("composite", "-c", NAME, "--bbox", AREA, "--bbox-crs", own_scenes.CRS,
                 "--datetime", "2018-01-01/2018-12-31", "--method", "median", "--bands", "red,nir,swir16",
                 "--workers", "1", "--json"))
    return json.loads(out.stdout)


def test_the_composite_is_on_the_sources_pixels(composite, scenes):
    grid = composite["grid"]
    assert grid["crs"] == own_scenes.CRS and grid["shape"] == list(own_scenes.SHAPE)
    assert grid["transform"][:6] == [own_scenes.RES, 0.0, own_scenes.ORIGIN[0], 0.0, -own_scenes.RES,
                                     own_scenes.ORIGIN[1]]
    # no resampling: the median of each pixel's clear observations, straight from the files
    reds, clears = [], []
    for folder in own_scenes.EXPECTED_DATETIMES:
        red, _ = read_scene(scenes / folder, "B4")
        bqa, _ = read_scene(scenes / folder, "BQA")
        observed, clear = bqa_decode(bqa)
        reds.append(np.where(red == 0, np.nan, red * 2e-5 - 0.1))
        clears.append(clear & (red != 0))
    stack = np.where(np.stack(clears), np.stack(reds), np.nan)
    with warnings.catch_warnings():  # pixels with no clear observation: NaN, as expected
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(stack, axis=0)
    with rasterio.open(composite["outputs"]["cogs"][composite["steps"][0]["label"]]["red"]) as src:
        got = src.read(1)
    assert np.isfinite(expected).sum() > 1000
    assert np.allclose(got, expected, atol=1e-6, equal_nan=True)


def test_the_datacube_facade_loads_on_the_sources_pixels(registered, scenes, settings):
    import stacube

    dc = stacube.Datacube(settings=settings)
    ds = dc.load(product=NAME, measurements=["red"], x=(-74.5, -73.5), y=(40.5, 41.0))
    geobox = ds.odc.geobox
    assert abs(geobox.resolution.x) == own_scenes.RES  # the product's storage resolution...
    assert (geobox.affine.c - own_scenes.ORIGIN[0]) % own_scenes.RES == 0  # ...on the scenes' pixel edges
    assert (geobox.affine.f - own_scenes.ORIGIN[1]) % own_scenes.RES == 0
    edge = dc.load(product=NAME, measurements=["red"], x=(-74.5, -73.5), y=(40.5, 41.0), anchor="edge")
    assert edge.odc.geobox.affine.c % own_scenes.RES == 0


def test_plots_of_own_scenes(registered, composite, scenes, cli, settings, tmp_path):
    from PIL import Image
    from pyproj import Transformer

    png = tmp_path / "composite.png"
    out = ok(cli("plot", "composite", composite["job_id"], "-o", str(png)))  # no blue: false colour
    assert Image.open(png).size[0] > 600 and composite["job_id"] in out.stdout
    # a pixel that is clear on three dates and under a cloud shadow on the fourth
    observed, clear = zip(*(bqa_decode(read_scene(scenes / f, "BQA")[0]) for f in own_scenes.EXPECTED_DATETIMES))
    shadow = observed[3] & ~clear[3] & clear[0] & clear[1] & clear[2]
    row, col = np.argwhere(shadow)[0]
    x = own_scenes.ORIGIN[0] + (col + 0.5) * own_scenes.RES
    y = own_scenes.ORIGIN[1] - (row + 0.5) * own_scenes.RES
    lon, lat = Transformer.from_crs(own_scenes.CRS, "EPSG:4326", always_xy=True).transform(x, y)
    args = ("-c", NAME, "--lon", f"{lon:.6f}", "--lat", f"{lat:.6f}", "--index", "NDVI")
    series = timeseries(settings, collection=NAME, lon=lon, lat=lat, indices=["NDVI"]).rows
    bqa = read_scene(scenes / "scene-d", "BQA")[0][row, col]
    reason = "cloud" if (bqa >> 4) & 1 else "cloud_shadow"
    assert [s["status"] for s in series] == ["clear", "clear", "clear", reason]
    png = tmp_path / "series.png"
    ok(cli("plot", "timeseries", *args, "-o", str(png), "--max-gap", "30"))
    assert Image.open(png).size[0] > 600


@pytest.fixture(scope="module")
def server(registered, composite, scenes, settings, tmp_path_factory):
    """``stacube up`` as a user runs it; the scenes' folder is named a read prefix explicitly."""
    port = free_port()
    log = tmp_path_factory.mktemp("up") / "up.log"
    env = {**os.environ, "STACUBE_READ_PREFIXES": f"{scenes},{settings.data_dir.absolute()}"}
    with open(log, "wb") as handle:
        proc = subprocess.Popen([STACUBE, "up", "--port", str(port)], env=env, stdout=handle,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/api", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"stacube up exited: {log.read_text()}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _tile(lon: float, lat: float, zoom: int) -> str:
    import morecantile

    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, zoom)
    return f"{t.z}/{t.x}/{t.y}"


def _opaque_pixels(url: str) -> np.ndarray:
    from PIL import Image

    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200 and r.headers["content-type"] == "image/png"
        rgba = np.asarray(Image.open(io.BytesIO(r.read())).convert("RGBA"))
    return rgba[rgba[..., 3] > 0][:, :3]


def test_tiles_of_the_collection_and_of_the_composite_through_stacube_up(server, composite):
    from pyproj import Transformer

    cx = own_scenes.ORIGIN[0] + own_scenes.RES * own_scenes.SHAPE[1] / 2
    cy = own_scenes.ORIGIN[1] - own_scenes.RES * own_scenes.SHAPE[0] / 2
    lon, lat = Transformer.from_crs(own_scenes.CRS, "EPSG:4326", always_xy=True).transform(cx, cy)
    tile = _tile(lon, lat, 8)
    scenes = _opaque_pixels(f"{server}/raster/collections/{NAME}/tiles/WebMercatorQuad/{tile}.png"
                            "?assets=B4&assets=B3&assets=B2&rescale=0,0.3&unscale=true")
    assert len(scenes) > 500 and scenes.std() > 1
    item = composite["items"][0]
    out = _opaque_pixels(f"{server}/raster/collections/{composite['collection']}/items/{item}/tiles/"
                         f"WebMercatorQuad/{tile}.png?assets=red&rescale=0,0.3")
    assert len(out) > 500 and out.std() > 1
