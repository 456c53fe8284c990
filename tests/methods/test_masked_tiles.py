"""Cloud-masked mosaic tiles through the HTTP client, checked against the items' own tiles."""

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from stacube.catalog.quality import preset
from stacube.settings import Settings

S2 = "sentinel-2-l1c-eolearn-sample"
L8 = "landsat-8-c1-l1tp-gdalcubes-sample"
S2_TILE = "WebMercatorQuad/14/8854/5837"   # covers the Slovenia stack
L8_TILE = "WebMercatorQuad/8/75/95"        # covers New York scenes
CLEAR_0711 = "S2_L1C_20150711T100008"      # clear; the only clear scene before 2015-08-25
CLOUDY_0820 = "S2_L1C_20150820T100728"     # fully cloudy, the most recent before 2015-08-25
UNTIL_0825 = "datetime=2015-07-01T00:00:00Z/2015-08-25T00:00:00Z"


@pytest.fixture(scope="module")
def client(samples):
    from stacube_services.app import create_app

    with TestClient(create_app(Settings()), raise_server_exceptions=False) as c:
        yield c


def npy(response) -> np.ma.MaskedArray:
    """A titiler ``.npy`` tile: the bands, then the mask (dtype maximum valid, zero or the dtype
    minimum masked) as the last band."""
    assert response.status_code == 200, response.text[:300]
    array = np.load(io.BytesIO(response.content))
    return np.ma.MaskedArray(array[:-1], mask=np.broadcast_to(array[-1] <= 0, array[:-1].shape))


def item_tile(client, collection, item, tile, asset) -> np.ma.MaskedArray:
    return npy(client.get(f"/raster/collections/{collection}/items/{item}/tiles/{tile}.npy?assets={asset}"))


def test_masked_mosaic_shows_the_clear_scene_where_the_plain_one_shows_clouds(client):
    plain = npy(client.get(f"/raster/collections/{S2}/tiles/{S2_TILE}.npy?assets=B04&{UNTIL_0825}"))
    r = client.get(f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.npy?assets=B04&{UNTIL_0825}")
    masked = npy(r)
    cloudy = item_tile(client, S2, CLOUDY_0820, S2_TILE, "B04")
    clear = item_tile(client, S2, CLEAR_0711, S2_TILE, "B04")
    covered = ~np.ma.getmaskarray(clear)[0]
    assert covered.sum() > 1000
    # the plain mosaic (first non-nodata, most recent first) is the cloudy 2015-08-20 scene
    assert np.array_equal(plain.data[0][covered], cloudy.data[0][covered])
    # the masked mosaic skips it: every painted pixel is the clear 2015-07-11 value
    assert np.array_equal(masked.data[0][covered], clear.data[0][covered])
    assert not np.array_equal(masked.data[0][covered], plain.data[0][covered])
    assert np.array_equal(~np.ma.getmaskarray(masked)[0], covered)
    assert r.headers["x-assets"] == CLEAR_0711
    y, x = np.argwhere(covered)[len(np.argwhere(covered)) // 2]
    assert masked.data[0, y, x] == clear.data[0, y, x] != cloudy.data[0, y, x]


def test_most_recent_clear_scene_wins_over_older_ones(client):
    r = client.get(f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.npy?assets=B04&assets=B08")
    masked = npy(r)
    latest = item_tile(client, S2, "S2_L1C_20150909T100017", S2_TILE, "B08")
    covered = ~np.ma.getmaskarray(latest)[0]
    assert masked.shape[0] == 2
    assert np.array_equal(masked.data[1][covered], latest.data[0][covered])
    assert r.headers["x-assets"] == "S2_L1C_20150909T100017"  # stops early: the tile is full


def test_a_cloudy_only_range_gives_an_empty_tile_not_cloudy_pixels(client):
    r = client.get(f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.png?assets=B04&rescale=0,3000"
                   "&datetime=2015-07-30T00:00:00Z/2015-08-21T00:00:00Z")
    assert r.status_code == 200 and r.headers["x-assets"] == ""
    assert not np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))[..., 3].any()


def _expected_landsat(client, items, rule):
    """The masked mosaic computed independently from each item's own tile (titiler item API)."""
    out = np.zeros((256, 256), dtype=np.int64)
    free = np.ones((256, 256), dtype=bool)
    used = []
    for item in items:
        r = client.get(f"/raster/collections/{L8}/items/{item}/tiles/{L8_TILE}.npy?assets=BQA")
        if r.status_code == 404:  # the item does not reach the tile
            continue
        bqa = npy(r)
        band = item_tile(client, L8, item, L8_TILE, "B4")
        observed, clear = rule.decode(bqa.data[0])
        clear &= observed & ~np.ma.getmaskarray(bqa)[0] & ~np.ma.getmaskarray(band)[0]
        take = clear & free
        if take.any():
            out[take] = band.data[0][take]
            free &= ~take
            used.append(item)
    return out, ~free, used


def test_landsat_bitfield_mask_against_the_items_tiles(client):
    found = client.post("/stac/search", json={
        "collections": [L8], "bbox": [-75.9375, 40.979898, -74.53125, 42.032974], "limit": 100,
        "sortby": [{"field": "properties.datetime", "direction": "desc"}]}).json()["features"]
    ids = [f["id"] for f in found]
    assert len(ids) >= 5
    expected, filled, used = _expected_landsat(client, ids, preset("landsat-c1-bqa", "BQA"))
    r = client.get(f"/raster/collections/{L8}/masked/tiles/{L8_TILE}.npy?assets=B4")
    masked = npy(r)
    got_filled = ~np.ma.getmaskarray(masked)[0]
    assert filled.sum() > 1000
    assert np.array_equal(got_filled, filled)
    assert np.array_equal(masked.data[0][filled], expected[filled])
    assert r.headers["x-assets"].split(",") == used
    # the plain mosaic differs: it shows clouds of the most recent scenes
    plain = npy(client.get(f"/raster/collections/{L8}/tiles/{L8_TILE}.npy?assets=B4"))
    both = filled & ~np.ma.getmaskarray(plain)[0]
    assert (plain.data[0][both] != masked.data[0][both]).sum() > 100


def test_best_clear_order_starts_with_the_least_cloudy_item(client):
    r = client.get(f"/raster/collections/{L8}/masked/tiles/{L8_TILE}.npy?assets=B4&order=best-clear&max_items=3")
    assert r.status_code == 200
    used = r.headers["x-assets"].split(",")
    found = client.post("/stac/search", json={
        "collections": [L8], "ids": used, "limit": 10}).json()["features"]
    cover = {f["id"]: f["properties"]["eo:cloud_cover"] for f in found}
    assert [cover[i] for i in used] == sorted(cover[i] for i in used)
    assert len(used) <= 3


def test_registered_search_with_a_cql2_filter(client):
    sid = client.post("/raster/searches/register", json={
        "collections": [L8], "filter-lang": "cql2-json",
        "filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}}).json()["id"]
    r = client.get(f"/raster/searches/{sid}/masked/tiles/{L8_TILE}.npy?assets=B4")
    used = r.headers["x-assets"].split(",")
    assert r.status_code == 200 and used[0]
    found = client.post("/stac/search", json={"collections": [L8], "ids": used, "limit": 20}).json()["features"]
    assert len(found) == len(used) and all(f["properties"]["eo:cloud_cover"] < 10 for f in found)
    every = client.get(f"/raster/collections/{L8}/masked/tiles/{L8_TILE}.npy?assets=B4").headers["x-assets"]
    assert every.split(",") != used  # the filter changed which scenes were used


def test_mask_cleanup_grows_clouds(client):
    url = f"/raster/collections/{L8}/masked/tiles/{L8_TILE}.npy?assets=B4&max_items=1"
    plain = ~np.ma.getmaskarray(npy(client.get(url)))[0]
    cleaned = ~np.ma.getmaskarray(npy(client.get(url + "&mask_cleanup=0,3")))[0]
    assert cleaned.sum() < plain.sum() and not (cleaned & ~plain).any()


def test_index_and_registered_search(client):
    r = client.get(f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.png?index=NDVI&{UNTIL_0825}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    px = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))
    painted = px[..., 3] > 0
    assert painted.sum() > 1000 and (px[painted][:, 1] > px[painted][:, 0]).mean() > 0.8
    sid = client.post("/raster/searches/register", json={
        "collections": [S2], "datetime": "2015-07-01T00:00:00Z/2015-08-25T00:00:00Z"}).json()["id"]
    via_search = npy(client.get(f"/raster/searches/{sid}/masked/tiles/{S2_TILE}.npy?assets=B04"))
    via_collection = npy(client.get(f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.npy?assets=B04&{UNTIL_0825}"))
    assert np.array_equal(via_search.filled(0), via_collection.filled(0))


def test_scaled_tile_and_unscaled_values(client):
    r = client.get(f"/raster/collections/{S2}/masked/tiles/{S2_TILE}@2x.npy?assets=B04&unscale=true&{UNTIL_0825}")
    tile = npy(r)
    assert tile.shape == (1, 512, 512) and tile.dtype == np.float32
    values = tile.compressed()
    assert 0 < values.min() and values.max() < 1  # reflectance, not DN


@pytest.mark.parametrize("url, status", [
    (f"/raster/collections/nope/masked/tiles/{S2_TILE}.png?assets=B04", 404),
    (f"/raster/searches/nope/masked/tiles/{S2_TILE}.png?assets=B04", 404),
    (f"/raster/collections/{S2}/masked/tiles/WebMercatorQuad/14/99999/5837.png?assets=B04", 400),
    (f"/raster/collections/{S2}/masked/tiles/WebMercatorQuad/40/1/1.png?assets=B04", 400),
    (f"/raster/collections/{S2}/masked/tiles/NoSuchTMS/14/8854/5837.png?assets=B04", 400),
    (f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.png?assets=NOPE", 400),
    (f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.png?assets=B04&order=random", 422),
    (f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.png?assets=B04&max_items=0", 422),
    (f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.png?assets=B04&mask_cleanup=2", 400),
    (f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.png?assets=B04&expression=foo(b1)", 400),
    (f"/raster/collections/{S2}/masked/tiles/{S2_TILE}.png?index=NOPE", 400),
    (f"/raster/collections/{S2}/masked/tiles/WebMercatorQuad/3/1/1.png?assets=B04", 404),
])
def test_bad_requests_answer_4xx_json(client, url, status):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:300])
    body = r.json()
    assert body.get("description") or body.get("detail")


def test_a_collection_without_quality_rule_answers_400(client, samples):
    samples.upsert_collection({
        "type": "Collection", "stac_version": "1.1.0", "id": "no-quality-rule", "description": "d",
        "license": "other", "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}})
    r = client.get(f"/raster/collections/no-quality-rule/masked/tiles/{S2_TILE}.png?assets=B04")
    assert r.status_code == 400 and "quality rule" in r.json()["description"]


def test_items_read_in_threads_or_in_the_request_thread_give_the_same_tile(client, monkeypatch):
    from stacube_services import masked

    url = f"/raster/collections/{L8}/masked/tiles/{L8_TILE}.npy?assets=B4&assets=B3"
    in_thread = client.get(url)  # local items: read item after item in the request's thread
    monkeypatch.setattr(masked, "local_item", lambda item, assets=None: False)  # as if remote: the read pool
    pooled = client.get(url + f"&max_items={masked.MAX_ITEMS}")  # another query: not the cached tile
    assert in_thread.status_code == pooled.status_code == 200
    assert in_thread.content == pooled.content and len(in_thread.headers["x-assets"].split(",")) >= 5
    assert in_thread.headers["x-assets"] == pooled.headers["x-assets"]
