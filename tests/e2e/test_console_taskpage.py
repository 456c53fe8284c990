"""The console's task page and process form in a real browser against a real server.

A composite job whose area reaches past the sample scenes (so part of its output has no data):
its page shows the scene and pixel counts of the job document, a filled preview whose no-data
pixels are magenta where the COG has none, and downloads of a COG and of a region as NetCDF
(the same values as the COG over that region). A registered process (``e2e-band-mean``, see
conftest): its form is generated from its parameter schema, submits, and its job page shows the
output as a map layer with a legend. Screenshots at 1400x900 and 1024x768 without a horizontal
scroll bar.
"""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request

import numpy as np
import pytest

from console_helpers import CHROMIUM, finished_job, http_get, painted_pixels

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: the console's browser tests need Debian's chromium "
                "(apt-get install chromium, or run scripts/build-console.sh as root)",
                allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

S2 = "sentinel-2-l1c-eolearn-sample"
#: the Slovenia sample's area, reaching ~700 m further west than its scenes
PAST_THE_SCENES = [14.5420, 45.8659, 14.5642, 45.8750]
REGION = [14.5530, 45.8680, 14.5600, 45.8720]
MAGENTA = (255, 0, 255)


def post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def wait_job(server: str, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = json.loads(http_get(f"{server}/jobs/{job_id}")[1])
        if job["state"] not in ("queued", "running"):
            assert job["state"] == "completed", job.get("error")
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s")


def fits_the_window(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def screenshots(page, artifacts_dir, name: str):
    """Full-page screenshots at 1400x900 and 1024x768; no horizontal scrolling at either."""
    for width, height in ((1400, 900), (1024, 768)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)
        assert fits_the_window(page), f"{name} scrolls sideways at {width}x{height}"
        page.screenshot(path=str(artifacts_dir / f"{name}-{width}x{height}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})


@pytest.fixture(scope="module", autouse=True)
def own_collections(server, e2e_catalog):
    """The output collections this module's jobs make, dropped afterwards (the other console
    tests count the catalog's collections)."""
    before = {c["id"] for c in json.loads(http_get(f"{server}/stac/collections?limit=100")[1])["collections"]}
    yield
    after = {c["id"] for c in json.loads(http_get(f"{server}/stac/collections?limit=100")[1])["collections"]}
    for cid in after - before:
        e2e_catalog.delete_collection(cid)


@pytest.fixture(scope="module")
def composite(server):
    """A completed median composite of red and NIR over an area partly outside the scenes."""
    job = post_json(f"{server}/jobs", {"collections": [S2], "bbox": PAST_THE_SCENES, "datetime": "2015-07-01/2015-09-30",
                                       "method": "median", "bands": ["red", "nir"], "output_collection": "e2e-taskpage"})
    return wait_job(server, job["id"])


def test_task_page_counts_preview_and_downloads(page, server, composite, artifacts_dir):
    import rasterio
    import xarray as xr
    from PIL import Image

    job = composite
    page.goto(f"/#/tasks/{job['id']}")
    expect(page.locator("#task-status [data-state]")).to_have_attribute("data-state", "completed", timeout=60_000)

    # scene and pixel counts, as the job document gives them
    summary = job["summary"]
    box = page.locator("#task-summary")
    expect(box).to_have_attribute("data-scenes", str(summary["scenes"]))
    assert box.get_attribute("data-scenes-used") == str(summary["scenes_used"])
    assert box.get_attribute("data-pixels") == str(summary["pixels"]) and summary["pixels"] > 0
    expect(box).to_contain_text(f"{summary['scenes_used']} used of {summary['scenes']} over the area and dates")
    expect(box).to_contain_text(f"{summary['pixels']:,} per variable and period")

    # the COG download
    label = job["report"]["steps"][0]["label"]
    cog_link = page.locator("#cogs-table tr", has_text="nir").locator("a").first
    status, tif, _ = http_get(cog_link.get_attribute("href"))
    assert status == 200 and tif[:4] in (b"II*\x00", b"MM\x00*")
    with rasterio.MemoryFile(tif) as mem, mem.open() as src:
        cog = src.read(1)
        transform, crs = src.transform, src.crs
    nodata = ~np.isfinite(cog)
    assert nodata.any() and not nodata.all(), "the area should reach past the scenes"

    # the filled preview: loaded, magenta where the COG has no data, coloured elsewhere
    page.select_option("#preview-period", label)
    page.select_option("#preview-variable", "nir")
    img = page.locator("#filled-preview")
    expect(img).to_have_attribute("src", re.compile(r"variable=nir"))
    page.wait_for_function("() => { const i = document.querySelector('#filled-preview');"
                           " return i.complete && i.naturalWidth > 0 && i.src.includes('variable=nir'); }")
    status, png_bytes, headers = http_get(img.evaluate("i => i.src"))
    assert status == 200 and headers["content-type"] == "image/png"
    png = np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"))
    rows = ((np.arange(png.shape[0]) + 0.5) * cog.shape[0] / png.shape[0]).astype(int)
    cols = ((np.arange(png.shape[1]) + 0.5) * cog.shape[1] / png.shape[1]).astype(int)
    under = nodata[np.ix_(rows, cols)]
    magenta = (png == MAGENTA).all(axis=-1)
    assert (magenta == under).mean() > 0.98, "magenta exactly where the COG has no data"
    assert png[~magenta].std() > 5
    shot = np.asarray(Image.open(io.BytesIO(img.screenshot())).convert("RGB")).astype(int)
    assert (np.abs(shot - MAGENTA).sum(axis=-1) < 30).mean() == pytest.approx(under.mean(), abs=0.05)
    expect(page.locator("#preview figcaption")).to_contain_text("no data")

    # a region as NetCDF: the COG's values over the same bbox
    page.fill("#area-bbox", ",".join(map(str, REGION)))
    page.locator("#area-bbox").dispatch_event("change")
    link = page.locator("#region-download")
    expect(link).to_have_attribute("href", re.compile(r"region\.nc\?bbox=14\.553"))
    expect(page.locator("#region-size")).to_contain_text("px per variable and period")
    status, nc, headers = http_get(link.get_attribute("href"))
    assert status == 200, nc[:300]
    assert headers["content-type"] == "application/x-netcdf"
    ds = xr.open_dataset(io.BytesIO(nc), decode_coords="all")
    assert set(ds.data_vars) == set(job["report"]["variables"]) and ds.sizes["time"] == len(job["report"]["steps"])
    r, c = rasterio.transform.rowcol(transform, *np.meshgrid(ds.x.values, ds.y.values))
    np.testing.assert_array_equal(ds.nir.values[0], cog[np.asarray(r), np.asarray(c)].reshape(ds.nir.shape[1:]))
    assert ds.rio.crs == crs and 0 < ds.sizes["x"] * ds.sizes["y"] < cog.size
    # a region the outputs do not cover answers a JSON reason
    status, body, _ = http_get(f"{server}/jobs/{job['id']}/region.nc?bbox=0,0,1,1")
    assert status == 422 and "does not meet" in json.loads(body)["description"]

    screenshots(page, artifacts_dir, "console-task-page")


def test_process_form_submits_and_the_job_shows_a_layer_with_a_legend(page, server, artifacts_dir):
    page.goto("/#/processes")
    row = page.locator('#processes-table tr[data-process="e2e-band-mean"]')
    expect(row).to_contain_text("Scaled mean of the clear values of a band over the period.")
    expect(row).to_contain_text("band, offset, scale, min_count, invert, label, tags")
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r"#/processes/e2e-band-mean"))

    # the form, from the schema alone: kinds, defaults, descriptions, the required field
    form = page.locator("#process-form")
    expect(form).to_be_visible()
    assert page.locator("#param-band").evaluate("s => [...s.options].map(o => o.textContent)") == ["red", "nir"]
    expect(page.locator("#param-band")).to_have_value('"nir"')
    expect(page.locator("#param-scale")).to_have_value("1")
    assert page.locator("#param-scale").get_attribute("max") == "100"
    assert page.locator("#param-min_count").get_attribute("step") == "1"
    expect(page.locator("#param-invert")).not_to_be_checked()
    expect(page.locator("#param-label")).to_have_value("mean")
    expect(page.locator('label[for="param-offset"]')).to_have_text("Offset (required)")
    expect(page.locator("#param-scale-hint")).to_have_text("Multiplies the mean.")
    expect(page.locator("#param-tags-hint")).to_contain_text("Comma-separated")

    # the common inputs
    page.check(f'#process-form input[name="process-collections"][value="{S2}"]')
    page.click("#use-extent")
    expect(page.locator("#area-bbox")).not_to_have_value("")
    for band in ("red", "nir"):  # none ticked at first: the process would choose
        page.check(f'#process-bands input[value="{band}"]')
    page.fill("#process-from", "2015-07-01")
    page.fill("#process-to", "2015-09-30")

    # a missing required parameter is refused in the form
    page.click("#process-submit")
    expect(page.locator("#process-error")).to_contain_text("offset: required")
    page.fill("#param-offset", "0.5")
    page.fill("#param-scale", "2")
    page.fill("#param-tags", "a, b")
    page.select_option("#param-band", '"red"')
    screenshots(page, artifacts_dir, "console-process-form")
    tiles = []
    page.on("response", lambda r: tiles.append(r) if "assets=band_mean" in r.url and "/tiles/" in r.url else None)

    def tile_bodies():
        return [http_get(r.url)[1] for r in list(tiles) if r.status == 200]

    page.click("#process-submit")
    job_id = finished_job(page, 240_000)
    job = json.loads(http_get(f"{server}/jobs/{job_id}")[1])
    assert job["parameters"]["process_name"] == "e2e-band-mean"
    assert job["parameters"]["parameters"] == {"band": "red", "offset": 0.5, "scale": 2.0, "min_count": 1,
                                               "invert": False, "label": "mean", "tags": ["a", "b"]}
    assert set(job["parameters"]["bands"]) == {"red", "nir"}
    expect(page.locator("#task-process-parameters")).to_contain_text('"band":"red"')
    assert json.loads(page.locator("#task-process-parameters").inner_text()) == job["parameters"]["parameters"]

    # the output as a map layer, coloured over its value range, with its legend
    stats = json.loads(http_get(f"{server}/raster/collections/{job['collection']}/items/{job['items'][0]}"
                                "/statistics?assets=band_mean")[1])
    band = stats
    while isinstance(band, dict) and "percentile_2" not in band:  # {asset: {band: statistics}}
        band = next(iter(band.values()), None)
    assert band, stats
    rescale = page.locator("#result-rescale")
    expect(rescale).not_to_have_value("")
    lo, hi = (float(v) for v in rescale.input_value().split(","))
    assert lo == pytest.approx(band["percentile_2"], rel=1e-3) and hi == pytest.approx(band["percentile_98"], rel=1e-3)
    assert 0.5 < lo < hi  # 2 x mean red reflectance + 0.5
    expect(page.locator("#result-colormap")).to_have_value("viridis")
    legend = page.locator("#task-result figure.legend")
    expect(legend).to_be_visible()
    expect(legend.locator("img")).to_have_attribute("src", re.compile(r"/colorMaps/viridis\?f=png"))
    page.wait_for_function("() => { const i = document.querySelector('#task-result figure.legend img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    caption = legend.locator("figcaption").inner_text()
    assert caption.split() == rescale.input_value().split(",")
    url = page.locator("#result-url").input_value()
    assert "assets=band_mean" in url and "colormap_name=viridis" in url
    deadline = time.monotonic() + 45
    while not any(painted_pixels(body)[0] > 0 for body in tile_bodies()) and time.monotonic() < deadline:
        page.wait_for_timeout(300)
    assert any(painted_pixels(body)[0] > 0 for body in tile_bodies()), "no painted tile of the process output"
    page.wait_for_timeout(1000)
    screenshots(page, artifacts_dir, "console-process-task")
