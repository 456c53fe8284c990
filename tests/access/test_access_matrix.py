"""Principals x endpoints x collections: the status each combination must answer.

Readable collections answer 200; the others answer exactly what a collection that does not exist
answers (404, same body). Writes answer 401 without credentials, 404 when the collection is not
readable, 403 when it is readable but not writable, 2xx otherwise.
"""

from __future__ import annotations

import pytest

from access_testing import (
    COLLECTIONS,
    ITEM,
    LEGACY,
    POINT,
    PRINCIPALS,
    PRIVATE,
    READABLE,
    SHARED,
    TILE,
    WRITABLE,
    same_as_missing,
)

READS = {
    "stac collection": "/stac/collections/{c}",
    "stac items": "/stac/collections/{c}/items?limit=2",
    "stac item": f"/stac/collections/{{c}}/items/{ITEM}",
    "stac queryables": "/stac/collections/{c}/queryables",
    "stac asset file": f"/stac/collections/{{c}}/items/{ITEM}/assets/B04",
    "raster collection tile": f"/raster/collections/{{c}}/tiles/{TILE}.png?assets=B04",
    "raster collection tilejson": "/raster/collections/{c}/WebMercatorQuad/tilejson.json?assets=B04",
    "raster index tile": f"/raster/collections/{{c}}/tiles/{TILE}.png?index=NDVI",
    "raster masked tile": f"/raster/collections/{{c}}/masked/tiles/{TILE}.png?assets=B04",
    "raster item point": f"/raster/collections/{{c}}/items/{ITEM}/point/{POINT}?assets=B04",
    "raster item info": f"/raster/collections/{{c}}/items/{ITEM}/info?assets=B04",
}


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_reads(client, world, principal):
    headers = world.headers[principal]
    for endpoint, template in READS.items():
        for c in COLLECTIONS:
            url = template.format(c=c)
            r = client.get(url, headers=headers)
            if c in READABLE[principal]:
                assert r.status_code == 200, (principal, endpoint, c, r.status_code, r.text[:200])
            else:
                assert r.status_code == 404, (principal, endpoint, c, r.status_code, r.text[:200])
                same_as_missing(client, r, "GET", url, c, headers)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_searches_and_registrations(client, world, principal):
    headers = world.headers[principal]
    for c in COLLECTIONS:
        readable = c in READABLE[principal]
        get = client.get(f"/stac/search?collections={c}&limit=10", headers=headers)
        post = client.post("/stac/search", json={"collections": [c], "limit": 10}, headers=headers)
        for r in (get, post):
            assert r.status_code == 200, (principal, c, r.text[:200])
            assert len(r.json()["features"]) == (5 if readable else 0), (principal, c)
        reg = client.post("/raster/searches/register", json={"collections": [c]}, headers=headers)
        assert reg.status_code == (200 if readable else 404), (principal, c, reg.text[:200])
        if not readable:
            same_as_missing(client, reg, "POST", "/raster/searches/register", c, headers, json={"collections": [c]})


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_cross_collection_search_ids_and_listing(client, world, principal):
    """One item id exists in every collection: a search by id without collections returns it from
    exactly the readable ones, GET and POST; the collection listing shows exactly them."""
    headers = world.headers[principal]
    expected = READABLE[principal]
    got_get = client.get(f"/stac/search?ids={ITEM}&limit=100", headers=headers).json()["features"]
    got_post = client.post("/stac/search", json={"ids": [ITEM], "limit": 100}, headers=headers).json()["features"]
    for got in (got_get, got_post):
        mine = {f["collection"] for f in got} & set(COLLECTIONS)
        assert mine == expected, (principal, mine)
    listed = {c["id"] for c in client.get("/stac/collections?limit=100", headers=headers).json()["collections"]}
    assert listed & set(COLLECTIONS) == expected, principal
    found = client.get("/stac/collections?q=access&limit=100", headers=headers).json()["collections"]
    assert {c["id"] for c in found} == expected - {LEGACY}, principal
    by_filter = client.get(f"/stac/collections?filter=id='{PRIVATE}'&filter-lang=cql2-text", headers=headers)
    assert by_filter.status_code == 200
    assert [c["id"] for c in by_filter.json()["collections"]] == ([PRIVATE] if PRIVATE in expected else [])


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_cql2_filters_cannot_reach_hidden_collections(client, world, principal):
    headers = world.headers[principal]
    readable = PRIVATE in READABLE[principal]
    text = client.get(f"/stac/search?filter=collection='{PRIVATE}'&filter-lang=cql2-text&limit=20",
                      headers=headers).json()["features"]
    js = client.post("/stac/search", headers=headers, json={
        "filter-lang": "cql2-json", "limit": 20,
        "filter": {"op": "or", "args": [{"op": "=", "args": [{"property": "collection"}, PRIVATE]},
                                        {"op": "=", "args": [{"property": "id"}, ITEM]}]}}).json()["features"]
    assert len(text) == (5 if readable else 0), principal
    assert (PRIVATE in {f["collection"] for f in js}) == readable, principal
    assert {f["collection"] for f in js} & set(COLLECTIONS) <= READABLE[principal], principal


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_item_writes(client, world, principal):
    """POST and DELETE an item in every collection."""
    import copy

    headers = world.headers[principal]
    admin = world.headers["admin"]
    template = client.get(f"/stac/collections/{LEGACY}/items/{ITEM}", headers=admin).json()
    for c in COLLECTIONS:
        item = copy.deepcopy(template)
        item["id"] = f"tx-{principal.replace('_', '-')}"
        item["collection"] = c
        item["links"] = []
        r = client.post(f"/stac/collections/{c}/items", json=item, headers=headers)
        if principal == "anonymous":
            expected = 401
        elif c not in READABLE[principal]:
            expected = 404
        elif c not in WRITABLE[principal]:
            expected = 403
        else:
            expected = 201
        assert r.status_code == expected, (principal, c, r.status_code, r.text[:200])
        if expected == 201:
            assert client.get(f"/stac/collections/{c}/items/{item['id']}", headers=headers).status_code == 200
        d = client.delete(f"/stac/collections/{c}/items/{item['id']}", headers=headers)
        assert d.status_code == (200 if expected == 201 else expected), (principal, c, d.text[:200])


def test_collection_transactions_belong_to_the_creators_cube(client, world):
    owner, other, shared = world.headers["owner"], world.headers["other"], world.headers["shared"]
    doc = {"type": "Collection", "id": "acc-created", "description": "t", "license": "other",
           "stac_version": "1.1.0", "links": [],
           "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}}}
    world.extra_collections.add("acc-created")
    assert client.post("/stac/collections", json=doc).status_code == 401
    assert client.post("/stac/collections", json=doc, headers=owner).status_code in (200, 201)
    # private to the creator's cube: hidden from the others, and the name is taken
    assert client.get("/stac/collections/acc-created", headers=owner).status_code == 200
    assert client.get("/stac/collections/acc-created").status_code == 404
    assert client.get("/stac/collections/acc-created", headers=other).status_code == 404
    assert client.post("/stac/collections", json=doc, headers=other).status_code == 409
    # a body cannot rename the collection into another one
    renamed = {**doc, "id": SHARED}
    assert client.put("/stac/collections/acc-created", json=renamed, headers=owner).status_code == 400
    patch = client.patch("/stac/collections/acc-created", json={"id": SHARED}, headers=owner,)
    assert patch.status_code == 400, patch.text
    ops = [{"op": "replace", "path": "/id", "value": SHARED}]
    r = client.patch("/stac/collections/acc-created", json=ops, headers={**owner, "content-type": "application/json-patch+json"})
    assert r.status_code in (400, 415, 422), r.text
    assert client.get(f"/stac/collections/{SHARED}", headers=owner).json()["description"] != "t"
    # others may not change or delete it
    assert client.delete("/stac/collections/acc-created", headers=shared).status_code == 404
    assert client.put("/stac/collections/acc-created", json=doc, headers=other).status_code == 404
    # nor may a member create a collection over one without an owner (public, admins only)
    assert client.post("/stac/collections", json={**doc, "id": LEGACY}, headers=owner).status_code == 409
    assert client.put(f"/stac/collections/{LEGACY}", json={**doc, "id": LEGACY}, headers=owner).status_code == 403
    # deleting drops the access row: the id is free again
    assert client.delete("/stac/collections/acc-created", headers=owner).status_code == 200
    from stacube.access.workspaces import AccessStore

    assert AccessStore(world.settings).get("acc-created") is None
    assert client.post("/stac/collections", json=doc, headers=other).status_code in (200, 201)
    assert AccessStore(world.settings).get("acc-created").workspace == "t-gamma"
    assert client.delete("/stac/collections/acc-created", headers=world.headers["admin"]).status_code == 200


def test_the_settings_api_key_is_an_admin_key(client, world):
    from access_testing import BETA_PRIVATE, SETTINGS_ADMIN_KEY

    admin = {"X-API-Key": SETTINGS_ADMIN_KEY}
    assert client.get(f"/stac/collections/{BETA_PRIVATE}", headers=admin).status_code == 200
    assert client.get(f"/stac/collections/{BETA_PRIVATE}", headers={"Authorization": f"Bearer {SETTINGS_ADMIN_KEY}"}).status_code == 200
    assert client.get(f"/stac/collections/{BETA_PRIVATE}", headers={"X-API-Key": SETTINGS_ADMIN_KEY + "x"}).status_code == 401


def test_registered_searches_are_rechecked_for_each_caller(client, world):
    owner = world.headers["owner"]
    sid = client.post("/raster/searches/register", json={"collections": [PRIVATE]}, headers=owner).json()["id"]
    url = f"/raster/searches/{sid}/tiles/{TILE}.png?assets=B04"
    assert client.get(url, headers=owner).status_code == 200
    for principal in ("anonymous", "other", "shared"):
        r = client.get(url, headers=world.headers[principal])
        assert r.status_code == 404, principal
        same_as_missing(client, r, "GET", url, sid, world.headers[principal])
        assert client.get(f"/raster/searches/{sid}/info", headers=world.headers[principal]).status_code == 404
        listed = client.get("/raster/searches/?limit=1000", headers=world.headers[principal]).json()["searches"]
        assert sid not in {s["search"]["hash"] for s in listed}
    assert sid in {s["search"]["hash"] for s in client.get("/raster/searches/?limit=1000", headers=owner).json()["searches"]}
    # a search without collections is registered over what the caller may read
    sid2 = client.post("/raster/searches/register", json={"ids": [ITEM]}).json()["id"]
    info = client.get(f"/raster/searches/{sid2}/info").json()
    assert set(info["search"]["search"]["collections"]) & set(COLLECTIONS) == READABLE["anonymous"]
    assert client.get(f"/raster/searches/{sid2}/tiles/{TILE}.png?assets=B04").status_code == 200


@pytest.mark.parametrize("principal", ["anonymous", "owner", "shared", "other"])
def test_time_series_of_collections(client, world, principal):
    headers = world.headers[principal]
    for c in (PRIVATE, SHARED):
        url = f"/cubes/timeseries?collection={c}&lon=14.558&lat=45.87&bands=red&source=items"
        r = client.get(url, headers=headers)
        if c in READABLE[principal]:
            assert r.status_code == 200, (principal, c, r.text[:300])
            assert len(r.json()["series"] if "series" in r.json() else r.json()) > 0
        else:
            assert r.status_code == 404, (principal, c, r.text[:200])
            same_as_missing(client, r, "GET", url, c, headers)
