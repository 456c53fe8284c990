"""The tile store shared by the raster API's processes: a tile rendered by one process is served
by another (and after a restart), only to callers who may read it, never stale after a new item;
a store that fails leaves tiles rendered, not failed."""

from __future__ import annotations

import logging

import pytest
from access_testing import PRIVATE, PUBLIC, TILE, growing_collection

URL = f"/raster/collections/{{c}}/tiles/{TILE}.png?assets=B04&assets=B03&assets=B02&rescale=0,3000"
Z = int(TILE.split("/")[1])


def app_client(world, store, **update):
    """A TestClient of a new application (a new raster API process) on ``store``."""
    from fastapi.testclient import TestClient

    from stacube_services.app import create_app

    settings = world.settings.model_copy(update={"tile_cache_size": 128 * 2**20, "tile_store": str(store),
                                                 "tile_store_max_zoom": Z, **update})
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def growing(world, samples, settings):
    return growing_collection(world, samples, settings, "acc-store-growing")


def entries(store) -> list:
    return sorted(p for p in store.rglob("*") if p.is_file())


def test_a_tile_rendered_by_one_process_is_served_by_another(world, tmp_path):
    store = tmp_path / "tiles"
    url = URL.format(c=PUBLIC).replace("0,3000", "0,2990")
    with app_client(world, store) as first:
        rendered = first.get(url, headers=world.headers["owner"])
    assert rendered.status_code == 200 and rendered.headers["x-tile-cache"] == "miss"
    [entry] = entries(store)
    assert entry.relative_to(store).parts[0] == str(Z) and entry.name == rendered.headers["etag"].strip('"')
    # a new process (memory empty), with and without a memory cache of its own
    for size in (128 * 2**20, 0):
        with app_client(world, store, tile_cache_size=size) as second:
            served = second.get(url, headers=world.headers["owner"])
            assert served.status_code == 200 and served.headers["x-tile-cache"] == "hit"
            assert served.content == rendered.content and served.headers["etag"] == rendered.headers["etag"]
            assert served.headers["content-type"] == "image/png"
            assert served.headers["cache-control"] == rendered.headers["cache-control"]
            # anonymous callers may read the public collection: the same entry
            assert second.get(url).headers["x-tile-cache"] == "hit"
    assert entries(store) == [entry]  # served, not written again


def test_zooms_above_the_store_are_not_written(world, tmp_path):
    store = tmp_path / "tiles"
    with app_client(world, store, tile_store_max_zoom=Z - 1) as client:
        answer = client.get(URL.format(c=PUBLIC).replace("0,3000", "0,2991"), headers=world.headers["owner"])
    assert answer.status_code == 200 and answer.headers["x-tile-cache"] == "miss"
    assert entries(store) == []


@pytest.mark.parametrize("principal", ["anonymous", "other"])
def test_a_stored_tile_reaches_only_readers(world, tmp_path, principal):
    store = tmp_path / "tiles"
    url = URL.format(c=PRIVATE).replace("0,3000", "0,2992")
    with app_client(world, store) as first:
        rendered = first.get(url, headers=world.headers["owner"])
    assert rendered.status_code == 200 and len(entries(store)) == 1
    with app_client(world, store) as second:
        denied = second.get(url, headers=world.headers[principal])
        assert denied.status_code == 404 and "x-tile-cache" not in denied.headers
        revalidated = second.get(url, headers={**world.headers[principal], "If-None-Match": rendered.headers["etag"]})
        assert revalidated.status_code == 404
        assert second.get(url, headers=world.headers["owner"]).headers["x-tile-cache"] == "hit"


def test_a_new_item_is_drawn_not_the_stored_tile(world, tmp_path, growing):
    store = tmp_path / "tiles"
    url = URL.format(c="acc-store-growing").replace("0,3000", "0,2993")
    owner = world.headers["owner"]
    with app_client(world, store) as first:
        before = first.get(url, headers=owner)
    growing()
    with app_client(world, store) as second:
        after = second.get(url, headers=owner)
    assert before.status_code == after.status_code == 200
    assert after.headers["x-tile-cache"] == "miss" and after.headers["etag"] != before.headers["etag"]
    assert after.content != before.content
    assert len(entries(store)) == 2


def test_a_failing_store_leaves_tiles_rendered(world, tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_bytes(b"not a folder")  # the store cannot make its folders under a file
    url = URL.format(c=PUBLIC).replace("0,3000", "0,2994")
    with app_client(world, blocked) as client, caplog.at_level(logging.WARNING):
        answers = [client.get(url, headers=world.headers["owner"]) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-tile-cache"] for a in answers] == ["miss", "hit"]  # memory still works
    assert "tile store off" in caplog.text
    # an entry that is not one (truncated, written by something else): rendered, not a 500
    store = tmp_path / "tiles"
    with app_client(world, store) as first:
        first.get(url, headers=world.headers["owner"])
    [entry] = entries(store)
    entry.write_bytes(b"garbage without a header line")
    with app_client(world, store) as second:
        again = second.get(url, headers=world.headers["owner"])
    assert again.status_code == 200 and again.headers["x-tile-cache"] == "miss"
    assert again.content == answers[0].content


def test_seeding_a_private_collection_takes_the_admin_key(world, tmp_path):
    """Seeding renders as the catalog's administrator (its key in the settings); without it a
    private collection is one line that says how, and nothing is stored."""
    from stacube.errors import NotFound
    from stacube_services.tile_seed import parse_template, seed

    store = tmp_path / "tiles"
    template = parse_template(URL.format(c=PRIVATE).replace("0,3000", "0,2995").replace(TILE, "WebMercatorQuad/{z}/{x}/{y}"))
    x, y = (int(v) for v in TILE.split("/")[2:])
    settings = world.settings.model_copy(update={"tile_store": str(store), "tile_store_max_zoom": Z})
    done = seed(settings, template, [(Z, x, y)])
    assert (done.rendered, done.stored, done.empty) == (1, 0, 0) and len(entries(store)) == 1
    anonymous = settings.model_copy(update={"api_key": None})
    with pytest.raises(NotFound, match="seed with the catalog's admin key in STACUBE_API_KEY"):
        seed(anonymous, template, [(Z, x, y)])
    # the entry is the one a reader's request finds
    with app_client(world, store) as client:
        answer = client.get(template.path(Z, x, y).replace("/collections", "/raster/collections", 1),
                            headers=world.headers["owner"])
    assert answer.status_code == 200 and answer.headers["x-tile-cache"] == "hit"


def test_without_a_memory_cache_higher_zooms_pass_through(world, tmp_path):
    """Store on, memory off: tiles above the store's zooms are rendered as without any cache
    (no lookup: the answer's ETag is its body's), those within it go through the store."""
    store = tmp_path / "tiles"
    url = URL.format(c=PUBLIC).replace("0,3000", "0,2996")
    with app_client(world, store, tile_cache_size=0, tile_store_max_zoom=Z - 1) as above, \
            app_client(world, store, tile_cache_size=0) as within:
        passed = above.get(url, headers=world.headers["owner"])
        stored = [within.get(url, headers=world.headers["owner"]) for _ in range(2)]
    assert passed.status_code == 200 and "x-tile-cache" not in passed.headers
    assert [a.headers["x-tile-cache"] for a in stored] == ["miss", "hit"] and len(entries(store)) == 1
