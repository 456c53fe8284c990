"""The cubes API through the combined application (mounted at /cubes)."""

import csv
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import stacube
from conftest import PRIVATE, S2_DATES, SLOVENIA_BBOX
from stacube.cubes.build import create_cube
from stacube.cubes.spec import build_cube_spec

TILE = "14/8854/5837"  # covers the Slovenia stack
POINT = "lon=14.5581&lat=45.8702"


@pytest.fixture(scope="module")
def client(private_s2, cube_settings):
    from stacube_services.app import create_app

    spec = build_cube_spec(name="t-api", collections=[PRIVATE], datetime=S2_DATES, bands=["red", "green", "blue", "nir"])
    create_cube(spec, cube_settings, fill=False, replace=True)
    stacube.open_cube("t-api", bbox=SLOVENIA_BBOX, settings=cube_settings, workers=1)
    with TestClient(create_app(cube_settings), raise_server_exceptions=False) as c:
        yield c


def rgba(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGBA"))


def test_cube_listing_and_description(client):
    r = client.get("/cubes/")
    assert r.status_code == 200 and "t-api" in [c["name"] for c in r.json()]
    doc = client.get("/cubes/t-api").json()
    assert doc["variables"] == ["red", "green", "blue", "nir", "quality"] and len(doc["time"]) == 5
    assert doc["crs"] == "EPSG:32633" and doc["chunks"] == [5, 128, 128]
    rels = {link["rel"]: link["href"] for link in doc["links"]}
    assert rels["tilejson"].endswith("/cubes/t-api/WebMercatorQuad/tilejson.json")
    # the cube is a collection of the STAC API too, with its Zarr asset
    stac = client.get("/stac/collections/t-api").json()
    assert stac["assets"]["zarr"]["type"] == "application/vnd+zarr"


def test_tiles_follow_the_time_selection(client):
    clear = client.get(f"/cubes/t-api/tiles/WebMercatorQuad/{TILE}.png?time=2015-07-11")
    cloudy = client.get(f"/cubes/t-api/tiles/WebMercatorQuad/{TILE}.png?time=2015-07-31")
    assert clear.status_code == 200 and clear.headers["content-type"] == "image/png"
    assert clear.headers["x-cube-time"].startswith("2015-07-11") and clear.headers["x-cube-level"] == "0"
    assert cloudy.headers["x-cube-time"].startswith("2015-07-31")
    opaque = rgba(clear.content)[..., 3] > 0
    assert 1000 < opaque.sum() < 256 * 256  # the stack covers part of the tile
    assert (rgba(cloudy.content)[..., 3] == 0).all()  # fully cloudy: nothing clear to show
    by_index = client.get(f"/cubes/t-api/tiles/WebMercatorQuad/{TILE}.png?time_index=0")
    assert np.array_equal(rgba(by_index.content), rgba(clear.content))


def test_index_and_single_band_tiles(client):
    ndvi = client.get(f"/cubes/t-api/tiles/WebMercatorQuad/{TILE}@2x.png?index=NDVI&time=2015-09-09")
    assert ndvi.status_code == 200
    pixels = rgba(ndvi.content)
    assert pixels.shape == (512, 512, 4)
    shown = pixels[pixels[..., 3] > 0][:, :3].astype(int)
    assert (shown[:, 1] > shown[:, 0]).mean() > 0.8  # vegetation: green end of RdYlGn
    red = client.get(f"/cubes/t-api/tiles/WebMercatorQuad/{TILE}.webp?variables=red&rescale=0,0.2&colormap_name=viridis")
    assert red.status_code == 200 and red.headers["content-type"] == "image/webp"
    coarse = client.get("/cubes/t-api/tiles/WebMercatorQuad/12/2213/1459.png?time=2015-07-11")
    assert coarse.status_code == 200 and coarse.headers["x-cube-level"] == "1"


def test_tilejson(client):
    doc = client.get("/cubes/t-api/WebMercatorQuad/tilejson.json?index=NDVI").json()
    assert doc["tiles"][0].endswith("/cubes/t-api/tiles/WebMercatorQuad/{z}/{x}/{y}.png?index=NDVI")
    assert doc["minzoom"] < doc["maxzoom"] == 14
    west, south, east, north = doc["bounds"]
    assert west < 14.5581 < east and south < 45.8702 < north


def test_timeseries_get_post_and_collection_level(client):
    r = client.get(f"/cubes/t-api/timeseries?{POINT}&index=NDVI&format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 5 and [row["status"] for row in rows] == ["clear", "cloud", "cloud", "clear", "clear"]
    polygon = {"type": "Polygon", "coordinates": [[[14.555, 45.868], [14.561, 45.868], [14.561, 45.873],
                                                   [14.555, 45.873], [14.555, 45.868]]]}
    doc = client.post("/cubes/t-api/timeseries?index=NDVI&bands=red", json=polygon).json()
    assert doc["kind"] == "polygon" and doc["variables"] == ["red", "NDVI"]
    assert doc["series"][1]["NDVI"] is None and doc["series"][1]["valid_share"] == 1.0
    cube_rows = client.get(f"/cubes/timeseries?collection={PRIVATE}&{POINT}&index=NDVI&source=cube").json()
    item_rows = client.get(f"/cubes/timeseries?collection={PRIVATE}&{POINT}&index=NDVI&source=items").json()
    assert cube_rows["source"] == "cube" and item_rows["source"] == "items"
    assert [s["status"] for s in cube_rows["series"]] == [s["status"] for s in item_rows["series"]]
    post = client.post(f"/cubes/timeseries?collection={PRIVATE}&source=items", json={"type": "Feature", "properties": {},
                       "geometry": {"type": "Point", "coordinates": [14.5581, 45.8702]}})
    assert post.status_code == 200 and post.json()["kind"] == "point"


@pytest.mark.parametrize("method,url,body,status,reason", [
    ("get", "/cubes/nope", None, 404, "unknown cube"),
    ("get", "/cubes/nope/tiles/WebMercatorQuad/14/8854/5837.png", None, 404, "unknown cube"),
    ("get", "/cubes/t-api/tiles/Nope/14/8854/5837.png", None, 400, "tile matrix set"),
    ("get", "/cubes/t-api/tiles/WebMercatorQuad/3/0/0.png", None, 404, "outside cube"),
    ("get", "/cubes/t-api/tiles/WebMercatorQuad/14/8854/5837.gif", None, 400, "expected Y"),
    ("get", "/cubes/t-api/tiles/WebMercatorQuad/14/99999/5837.png", None, 400, "outside WebMercatorQuad"),
    ("get", "/cubes/t-api/tiles/WebMercatorQuad/14/8854/5837.png?variables=red,nir", None, 400, "one or three"),
    ("get", "/cubes/t-api/tiles/WebMercatorQuad/14/8854/5837.png?time=yesterday", None, 400, "ISO"),
    ("get", "/cubes/t-api/tiles/WebMercatorQuad/14/8854/5837.png?rescale=1", None, 400, "MIN,MAX"),
    ("get", "/cubes/t-api/timeseries?lon=0&lat=0", None, 422, "outside cube"),
    ("get", "/cubes/t-api/timeseries?lon=500&lat=0", None, 400, "longitude"),
    ("get", f"/cubes/t-api/timeseries?{POINT}&format=xml", None, 400, "json or csv"),
    ("get", f"/cubes/t-api/timeseries?{POINT}&index=NOPE", None, 400, "unknown index"),
    ("get", f"/cubes/timeseries?collection=nope&{POINT}", None, 404, "unknown collection"),
    ("post", "/cubes/t-api/timeseries", b"{not json", 400, "not valid JSON"),
    ("post", "/cubes/t-api/timeseries", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, 400, "LineString"),
])
def test_bad_requests_answer_4xx_with_a_reason(client, method, url, body, status, reason):
    if method == "get":
        r = client.get(url)
    elif isinstance(body, bytes):
        r = client.post(url, content=body, headers={"content-type": "application/json"})
    else:
        r = client.post(url, json=body)
    assert r.status_code == status, r.text
    assert reason in r.json()["description"]
