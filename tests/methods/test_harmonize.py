"""Sentinel-2 processing-baseline 04.00 harmonisation, on real catalogue items and a loaded stack."""

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from stacube.algo.harmonize import dn_offset, processing_baseline
from stacube.algo.load import Source, band_scaling, load_stack
from stacube_testing import SHARED, has_shared_data

STAC = SHARED / "stac"
pytestmark = pytest.mark.skipif(not has_shared_data(), reason="needs ../shared/data")


def items(path):
    return [json.loads(line) for line in (STAC / path).read_text().splitlines() if line.strip()]


def collection(path):
    return json.loads((STAC / path).read_text())


def catalog_offset(item, key):
    return ((item["assets"][key].get("raster:bands") or [{}])[0]).get("offset")


def test_earth_search_l2a_offset_already_applied_in_the_dn():
    coll = collection("earth-search-v1/collections/sentinel-2-l2a.json")
    docs = items("earth-search-v1/sentinel-2-l2a.ndjson")
    assert docs and all(d["properties"]["earthsearch:boa_offset_applied"] is True for d in docs)
    for doc in docs:
        assert catalog_offset(doc, "red") == -0.1           # what the item says ...
        assert band_scaling(doc, coll, "red") == (0.0001, 0.0)  # ... but the DN were already shifted
        assert band_scaling(doc, coll, "scl") == (1.0, 0.0)     # classes are not reflectance
        assert band_scaling(doc, coll, "aot") == (0.001, 0.0)


@pytest.mark.parametrize("path, coll_path", [
    ("earth-search-v1/sentinel-2-c1-l2a.ndjson", "earth-search-v1/collections/sentinel-2-c1-l2a.json"),
    ("earth-search-v1/sentinel-2-l1c.ndjson", "earth-search-v1/collections/sentinel-2-l1c.json"),
])
def test_earth_search_raw_dn_of_new_baselines_get_minus_a_tenth(path, coll_path):
    coll = collection(coll_path)
    docs = items(path)
    assert docs
    for doc in docs:
        assert processing_baseline(doc) >= (5, 0)
        for key in ("blue", "red", "nir", "swir16"):
            assert band_scaling(doc, coll, key) == pytest.approx((0.0001, -0.1)), (doc["id"], key)


def test_planetary_computer_follows_the_processing_baseline():
    coll = collection("planetary-computer/collections/sentinel-2-l2a.json")
    docs = items("planetary-computer/sentinel-2-l2a.ndjson")
    old = [d for d in docs if d["properties"]["s2:processing_baseline"] < "04.00"]
    new = [d for d in docs if d["properties"]["s2:processing_baseline"] >= "04.00"]
    assert len(old) == 56 and len(new) == len(docs) - 56 and any(
        d["properties"]["s2:processing_baseline"] == "04.00" for d in new)
    for doc in old:  # no raster:bands scale in PC items: DN, no offset before 04.00
        assert band_scaling(doc, coll, "B04") == (1.0, 0.0)
        assert dn_offset(doc, "B8A", coll) == 0.0
    for doc in new:  # DN - 1000 from 04.00 on, every reflectance band
        assert band_scaling(doc, coll, "B04") == (1.0, -1000.0)
        assert dn_offset(doc, "B01", coll) == -1000.0
        assert band_scaling(doc, coll, "SCL") == (1.0, 0.0)
        assert band_scaling(doc, coll, "visual") == (1.0, 0.0)  # 3-band TCI: left alone


def test_legacy_and_unknown_items_and_other_sensors():
    v0 = {d["id"]: d for d in items("earth-search-v0/sentinel-s2-l2a-cogs.ndjson")}
    assert band_scaling(v0["S2B_20EPT_20250731_0_L2A"], {}, "B04", {"scale": 1e-4, "offset": -0.1}) == (1e-4, 0.0)
    # no baseline, no flag: what the catalogue says is kept
    assert dn_offset(v0["S2A_28QCH_20200714_0_L2A"], "B04") is None
    assert band_scaling(v0["S2A_28QCH_20200714_0_L2A"], {}, "B04", {"scale": 1e-4, "offset": 0.02}) == (1e-4, 0.02)
    for doc in items("planetary-computer/landsat-c2-l2.ndjson")[:20]:
        band = doc["assets"]["red"]["raster:bands"][0]
        assert band_scaling(doc, {}, "red") == (band["scale"], band["offset"])


def _write(path, value):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 5000080, 10, 10), nodata=0) as dst:
        dst.write(np.full((8, 8), value, dtype=np.uint16), 1)


def _item(item_id, when, href, props, offset):
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": "s2-synthetic",
        "geometry": {"type": "Polygon", "coordinates": [[[14.9, 45.0], [15.1, 45.0], [15.1, 45.2], [14.9, 45.2], [14.9, 45.0]]]},
        "bbox": [14.9, 45.0, 15.1, 45.2],
        "properties": {"datetime": when, "platform": "sentinel-2a", "proj:epsg": 32633, **props},
        "assets": {"B04": {"href": str(href), "type": "image/tiff; application=geotiff",
                           "eo:bands": [{"name": "B04", "common_name": "red"}],
                           "proj:shape": [8, 8], "proj:transform": [10, 0, 500000, 0, -10, 5000080],
                           "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": offset}]}},
        "links": [],
    }


def test_a_loaded_stack_has_no_jump_across_the_baseline_change(tmp_path):
    """The same surface (reflectance 0.15) recorded before and after 2022-01-25: raw DN 1500
    (PB 03.01), 2500 (PB 04.00, raw) and 1500 (PB 04.00, offset already removed by the catalogue)."""
    from odc.geo.geobox import GeoBox
    from affine import Affine

    scenes = [("old", "2021-12-20T10:00:00Z", 1500, {"s2:processing_baseline": "03.01"}, 0.0),
              ("new", "2022-02-10T10:00:00Z", 2500, {"s2:processing_baseline": "04.00"}, -0.1),
              ("flagged", "2022-03-01T10:00:00Z", 1500,
               {"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True}, -0.1)]
    docs = []
    for name, when, dn, props, offset in scenes:
        _write(tmp_path / f"{name}.tif", dn)
        docs.append(_item(name, when, tmp_path / f"{name}.tif", props, offset))
    coll = {"id": "s2-synthetic", "item_assets": {}}
    geobox = GeoBox((8, 8), Affine(10, 0, 500000, 0, -10, 5000080), "EPSG:32633")
    stack = load_stack([Source(coll, docs, {"red": "B04"}, None)], geobox, ["red"], quality=False)
    assert stack.item_ids == ["old", "new", "flagged"]
    assert np.allclose(stack.bands["red"], 0.15, atol=1e-6)
    # without the harmonisation the new raw scene would read 0.25 (scale only) - a +0.1 jump
    raw = np.array([1500, 2500, 1500]) * 1e-4
    assert np.ptp(raw) == pytest.approx(0.1)
    assert datetime.fromisoformat(docs[1]["properties"]["datetime"].replace("Z", "+00:00")) > \
        datetime(2022, 1, 25, tzinfo=timezone.utc)
