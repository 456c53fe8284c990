"""The console's cube builder and cube page in a real browser against a real server.

A small cube of the Sentinel-2 sample is built from the form (area drawn on the map, chunk size
shown as it is typed, the configuration shown and downloaded as ODC ingestion YAML), filled on
demand by the tiles the page shows; another is made from an Open Data Cube ingestion
configuration (int16 / -999 measurements) and filled at once. Both pages show a layer that
follows the time slider, the filled parts of the cube and a time series where the map is clicked.
A cube filled at once is filled by a job: the builder links to its task, the job is listed in
Tasks with its own task page, and the cube's page opens when the job has completed.
"""

from __future__ import annotations

import time

import pytest
import yaml

from console_helpers import CHROMIUM, http_get
from stacube_testing import ROOT

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: the console's browser tests need Debian's chromium",
                allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402
from test_console import S2, Tiles, drag_box, map_call, wait_map_idle  # noqa: E402

ODC_CONFIG = ROOT / "tests" / "data" / "odc" / "landsat8_ny_conus_albers_int16.yaml"
SIZES = [(1400, 900), (1024, 768)]


def shots(page, artifacts_dir, stem: str) -> None:
    """Screenshots at both sizes; the page never scrolls sideways."""
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (stem, width)
        page.screenshot(path=str(artifacts_dir / f"console-{stem}-{width}x{height}.png"))
    page.set_viewport_size({"width": 1400, "height": 900})


def click_in_cube(page, cube: dict) -> None:
    """Click the map at the centre of the cube's extent."""
    west, south, east, north = cube["bbox"]
    centre = [(west + east) / 2, (south + north) / 2]
    xy = map_call(page, f"const p = map.project({centre}); return [p.x, p.y];")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + xy[0], box["y"] + xy[1])


def check_cube_page(page, server: str, name: str, layer_part: str) -> dict:
    """The slider changes the layer, a click gives a chart; returns the cube's description."""
    tiles = Tiles(page, f"/cubes/{name}/tiles/")
    expect(page.locator("#cube-time")).to_be_visible()
    wait_map_idle(page)
    cube = yaml.safe_load(http_get(f"{server}/cubes/{name}")[1])
    last = len(cube["time"]) - 1
    first_url, _, _ = tiles.painted(lambda u: f"time_index={last}&" in u and layer_part in u, timeout=120)
    # the slider: another date, another layer
    label = page.locator("#cube-time-label").inner_text()
    page.locator("#cube-time").fill("0")
    expect(page.locator("#cube-time-label")).not_to_have_text(label)
    assert cube["time"][0][:10] in page.locator("#cube-time-label").inner_text()
    deadline = time.monotonic() + 120
    while not any("time_index=0&" in r.url and r.status == 200 for r in tiles.responses):
        assert time.monotonic() < deadline, "no tile of the first date"
        page.wait_for_timeout(200)
    assert map_call(page, "return map.getSource('cube-layer').tiles[0];").find("time_index=0&") > 0
    # a click charts the time series there
    click_in_cube(page, cube)
    expect(page.locator("#timeseries-chart")).to_be_visible(timeout=120_000)
    expect(page.locator("#timeseries-table tbody tr")).to_have_count(len(cube["time"]))
    return cube


def open_builder(page, name: str) -> list[float]:
    """The cube builder with the Sentinel-2 sample chosen, ``name`` typed and an area drawn;
    returns the drawn bbox."""
    page.goto("/#/cubes/new")
    page.check(f'#cube-form input[name="cube-collections"][value="{S2}"]')
    page.fill("#cube-name", name)
    expect(page.locator("#cube-from")).not_to_have_value("")
    wait_map_idle(page)
    return drag_box(page, 120, 90)


def test_build_a_cube_from_the_form_filled_on_demand(page, server, artifacts_dir):
    bbox = open_builder(page, "e2e-s2")
    assert bbox[0] < 14.558 < bbox[2] and bbox[1] < 45.870 < bbox[3]
    page.check('#cube-indices input[value="NDVI"]')
    # the chunk size follows what is typed
    expect(page.locator("#cube-chunk-size")).to_contain_text("2.00 MiB")
    page.fill("#cube-chunk", "64")
    expect(page.locator("#cube-chunk-size")).to_contain_text("0.50 MiB")
    page.fill("#cube-time-chunk", "4")
    expect(page.locator("#cube-chunk-size")).to_contain_text("0.06 MiB")
    page.fill("#cube-tile-size", "128")
    page.select_option("#cube-dtype", "int16")
    expect(page.locator("#cube-chunk-size")).to_contain_text("0.03 MiB")
    page.select_option("#cube-dtype", "float32")
    config = yaml.safe_load(page.locator("#cube-config").inner_text())
    assert config["name"] == "e2e-s2" and config["collections"] == [S2] and config["fill"] == "on_demand"
    assert config["indices"] == ["NDVI"] and config["chunk"] == 64 and config["time_chunk"] == 4
    with page.expect_download() as download:
        page.click("#cube-yaml")
    odc = yaml.safe_load(open(download.value.path()).read())
    assert odc["source_type"] == S2 and odc["output_type"] == "e2e-s2"
    assert odc["storage"]["chunking"] == {"x": 64, "y": 64, "time": 4}
    shots(page, artifacts_dir, "cube-builder")
    page.click("#cube-submit")
    page.wait_for_url("**/#/cubes/e2e-s2")
    before = yaml.safe_load(http_get(f"{server}/cubes/e2e-s2/filled")[1])
    assert before["features"] == [] or all(f["properties"]["state"] != "done" for f in before["features"])
    cube = check_cube_page(page, server, "e2e-s2", "variables=red,green,blue")
    # the tiles filled the parts they show: drawn on the map, listed by the API
    expect(page.locator("#cube-filled-count")).not_to_have_text("0", timeout=30_000)
    assert map_call(page, "return !!map.getLayer('cube-filled-fill');")
    filled = yaml.safe_load(http_get(f"{server}/cubes/e2e-s2/filled")[1])
    assert any(f["properties"]["state"] == "done" for f in filled["features"])
    assert cube["fill"]["units"] > 0
    shots(page, artifacts_dir, "cube-on-demand")


def test_a_cube_from_an_odc_ingestion_configuration(page, server, artifacts_dir):
    page.goto("/#/cubes/new")
    page.fill("#odc-yaml", ODC_CONFIG.read_text())
    page.fill("#odc-name", "e2e-ls8-int16")
    page.fill("#odc-datetime", "2018-03-01/2018-06-30")
    page.select_option("#odc-fill", "now")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/cubes/")) as created:
        page.click("#odc-submit")
    assert created.value.status == 201 and created.value.json()["job"]["kind"] == "cube"
    # the builder follows the fill job and opens the cube once it is filled
    page.wait_for_url("**/#/cubes/e2e-ls8-int16", timeout=240_000)
    expect(page.locator("#cube-fill")).to_contain_text("8 of 8 fill units computed", timeout=30_000)
    cube = check_cube_page(page, server, "e2e-ls8-int16", "variables=blue")
    assert cube["grid"]["name"] == "epsg:5070/3000" and cube["shape"] == [6, 128, 128]
    expect(page.locator("#cube-filled-count")).to_have_text("8", timeout=30_000)
    exported = yaml.safe_load(http_get(f"{server}/cubes/e2e-ls8-int16/ingestion-config")[1])
    assert {(m["dtype"], m["nodata"]) for m in exported["measurements"]} == {("int16", -999)}
    shots(page, artifacts_dir, "cube-odc")


def test_a_cube_filled_now_is_a_task_and_opens_when_done(page, server, artifacts_dir):
    open_builder(page, "e2e-s2-now")
    page.fill("#cube-chunk", "64")
    page.fill("#cube-time-chunk", "4")
    page.fill("#cube-tile-size", "128")
    page.check("#cube-fill-now")
    assert yaml.safe_load(page.locator("#cube-config").inner_text())["fill"] == "now"
    # the link to the job's task, however short the fill (the page moves on when it is done)
    page.evaluate("""() => { window.__jobLinks = []; new MutationObserver(() => {
        const a = document.querySelector('#cube-job-link');
        if (a && !window.__jobLinks.includes(a.getAttribute('href'))) window.__jobLinks.push(a.getAttribute('href'));
      }).observe(document.body, { childList: true, subtree: true }); }""")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/cubes/")) as created:
        page.click("#cube-submit")
    assert created.value.status == 201, created.value.text()
    job_id = created.value.json()["job"]["id"]
    page.wait_for_url("**/#/cubes/e2e-s2-now", timeout=240_000)
    assert page.evaluate("window.__jobLinks || []") == [f"#/tasks/{job_id}"]
    cube = yaml.safe_load(http_get(f"{server}/cubes/e2e-s2-now")[1])
    units = cube["fill"]["units"]
    assert units > 0 and cube["fill"]["done"] == units
    expect(page.locator("#cube-fill")).to_contain_text(f"{units} of {units} fill units computed")
    # Tasks lists the fill, done, with the cube to open
    page.goto("/#/tasks")
    row = page.locator(f'#tasks-table tr[data-job="{job_id}"]')
    expect(row).to_have_attribute("data-state", "completed")
    expect(row).to_contain_text("cube fill: e2e-s2-now")
    expect(row.get_by_role("link", name="Open cube e2e-s2-now")).to_have_attribute("href", "#/cubes/e2e-s2-now")
    # its task page: state, the units filled, the cube; no composite section, no console error
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    row.get_by_role("link", name=job_id).click()
    page.wait_for_url(f"**/#/tasks/{job_id}")
    expect(page.locator("#task-status [data-state]")).to_have_attribute("data-state", "completed")
    expect(page.locator("#task-cube")).to_have_attribute("href", "#/cubes/e2e-s2-now")
    expect(page.locator("#task-cube-result")).to_contain_text(f"{units} (")
    expect(page.locator("main")).to_contain_text("Fill the whole cube")
    assert page.locator("main .error").count() == 0
    assert page.locator("#scenes-table, #downloads, #preview").count() == 0
    shots(page, artifacts_dir, "cube-task")
    assert console_errors == []
    page.click("#task-open-cube")
    page.wait_for_url("**/#/cubes/e2e-s2-now")
    expect(page.locator("#cube-fill")).to_contain_text(f"{units} of {units} fill units computed")
