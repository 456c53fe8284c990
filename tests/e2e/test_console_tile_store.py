"""The console's map in a real browser on two servers one after the other (a restart, or a second
process) sharing a tile store: the second paints the collection's mosaic from the tiles the first
rendered, without rendering them again."""

from __future__ import annotations

import pytest

from console_helpers import CHROMIUM, E2E_DATABASE, Tiles, console_page, serving

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: the console's browser tests need Debian's chromium "
                "(apt-get install chromium, or run scripts/build-console.sh as root)",
                allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

S2 = "sentinel-2-l1c-eolearn-sample"


def mosaic_tiles(browser, base: str, artifacts_dir, request, name: str) -> dict[str, str]:
    """``{tile URL path: X-Tile-Cache of its first answer}`` of the mosaic tiles the collection's page drew with the
    imagery basemap (one painted at least)."""
    with console_page(browser, base, artifacts_dir, request, name=name) as page:
        tiles = Tiles(page, f"/raster/collections/{S2}/tiles/WebMercatorQuad/")
        page.goto(f"/#/collections/{S2}")
        expect(page.locator("#time-slider")).to_be_visible()
        page.select_option("#basemap", "imagery")  # the catalog's true colour: the mosaic's tiles
        tiles.painted(lambda u: "assets=" not in u)
        page.wait_for_timeout(1000)  # the other tiles of the view
        first: dict[str, str] = {}  # the first answer of each tile
        for r in tiles.responses:
            if r.status == 200:
                first.setdefault(r.url.split("/raster", 1)[1], r.headers.get("x-tile-cache", ""))
        return first


def test_a_restarted_server_paints_the_mosaic_from_the_store(e2e_catalog, console_bundle, browser, artifacts_dir,
                                                          request, tmp_path):
    env = {"STACUBE_TILE_STORE": str(tmp_path / "tiles"), "STACUBE_TILE_STORE_MAX_ZOOM": "22",
           "STACUBE_TILE_CACHE_SIZE": "0"}  # no memory: every answer is the store's or rendered
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
    with serving(E2E_DATABASE, tmp_path / "first", env) as base:
        first = mosaic_tiles(browser, base, artifacts_dir, request, "-first")
    with serving(E2E_DATABASE, tmp_path / "second", env) as base:
        second = mosaic_tiles(browser, base, artifacts_dir, request, "-second")
    assert first and set(first.values()) == {"miss"}, first
    again = {path: state for path, state in second.items() if path in first}
    assert again and set(again.values()) == {"hit"}, second
