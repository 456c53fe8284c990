"""The raster API's tile cache: ETag / If-None-Match, a new item changes the tile, a cached tile
only for callers who may read its collection, Cache-Control of cached and revalidated answers."""

from __future__ import annotations

import pytest
from access_testing import MISSING, PRIVATE, PUBLIC, TILE, growing_collection, same_as_missing

GROWING = "acc-tiles-growing"
URL = f"/raster/collections/{{c}}/tiles/{TILE}.png?assets=B04&assets=B03&assets=B02&rescale=0,3000"


@pytest.fixture(scope="module")
def client(world):
    """The combined application with the tile cache on (it is off by default)."""
    from fastapi.testclient import TestClient

    from stacube_services.app import create_app

    settings = world.settings.model_copy(update={"tile_cache_size": 128 * 2**20})
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def growing(world, samples, settings):
    """A private collection of t-alpha holding the oldest Slovenia scene; yields a function
    adding the next one."""
    return growing_collection(world, samples, settings, GROWING)


def test_etag_revalidates_and_a_new_item_changes_the_tile(client, world, growing):
    owner = world.headers["owner"]
    url = URL.format(c=GROWING)
    first = client.get(url, headers=owner)
    assert first.status_code == 200 and first.headers["x-tile-cache"] == "miss"
    etag = first.headers["etag"]
    again = client.get(url, headers=owner)
    assert again.status_code == 200 and again.headers["x-tile-cache"] == "hit"
    assert again.headers["etag"] == etag and again.content == first.content
    assert again.headers["content-type"] == "image/png"
    masked = [client.get(f"/raster/collections/{GROWING}/masked/tiles/{TILE}.npy?assets=B04", headers=owner)
              for _ in range(2)]
    assert [m.headers["x-tile-cache"] for m in masked] == ["miss", "hit"]
    assert masked[1].headers["x-assets"] == masked[0].headers["x-assets"]  # the answer's own headers, kept
    # images are not compressed again on their way out of `stacube up`; JSON still is
    assert "content-encoding" not in first.headers and "content-encoding" not in again.headers
    assert client.get("/stac/collections", headers={**owner, "Accept-Encoding": "br"}).headers["content-encoding"] == "br"
    # the same parameters in another order are the same tile; another order of assets is not
    reordered = client.get(url.replace("?assets=B04&assets=B03&assets=B02&rescale=0,3000",
                                       "?rescale=0,3000&assets=B04&assets=B03&assets=B02"), headers=owner)
    assert reordered.headers["etag"] == etag
    swapped = client.get(url.replace("assets=B04&assets=B03", "assets=B03&assets=B04"), headers=owner)
    assert swapped.headers["etag"] != etag

    unchanged = client.get(url, headers={**owner, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert unchanged.headers["cache-control"] == "private, max-age=60"  # a caller with credentials
    assert client.get(url, headers={**owner, "If-None-Match": '"other", W/' + etag}).status_code == 304

    growing()
    after = client.get(url, headers={**owner, "If-None-Match": etag})
    assert after.status_code == 200 and after.headers["x-tile-cache"] == "miss"
    assert after.headers["etag"] != etag
    assert after.content != first.content  # the new scene is drawn, not the cached asset list
    assert client.get(url, headers=owner).headers["x-tile-cache"] == "hit"


@pytest.mark.parametrize("principal", ["anonymous", "other"])
def test_a_cached_tile_is_only_served_to_readers(client, world, principal):
    url = URL.format(c=PRIVATE)
    cached = client.get(url, headers=world.headers["owner"])
    assert cached.status_code == 200
    assert client.get(url, headers=world.headers["owner"]).headers["x-tile-cache"] == "hit"
    headers = world.headers[principal]
    denied = client.get(url, headers=headers)
    assert denied.status_code == 404 and "x-tile-cache" not in denied.headers
    same_as_missing(client, denied, "GET", url, PRIVATE, headers)
    # knowing the ETag does not help either
    revalidated = client.get(url, headers={**headers, "If-None-Match": cached.headers["etag"]})
    assert revalidated.status_code == 404 and "etag" not in revalidated.headers
    assert client.get(url.replace(PRIVATE, MISSING), headers=headers).status_code == 404


def test_shared_readers_share_the_entry(client, world):
    url = URL.format(c=PUBLIC)
    owner = client.get(url, headers=world.headers["owner"])
    anonymous = client.get(url)
    assert anonymous.status_code == 200 and anonymous.headers["x-tile-cache"] == "hit"
    assert anonymous.headers["etag"] == owner.headers["etag"]
    assert anonymous.headers["cache-control"] == "public, max-age=300"
    unchanged = client.get(url, headers={"If-None-Match": owner.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.headers["cache-control"] == "public, max-age=300"


def test_registered_search_tiles(client, world):
    owner = world.headers["owner"]
    sid = client.post("/raster/searches/register", headers=owner, json={"collections": [PRIVATE]}).json()["id"]
    url = f"/raster/searches/{sid}/tiles/{TILE}.png?assets=B04&rescale=0,3000"
    first = client.get(url, headers=owner)
    assert first.status_code == 200
    assert client.get(url, headers=owner).headers["x-tile-cache"] == "hit"
    denied = client.get(url, headers=world.headers["other"])
    assert denied.status_code == 404 and "x-tile-cache" not in denied.headers


def test_versions_that_cannot_be_read_leave_tiles_uncached_not_failed(client, world, settings, monkeypatch):
    """A catalog without the version table (or a role not granted it) is no outage: tiles are
    rendered as without the cache, never a 503 or 500."""
    import psycopg

    from stacube_services import tile_cache

    monkeypatch.setattr(tile_cache, "OFF_AFTER_ERROR", 0.0)  # looked up again on the next request
    url = URL.format(c=PUBLIC).replace("0,3000", "0,2999")  # a tile no other test asks for
    with psycopg.connect(settings.dsn(), autocommit=True) as admin:
        admin.execute("ALTER TABLE stacube.catalog_changes RENAME TO catalog_changes_away")
        try:
            answers = [client.get(url, headers=world.headers["owner"]) for _ in range(2)]
        finally:
            admin.execute("ALTER TABLE stacube.catalog_changes_away RENAME TO catalog_changes")
    assert [a.status_code for a in answers] == [200, 200]
    assert all("x-tile-cache" not in a.headers for a in answers)
    assert answers[1].content == answers[0].content
    assert client.get(url, headers=world.headers["owner"]).headers["x-tile-cache"] == "miss"


def test_the_access_rows_and_versions_come_in_one_statement(client, world, monkeypatch):
    """A tile looked up in the cache reads the access rows and the catalog versions in one
    statement (one connection of the pool), and the route reuses the rows: with the cache on, a
    tile takes no more connections than without it."""
    from stacube.access.workspaces import ACCESS_ROWS_SQL
    from stacube_services.access.service import ACCESS_AND_VERSIONS_SQL, AccessService

    statements = []
    fetch = AccessService.fetch

    async def recording(self, sql, *args):
        statements.append(sql)
        return await fetch(self, sql, *args)

    monkeypatch.setattr(AccessService, "fetch", recording)
    url = URL.format(c=PUBLIC).replace("0,3000", "0,2998")  # a tile no other test asks for
    for state in ("miss", "hit"):
        statements.clear()
        answer = client.get(url, headers=world.headers["owner"])
        assert answer.status_code == 200 and answer.headers["x-tile-cache"] == state
        assert statements.count(ACCESS_AND_VERSIONS_SQL) == 1 and ACCESS_ROWS_SQL not in statements, statements
