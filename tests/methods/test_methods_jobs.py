"""Each new method as a real job on the sample stacks, against computations straight from the COGs."""

import json

import numpy as np
import pytest
import rasterio

from stacube.jobs.runner import run_composite
from stacube.jobs.spec import build_spec
from stacube_testing import SAMPLES

SLOVENIA = dict(collections=["sentinel-2-l1c-eolearn-sample"], bbox="14.5514,45.8659,14.5642,45.8750",
                datetime="2015-07-01/2015-09-30")
NEW_YORK = dict(collections=["landsat-8-c1-l1tp-gdalcubes-sample"], bbox="-76.2,39.3,-71.95,42.8",
                datetime="2018-01-01/2018-12-31")
BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
CLEAR_DOYS = {192, 242, 252}  # 2015-07-11, 08-30, 09-09


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.transform


@pytest.fixture(scope="module")
def source():
    """The Slovenia stack read with rasterio: reflectance (float32, as the loader scales it), the
    CLM-clear mask, day of year per scene, and the grid transform."""
    manifest = json.loads((SAMPLES / "s2-l1c-slovenia-eolearn" / "manifest.json").read_text())
    items = sorted(manifest["items"], key=lambda i: i["datetime"])
    values = {name: [] for name in BANDS}
    clear, doys = [], []
    for item in items:
        folder = SAMPLES / "s2-l1c-slovenia-eolearn" / item["item_id"]
        for name, key in BANDS.items():
            values[name].append(read(folder / f"{key}.tif")[0] * np.float32(1e-4))
        clm, transform = read(folder / "CLM.tif")
        clear.append(clm == 0)
        doys.append(int(np.datetime64(item["datetime"][:10]).astype("datetime64[D]").astype(object).timetuple().tm_yday))
    return {k: np.stack(v) for k, v in values.items()}, np.stack(clear), np.array(doys), transform


def run(samples, tmp_path, method, bands, **extra):
    spec = build_spec(**{**SLOVENIA, **extra}, method=method, bands=bands, output=str(tmp_path))
    report = run_composite(spec, samples.settings, workers=1)
    return report, report["outputs"]["cogs"][report["steps"][0]["label"]]


def window(path, src_transform, shape):
    got, transform = read(path)
    dx = round((src_transform.c - transform.c) / transform.a)
    dy = round((src_transform.f - transform.f) / transform.e)
    out = got[dy:dy + shape[0], dx:dx + shape[1]]
    assert out.shape == shape
    return out


def test_percentile_job(samples, tmp_path, source):
    values, clear, _, transform = source
    report, cogs = run(samples, tmp_path, "p25", ["red"])
    got = window(cogs["red"], transform, clear.shape[1:])
    expected = np.full(clear.shape[1:], np.nan)
    for y, x in np.ndindex(*clear.shape[1:]):
        expected[y, x] = np.percentile(values["red"][clear[:, y, x], y, x].astype(np.float64), 25)
    assert np.allclose(got, expected, atol=1e-6)
    assert "provenance" not in cogs and report["parameters"]["method"] == "p25"


def test_geomedian_job_matches_geomad_on_the_same_stack(samples, tmp_path, source):
    from geomad import nangeomedian_pcm

    values, clear, _, transform = source
    report, cogs = run(samples, tmp_path, "geomedian", ["red", "green", "blue", "nir"], indices=["NDVI"])
    x = np.stack([np.where(clear, values[b], np.nan) for b in ("red", "green", "blue", "nir")], 0)
    direct = nangeomedian_pcm(np.ascontiguousarray(x.transpose(2, 3, 0, 1), dtype=np.float32),
                              eps=1e-6, maxiters=1000, num_threads=1)
    got = {b: window(cogs[b], transform, clear.shape[1:]) for b in ("red", "green", "blue", "nir")}
    for j, b in enumerate(("red", "green", "blue", "nir")):
        assert np.allclose(got[b], direct[:, :, j], atol=1e-6), b
        lo = np.where(clear, values[b], np.inf).min(0)
        hi = np.where(clear, values[b], -np.inf).max(0)
        assert ((got[b] >= lo - 1e-6) & (got[b] <= hi + 1e-6)).all()
    ndvi = window(cogs["NDVI"], transform, clear.shape[1:])
    assert np.allclose(ndvi, (got["nir"] - got["red"]) / (got["nir"] + got["red"]), atol=1e-6)
    assert set(cogs) == {"red", "green", "blue", "nir", "NDVI", "clear_count", "valid_count"}


def test_max_ndvi_job_loads_red_and_nir_it_was_not_asked_for(samples, tmp_path, source):
    values, clear, doys, transform = source
    report, cogs = run(samples, tmp_path, "max-ndvi", ["blue"])
    assert set(cogs) == {"blue", "provenance", "clear_count", "valid_count"}
    ndvi = (values["nir"] - values["red"]) / (values["nir"] + values["red"])
    pick = np.argmax(np.where(clear, ndvi, -np.inf), axis=0)
    blue = window(cogs["blue"], transform, clear.shape[1:])
    prov = window(cogs["provenance"], transform, clear.shape[1:])
    assert np.array_equal(prov, doys[pick])
    assert np.allclose(blue, np.take_along_axis(values["blue"], pick[None], 0)[0], atol=1e-7)
    assert set(np.unique(prov).tolist()) <= CLEAR_DOYS and len(np.unique(prov)) >= 2


def test_medoid_job_against_brute_force(samples, tmp_path, source):
    values, clear, doys, transform = source
    names = ["red", "green", "blue", "nir"]
    report, cogs = run(samples, tmp_path, "medoid", names)
    pts = np.stack([values[b] for b in names], -1)  # (t, y, x, band)
    dist = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))  # (t, t, y, x)
    both = clear[:, None] & clear[None]
    cost = np.where(both, dist, 0).sum(1)
    cost[~clear] = np.inf
    pick = np.argmin(cost, axis=0)
    prov = window(cogs["provenance"], transform, clear.shape[1:])
    assert np.array_equal(prov, doys[pick])
    red = window(cogs["red"], transform, clear.shape[1:])
    assert np.allclose(red, np.take_along_axis(values["red"], pick[None], 0)[0], atol=1e-7)
    assert set(np.unique(prov).tolist()) <= CLEAR_DOYS


def test_mask_cleanup_job_tiles_agree_with_one_tile(samples, tmp_path):
    """NY scenes have partial clouds: cleanup removes clear pixels next to clouds; a 9-tile job
    (halo loaded per tile) gives exactly the counts of a one-tile job."""
    def counts(**extra):
        spec = build_spec(**NEW_YORK, method="median", bands=["red"], output=str(tmp_path), **extra)
        report = run_composite(spec, samples.settings, workers=1)
        cogs = report["outputs"]["cogs"][report["steps"][0]["label"]]
        return read(cogs["clear_count"])[0], report

    plain, _ = counts(output_collection="ny-plain")
    whole, one = counts(mask_cleanup="1,2", output_collection="ny-clean-1")
    tiled, many = counts(mask_cleanup="1,2", tile_size=48, output_collection="ny-clean-9")
    assert one["grid"]["tiles"] == 1 and many["grid"]["tiles"] >= 6
    assert np.array_equal(whole, tiled)
    # the opening clears cloud specks (a few counts go up), the dilation grows clouds (most go down)
    assert not np.array_equal(whole, plain) and whole.sum() < plain.sum()
    grown, _ = counts(mask_cleanup="0,2", output_collection="ny-dilate")
    assert (grown <= plain).all() and grown.sum() < plain.sum()  # dilation alone only removes
    assert sum(s["clear_pixels"] for s in many["scenes"]) == sum(s["clear_pixels"] for s in one["scenes"])


def test_cli_percentile_with_mask_cleanup(cli, samples, tmp_path):
    out = cli("composite", "--collection", SLOVENIA["collections"][0], "--bbox", SLOVENIA["bbox"],
              "--datetime", SLOVENIA["datetime"], "--method", "p75", "--bands", "red",
              "--mask-cleanup", "1,1", "--output", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["parameters"]["method"] == "p75" and report["parameters"]["mask_cleanup"] == [1, 1]
    bad = cli("composite", "--collection", SLOVENIA["collections"][0], "--bbox", SLOVENIA["bbox"],
              "--datetime", SLOVENIA["datetime"], "--method", "median", "--mask-cleanup", "two")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "mask-cleanup" in bad.stderr
