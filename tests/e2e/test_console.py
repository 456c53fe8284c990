"""The web console in a real browser against a real server on the sample catalog.

Each test drives the console as a user would (clicks, drags on the map, forms) and checks what
it shows against the APIs: the holdings, a bbox search, item previews (tile pixels), the time
slider, a mosaic job submitted from the form (its layer's tiles and its per-scene table against
the job report), the task list and cancellation, and accessibility basics.
"""

from __future__ import annotations

import json
import re

import pytest

from console_helpers import CHROMIUM, Tiles, finished_job, http_get

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: the console's browser tests need Debian's chromium "
                "(apt-get install chromium, or run scripts/build-console.sh as root)",
                allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

S2 = "sentinel-2-l1c-eolearn-sample"
L8 = "landsat-8-c1-l1tp-gdalcubes-sample"
WC_S2 = "sentinel-2-l2a-worldcereal-sample"
WC_L8 = "landsat-8-l2-worldcereal-sample"
SAMPLES = {S2, L8, WC_S2, WC_L8}
S2_ITEM = "S2_L1C_20150711T100008"
SLOVENIA_CENTRE = [14.5578, 45.8705]


def map_call(page, js: str):
    return page.evaluate(f"() => {{ const map = window.stacubeConsole.map; {js} }}")


def wait_map_idle(page):
    page.wait_for_function("() => window.stacubeConsole && window.stacubeConsole.map.loaded()")


def drag_box(page, dx: int = 220, dy: int = 160):
    """Press "Draw on map" and drag a box around the centre of the map with the mouse."""
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.click("#draw-bbox")
    page.mouse.move(cx - dx, cy - dy)
    page.mouse.down()
    page.mouse.move(cx + dx / 2, cy + dy / 2, steps=4)
    page.mouse.move(cx + dx, cy + dy, steps=4)
    page.mouse.up()
    return [float(v) for v in page.input_value("#area-bbox").split(",")]


def test_holdings_map_shows_the_sample_collections(page, artifacts_dir):
    page.goto("/")
    cards = page.locator("#holdings-cards li.card")
    expect(cards.first).to_be_visible()
    ids = set(cards.evaluate_all("els => els.map(e => e.dataset.collection)"))
    assert SAMPLES <= ids
    # item counts come from the STAC API
    expect(page.locator(f'.item-count[data-collection="{S2}"]')).to_have_text("5 items")
    expect(page.locator(f'.item-count[data-collection="{L8}"]')).to_have_text("19 items")
    expect(page.locator(f'li.card[data-collection="{L8}"]')).to_contain_text("2018-01-06 – 2018-12-17")
    expect(page.locator(f'li.card[data-collection="{L8}"]')).to_contain_text("landsat-8")
    # every extent is on the map
    on_map = map_call(page, "return map.getSource('extents').serialize().data.features"
                            ".map(f => f.properties.id);")
    assert SAMPLES <= set(on_map)
    wait_map_idle(page)
    # the New York extent is drawn: its fill tints the map inside, not outside
    map_call(page, "map.jumpTo({center: [-75, 41], zoom: 5});")
    wait_map_idle(page)
    page.wait_for_timeout(300)
    inside = map_call(page, "const p = map.project([-73.3, 40.9]); return [p.x, p.y];")
    outside = map_call(page, "const p = map.project([-78.3, 40.9]); return [p.x, p.y];")
    shot = page.locator("#map").screenshot(path=str(artifacts_dir / "console-holdings.png"))
    from PIL import Image
    import io
    img = Image.open(io.BytesIO(shot)).convert("RGB")
    colour = lambda xy: img.getpixel((int(xy[0]), int(xy[1])))  # noqa: E731
    a, b = colour(inside), colour(outside)
    assert a[2] - a[0] > b[2] - b[0] + 10, (a, b)  # bluer inside the extent
    # filter by platform
    page.select_option("#filter-platform", "sentinel-2a")
    expect(page.locator("#holdings-count")).to_contain_text("3 of")  # S2 L1C, its NDVI, WorldCereal S2
    assert page.locator(f'li.card[data-collection="{L8}"]').is_hidden()
    page.select_option("#filter-platform", "")
    # a click on the extent opens the collection
    map_call(page, "map.jumpTo({center: [-73.3, 40.9], zoom: 6});")
    wait_map_idle(page)
    box = page.locator("#map").bounding_box()
    xy = map_call(page, "const p = map.project([-73.3, 40.9]); return [p.x, p.y];")
    page.mouse.click(box["x"] + xy[0], box["y"] + xy[1])
    expect(page).to_have_url(re.compile(rf"#/collections/{L8}$"))
    expect(page.locator("h1")).to_contain_text("Landsat 8")


def test_collections_table_is_searchable(page):
    page.goto("/#/collections")
    rows = page.locator("#collections-table tbody tr")
    expect(rows.first).to_be_visible()
    page.fill("#collections-filter", "worldcereal")
    visible = page.locator("#collections-table tbody tr:visible")
    expect(visible).to_have_count(2)
    assert set(visible.evaluate_all("els => els.map(e => e.dataset.collection)")) == {WC_S2, WC_L8}
    page.fill("#collections-filter", "swir22 sentinel-2a")
    expect(page.locator("#collections-count")).to_contain_text("of")
    shown = page.locator("#collections-table tbody tr:visible")
    assert S2 in shown.evaluate_all("els => els.map(e => e.dataset.collection)")
    page.click(f'#collections-table a[href="#/collections/{S2}"]')
    expect(page.locator("h1")).to_contain_text("Sentinel-2A")
    page.click("details.json summary")
    doc = json.loads(page.locator("details.json pre").inner_text())
    assert doc["id"] == S2 and "B04" in doc["item_assets"]


def test_bbox_drawn_on_the_map_finds_items(page, artifacts_dir):
    page.goto("/#/items")
    expect(page.locator("#items-form")).to_be_visible()
    wait_map_idle(page)
    map_call(page, f"map.jumpTo({{center: {SLOVENIA_CENTRE}, zoom: 14}});")
    bbox = drag_box(page)
    assert bbox[0] < SLOVENIA_CENTRE[0] < bbox[2] and bbox[1] < SLOVENIA_CENTRE[1] < bbox[3], bbox
    assert bbox[2] - bbox[0] < 0.1  # drawn at zoom 14: a small box
    page.click("#items-search")  # no collection checked: all collections
    rows = page.locator("#items-table tbody tr")
    expect(rows).to_have_count(5)
    assert set(rows.evaluate_all("els => els.map(e => e.dataset.collection)")) == {S2}
    assert "bbox=" in page.url
    footprints = map_call(page, "return map.getSource('footprints').serialize().data.features.length;")
    assert footprints == 5
    page.screenshot(path=str(artifacts_dir / "console-items-bbox.png"))
    # the same search with a cloud filter leaves the cloudy scenes out
    page.fill("#items-cloud", "10")
    page.click("#items-search")
    expect(rows).to_have_count(3)
    # a box over the ocean finds nothing
    page.fill("#items-cloud", "")
    map_call(page, "map.jumpTo({center: [-30, 30], zoom: 6});")
    drag_box(page)
    page.click("#items-search")
    expect(page.locator("#items-count")).to_have_text("No items match this search.")


def test_item_search_pages_through_next_links(page):
    page.goto(f"/#/items?collections={L8}&limit=10")
    rows = page.locator("#items-table tbody tr")
    expect(rows).to_have_count(10)
    first = rows.evaluate_all("els => els.map(e => e.dataset.item)")
    page.click("#items-next")
    expect(rows).to_have_count(9)
    second = rows.evaluate_all("els => els.map(e => e.dataset.item)")
    assert not set(first) & set(second)
    page.click("#items-prev")
    expect(rows).to_have_count(10)
    assert rows.evaluate_all("els => els.map(e => e.dataset.item)") == first


def test_item_preview_tiles_are_not_blank(page, artifacts_dir):
    tiles = Tiles(page, f"/items/{S2_ITEM}/tiles/")
    page.goto(f"/#/items/{S2}/{S2_ITEM}")
    expect(page.locator("h1")).to_have_text(S2_ITEM)
    url, n, std = tiles.painted(lambda u: "assets=B04" in u)
    assert "unscale=true" in url and "rescale=0%2C0.3" in url  # true colour from common names
    expect(page.locator("#preview-url")).to_have_value(re.compile(r"assets=B04&assets=B03&assets=B02"))
    # NDVI by name: green where vegetated (the rdylgn colormap)
    page.select_option("#preview-render", "index:NDVI")
    url, n, std = tiles.painted(lambda u: "index=NDVI" in u)
    import numpy as np
    from PIL import Image
    import io
    px = np.asarray(Image.open(io.BytesIO(http_get(url)[1])).convert("RGBA")).astype(int)
    painted = px[..., 3] > 0
    assert (px[painted][:, 1] > px[painted][:, 0]).mean() > 0.6
    expect(page.locator("#map-status")).to_contain_text("tiles loaded")
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "console-item-ndvi.png"))


def test_time_slider_shows_one_date_at_a_time(page, artifacts_dir):
    tiles = Tiles(page, "/searches/")
    page.goto(f"/#/collections/{L8}")
    expect(page.locator("#time-label")).to_contain_text("2018-01-06 (1 item)")
    url1, _, _ = tiles.painted()
    search1 = re.search(r"/searches/([^/]+)/", url1).group(1)
    page.focus("#time-slider")
    page.keyboard.press("End")
    expect(page.locator("#time-label")).to_contain_text("2018-12-17 (1 item)")
    url2, _, _ = tiles.painted(lambda u: f"/searches/{search1}/" not in u)
    search2 = re.search(r"/searches/([^/]+)/", url2).group(1)
    status, body, _ = http_get(url2.split("/searches/")[0] + f"/searches/{search2}/info")
    assert status == 200 and "2018-12-17" in body.decode()
    page.select_option("#time-by", "month")
    expect(page.locator("#time-label")).to_contain_text("2018-12")
    page.screenshot(path=str(artifacts_dir / "console-time-slider.png"))


def test_mosaic_job_from_the_form(page, server, artifacts_dir):
    page.goto(f"/#/mosaic?collections={S2}")
    expect(page.locator("#mosaic-form")).to_be_visible()
    page.click("#use-extent")
    expect(page.locator("#area-bbox")).not_to_have_value("")
    expect(page.locator("#mosaic-from")).to_have_value("2015-07-11")
    expect(page.locator("#mosaic-to")).to_have_value("2015-09-09")
    page.select_option("#mosaic-method", "median")
    page.fill("#mosaic-cloud", "50")
    for band in ("red", "green", "blue", "nir"):
        expect(page.locator(f'#mosaic-bands input[value="{band}"]')).to_be_checked()
    page.check('#mosaic-indices input[value="NDVI"]')
    page.click("#mosaic-submit")
    job_id = finished_job(page, 150_000)
    expect(page.locator("#task-status")).to_contain_text("Completed")

    status, body, _ = http_get(f"{server}/jobs/{job_id}")
    job = json.loads(body)
    assert job["state"] == "completed" and job["parameters"]["max_cloud"] == 50
    report = job["report"]

    # scene and pixel counts, as the job document gives them
    summary = job["summary"]
    shape = report["grid"]["shape"]
    assert summary["pixels"] == shape[0] * shape[1] and summary["scenes"] == len(report["scenes"]) == 5
    box = page.locator("#task-summary")
    expect(box).to_have_attribute("data-scenes-used", str(summary["scenes_used"]))
    assert box.get_attribute("data-pixels") == str(summary["pixels"])
    expect(box).to_contain_text(f"{summary['scenes_used']} used of 5 over the area and dates")
    expect(box).to_contain_text(f"{summary['pixels']:,} per variable and period ({shape[0]} × {shape[1]})")
    expect(box).to_contain_text(f"{summary['clear_observations']:,} clear pixels of the used scenes")
    expect(box).to_contain_text(f"{summary['cogs']} COGs: {summary['periods']} period(s)")
    box.screenshot(path=str(artifacts_dir / "console-task-summary.png"))

    # the per-scene table shows the report's numbers
    rows = page.locator("#scenes-table tbody tr")
    expect(rows).to_have_count(len(report["scenes"]))
    shown = rows.evaluate_all("""els => els.map(tr => ({
        item: tr.dataset.item,
        nums: [...tr.querySelectorAll('td.num')].map(td => [td.dataset.value, td.textContent]),
        used: tr.querySelector('[data-used]').dataset.used,
        usedText: tr.querySelector('[data-used]').textContent.trim(),
        reason: tr.lastElementChild.textContent.trim(),
    }))""")
    by_id = {s["item_id"]: s for s in report["scenes"]}
    assert {r["item"] for r in shown} == set(by_id)
    for row in shown:
        scene = by_id[row["item"]]
        (c, c_txt), (p, p_txt) = row["nums"]
        assert int(c) == scene["clear_pixels"]
        assert c_txt.replace(",", "") == f"{scene['clear_pixels']}of {scene['valid_pixels']} valid"
        assert float(p) == pytest.approx(scene["clear_percent"])
        assert float(p_txt) == pytest.approx(scene["clear_percent"], abs=0.051)
        assert row["used"] == ("true" if scene["used"] else "false")
        assert row["usedText"].endswith("used" if scene["used"] else "dropped")
        if not scene["used"]:
            assert row["reason"] == scene["reason"] and "max-cloud 50%" in row["reason"]
    assert sum(not s["used"] for s in report["scenes"]) == 2  # the two cloudy dates
    # clean %, used and reason are in view: the table does not scroll sideways
    assert page.evaluate("(() => { const w = document.querySelector('#scenes-table').parentElement;"
                         " return w.scrollWidth <= w.clientWidth; })()")

    # the result layer renders (true colour of the composite item)
    tiles = Tiles(page, f"/collections/{job['collection']}/items/")
    page.reload()  # record the layer's tiles from the start
    expect(page.locator("#result-render")).to_be_visible()
    url, n, std = tiles.painted(lambda u: "assets=red" in u)
    assert f"/items/{job['items'][0]}/" in url
    page.select_option("#result-render", "band:NDVI")
    tiles.painted(lambda u: "assets=NDVI" in u and "colormap_name=rdylgn" in u)
    page.locator("#result-opacity").fill("0.4")
    assert map_call(page, "return map.getPaintProperty('result', 'raster-opacity');") == pytest.approx(0.4)
    expect(page.locator('output[for="result-opacity"]')).to_have_text("40 %")

    # downloads: a COG per period and variable, the Zarr store and the report
    cogs = page.locator("#cogs-table a")
    n_cogs = sum(len(v) for v in job["downloads"]["cogs"].values())
    expect(cogs).to_have_count(n_cogs)
    status, tif, _ = http_get(cogs.first.get_attribute("href"))
    assert status == 200 and tif[:4] in (b"II*\x00", b"MM\x00*")
    status, rep, _ = http_get(page.locator('#downloads a:has-text("report.json")').get_attribute("href"))
    assert status == 200 and json.loads(rep)["scenes"] == report["scenes"]
    assert page.locator('#downloads a:has-text("cube.zarr")').get_attribute("href").endswith("cube.zarr")
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "console-mosaic-task.png"))
    page.locator("#scenes-table").screenshot(path=str(artifacts_dir / "console-mosaic-scenes.png"))


def test_accessibility_basics(page):
    unlabelled_js = """() => [...document.querySelectorAll('main input, main select, main button')]
        .filter(el => el.offsetParent !== null && el.type !== 'hidden')
        .filter(el => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                        || el.getAttribute('aria-labelledby')
                        || (el.tagName === 'BUTTON' && el.textContent.trim())))
        .map(el => el.outerHTML.slice(0, 120))"""
    page.goto("/#/tasks")
    routes = {"#/mosaic": "#mosaic-form", "#/items": "#items-form", "#/": "#holdings-cards",
              f"#/items/{S2}/{S2_ITEM}": "#preview-render", f"#/collections/{L8}": "#time-slider",
              "#/collections": "#collections-table"}
    for route, selector in routes.items():
        page.evaluate(f"location.hash = {json.dumps(route)}")
        page.wait_for_selector(selector)
        page.wait_for_timeout(300)
        assert page.evaluate(unlabelled_js) == [], route
    # keyboard: skip link first, then the navigation, with a visible focus ring
    page.goto("/#/collections")
    page.reload()  # a fresh document: focus starts at the top
    page.wait_for_selector("#collections-table")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Holdings"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Holdings")
    # focus follows the route
    page.wait_for_function("document.activeElement.tagName === 'H1'", timeout=10_000)


def test_tasks_list_and_cancel(page, server):
    from urllib.request import Request, urlopen

    # a job big enough to still be running when cancelled (60 m over the New York scenes)
    params = {"collections": [L8], "bbox": [-75.0, 39.6, -72.2, 41.3], "datetime": "2018-01-01/2018-12-31",
              "method": "median", "bands": ["red"], "crs": "EPSG:32618", "resolution": 60, "tile_size": 256}
    req = Request(f"{server}/jobs/", data=json.dumps(params).encode(),
                  headers={"Content-Type": "application/json"})
    with urlopen(req, timeout=30) as resp:
        job = json.loads(resp.read())
    page.goto("/#/tasks")
    row = page.locator(f'#tasks-table tr[data-job="{job["id"]}"]')
    expect(row).to_be_visible()
    # cancel once its worker runs it (a worker starting later would resume a job cancelled while queued)
    expect(row.locator("[data-state]")).to_have_attribute("data-state", "running", timeout=60_000)
    row.locator("button", has_text="Cancel").click()
    expect(row.locator(".state")).to_contain_text("Cancelled", timeout=30_000)
    assert json.loads(http_get(f"{server}/jobs/{job['id']}")[1])["state"] == "cancelled"
    # finished jobs are listed with their state as icon + text
    completed = page.locator('#tasks-table tr[data-state="completed"]')
    if completed.count():
        expect(completed.first.locator(".state .icon")).to_have_text("✔")
        expect(completed.first.locator(".state")).to_contain_text("Completed")


def test_scenes_without_a_clear_pixel_are_not_shown_as_used(page, server):
    """Without --max-cloud the two fully cloudy dates are kept by the job, but they give no clear
    pixel: the table says so instead of "used"."""
    from urllib.request import Request, urlopen

    params = {"collections": [S2], "bbox": [14.5514, 45.8659, 14.5642, 45.8750],
              "datetime": "2015-07-01/2015-09-30", "method": "median", "bands": ["red"]}
    req = Request(f"{server}/jobs/", data=json.dumps(params).encode(), headers={"Content-Type": "application/json"})
    with urlopen(req, timeout=30) as resp:
        job = json.loads(resp.read())
    page.goto(f"/#/tasks/{job['id']}")
    expect(page.locator("#scenes-table")).to_be_visible(timeout=150_000)
    report = json.loads(http_get(f"{server}/jobs/{job['id']}")[1])["report"]
    cloudy = [s["item_id"] for s in report["scenes"] if s["clear_pixels"] == 0]
    assert len(cloudy) == 2
    for item in cloudy:
        row = page.locator(f'#scenes-table tr[data-item="{item}"]')
        expect(row.locator("[data-used]")).to_have_attribute("data-used", "false")
        expect(row).to_contain_text("no clear pixel in the area")
    expect(page.locator("#scenes-table caption")).to_contain_text("3 used")


def test_tasks_table_fits_its_panel(page, server):
    page.goto("/#/tasks")
    expect(page.locator("#tasks-table")).to_be_visible()
    wrap = page.locator("#tasks-list .table-wrap")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth")
    panel = page.locator("main").bounding_box()
    for link in page.locator("#tasks-table td.actions a, #tasks-table td.actions button").all():
        box = link.bounding_box()
        assert box["x"] + box["width"] <= panel["x"] + panel["width"]


def test_collection_page_title_description_time_series_and_imagery(page, artifacts_dir):
    """An ODC product's title is its description: printed once, no "null". A click on the map
    charts the collection's NDVI there; the imagery basemap draws the catalog's true colour."""
    page.goto(f"/#/collections/{S2}")
    expect(page.locator("#time-slider")).to_be_visible()
    assert "null" not in page.locator("main").inner_text()
    assert page.locator("main p.lead").count() == 0
    map_box = page.locator("#map").bounding_box()
    page.wait_for_timeout(500)
    point = map_call(page, f"return map.project({json.dumps(SLOVENIA_CENTRE)});")
    page.mouse.click(map_box["x"] + point["x"], map_box["y"] + point["y"])
    chart = page.locator("#timeseries-chart")
    expect(chart).to_be_visible(timeout=60_000)
    expect(chart.locator("circle")).to_have_count(3)  # the three clear dates of the five
    expect(chart.locator("figcaption")).to_contain_text("NDVI")
    tiles = Tiles(page, f"/raster/collections/{S2}/tiles/WebMercatorQuad/")
    page.select_option("#basemap", "imagery")
    url, n, std = tiles.painted(lambda u: "assets=" not in u)  # the default rendering, server side
    assert n > 0 and std > 1
    page.screenshot(path=str(artifacts_dir / "console-collection-timeseries.png"))
