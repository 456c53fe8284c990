"""The HTTP services through a client: STAC API, raster API, indices, errors, transactions."""

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from stacube.settings import Settings

S2 = "sentinel-2-l1c-eolearn-sample"
L8 = "landsat-8-c1-l1tp-gdalcubes-sample"
S2_TILE = "14/8854/5837"   # covers the Slovenia stack
L8_TILE = "8/75/95"        # covers the New York scenes


@pytest.fixture(scope="module")
def client(samples):
    from stacube_services.app import create_app

    with TestClient(create_app(Settings()), raise_server_exceptions=False) as c:
        yield c


def png_pixels(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGBA"))


def test_landing_pages(client):
    assert {l["rel"] for l in client.get("/api").json()["links"]} >= {"stac", "raster", "jobs"}
    stac = client.get("/stac/").json()
    assert stac["id"] == "stacube" and stac["type"] == "Catalog"
    conforms = " ".join(stac["conformsTo"])
    for name in ("item-search", "filter", "sort", "fields", "query", "collection-search", "features"):
        assert name in conforms, name
    assert client.get("/raster/").status_code == 200


def test_stac_search_with_filter_sort_fields(client):
    body = {"collections": [L8], "filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]},
            "filter-lang": "cql2-json", "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}],
            "fields": {"include": ["properties.eo:cloud_cover"], "exclude": ["assets"]}, "limit": 50}
    r = client.post("/stac/search", json=body)
    assert r.status_code == 200
    feats = r.json()["features"]
    covers = [f["properties"]["eo:cloud_cover"] for f in feats]
    assert covers == sorted(covers) and all(c < 10 for c in covers) and len(covers) >= 5
    assert "assets" not in feats[0]
    assert r.json()["links"][0]["href"].endswith("/stac/")


def test_stac_get_search_query_and_paging(client):
    r = client.get(f"/stac/search?collections={L8}&limit=5&query=%7B%22eo%3Acloud_cover%22%3A%7B%22lt%22%3A15%7D%7D")
    assert r.status_code == 200
    body = r.json()
    assert len(body["features"]) == 5
    nxt = next(l["href"] for l in body["links"] if l["rel"] == "next")
    page2 = client.get(nxt.replace("http://testserver", ""))
    assert page2.status_code == 200 and page2.json()["features"][0]["id"] != body["features"][0]["id"]


def test_collections_and_collection_search(client):
    r = client.get("/stac/collections?q=Sentinel")
    ids = {c["id"] for c in r.json()["collections"]}
    assert S2 in ids and L8 not in ids
    item = client.get(f"/stac/collections/{S2}/items/S2_L1C_20150711T100008").json()
    assert item["assets"]["B04"]["eo:bands"][0]["common_name"] == "red"


@pytest.mark.parametrize("url", [
    "/stac/search?bbox=1,2,3",
    "/stac/search?datetime=not-a-date",
    "/stac/search?filter=foo%20bar&filter-lang=cql2-text",
    "/stac/search?filter=%7B%22op%22%3A%22%3D%22%7D&filter-lang=cql2-json",
    "/stac/search?limit=-1",
    "/stac/search?token=next:garbage",
    "/stac/collections/nope",
    f"/stac/collections/{S2}/items/nope",
    "/raster/collections/nope/tiles/WebMercatorQuad/8/75/95.png",
    f"/raster/collections/{L8}/tiles/WebMercatorQuad/30/1/1.png?assets=B4",
    f"/raster/collections/{L8}/tiles/WebMercatorQuad/8/900/95.png?assets=B4",
    f"/raster/collections/{L8}/tiles/WebMercatorQuad/{L8_TILE}.png?assets=B4&tilesize=4096",
    f"/raster/collections/{L8}/tiles/WebMercatorQuad/{L8_TILE}@4x.png?assets=B4&tilesize=512",
    f"/raster/collections/{L8}/tiles/WebMercatorQuad/{L8_TILE}.png?index=NOPE",
    f"/raster/collections/{L8}/tiles/WebMercatorQuad/{L8_TILE}.png?assets=NOPE",
    f"/raster/collections/{L8}/bbox/-75,40,-73,42/100x100.png?assets=B4&max_size=99999",
    f"/raster/collections/{L8}/items/nope/tiles/WebMercatorQuad/{L8_TILE}.png?assets=B4",
    "/raster/searches/nope/tiles/WebMercatorQuad/8/75/95.png?assets=B4",
])
def test_bad_requests_answer_4xx_json_with_a_reason(client, url):
    r = client.get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:200])
    body = r.json()
    assert body.get("detail") or body.get("description")


@pytest.mark.parametrize("body", [
    {"filter": {"op": "nope", "args": []}},
    {"bbox": "x"},
    {"datetime": "2020-01-01/2019-01-01"},
    {"intersects": {"type": "Polygon", "coordinates": "x"}},
])
def test_bad_search_bodies_answer_400(client, body):
    r = client.post("/stac/search", json=body)
    assert r.status_code == 400, r.text


def test_unparsable_json_body_answers_400(client):
    r = client.post("/stac/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "InvalidJSON"


def test_ndvi_tile_of_a_source_collection(client):
    r = client.get(f"/raster/collections/{S2}/tiles/WebMercatorQuad/{S2_TILE}.png?index=NDVI")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    px = png_pixels(r.content)
    painted = px[..., 3] > 0
    assert painted.sum() > 1000
    assert (px[painted][:, 1] > px[painted][:, 0]).mean() > 0.8  # vegetation renders green on rdylgn


def test_index_values_match_the_formula(client):
    point = client.get(f"/raster/collections/{S2}/items/S2_L1C_20150711T100008/point/14.558,45.87?index=NDVI").json()
    raw = client.get(f"/raster/collections/{S2}/items/S2_L1C_20150711T100008/point/14.558,45.87?assets=B08&assets=B04").json()
    nir, red = [v[0] if isinstance(v, list) else v for v in raw["values"]][:2] if "values" in raw else (None, None)
    got = point["values"][0] if "values" in point else None
    assert got is not None and nir is not None
    assert got == pytest.approx((nir - red) / (nir + red), abs=1e-4)


def test_rgb_mosaic_tile_and_tilejson(client):
    r = client.get(f"/raster/collections/{L8}/tiles/WebMercatorQuad/{L8_TILE}.webp?assets=B4&assets=B3&assets=B2&rescale=0,0.3&unscale=true")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    tj = client.get(f"/raster/collections/{L8}/WebMercatorQuad/tilejson.json?assets=B4").json()
    assert tj["tiles"][0].startswith("http://testserver/raster/collections/")


def test_numbers_sort_numerically_and_searches_count_matches(client):
    r = client.get(f"/stac/search?collections={L8}&sortby=-eo:cloud_cover&limit=50")
    covers = [f["properties"]["eo:cloud_cover"] for f in r.json()["features"]]
    assert covers == sorted(covers, reverse=True) and covers[0] > 10 > covers[-1]
    assert r.json()["numberMatched"] == 19
    items = client.get(f"/stac/collections/{S2}/items?limit=2").json()
    assert items["numberMatched"] == 5 and items["numberReturned"] == 2
    assert "https://api.stacspec.org/v1.0.0/item-search#sort" in client.get("/stac/conformance").json()["conformsTo"]
    queryables = client.get(f"/stac/collections/{L8}/queryables").json()["properties"]
    assert queryables["eo:cloud_cover"]["type"] == "number"


@pytest.mark.parametrize("query", [{"gt": 10}, {"gt": "10"}])
def test_query_operands_given_as_text_compare_as_numbers(client, query):
    r = client.post("/stac/search", json={"collections": [L8], "query": {"eo:cloud_cover": query}, "limit": 50})
    covers = [f["properties"]["eo:cloud_cover"] for f in r.json()["features"]]
    assert covers and all(c > 10 for c in covers)


def test_cql2_text_post_bodies(client):
    r = client.post("/stac/search", json={"collections": [L8], "filter-lang": "cql2-text",
                                          "filter": "eo:cloud_cover < 10", "limit": 50})
    assert r.status_code == 200
    assert r.json()["features"] and all(f["properties"]["eo:cloud_cover"] < 10 for f in r.json()["features"])
    bad = client.post("/stac/search", json={"filter-lang": "cql2-text", "filter": "eo:cloud_cover <<< 10"})
    assert bad.status_code == 400
    assert "invalid CQL2 filter" in bad.json()["description"] and "cql2-json" in bad.json()["description"]
    assert "loc" not in bad.text  # not a pydantic dump


def test_tilejson_wmts_and_viewer_need_no_assets(client):
    tj = client.get(f"/raster/collections/{S2}/WebMercatorQuad/tilejson.json")
    assert tj.status_code == 200
    assert tj.json()["minzoom"] == 12 and tj.json()["maxzoom"] == 14
    assert "assets=B04&assets=B03&assets=B02" in tj.json()["tiles"][0]
    tile = client.get(tj.json()["tiles"][0].replace("http://testserver", "").format(z=14, x=8854, y=5837))
    assert tile.status_code == 200 and png_pixels(tile.content)[..., 3].any()
    plain = client.get(f"/raster/collections/{S2}/tiles/WebMercatorQuad/{S2_TILE}.png")
    assert plain.status_code == 200 and png_pixels(plain.content)[..., 3].any()
    assert client.get(f"/raster/collections/{S2}/WebMercatorQuad/map.html").status_code == 200
    wmts = client.get(f"/raster/collections/{S2}/WMTSCapabilities.xml")
    assert wmts.status_code == 200
    assert f"<ows:Identifier>{S2}_WebMercatorQuad_true-color</ows:Identifier>" in wmts.text
    assert "rescale=" in wmts.text and "%2C" in wmts.text  # commas encoded in the tile URLs


def test_cloud_masked_mosaic_tilejson_and_wmts(client):
    tj = client.get(f"/raster/collections/{S2}/masked/WebMercatorQuad/tilejson.json")
    assert tj.status_code == 200
    url = tj.json()["tiles"][0]
    assert "/masked/tiles/WebMercatorQuad/{z}/{x}/{y}.png?assets=B04" in url
    assert [tj.json()["minzoom"], tj.json()["maxzoom"]] == [12, 14]
    tile = client.get(url.replace("http://testserver", "").format(z=14, x=8854, y=5837))
    assert tile.status_code == 200 and png_pixels(tile.content)[..., 3].any()
    wmts = client.get(f"/raster/collections/{S2}/masked/WMTSCapabilities.xml")
    assert wmts.status_code == 200 and f"{S2}_masked_true-color" in wmts.text
    own = client.get(f"/raster/collections/{S2}/masked/WMTSCapabilities.xml?index=NDVI")
    assert f"{S2}_masked_default" in own.text and "expression=" in own.text


def test_registered_search_mosaic_with_index(client):
    r = client.post("/raster/searches/register", json={"collections": [L8], "filter-lang": "cql2-json",
                                                         "filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}})
    assert r.status_code == 200
    sid = r.json()["id"]
    tile = client.get(f"/raster/searches/{sid}/tiles/WebMercatorQuad/{L8_TILE}.png?index=NDVI")
    assert tile.status_code == 200 and png_pixels(tile.content)[..., 3].any()


def test_statistics_and_indices_listing(client):
    stats = client.get(f"/raster/collections/{L8}/items/LC08_L1TP_014031_20180106_20180119_01_T1/statistics?assets=B4")
    assert stats.status_code == 200
    names = [i["name"] for i in client.get("/raster/indices").json()]
    assert names == ["NDVI", "NDWI", "NDBI", "EVI", "NBR"]


def test_transactions_need_the_api_key(samples):
    from stacube_services.app import create_app

    settings = Settings(api_key="s3cret")
    doc = {"type": "Collection", "id": "tx-test", "description": "t", "license": "other",
           "stac_version": "1.1.0", "links": [],
           "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}}}
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert c.post("/stac/collections", json=doc).status_code == 401
        assert c.post("/stac/collections", json=doc, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/stac/collections", json=doc, headers={"X-API-Key": "s3cret"}).status_code in (200, 201)
        assert c.post("/stac/search", json={"collections": ["tx-test"]}).status_code == 200  # reads stay open
        assert c.delete("/stac/collections/tx-test", headers={"X-API-Key": "s3cret"}).status_code in (200, 204)


def test_items_written_through_transactions_describe_their_collection(samples):
    from stacube_services.app import create_app

    key = {"X-API-Key": "s3cret"}
    doc = {"type": "Collection", "id": "tx-described", "description": "t", "license": "other",
           "stac_version": "1.1.0", "links": [],
           "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}}}
    item = {k: v for k, v in samples.get_item(S2, "S2_L1C_20150711T100008").items() if k != "links"}
    item["collection"] = "tx-described"
    with TestClient(create_app(Settings(api_key="s3cret")), raise_server_exceptions=False) as c:
        assert c.post("/stac/collections", json=doc, headers=key).status_code in (200, 201)
        try:
            r = c.post("/stac/collections/tx-described/items", json=item, headers=key)
            assert r.status_code in (200, 201), r.text
            stored = samples.get_collection("tx-described")
            assert stored["item_assets"]["B04"]["eo:bands"][0]["common_name"] == "red"
            assert stored["renders"]["true-color"]["assets"] == ["B04", "B03", "B02"]
            queryables = c.get("/stac/collections/tx-described/queryables").json()["properties"]
            assert queryables["platform"] == {"type": "string"} and queryables["eo:cloud_cover"]["type"] == "number"
            # an item fetched (asset hrefs served over HTTP) and written back stores the storage paths
            url = f"/stac/collections/tx-described/items/{item['id']}"
            fetched = c.get(url).json()
            assert fetched["assets"]["B04"]["href"].startswith("http://testserver/stac/")
            fetched["properties"]["eo:cloud_cover"] = 1.5
            assert c.put(url, json=fetched, headers=key).status_code == 200
            again = samples.get_item("tx-described", item["id"])
            assert again["assets"]["B04"]["href"] == item["assets"]["B04"]["href"]
            assert "alternate" not in again["assets"]["B04"] and again["properties"]["eo:cloud_cover"] == 1.5
        finally:
            c.delete("/stac/collections/tx-described", headers=key)


def test_items_carry_asset_urls_served_with_range_requests(client, samples):
    """Local assets are answered as URLs of the asset route (their path an alternate); the route
    serves the file's bytes: HEAD, ranges (206), whole, unsatisfiable ranges (416)."""
    from stacube_services.assets import ALTERNATE_ASSETS

    stored = samples.get_item(S2, "S2_L1C_20150711T100008")["assets"]["B04"]["href"]
    data = Path(stored).read_bytes()
    url = f"/stac/collections/{S2}/items/S2_L1C_20150711T100008/assets/B04"
    item = client.get(f"/stac/collections/{S2}/items/S2_L1C_20150711T100008").json()
    assert item["assets"]["B04"]["href"] == f"http://testserver{url}"
    assert item["assets"]["B04"]["alternate"] == {"local": {"href": stored}}
    assert ALTERNATE_ASSETS in item["stac_extensions"]
    for answer in (client.get(f"/stac/search?collections={S2}&limit=1").json(),
                   client.post("/stac/search", json={"collections": [S2], "limit": 1,
                                                     "fields": {"include": ["assets"]}}).json(),
                   client.get(f"/stac/collections/{S2}/items?limit=1").json()):
        assert answer["features"][0]["assets"]["B04"]["href"].startswith("http://testserver/stac/collections/")
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data)) and head.headers["accept-ranges"] == "bytes"
    assert head.headers["content-type"].startswith("image/tiff")
    part = client.get(url, headers={"Range": "bytes=100-299", "Accept-Encoding": "br, gzip"})
    assert part.status_code == 206 and part.content == data[100:300] and "content-encoding" not in part.headers
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == data[-16:]
    whole = client.get(url, headers={"Accept-Encoding": "br, gzip"})
    assert whole.content == data and "content-encoding" not in whole.headers
    assert whole.headers["content-length"] == str(len(data))
    unsatisfiable = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert unsatisfiable.status_code == 416 and unsatisfiable.headers["content-range"] == f"bytes */{len(data)}"
    for malformed in ("bytes=abc", "bytes=5-1", "items=0-1", "bytes=--5", "bytes=+1-2", "bytes=1_0-20"):
        r = client.get(url, headers={"Range": malformed})
        assert r.status_code == 400 and r.json()["description"].startswith("Range: "), (malformed, r.text)
    two = client.get(url, headers={"Range": "bytes=0-0,2-2"})
    assert two.status_code == 206 and two.headers["content-type"].startswith("multipart/byteranges")
    many = client.get(url, headers={"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(101))})
    assert many.status_code == 200 and many.content == data  # more than 100 ranges: the file
    assert client.get(f"{url}/x").json()["description"] == "the asset is a file: there is nothing below its URL"
    for missing in (f"/stac/collections/{S2}/items/S2_L1C_20150711T100008/assets/nope",
                    f"/stac/collections/{S2}/items/nope/assets/B04", "/stac/collections/nope/items/x/assets/B04"):
        r = client.get(missing)
        assert r.status_code == 404 and r.json()["description"], missing


@pytest.fixture(scope="module")
def files_client(samples, tmp_path_factory):
    """The application with its outputs in a directory of this module: ``/files`` serves it."""
    from stacube_services.app import create_app

    from stacube.jobs.state import JobStore

    root = tmp_path_factory.mktemp("outputs")
    (root / "job-a").mkdir()
    (root / "job-a" / "report.json").write_bytes(bytes(range(256)) * 4)
    settings = Settings(output=str(root))
    # a job of a readable collection: /files serves it also when other tests made collections private
    jobs = JobStore(settings)
    jobs.submit("job-a", {"output_collection": S2})
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as c:
            yield c, (root / "job-a" / "report.json").read_bytes()
    finally:
        jobs.run(lambda conn: conn.execute("DELETE FROM stacube.jobs WHERE id = %s", ("job-a",)))


def test_output_files_answer_ranges_and_refuse_bad_ones_in_json(files_client):
    """``/files`` serves ranges (206, multipart for several) and answers every range it cannot
    serve with a JSON error and its reason: 400 malformed, 416 unsatisfiable with
    ``Content-Range: bytes */size``; never a plain-text answer nor a 500."""
    client, data = files_client
    url, size = "/files/job-a/report.json", len(data)
    part = client.get(url, headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{size}"
    assert client.get(url, headers={"Range": "bytes=-16"}).content == data[-16:]
    assert client.get(url, headers={"Range": "bytes=1000-"}).content == data[1000:]
    assert client.get(url, headers={"Range": f"bytes=0-{10**30}"}).content == data  # past the end: to the end
    assert client.get(url, headers={"Range": f"bytes=-{size + 5}"}).content == data  # suffix longer than the file
    two = client.get(url, headers={"Range": "bytes=0-0, 2-2"})
    assert two.status_code == 206 and two.headers["content-type"].startswith("multipart/byteranges")
    assert client.get(url, headers={"Range": "bytes=0-9,5-19"}).content == data[:20]  # overlapping: merged
    many = client.get(url, headers={"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(101))})
    assert many.status_code == 200 and many.content == data
    for unsatisfiable in (f"bytes={size}-", f"bytes={size}-{size + 10}", "bytes=-0", f"bytes={10**30}-",
                          f"bytes=0-1,{size}-"):
        r = client.get(url, headers={"Range": unsatisfiable})
        assert r.status_code == 416, (unsatisfiable, r.status_code, r.text)
        assert r.headers["content-range"] == f"bytes */{size}" and r.headers["content-type"] == "application/json"
        assert r.json()["description"].startswith("Range: "), unsatisfiable
    for malformed in ("bytes=abc", "bytes=5-1", "items=0-1", "bytes=", "bytes=-", "bytes=,", "bytes",
                      "bytes=--5", "bytes=-5-", "bytes=0--1", "bytes=-1-5", "bytes=+1-2", "bytes=1_0-20",
                      "bytes=\u0663-", "bytes=0-1;2-3", "bytes=0-1,abc", "bytes=0x10-", "bytes=1 2-3",
                      "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000):
        r = client.get(url, headers={"Range": malformed.encode("utf-8")})
        assert r.status_code == 400 and r.headers["content-type"] == "application/json", (malformed, r.text)
        assert r.json()["code"] == "InvalidParameter" and r.json()["description"].startswith("Range: "), malformed
    # a range that does not apply (an If-Range that no longer matches) is not refused: the file is
    assert client.get(url, headers={"Range": "bytes=abc", "If-Range": '"stale"'}).content == data
    missing = client.get("/files/job-a/nope.json")
    assert missing.status_code == 404 and missing.json()["description"], missing.text
    assert client.post(url).status_code == 405 and client.post(url).json()["description"]


def test_transactions_are_off_without_a_key(client):
    r = client.post("/stac/collections", json={"id": "x"})
    assert r.status_code == 405
