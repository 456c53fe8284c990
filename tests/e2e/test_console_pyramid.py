"""The console's item page shows a job's static tile pyramid (its ``xyz`` link) on the map."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from console_helpers import CHROMIUM, http_get, painted_pixels

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: the console's browser tests need Debian's chromium "
                "(apt-get install chromium, or run scripts/build-console.sh as root)",
                allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

S2 = "sentinel-2-l1c-eolearn-sample"


def test_the_item_page_shows_the_static_tiles(page, server, artifacts_dir):
    body = {"collections": [S2], "bbox": [14.5514, 45.8659, 14.5642, 45.8750], "datetime": "2015-07-01/2015-09-30",
            "method": "median", "bands": ["red", "green", "blue"], "pyramid": "12-15",
            "output_collection": "e2e-pyramid"}
    request = urllib.request.Request(f"{server}/jobs", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        job_id = json.loads(answer.read())["id"]
    deadline = time.monotonic() + 300
    while (job := json.loads(http_get(f"{server}/jobs/{job_id}")[1]))["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.5)
    assert job["state"] == "completed", job["error"]
    item = job["report"]["items"][0]
    tiles = []
    page.on("response", lambda r: tiles.append(r) if "/files/" in r.url and r.url.endswith(".png") else None)
    page.goto(f"/#/items/e2e-pyramid/{item}")
    expect(page.locator("#static-tiles-show")).to_be_checked(timeout=30_000)
    expect(page.locator("#static-tiles-url")).to_have_value(f"{server}/files/{job_id}/{job['report']['steps'][0]['label']}"
                                                            "/tiles/{z}/{x}/{y}.png")
    deadline = time.monotonic() + 45
    while not any(r.status == 200 and painted_pixels(r.body())[0] > 200 for r in list(tiles)):
        assert time.monotonic() < deadline, f"no static tile painted: {[(r.url, r.status) for r in tiles]}"
        page.wait_for_timeout(250)
    assert all(int(r.url.split("/tiles/")[1].split("/")[0]) <= 15 for r in tiles)  # no zoom past the pyramid's
    page.screenshot(path=str(artifacts_dir / "console-item-static-tiles.png"))
    page.uncheck("#static-tiles-show")
    expect(page.locator("#static-tiles-show")).not_to_be_checked()
