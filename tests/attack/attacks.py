"""The attacks, one line each: who sends what, and the 4xx it must get.

Every attack is sent to the served instance (``conftest.py``) by ``test_attacks.py``, which
asserts the status (and a word of the reason), that it was answered within 2 s, that the
catalog is unchanged, and that the server's resident memory stays within 512 MiB of its
warmed-up size. Attacks whose effects need more than one request (jobs, time series choosing a
cube, search registration floods, files of private jobs) are tests of their own in
``test_attacks.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import quote

from attack_world import ITEM, LEGACY, MINE, NO_BANDS, PUBLIC, S2, TILE, VICTIM


def nested_not(n: int) -> str:
    return "NOT " * n + "(id = 'x')"


def nested_not_json(n: int) -> dict:
    doc: dict = {"op": "=", "args": [{"property": "id"}, "x"]}
    for _ in range(n):
        doc = {"op": "not", "args": [doc]}
    return doc


def nested_and_json(n: int) -> dict:
    doc: dict = {"op": "=", "args": [{"property": "id"}, "x"]}
    for _ in range(n):
        doc = {"op": "and", "args": [doc, {"op": "=", "args": [{"property": "id"}, "y"]}]}
    return doc


def q(text: str) -> str:
    return quote(text, safe="")


@dataclass(frozen=True)
class Attack:
    """``name``: what it tries; ``who``: the caller; ``request(world)``: keyword arguments of
    ``requests.request`` (``method``, ``path`` and the rest); ``status``: the answers accepted;
    ``reason``: a word the description holds."""

    name: str
    who: str
    request: object
    status: tuple[int, ...]
    reason: str | None = None
    changes: bool = field(default=False)


def get(path: str, **kwargs):
    return lambda w: {"method": "GET", "path": path.format(**w.__dict__, **w.hrefs), **kwargs}


def post(path: str, body=None, **kwargs):
    def build(w):
        doc = body(w) if callable(body) else body
        return {"method": "POST", "path": path, **({"json": doc} if doc is not None else {}), **kwargs}
    return build


def patch(path: str, body, content_type: str):
    return lambda w: {"method": "PATCH", "path": path, "data": json.dumps(body(w) if callable(body) else body),
                      "headers": {"Content-Type": content_type}}


def item_with(href_of, *, item_id="atk-evil-item", collection=MINE):
    """A copy of a sample item into ``collection`` with every asset pointing at ``href_of(world)``."""
    def build(w):
        import requests

        doc = requests.get(w.url(f"/stac/collections/{S2}/items/{ITEM}"), timeout=30).json()
        doc.update(id=item_id, collection=collection, links=[])
        for asset in doc["assets"].values():
            asset["href"] = href_of(w)
        return doc
    return build


TILE_URL = f"/raster/collections/{S2}/tiles/{TILE}.png?assets=B04"
ITEM_URL = f"/raster/collections/{S2}/items/{ITEM}"
BIG = "x" * (2 * 1024 * 1024)

ATTACKS = [
    # -- 1. resource limits: CQL2 bounded before any parser, every route that takes a filter --------
    Attack("100 nested NOT, cql2-text, GET /stac/search", "anonymous",
           get(f"/stac/search?filter={q(nested_not(100))}&filter-lang=cql2-text"), (400,), "limit"),
    Attack("300 nested NOT, cql2-text, GET /stac/search", "anonymous",
           get(f"/stac/search?filter={q(nested_not(300))}"), (400,), "limit"),
    Attack("1000 nested NOT, cql2-text, POST /stac/search", "anonymous",
           post("/stac/search", {"filter": nested_not(1000), "filter-lang": "cql2-text"}), (400,), "limit"),
    Attack("100 nested NOT, cql2-json, POST /stac/search", "anonymous",
           post("/stac/search", {"filter": nested_not_json(100), "filter-lang": "cql2-json"}), (400,), "limit"),
    Attack("100 nested NOT, cql2-json, GET /stac/search", "anonymous",
           get(f"/stac/search?filter={q(json.dumps(nested_not_json(100)))}&filter-lang=cql2-json"), (400,), "limit"),
    Attack("nested NOT in an item list filter", "anonymous",
           get(f"/stac/collections/{S2}/items?filter={q(nested_not(100))}"), (400,), "limit"),
    Attack("nested NOT in a collection search filter", "anonymous",
           get(f"/stac/collections?filter={q(nested_not(100))}"), (400,), "limit"),
    Attack("nested NOT in a registered search", "anonymous",
           post("/raster/searches/register", {"collections": [S2], "filter": nested_not_json(50),
                                              "filter-lang": "cql2-json"}), (400,), "limit"),
    Attack("nested NOT in a collection mosaic filter", "anonymous",
           get(f"{TILE_URL}&filter={q(nested_not(100))}&filter-lang=cql2-text"), (400,), "limit"),
    Attack("nested NOT in a masked mosaic filter", "anonymous",
           get(f"/raster/collections/{S2}/masked/tiles/{TILE}.png?assets=B04&filter={q(nested_not(50))}"),
           (400,), "limit"),
    Attack("cql2-json filter nested 200 deep", "anonymous",
           post("/stac/search", {"filter": nested_and_json(200), "filter-lang": "cql2-json"}), (400,), "deep"),
    Attack("cql2-json filter nested 200 deep, raster register", "anonymous",
           post("/raster/searches/register", {"filter": nested_and_json(200), "filter-lang": "cql2-json"}),
           (400,), "deep"),
    Attack("a 30,000-character filter", "anonymous",
           post("/stac/search", {"filter": " OR ".join(f"id = '{i:05d}'" for i in range(2000))}), (400,),
           "characters"),
    Attack("a filter of 5,000 parts", "anonymous",
           post("/stac/search", {"filter": {"op": "in", "args": [{"property": "id"}, list(range(5000))]},
                                 "filter-lang": "cql2-json"}), (400,), "parts"),
    # -- 1. raster parameters clamped or refused ---------------------------------------------------
    Attack("buffer=10000 on one tile", "anonymous", get(f"{TILE_URL}&buffer=10000"), (400,), "buffer"),
    Attack("buffer=100000 on one tile", "anonymous", get(f"{TILE_URL}&buffer=100000"), (400,), "buffer"),
    Attack("padding=10000", "anonymous", get(f"{TILE_URL}&padding=10000"), (400,), "padding"),
    Attack("tilesize=100000", "anonymous", get(f"{TILE_URL}&tilesize=100000"), (400,), "tile size"),
    Attack("@4x of a 1024 px tile", "anonymous",
           get(f"/raster/collections/{S2}/tiles/{TILE}@4x.png?assets=B04&tilesize=1024"), (400,), "tile size"),
    Attack("preview max_size=100000", "anonymous", get(f"{ITEM_URL}/preview.png?assets=B04&max_size=100000"),
           (400,), "max_size"),
    Attack("part width and height 100000", "anonymous",
           get(f"{ITEM_URL}/bbox/14.55,45.86,14.56,45.87/100000x100000.png?assets=B04"), (400,), "width"),
    Attack("statistics max_size=100000", "anonymous",
           get(f"{ITEM_URL}/statistics?assets=B04&max_size=100000"), (400,), "max_size"),
    Attack("scan_limit=2^31-1", "anonymous", get(f"{TILE_URL}&scan_limit=2147483647"), (400,), "scan_limit"),
    Attack("items_limit=2^31-1", "anonymous", get(f"{TILE_URL}&items_limit=2147483647"), (400,), "items_limit"),
    Attack("time_limit=2^31-1", "anonymous", get(f"{TILE_URL}&time_limit=2147483647"), (400,), "time_limit"),
    Attack("a /bbox answer above 6 MB", "anonymous",
           get(f"{ITEM_URL}/bbox/14.5514,45.8659,14.5642,45.8750/2048x2048.npy?assets=B04"),
           (400,), "bytes"),
    Attack("a /preview answer above 6 MB", "anonymous",
           get(f"{ITEM_URL}/preview.npy?assets=B04&width=2048&height=2048"), (400,), "bytes"),
    # -- 1. bodies and pages ------------------------------------------------------------------------
    Attack("a 2 MiB search body", "anonymous", post("/stac/search", {"ids": [BIG]}), (413,), "limit"),
    Attack("a declared 1 GB search body (refused before it is read)", "anonymous",
           lambda w: {"method": "POST", "path": "/stac/search", "data": b"{}", "raw": True,
                      "headers": {"Content-Type": "application/json", "Content-Length": "1000000000"}},
           (413,), "limit"),
    Attack("a 2 MiB search registration", "anonymous", post("/raster/searches/register", {"ids": [BIG]}),
           (413,), "limit"),
    Attack("a 2 MiB job", "alpha", post("/jobs", {"collections": [BIG]}), (413,), "limit"),
    Attack("a 2 MiB time series geometry", "anonymous",
           post(f"/cubes/timeseries?collection={S2}", {"type": "Point", "coordinates": [14.5, 45.8], "x": BIG}),
           (413,), "limit"),
    Attack("a 17 MiB transaction", "alpha",
           post(f"/stac/collections/{MINE}/items", {"type": "Feature", "x": "y" * (17 * 1024 * 1024)}),
           (413,), "limit"),
    # -- 1. jobs: sized at submission ----------------------------------------------------------------
    Attack("anonymous job while access control is on", "anonymous",
           post("/jobs", {"collections": [S2], "bbox": [14.55, 45.86, 14.56, 45.87],
                          "datetime": "2015-07-01/2015-09-30", "method": "median"}), (401,), "STACUBE_ANONYMOUS_JOBS"),
    Attack("the whole world at 1 m", "alpha",
           post("/jobs", {"collections": [S2], "bbox": [-180, -90, 180, 90], "datetime": "2015-01-01/2016-01-01",
                          "method": "median", "resolution": 1, "crs": "EPSG:3857"}), (400,), "pixels"),
    Attack("a job above the quota", "alpha",
           post("/jobs", {"collections": [S2], "bbox": [14.3, 45.6, 14.8, 46.0], "datetime": "2015-01-01/2016-01-01",
                          "method": "median", "resolution": 1, "crs": "EPSG:32633"}), (400,), "STACUBE_JOB_QUOTA"),
    Attack("a tile too big for the memory budget", "alpha",
           post("/jobs", {"collections": [S2], "bbox": [14.5514, 45.8659, 14.5642, 45.8750],
                          "datetime": "2015-07-01/2015-09-30", "method": "median", "tile_size": 16384}),
           (400,), "STACUBE_TILE_MEMORY"),
    # -- 2. the stored document is checked, not the operation -----------------------------------------
    Attack("JSON Patch replacing the whole collection with another workspace's id", "alpha",
           patch(f"/stac/collections/{MINE}",
                 lambda w: [{"op": "replace", "path": "", "value": {
                     "type": "Collection", "id": VICTIM, "stac_version": "1.1.0", "description": "pwned",
                     "license": "other", "links": [],
                     "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}}}}],
                 "application/json-patch+json"), (400,), "id"),
    Attack("merge patch renaming a collection", "alpha",
           patch(f"/stac/collections/{MINE}", {"id": VICTIM}, "application/merge-patch+json"), (400,), "id"),
    Attack("JSON Patch: add under /properties then move into /assets (a file)", "alpha",
           patch(f"/stac/collections/{MINE}/items/{ITEM}",
                 [{"op": "add", "path": "/properties/x", "value": {"href": "/etc/passwd"}},
                  {"op": "move", "from": "/properties/x", "path": "/assets/evil"}],
                 "application/json-patch+json"), (400,), "not under an allowed prefix"),
    Attack("JSON Patch: add under /properties then move into /assets (loopback)", "alpha",
           lambda w: patch(f"/stac/collections/{MINE}/items/{ITEM}",
                           [{"op": "add", "path": "/properties/x", "value": {"href": w.hrefs["loopback"]}},
                            {"op": "move", "from": "/properties/x", "path": "/assets/evil"}],
                           "application/json-patch+json")(w), (400,), "not under an allowed prefix"),
    Attack("JSON Patch moving an item into another collection", "alpha",
           patch(f"/stac/collections/{MINE}/items/{ITEM}", [{"op": "replace", "path": "/collection", "value": VICTIM}],
                 "application/json-patch+json"), (400,), "collection"),
    Attack("an item whose href is another workspace's private asset (under a server prefix)", "alpha",
           lambda w: post(f"/stac/collections/{MINE}/items", item_with(lambda x: x.victim_href))(w),
           (400,), "not under an allowed prefix"),
    Attack("an item whose href is a loopback URL", "alpha",
           lambda w: post(f"/stac/collections/{MINE}/items", item_with(lambda x: x.hrefs["loopback"]))(w),
           (400,), "not under an allowed prefix"),
    Attack("an item whose href is the database cluster", "alpha",
           lambda w: post(f"/stac/collections/{MINE}/items", item_with(lambda x: x.hrefs["database"]))(w),
           (400,), "not under an allowed prefix"),
    Attack("a bulk insert with a foreign href", "alpha",
           lambda w: post(f"/stac/collections/{MINE}/bulk_items",
                          {"items": {"atk-evil-item": item_with(lambda x: x.victim_href)(w)}, "method": "insert"})(w),
           (400,), "not under an allowed prefix"),
    Attack("a PUT whose body names another collection", "alpha",
           lambda w: {"method": "PUT", "path": f"/stac/collections/{MINE}",
                      "json": {**__import__("requests").get(w.url(f"/stac/collections/{S2}"), timeout=30).json(),
                               "id": VICTIM, "links": []}}, (400,), "id"),
    # -- 3. one read gate: every opened href is checked ----------------------------------------------
    Attack("a tile of an item pointing at a loopback port", "anonymous",
           get(f"/raster/collections/{LEGACY}/items/evil-loopback/tiles/{TILE}.png?assets=B04"), (403,),
           "not under an allowed prefix"),
    Attack("a tile of an item pointing at the database cluster", "anonymous",
           get(f"/raster/collections/{LEGACY}/items/evil-database/info?assets=B04"), (403,),
           "never read"),
    Attack("a masked mosaic over items outside the prefixes", "anonymous",
           get(f"/raster/collections/{LEGACY}/masked/tiles/{TILE}.png?assets=B04&ids=evil-outside"), (403,),
           "not under an allowed prefix"),
    Attack("a time series over items pointing at a loopback port", "anonymous",
           get(f"/cubes/timeseries?collection={LEGACY}&lon=14.558&lat=45.87&bands=red&source=items"), (403,),
           "not under an allowed prefix"),
    # -- 4. paths checked after normalising -----------------------------------------------------------
    Attack("/files traversal with ..", "anonymous",
           lambda w: {"method": "GET", "path": f"/files/cubes/{PUBLIC}/../../beta-private/B04.tif"}, (404,)),
    Attack("/files traversal with %2e%2e", "anonymous",
           lambda w: {"method": "GET", "path": f"/files/cubes/{PUBLIC}/%2e%2e/%2e%2e/beta-private/B04.tif"},
           (404,)),
    Attack("/files of the staging area", "anonymous", get("/files/tmp/"), (404,)),
    # -- 5. no 5xx from input ------------------------------------------------------------------------
    Attack("POST /stac/search with body []", "anonymous",
           lambda w: {"method": "POST", "path": "/stac/search", "data": "[]",
                      "headers": {"Content-Type": "application/json"}}, (400,), "object"),
    Attack('POST /stac/search with body "x"', "anonymous",
           lambda w: {"method": "POST", "path": "/stac/search", "data": '"x"',
                      "headers": {"Content-Type": "application/json"}}, (400,), "object"),
    Attack("POST /stac/search as text/plain", "anonymous",
           lambda w: {"method": "POST", "path": "/stac/search", "data": '{"limit": 1}',
                      "headers": {"Content-Type": "text/plain"}}, (415,), "JSON"),
    Attack("a NUL byte in a STAC path", "anonymous", get("/stac/collections/a%00b"), (400,), "control"),
    Attack("a NUL byte in an item path", "anonymous", get(f"/stac/collections/{S2}/items/a%00b"), (400,), "control"),
    Attack("a NUL byte in a raster path", "anonymous",
           get(f"/raster/collections/a%00b/tiles/{TILE}.png?assets=B04"), (400,), "control"),
    Attack("a NUL byte in a job id", "anonymous", get("/jobs/a%00b"), (400,), "control"),
    Attack("a NUL byte in a cube name", "anonymous", get("/cubes/a%00b"), (400,), "control"),
    Attack("a NUL byte in a query", "anonymous", get("/stac/search?ids=a%00b"), (400,), "control"),
    Attack("GDAL cannot open an asset", "anonymous",
           get(f"/raster/collections/{LEGACY}/items/evil-not-raster/info?assets=B04"), (502,), "cannot read"),
    Attack("a time series of an asset without band metadata", "anonymous",
           get(f"/cubes/timeseries?collection={NO_BANDS}&lon=14.558&lat=45.87&source=items"), (400, 422),
           "band"),
    # -- docs/access-control.md: hidden is absent (the full matrix is tests/access) -------------------
    Attack("another workspace's private collection", "alpha", get(f"/stac/collections/{VICTIM}"), (404,)),
    Attack("another workspace's private item tile", "alpha",
           get(f"/raster/collections/{VICTIM}/items/{ITEM}/tiles/{TILE}.png?assets=B04"), (404,)),
    Attack("registering a search over a hidden collection", "alpha",
           post("/raster/searches/register", {"collections": [VICTIM]}), (404,), "unknown collection"),
    Attack("a job reading a hidden collection", "alpha",
           post("/jobs", {"collections": [VICTIM], "bbox": [14.5514, 45.8659, 14.5642, 45.8750],
                          "datetime": "2015-07-01/2015-09-30", "method": "median"}), (404,), "unknown collection"),
    Attack("writing into another workspace's public collection", "alpha",
           lambda w: post(f"/stac/collections/{PUBLIC}/items", item_with(lambda x: x.hrefs["outside"],
                                                                          collection=PUBLIC))(w), (403,)),
    Attack("writing without credentials", "anonymous",
           lambda w: post(f"/stac/collections/{MINE}/items", item_with(lambda x: x.hrefs["outside"]))(w), (401,)),
    Attack("an unknown API key", "anonymous",
           lambda w: {"method": "GET", "path": "/stac/", "headers": {"X-API-Key": "stk_forged"}}, (401,)),
    Attack("a point query through a paging token into a hidden collection", "anonymous",
           get(f"/stac/search?token=next:{VICTIM.encode().hex()}:{ITEM.encode().hex()}"), (400, 404)),
]
