"""Injection attempts: SQL through CQL2 (text and JSON), ``sortby``, ``fields``, ``query``, ids
with quotes and ``;``, path traversal in ids. None may answer 500, reach a hidden collection or
change the catalog."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from access_testing import BETA_PRIVATE, COLLECTIONS, ITEM, PRIVATE, PUBLIC, READABLE, SHARED

HIDDEN = {PRIVATE, SHARED, BETA_PRIVATE}  # for an anonymous caller


@pytest.fixture(scope="module")
def catalog_state(world):
    from stacube.db.connection import connect

    def state():
        with connect(world.settings) as conn:
            return (conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0],
                    conn.execute("SELECT count(*) FROM pgstac.collections").fetchone()[0],
                    conn.execute("SELECT count(*) FROM stacube.collection_access").fetchone()[0],
                    conn.execute("SELECT count(*) FROM stacube.api_keys").fetchone()[0])

    before = state()
    yield before
    assert state() == before, "an injection attempt changed the catalog"


def no_leak(r) -> None:
    assert r.status_code < 500, (r.request.url, r.status_code, r.text[:300])
    if r.status_code == 200 and "json" in r.headers.get("content-type", ""):
        body = r.json()
        features = body.get("features", []) if isinstance(body, dict) else []
        collections = body.get("collections", []) if isinstance(body, dict) else []
        assert not {f.get("collection") for f in features} & HIDDEN, r.request.url
        assert not {c.get("id") for c in collections if isinstance(c, dict)} & HIDDEN, r.request.url


TEXT_FILTERS = [
    "id = 'x'' OR ''1''=''1'",
    f"collection = '{PRIVATE}' OR 1=1",
    f"collection = '{PRIVATE}'); DROP TABLE pgstac.items; --",
    "id = 'a' ; DELETE FROM pgstac.items",
    f"\"collection\" IN ('{PRIVATE}', '{PUBLIC}')",
    "collection LIKE 'acc-%'",
    "NOT (collection = 'nothing')",
]
JSON_FILTERS = [
    {"op": "=", "args": [{"property": "id') OR true; --"}, "x"]},
    {"op": "=", "args": [{"property": "collection"}, f"{PRIVATE}' OR '1'='1"]},
    {"op": "or", "args": [{"op": "=", "args": [{"property": "collection"}, PRIVATE]},
                          {"op": "=", "args": [1, 1]}]},
    {"op": "like", "args": [{"property": "collection"}, "%"]},
    {"op": "in", "args": [{"property": "collection"}, [PRIVATE, SHARED, BETA_PRIVATE]]},
    {"op": "s_intersects", "args": [{"property": "geometry"}, {"type": "Point", "coordinates": ["0); DROP TABLE x; --", 1]}]},
]


@pytest.mark.parametrize("text", TEXT_FILTERS)
def test_cql2_text(client, catalog_state, text):
    no_leak(client.get(f"/stac/search?filter={quote(text)}&filter-lang=cql2-text&limit=100"))
    no_leak(client.post("/stac/search", json={"filter": text, "filter-lang": "cql2-text", "limit": 100}))
    no_leak(client.get(f"/stac/collections?filter={quote(text)}&filter-lang=cql2-text"))
    no_leak(client.get(f"/stac/collections/{PUBLIC}/items?filter={quote(text)}&filter-lang=cql2-text"))


@pytest.mark.parametrize("doc", JSON_FILTERS)
def test_cql2_json(client, catalog_state, doc):
    no_leak(client.post("/stac/search", json={"filter": doc, "filter-lang": "cql2-json", "limit": 100}))
    no_leak(client.get(f"/stac/search?filter={quote(json.dumps(doc))}&filter-lang=cql2-json&limit=100"))
    r = client.post("/raster/searches/register", json={"filter": doc, "filter-lang": "cql2-json"})
    assert r.status_code < 500
    if r.status_code == 200:
        info = client.get(f"/raster/searches/{r.json()['id']}/info").json()
        assert not set(info["search"]["search"]["collections"]) & HIDDEN


@pytest.mark.parametrize("params", [
    "sortby=properties.datetime);DROP TABLE pgstac.items;--",
    "sortby=-id'%20OR%20'1'='1",
    "sortby=" + quote("properties.\"eo:cloud_cover\"; DELETE FROM pgstac.items"),
    "fields=id,properties.datetime');DROP TABLE pgstac.items;--",
    "fields=" + quote("-assets,properties.a') OR 1=1 --"),
    "query=" + quote(json.dumps({"eo:cloud_cover'); DROP TABLE pgstac.items; --": {"lt": 10}})),
    "query=" + quote(json.dumps({"collection": {"eq": PRIVATE}})),
    "collections=" + quote(f"{PRIVATE}' OR '1'='1"),
    "collections=" + quote(f"{PUBLIC},{PRIVATE}"),
    "collections=" + quote(f"{PUBLIC};{PRIVATE}"),
    "ids=" + quote(f"{ITEM}' OR '1'='1"),
    "ids=" + quote(f"{ITEM};DROP TABLE pgstac.items"),
    "datetime=" + quote("2015-01-01T00:00:00Z'; DROP TABLE pgstac.items; --"),
    "bbox=" + quote("1,2,3,4); DROP TABLE pgstac.items; --"),
])
def test_search_parameters(client, catalog_state, params):
    r = client.get(f"/stac/search?{params}&limit=100")
    no_leak(r)


@pytest.mark.parametrize("body", [
    {"sortby": [{"field": "id; DROP TABLE pgstac.items", "direction": "asc"}]},
    {"sortby": [{"field": "id", "direction": "asc; DROP TABLE pgstac.items"}]},
    {"fields": {"include": ["id'); DROP TABLE pgstac.items; --"]}},
    {"collections": [f"{PRIVATE}'--"]},
    {"collections": [PUBLIC, PRIVATE], "ids": [ITEM]},
    {"ids": [f"{ITEM}' OR '1'='1", ITEM]},
    {"intersects": {"type": "Point", "coordinates": [14.55, "45.87); DROP TABLE x; --"]}},
])
def test_search_bodies(client, catalog_state, body):
    no_leak(client.post("/stac/search", json={**body, "limit": 100}))


@pytest.mark.parametrize("path", [
    f"/stac/collections/{PRIVATE}'--",
    f"/stac/collections/{quote(PRIVATE + chr(39) + ' OR ' + chr(39) + '1' + chr(39) + '=' + chr(39) + '1', safe='')}/items",
    f"/stac/collections/{PUBLIC}/items/{quote('../../collections/' + PRIVATE, safe='')}",
    f"/stac/collections/{quote('../' + PRIVATE, safe='')}",
    f"/stac/collections/{quote(PRIVATE + ';', safe='')}/items",
    f"/raster/collections/{quote('../' + PRIVATE, safe='')}/info",
    f"/raster/collections/{PUBLIC}/items/{quote('../../' + PRIVATE + '/items/' + ITEM, safe='')}/info?assets=B04",
    f"/raster/collections/{quote(PRIVATE + chr(39) + '--', safe='')}/tiles/WebMercatorQuad/14/8854/5837.png?assets=B04",
    f"/raster/searches/{quote(chr(39) + ' OR 1=1 --', safe='')}/info",
    f"/files/{quote('../../../etc/passwd', safe='')}",
    "/files/../../../etc/passwd",
    f"/cubes/{quote('../' + PRIVATE, safe='')}",
    f"/jobs/{quote(chr(39) + ' OR 1=1 --', safe='')}",
])
def test_ids_with_quotes_and_traversal(client, catalog_state, path):
    r = client.get(path)
    assert r.status_code in (400, 404, 405, 422), (path, r.status_code, r.text[:200])
    assert "root:" not in r.text


def test_hidden_collections_stay_hidden_after_the_attempts(client, world, catalog_state):
    for c in COLLECTIONS:
        r = client.get(f"/stac/collections/{c}")
        assert r.status_code == (200 if c in READABLE["anonymous"] else 404)


@pytest.mark.parametrize("params, status", [
    ({"collections": [f"{PRIVATE}' OR '1'='1"]}, 404),
    ({"collections": [PUBLIC], "output_collection": "x'; DROP TABLE stacube.jobs; --"}, 202),
    ({"collections": [PRIVATE]}, 404),
])
def test_job_parameters(world, catalog_state, params, status):
    """(Through a jobs app whose launcher records instead of running.)"""
    from fastapi.testclient import TestClient

    from stacube_services.jobs import create_jobs_app

    launched = []

    class Recorder:
        def launch(self, job_id):
            launched.append(job_id)

    body = {"bbox": [14.5514, 45.8659, 14.5642, 45.875], "datetime": "2015-07-01/2015-09-30",
            "method": "median", **params}
    with TestClient(create_jobs_app(world.settings, launcher=Recorder(), mount=""),
                    raise_server_exceptions=False) as c:
        r = c.post("/", json=body)
    assert r.status_code in ((200, 202) if status == 202 else (status,)), r.text
    assert bool(launched) == (status == 202)
