"""Products and datasets in pgSTAC: sources, idempotence, all-or-nothing loads."""

import json

import pytest
import yaml

from stacube_testing import PRODUCTS, SAMPLES, SHARED, copy_stack, has_shared_data
from stacube.catalog.register import add_datasets, add_product
from stacube.errors import InvalidInput


def test_samples_are_registered_with_absolute_local_hrefs(samples):
    counts = samples.item_counts()
    assert counts["landsat-8-c1-l1tp-gdalcubes-sample"] == 19
    assert counts["sentinel-2-l1c-eolearn-sample"] == 5
    assert counts["sentinel-2-l2a-worldcereal-sample"] == 21
    assert counts["landsat-8-l2-worldcereal-sample"] == 15
    item = samples.get_item("landsat-8-c1-l1tp-gdalcubes-sample", "LC08_L1TP_014031_20180106_20180119_01_T1")
    bqa = item["assets"]["BQA"]
    assert bqa["href"].startswith("/") and bqa["href"].endswith("BQA.tif")
    assert bqa["proj:code"] == "EPSG:32618" and bqa["proj:shape"] == [78, 77]
    assert item["assets"]["B4"]["eo:bands"][0]["common_name"] == "red"
    assert item["assets"]["B4"]["raster:bands"][0]["scale"] == pytest.approx(2e-5)
    assert item["properties"]["eo:cloud_cover"] == pytest.approx(24.01)


def test_collection_extent_follows_items(samples):
    coll = samples.get_collection("sentinel-2-l1c-eolearn-sample")
    assert coll["extent"]["temporal"]["interval"][0][0].startswith("2015-07-11")
    west, south, east, north = coll["extent"]["spatial"]["bbox"][0]
    assert 14.5 < west < east < 14.6 and 45.8 < south < north < 45.9


def test_adding_again_is_idempotent(samples):
    before = samples.item_counts()
    add_datasets(samples, [SAMPLES / "s2-l1c-slovenia-eolearn"])
    add_product(samples, PRODUCTS / "sentinel-2-l1c-eolearn-sample.odc.yaml")
    assert samples.item_counts() == before
    assert samples.get_collection("sentinel-2-l1c-eolearn-sample")["extent"]["temporal"]["interval"][0][0]


def _ndjson(tmp_path, items, name="items.ndjson"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    return path


def _item(samples, item_id="LC08_L1TP_014031_20180106_20180119_01_T1"):
    return samples.get_item("landsat-8-c1-l1tp-gdalcubes-sample", item_id)


def test_a_bad_item_rejects_the_whole_batch(samples, tmp_path):
    good = dict(_item(samples), id="batch-good-1")
    bad = dict(_item(samples), id="batch-bad-1")
    bad["properties"] = dict(bad["properties"], datetime="not a date")
    path = _ndjson(tmp_path, [good, bad])
    before = samples.item_counts()
    with pytest.raises(InvalidInput, match="item 'batch-bad-1'.*datetime"):
        add_datasets(samples, [path])
    assert samples.item_counts() == before


@pytest.mark.parametrize("mutate, message", [
    (lambda i: i.pop("geometry"), "no \"geometry\""),
    (lambda i: i.update(collection="nope"), "unknown collection 'nope'"),
    (lambda i: i.update(id="has space"), "id may hold"),
    (lambda i: i.update(bbox=[1, 2]), "bbox"),
    (lambda i: i.update(assets={"x": {"title": "no href"}}), "has no href"),
    (lambda i: i.update(geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}), "not closed"),
    (lambda i: i.update(type="Collection"), "must be \"Feature\""),
])
def test_bad_items_are_named_with_their_reason(samples, tmp_path, mutate, message):
    doc = dict(_item(samples), id="broken-item")
    mutate(doc)
    with pytest.raises(InvalidInput, match=message):
        add_datasets(samples, [_ndjson(tmp_path, [doc])])


def test_malformed_ndjson_line(samples, tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_text(json.dumps(dict(_item(samples), id="ok-line")) + '\n{not json\n')
    with pytest.raises(InvalidInput, match="line 2: malformed JSON"):
        add_datasets(samples, [path])


def test_item_json_and_relative_hrefs(samples, tmp_path):
    stack = copy_stack("s2-l1c-slovenia-eolearn", tmp_path)
    doc = dict(samples.get_item("sentinel-2-l1c-eolearn-sample", "S2_L1C_20150711T100008"), id="relative-href-item")
    doc["assets"] = {"B04": dict(doc["assets"]["B04"], href="S2_L1C_20150711T100008/B04.tif")}
    path = stack / "item.json"
    path.write_text(json.dumps(doc))
    add_datasets(samples, [path])
    stored = samples.get_item("sentinel-2-l1c-eolearn-sample", "relative-href-item")
    assert stored["assets"]["B04"]["href"] == str(stack / "S2_L1C_20150711T100008" / "B04.tif")
    samples.delete_items("sentinel-2-l1c-eolearn-sample", ["relative-href-item"])


def test_folder_of_cogs_becomes_items_with_rio_stac_metadata(samples, tmp_path):
    stack = copy_stack("worldcereal-36MXB-s2-l8", tmp_path)
    folder = next(p for p in sorted(stack.iterdir()) if p.name.startswith("S2A_L2A_20181014"))
    for other in stack.iterdir():
        if other.is_dir() and other != folder:
            import shutil
            shutil.rmtree(other)
    (stack / "manifest.json").unlink()
    (stack / "assets.csv").unlink()
    add_product(samples, PRODUCTS / "sentinel-2-l2a-worldcereal-sample.json")
    from stacube.catalog.register import collect_items

    items = collect_items(samples, [stack], collection="sentinel-2-l2a-worldcereal-sample")
    assert len(items) == 1
    item = items[0]
    assert item["id"] == folder.name
    assert item["properties"]["datetime"].startswith("2018-10-14T07:48:51")
    b04 = item["assets"]["B04"]
    assert b04["proj:code"] == "EPSG:32736" and b04["proj:shape"] == [6, 6]
    assert b04["raster:bands"][0]["data_type"] == "uint16"
    assert b04["eo:bands"][0]["common_name"] == "red"  # from the collection's item_assets
    assert item["assets"]["MASK"]["proj:shape"] == [3, 3]


def test_cog_folder_needs_a_collection(samples, tmp_path):
    stack = copy_stack("s2-l1c-slovenia-eolearn", tmp_path)
    (stack / "manifest.json").unlink()
    (stack / "assets.csv").unlink()
    with pytest.raises(InvalidInput, match="needs --collection"):
        add_datasets(samples, [stack])


def test_search_filters(samples):
    found = list(samples.search({"collections": ["landsat-8-c1-l1tp-gdalcubes-sample"],
                                 "filter": "eo:cloud_cover < 5", "filter-lang": "cql2-text"}))
    assert found and all(i["properties"]["eo:cloud_cover"] < 5 for i in found)
    with pytest.raises(InvalidInput, match="invalid search"):
        list(samples.search({"datetime": "not-a-date"}))
    with pytest.raises(InvalidInput, match="invalid CQL2 filter"):
        list(samples.search({"filter": "eo:cloud_cover <<< 5"}))


@pytest.mark.skipif(not has_shared_data(), reason="shared STAC fixtures not present")
def test_bulk_real_items_from_public_catalogues(samples, tmp_path):
    """Every real item of one catalogue file registers (collections created first)."""
    src = SHARED / "stac" / "earth-search-v1" / "sentinel-2-l2a.ndjson"
    coll = json.loads((SHARED / "stac" / "earth-search-v1" / "collections" / "sentinel-2-l2a.json").read_text())
    path = tmp_path / "coll.json"
    path.write_text(json.dumps(coll))
    add_product(samples, path)
    result = add_datasets(samples, [src])
    assert result.items == sum(1 for line in src.open() if line.strip())
    item = samples.get_item("sentinel-2-l2a", json.loads(src.open().readline())["id"])
    assert item["assets"]["red"]["href"].startswith("https://")


def test_search_hydrates_items_as_pgstac_does(samples):
    """Items come back whole from the Python hydrater (``conf.nohydrate``): the documents as loaded,
    the same as pgSTAC's own hydration gives for the sample products, also where an item lacks an
    asset its collection declares; unlike pgSTAC's, a ``datetime: null`` (required beside
    ``start_datetime``/``end_datetime``) is kept."""
    from psycopg.types.json import Jsonb

    coll = {"type": "Collection", "stac_version": "1.1.0", "id": "hydration-test", "description": "d",
            "license": "other", "links": [],
            "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}},
            "item_assets": {"a": {"type": "image/tiff", "roles": ["data"]}, "b": {"type": "image/tiff", "roles": ["data"]}}}
    samples.upsert_collection(coll)

    def item(i: int, assets: tuple[str, ...]) -> dict:
        return {"type": "Feature", "stac_version": "1.1.0", "id": f"h{i}", "collection": "hydration-test",
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
                "bbox": [0, 0, 1, 1], "properties": {"datetime": f"2020-01-0{i}T00:00:00Z", "eo:cloud_cover": i},
                "links": [], "assets": {k: {"href": f"/data/h{i}/{k}.tif", "type": "image/tiff", "roles": ["data"]}
                                        for k in assets}}

    period = item(3, ("a",))
    period["properties"] = {"datetime": None, "start_datetime": "2020-01-01T00:00:00Z",
                            "end_datetime": "2020-01-31T23:59:59Z", "stacube:scenes": 0}
    period["assets"]["a"]["stacube:time_index"] = 0
    loaded = [item(1, ("a", "b")), item(2, ("a",)), period]
    samples.load_items(loaded)
    try:
        products = {json.loads(p.read_text())["id"] if p.suffix == ".json" else
                    yaml.safe_load(p.read_text())["name"] for p in PRODUCTS.iterdir()}
        compared = 0
        for collection in sorted(products & set(samples.collection_ids())):
            query = {"collections": [collection], "limit": 1000}
            ours = {i["id"]: i for i in samples.search(query)}
            with samples.connection() as conn:
                page = conn.execute("SELECT search(%s)", (Jsonb(query),)).fetchone()[0]
            assert ours == {i["id"]: i for i in page["features"]}, collection
            compared += len(ours)
        assert compared > 10
        mine = {i["id"]: i for i in samples.search({"collections": ["hydration-test"]})}
        for doc in loaded:
            got = {k: v for k, v in mine[doc["id"]].items() if k != "links"}
            assert got == {k: v for k, v in doc.items() if k != "links"}, doc["id"]
        assert set(mine["h1"]["assets"]) == {"a", "b"} and set(mine["h2"]["assets"]) == {"a"}
        assert mine["h2"] == samples.get_item("hydration-test", "h2")
    finally:
        samples.delete_collection("hydration-test")
