"""Asset hrefs as the STAC API answers them: local files as URLs of the asset route, the storage
path as an alternate; and back to the storage path when a client writes an item it fetched."""

import copy

import pytest

from stacube_services.assets import ALTERNATE_ASSETS, asset_url, is_local, restored, self_ids, served_item

BASE = "https://cube.example.org/stac/"


def item(**hrefs):
    return {"type": "Feature", "id": "S2 A", "collection": "s2", "stac_extensions": [], "links": [],
            "assets": {k: {"href": v, "type": "image/tiff"} for k, v in hrefs.items()}}


@pytest.mark.parametrize("href, local", [
    ("/srv/scenes/B04.tif", True), ("file:///srv/scenes/B04.tif", True), ("FILE:/srv/a.tif", True),
    ("s3://bucket/B04.tif", False), ("https://host/B04.tif", False), ("/vsis3/bucket/B04.tif", False),
    ("/vsicurl/https://host/a.tif", False), ("relative/B04.tif", False), (None, False), (3, False),
])
def test_local_hrefs(href, local):
    assert is_local(href) is local


def test_local_assets_are_served_with_their_path_as_an_alternate():
    doc = item(B04="/srv/scenes/B04.tif", B08="s3://bucket/B08.tif", zarr="file:///out/j/cube.zarr")
    stored = copy.deepcopy(doc)
    served_item(doc, BASE)
    b04, b08, zarr = (doc["assets"][k] for k in ("B04", "B08", "zarr"))
    assert b04["href"] == "https://cube.example.org/stac/collections/s2/items/S2%20A/assets/B04"
    assert b04["alternate"] == {"local": {"href": "/srv/scenes/B04.tif"}} and b04["type"] == "image/tiff"
    assert b08 == stored["assets"]["B08"]  # s3:// as it is
    assert zarr["alternate"]["local"]["href"] == "file:///out/j/cube.zarr"
    assert doc["stac_extensions"] == [ALTERNATE_ASSETS]
    # the written-back document is the stored one
    assert restored(doc) and doc == stored


def test_existing_alternates_are_kept():
    doc = item(B04="/srv/B04.tif")
    doc["assets"]["B04"]["alternate"] = {"s3": {"href": "s3://b/B04.tif"}}
    doc["stac_extensions"] = [ALTERNATE_ASSETS]
    served_item(doc, BASE)
    assert set(doc["assets"]["B04"]["alternate"]) == {"s3", "local"}
    assert doc["stac_extensions"] == [ALTERNATE_ASSETS]
    restored(doc)
    assert doc["assets"]["B04"]["alternate"] == {"s3": {"href": "s3://b/B04.tif"}}
    assert doc["stac_extensions"] == [ALTERNATE_ASSETS]


def test_items_without_ids_use_their_self_link():
    """The fields extension may leave ``id`` and ``collection`` out; the self link names them."""
    doc = {"assets": {"B04": {"href": "/srv/B04.tif"}},
           "links": [{"rel": "self", "href": f"{BASE}collections/s2/items/S2%20A"}]}
    assert self_ids(doc) == ("s2", "S2 A")
    served_item(doc, BASE, *self_ids(doc))
    assert doc["assets"]["B04"]["href"] == asset_url(BASE, "s2", "S2 A", "B04")
    bare = {"assets": {"B04": {"href": "/srv/B04.tif"}}}
    assert served_item(bare, BASE)["assets"]["B04"]["href"] == "/srv/B04.tif"


def test_names_that_do_not_fit_a_path_segment_are_left_alone():
    doc = item(**{"a/b": "/srv/B04.tif"})
    assert served_item(doc, BASE)["assets"]["a/b"]["href"] == "/srv/B04.tif"


def test_only_urls_of_the_route_with_a_local_alternate_are_restored():
    other = {"href": "https://elsewhere.org/B04.tif", "alternate": {"local": {"href": "/etc/passwd"}}}
    doc = {"type": "FeatureCollection", "features": [{"assets": {"B04": dict(other)}}]}
    assert not restored(doc) and doc["features"][0]["assets"]["B04"] == other
