"""Collections as real catalogues publish them: no item_assets declared. What the items say is
derived at registration (item_assets, summaries, typed queryables, a default rendering), so
composites, quality rules and searches work on them; outputs say what they hold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stacube.catalog.register import add_datasets, add_product
from stacube_testing import PRODUCTS, SAMPLES, SHARED

S2 = "sentinel-2-l1c-eolearn-sample"
BARE = "s2-no-item-assets"
AREA = ["--bbox", "14.5514,45.8659,14.5642,45.8750"]


@pytest.fixture(scope="module")
def bare(samples, tmp_path_factory):
    """The S2 sample's items in a hand-written collection that declares nothing but the basics;
    the collection file, and the items file (registered by the tests that need them)."""
    folder = tmp_path_factory.mktemp("bare")
    collection = {"type": "Collection", "stac_version": "1.0.0", "id": BARE, "license": "other",
                  "description": "written by hand", "links": [],
                  "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}}
    (folder / "collection.json").write_text(json.dumps(collection))
    items = [dict({k: v for k, v in i.items() if k != "links"}, collection=BARE)
             for i in samples.search({"collections": [S2]})]
    (folder / "items.ndjson").write_text("\n".join(json.dumps(i) for i in items) + "\n")
    add_product(samples, folder / "collection.json")
    return folder


@pytest.fixture(scope="module")
def described(samples, bare):
    """The bare collection once its items are registered."""
    add_datasets(samples, [bare / "items.ndjson"])
    return bare


def test_before_any_item_an_error_says_why_no_band_is_known(cli, bare):
    out = cli("composite", "-c", BARE, *AREA, "--datetime", "2015-07-01/2015-09-30", "--method", "median",
              "--bands", "red")
    assert out.returncode == 1
    assert "has no band 'red'; it has: none known: it declares no item_assets and no item is registered yet" \
        in out.stderr
    assert not out.stderr.rstrip().endswith(":")


def test_items_describe_their_collection(samples, described):
    doc = samples.get_collection(BARE)
    b04 = doc["item_assets"]["B04"]
    assert b04["eo:bands"][0]["common_name"] == "red"
    assert b04["raster:bands"][0] == {"data_type": "uint16", "nodata": 0, "scale": 0.0001, "offset": 0.0,
                                      "unit": "1", "sampling": "area"}
    assert "href" not in b04 and "proj:transform" not in b04 and "statistics" not in b04["raster:bands"][0]
    assert doc["summaries"]["eo:cloud_cover"] == {"minimum": 0.0, "maximum": 100.0}
    assert doc["summaries"]["platform"] == ["sentinel-2a"]
    assert doc["renders"]["true-color"]["assets"] == ["B04", "B03", "B02"]
    assert doc["renders"]["true-color"]["minmax_zoom"][1] == 14
    assert doc["stacube:from_items"]["properties"]["instruments"] == {"type": "array"}
    assert doc["stacube:from_items"]["properties"]["platform"] == {"type": "string"}
    with samples.connection() as conn:  # what pgSTAC reads through a wrapper: numbers, date-times
        queryables = conn.execute("SELECT get_queryables(%s::text)", (BARE,)).fetchone()[0]["properties"]
    assert queryables["eo:cloud_cover"]["type"] == "number"


def test_numbers_sort_and_compare_as_numbers(samples, described):
    ids = [i["id"] for i in samples.search({"collections": ["landsat-8-c1-l1tp-gdalcubes-sample"],
                                            "sortby": [{"field": "eo:cloud_cover", "direction": "desc"}]})]
    covers = [samples.get_item("landsat-8-c1-l1tp-gdalcubes-sample", i)["properties"]["eo:cloud_cover"] for i in ids]
    assert covers == sorted(covers, reverse=True) and covers[0] > 10 > covers[-1]
    found = list(samples.search({"collections": [BARE], "query": {"eo:cloud_cover": {"gt": "50"}}}))
    assert sorted(i["id"] for i in found) == ["S2_L1C_20150731T100009", "S2_L1C_20150820T100728"]


def test_composite_with_a_mask_named_at_composite_time(cli, described, tmp_path):
    out = cli("composite", "-c", BARE, *AREA, "--datetime", "2015-07-01/2015-09-30", "--method", "median",
              "--bands", "red,nir", "--index", "NDVI", "--mask-asset", "CLM", "--clear", "0",
              "--output", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    scenes = {s["item_id"]: s for s in json.loads(out.stdout)["scenes"]}
    assert scenes["S2_L1C_20150731T100009"]["clear_percent"] == 0
    assert scenes["S2_L1C_20150711T100008"]["clear_percent"] == 100


def test_quality_rule_set_afterwards_without_registering_items_again(cli, samples, described, tmp_path):
    out = cli("product", "quality", BARE, "--asset", "NOPE", "--preset", "binary-cloud")
    assert out.returncode == 1 and "quality asset 'NOPE' is not one of its assets (B01" in out.stderr
    out = cli("product", "quality", BARE, "--asset", "CLM", "--preset", "binary-cloud")
    assert out.returncode == 0 and "quality CLM (binary-cloud)" in out.stdout
    doc = samples.get_collection(BARE)
    assert doc["stacube:quality"]["asset"] == "CLM"
    assert "data-mask" in doc["item_assets"]["CLM"]["roles"]
    assert "roles" not in doc["stacube:from_items"]["item_assets"]["CLM"]  # declared from now on
    out = cli("composite", "-c", BARE, *AREA, "--datetime", "2015-07-01/2015-09-30", "--method", "median",
              "--bands", "red", "--max-cloud", "50", "--output", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    dropped = [s["item_id"] for s in json.loads(out.stdout)["scenes"] if not s["used"]]
    assert sorted(dropped) == ["S2_L1C_20150731T100009", "S2_L1C_20150820T100728"]
    # registering the same items again keeps the rule and what was derived
    add_datasets(samples, [described / "items.ndjson"])
    add_product(samples, described / "collection.json")
    again = samples.get_collection(BARE)
    assert again["item_assets"]["B04"] == doc["item_assets"]["B04"] and again["renders"] == doc["renders"]


def test_items_stacube_writes_carry_proj_code_and_proj_epsg(samples):
    item = samples.get_item(S2, "S2_L1C_20150711T100008")
    assert item["assets"]["B04"]["proj:code"] == "EPSG:32633" and item["assets"]["B04"]["proj:epsg"] == 32633


def test_collection_links_to_another_catalogue_are_dropped(samples, tmp_path):
    doc = {"type": "Collection", "stac_version": "1.0.0", "id": "copied-links", "license": "other",
           "description": "d", "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}},
           "links": [{"rel": "self", "href": "https://elsewhere.example/c"},
                     {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "href": "https://elsewhere.example/q"},
                     {"rel": "license", "href": "https://example.org/licence"}]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    add_product(samples, path)
    assert [link["rel"] for link in samples.get_collection("copied-links")["links"]] == ["license"]


@pytest.mark.skipif(not (SHARED / "stacks").exists(), reason="needs ../shared/data/stacks")
def test_every_shared_stack_registers_with_one_command(cli, settings):
    """In a catalog of its own (the shared stacks' items have the samples' ids)."""
    import psycopg

    from stacube.db.embedded import EmbeddedCluster
    from stacube.db.migrate import migrate
    from stacube.settings import Settings

    name = "stacube_shared_stacks"
    EmbeddedCluster(Settings(db_name=name)).ensure_database()
    migrate(Settings(db_name=name))
    env = {"STACUBE_DB_NAME": name}
    try:
        out = cli("product", "add", *map(str, sorted(PRODUCTS.iterdir())), env=env)
        assert out.returncode == 0, out.stderr
        out = cli("dataset", "add", *map(str, sorted((SHARED / "stacks").iterdir())), env=env)
        assert out.returncode == 0, out.stderr
        assert "sentinel-2-ndvi-eolearn-sample: 68" in out.stdout
    finally:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{settings.db_port}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_counts_cf_attributes_and_zarr_3(cli, samples, tmp_path):
    """Two fully cloudy dates over an area larger than the stack: valid_count 2 and clear_count
    0 on the stack, valid_count 0 and clear_count nodata outside it."""
    import rasterio
    import xarray as xr
    import zarr

    out = cli("composite", "-c", S2, "--bbox=14.545,45.860,14.570,45.880", "--datetime",
              "2015-07-20/2015-08-25", "--method", "median", "--bands", "red", "--zarr-format", "3",
              "--output", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    cogs = next(iter(report["outputs"]["cogs"].values()))
    with rasterio.open(cogs["clear_count"]) as clear, rasterio.open(cogs["valid_count"]) as valid:
        assert clear.nodata == valid.nodata == 65535
        c, v = clear.read(1), valid.read(1)
    assert set(np.unique(v)) == {0, 2}
    assert (c[v == 2] == 0).all() and (c[v == 0] == 65535).all()
    store = report["outputs"]["zarr"]
    assert zarr.open_group(store, mode="r").metadata.zarr_format == 3
    ds = xr.open_zarr(store)
    assert ds.red.attrs["units"] == "1" and "reflectance" in ds.red.attrs["long_name"]
    assert "no observation" in ds.clear_count.attrs["comment"]
    assert float(ds.clear_count.max()) == 0 and int(ds.clear_count.isnull().sum()) == int((v == 0).sum())


def test_output_is_checked_and_input_errors_record_no_job(cli, samples, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    before = json.loads(cli("job", "list", "--json").stdout)
    out = cli("composite", "-c", S2, *AREA, "--datetime", "2015-07-01/2015-09-30", "--method", "mean",
              "--bands", "red", "--output", str(blocker / "out"))
    assert out.returncode != 0 and "cannot write outputs to" in out.stderr and "Not a directory" in out.stderr
    out = cli("composite", "-c", S2, *AREA, "--datetime", "2016-07-01/2016-09-30", "--method", "mean",
              "--bands", "red", "--output", str(tmp_path))
    assert out.returncode != 0 and "no scene" in out.stderr
    assert json.loads(cli("job", "list", "--json").stdout) == before
