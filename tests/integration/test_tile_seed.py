"""``stacube tiles seed``: the low-zoom tiles of a collection rendered into the tile store as a
server would store them, then served from it by a new raster API process; bad input is one line."""

from __future__ import annotations

import pytest

S2 = "sentinel-2-l1c-eolearn-sample"
TEMPLATE = f"/raster/collections/{S2}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?assets=B04&rescale=0,3000"


def entries(store) -> list:
    return sorted(p for p in store.rglob("*") if p.is_file())


def test_seeded_tiles_are_served_by_a_new_process(samples, cli, tmp_path):
    from fastapi.testclient import TestClient

    from stacube.settings import Settings
    from stacube_services.app import create_app

    store = tmp_path / "tiles"
    env = {"STACUBE_TILE_STORE": str(store), "STACUBE_TILE_STORE_MAX_ZOOM": "12"}
    seeded = cli("tiles", "seed", TEMPLATE, "--min-zoom", "9", env=env)
    assert seeded.returncode == 0, seeded.stderr
    # the sample covers one tile per zoom level: 9, 10, 11 and 12
    assert f"4 tiles of zooms 9-12 in {store} (4 rendered, 0 there already" in seeded.stdout
    stored = entries(store)
    assert [p.relative_to(store).parts[0] for p in stored] == ["10", "11", "12", "9"]
    again = cli("tiles", "seed", TEMPLATE, "--min-zoom", "9", env=env)  # safe to run again
    assert "(0 rendered, 4 there already" in again.stdout and entries(store) == stored

    import morecantile

    tile = morecantile.tms.get("WebMercatorQuad").tile(14.556, 45.87, 11)
    url = TEMPLATE.replace("{z}/{x}/{y}", f"11/{tile.x}/{tile.y}")
    with TestClient(create_app(Settings(tile_store=str(store), tile_store_max_zoom=12))) as served, \
            TestClient(create_app(Settings(tile_cache_size=0, tile_store=None))) as plain:
        from_store = served.get(url)
        rendered = plain.get(url)
    assert from_store.status_code == rendered.status_code == 200
    assert from_store.headers["x-tile-cache"] == "hit" and "x-tile-cache" not in rendered.headers
    assert from_store.content == rendered.content and from_store.headers["content-type"] == "image/png"


def test_searches_items_and_masked_mosaics_seed_too(samples, cli, tmp_path):
    from fastapi.testclient import TestClient

    from stacube.settings import Settings
    from stacube_services.app import create_app

    with TestClient(create_app(Settings(tile_store=None))) as client:
        search = client.post("/raster/searches/register", json={"collections": [S2]}).json()["id"]
    item = next(iter(samples.search({"collections": [S2], "limit": 1})))["id"]
    store = tmp_path / "tiles"
    env = {"STACUBE_TILE_STORE": str(store), "STACUBE_TILE_STORE_MAX_ZOOM": "11"}
    query = "?assets=B04&rescale=0,3000"
    routes = {"search": f"searches/{search}/tiles", "item": f"collections/{S2}/items/{item}/tiles",
              "masked": f"collections/{S2}/masked/tiles"}
    for name, route in routes.items():
        template = f"/raster/{route}/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png{query}"
        # a bbox wider than the sample: the tiles no item meets are skipped, not stored
        seeded = cli("tiles", "seed", template, "--min-zoom", "10", "--bbox", "14.50,45.85,14.62,45.89", env=env)
        assert seeded.returncode == 0, (name, seeded.stderr)
        assert "without items skipped" in seeded.stdout and " 0 rendered" not in seeded.stdout, (name, seeded.stdout)
    assert {p.relative_to(store).parts[0] for p in entries(store)} == {"10", "11"}


@pytest.mark.parametrize("args, env, message", [
    ((TEMPLATE,), {}, "STACUBE_TILE_STORE is not set"),
    ((TEMPLATE, "--max-zoom", "9"), {"STACUBE_TILE_STORE_MAX_ZOOM": "8"}, "reads tiles up to zoom 8"),
    ((TEMPLATE.replace(".png", ""),), {}, "is not a tile URL template"),
    ((TEMPLATE.replace("WebMercatorQuad", "NoSuchGrid"),), {}, "unknown tile matrix set 'NoSuchGrid'"),
    ((TEMPLATE.replace(S2, "no-such-collection"),), {}, "no-such-collection"),
    ((TEMPLATE.replace(f"collections/{S2}", "searches/0123abc"),), {}, "give --bbox"),
    ((TEMPLATE.replace(f"collections/{S2}", "searches/0123abc"), "--bbox", "14,45,15,46"), {}, "SearchId `0123abc` not found"),
    ((TEMPLATE.replace("/tiles", "/items/no-such-item/tiles"), "--bbox", "14,45,15,46"), {}, "No item 'no-such-item'"),
    ((TEMPLATE, "--bbox", "-180,-85,180,85"), {}, "more than 10000 tiles"),
    ((TEMPLATE, "--bbox", "10,50,20"), {}, "expected 4 numbers"),
    ((TEMPLATE.replace("B04", "B99"), "--max-zoom", "2"), {}, "seeding stopped: tile"),
    ((TEMPLATE, "--min-zoom", "8", "--max-zoom", "3"), {}, "--min-zoom 8 is above --max-zoom 3"),
])
def test_bad_input_is_one_line(samples, cli, tmp_path, args, env, message):
    store = tmp_path / "tiles"
    answer = cli("tiles", "seed", *args, env={"STACUBE_TILE_STORE": str(store), **env}
                 if "STACUBE_TILE_STORE is not set" not in message else {"STACUBE_TILE_STORE": ""})
    assert answer.returncode != 0
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in answer.stderr, answer.stderr
    assert not store.exists() or not entries(store)
