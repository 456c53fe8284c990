"""What items say about their collection: item_assets, summaries, typed queryables, renders."""

from __future__ import annotations

import copy

import pytest

from stacube.catalog.derive import (
    FROM_ITEMS, derive_item_assets, derive_summaries, property_types, refresh_collection,
)
from stacube.catalog.renders import default_renders, render_query, zoom_range
from stacube.core.crs import proj_fields
from stacube.errors import listing


def item(i: int, cloud=10.0, scale=0.0001, title="Red", platform="sentinel-2a") -> dict:
    return {
        "id": f"i{i}", "collection": "c", "bbox": [14.0, 45.0, 14.01, 45.01],
        "properties": {"datetime": "2020-01-01T00:00:00Z", "eo:cloud_cover": cloud, "platform": platform,
                       "instruments": ["msi"], "s2:granule_id": f"g{i}", "created": "2020-01-02T00:00:00Z"},
        "assets": {
            "red": {"href": f"/data/{i}/B04.tif", "title": title, "roles": ["data"], "gsd": 10,
                    "proj:shape": [100 + i, 100], "proj:transform": [10, 0, 0, 0, -10, 0],
                    "eo:bands": [{"name": "B04", "common_name": "red"}],
                    "raster:bands": [{"data_type": "uint16", "nodata": 0, "scale": scale,
                                      "statistics": {"minimum": 100 + i, "maximum": 3000}}]},
        },
    }


def test_item_assets_keep_what_every_item_agrees_on():
    assets, derived = derive_item_assets([item(1), item(2, title="Red band")])
    red = assets["red"]
    assert "href" not in red and "proj:shape" not in red and "title" not in red
    assert red["raster:bands"] == [{"data_type": "uint16", "nodata": 0, "scale": 0.0001}]
    assert red["eo:bands"][0]["common_name"] == "red" and red["gsd"] == 10
    assert derived["red"] == sorted(red)
    # a later batch refines: a field it disagrees on goes, a new asset is added
    later = item(3, scale=0.0002)
    later["assets"]["nir"] = {"href": "/x", "roles": ["data"], "eo:bands": [{"common_name": "nir"}]}
    assets2, derived2 = derive_item_assets([later], assets, derived)
    assert assets2["red"]["raster:bands"] == [{"data_type": "uint16", "nodata": 0}]
    assert assets2["nir"]["eo:bands"] == [{"common_name": "nir"}] and "nir" in derived2


def test_declared_fields_are_never_replaced():
    declared = {"red": {"title": "Declared", "roles": ["data", "reflectance"]}}
    assets, derived = derive_item_assets([item(1)], declared, {})
    assert assets["red"]["title"] == "Declared" and assets["red"]["roles"] == ["data", "reflectance"]
    assert "title" not in derived["red"] and "gsd" in derived["red"]


def test_summaries_ranges_values_and_no_ids():
    summaries, keys = derive_summaries([item(1, cloud=5.5), item(2, cloud=80, platform="sentinel-2b")])
    assert summaries["eo:cloud_cover"] == {"minimum": 5.5, "maximum": 80}
    assert summaries["platform"] == ["sentinel-2a", "sentinel-2b"]
    assert summaries["instruments"] == ["msi"]
    assert "s2:granule_id" not in summaries and "datetime" not in summaries
    many = [item(i, platform=f"p{i}") for i in range(12)]  # more values than a summary lists
    summaries, keys = derive_summaries(many)
    assert "platform" not in summaries and "platform" in keys
    again, _ = derive_summaries([item(99, platform="p1")], summaries, keys)
    assert "platform" not in again  # stays out once it had too many values


def test_property_types_widen_to_string_when_items_disagree():
    types = property_types([item(1), item(2)])
    assert types["eo:cloud_cover"] == {"type": "number"}
    assert types["instruments"] == {"type": "array"}
    assert types["created"] == {"type": "string", "format": "date-time"}
    assert "datetime" not in types
    odd = item(3)
    odd["properties"]["eo:cloud_cover"] = "n/a"
    assert property_types([odd], types)["eo:cloud_cover"] == {"type": "string"}


def test_refresh_collection_records_what_it_derived_and_changes_nothing_twice():
    coll = {"type": "Collection", "id": "c", "stac_version": "1.0.0", "description": "d",
            "license": "other", "links": [], "extent": {}, "summaries": {"platform": ["declared"]}}
    items = [item(1), item(2)]
    doc = refresh_collection(coll, items)
    assert doc["summaries"]["platform"] == ["declared"]  # declared summaries stay
    assert "eo:cloud_cover" in doc[FROM_ITEMS]["summaries"]
    assert doc[FROM_ITEMS]["item_assets"]["red"]
    assert "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json" in doc["stac_extensions"]
    assert refresh_collection(doc, copy.deepcopy(items)) is None


def test_default_rendering():
    coll = {"id": "c", "item_assets": {
        k: {"eo:bands": [{"common_name": k}], "roles": ["data"],
            "raster:bands": [{"data_type": "uint16", "scale": 0.0001}]} for k in ("red", "green", "blue")},
        "extent": {"spatial": {"bbox": [[14.0, 45.0, 14.01, 45.01]]}}}
    renders = default_renders(coll, [])
    render = renders["true-color"]
    assert render["assets"] == ["red", "green", "blue"]
    assert render["rescale"][0] == [0.0, 3000.0]  # reflectance 0..0.3 through the scale
    single = {"id": "n", "item_assets": {"CLP": {"roles": ["data"], "stacube:aliases": ["cloud_probability"]},
                                          "NDVI": {"roles": ["data"],
              "raster:bands": [{"data_type": "float32"}]}}}
    assert list(default_renders(single, [])) == ["NDVI"]  # not the cloud probability
    assert render_query({"assets": ["a", "b"], "rescale": [[0, 1], [2, 3]], "colormap_name": "viridis"}) == [
        ("assets", "a"), ("assets", "b"), ("rescale", "0,1"), ("rescale", "2,3"), ("colormap_name", "viridis")]


@pytest.mark.parametrize("resolution, bbox, zooms", [
    (10, [14.55, 45.86, 14.57, 45.88], [11, 14]),       # 10 m over 2 km
    (3000, [-76.2, 39.3, -71.9, 42.8], [4, 6]),         # 3 km pixels over a few degrees
    (30, [-180, -60, 180, 60], [0, 13]),                # the world at 30 m
])
def test_zoom_range(resolution, bbox, zooms):
    assert zoom_range(resolution, bbox) == zooms


def test_proj_fields_and_listing():
    assert proj_fields("EPSG:32633") == {"proj:code": "EPSG:32633", "proj:epsg": 32633}
    assert proj_fields(4326) == {"proj:code": "EPSG:4326", "proj:epsg": 4326}
    wkt = proj_fields("+proj=laea +lat_0=50 +lon_0=15 +x_0=0 +y_0=0 +ellps=GRS80 +units=m")
    assert wkt["proj:code"] is None and wkt["proj:wkt2"].startswith("PROJCRS")
    assert listing([], none="none known") == "none known" and listing(["a", "b"], none="x") == "a, b"
