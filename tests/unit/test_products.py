"""Product files: ODC product definitions and STAC Collections become stacube collections."""

import json
from pathlib import Path

import pytest

from stacube.catalog.bands import band_map, resolve_bands
from stacube.catalog.products import odc_to_collection, read_product_file
from stacube.errors import InvalidInput

PRODUCTS = Path(__file__).resolve().parents[2] / "data" / "products"

DSM = """\
name: dsm1sv10
description: DSM 1sec Version 1.0
metadata_type: eo
metadata:
  platform: {code: SRTM}
  instrument: {name: SIR}
  product_type: DEM
  format: {name: ENVI}
storage:
  crs: EPSG:4326
  resolution: {longitude: 0.0002777777777780, latitude: -0.0002777777777780}
measurements:
  - {name: elevation, dtype: float32, nodata: .nan, units: 'metre'}
"""


def test_the_odc_dsm_definition_loads_verbatim(tmp_path):
    path = tmp_path / "dsm.yaml"
    path.write_text(DSM)
    coll = read_product_file(path)
    assert coll["type"] == "Collection" and coll["id"] == "dsm1sv10"
    band = coll["item_assets"]["elevation"]["raster:bands"][0]
    assert band == {"data_type": "float32", "unit": "metre", "nodata": "nan"}
    assert coll["summaries"]["platform"] == ["srtm"] and coll["summaries"]["instruments"] == ["sir"]
    assert coll["stacube:storage"] == {"crs": "EPSG:4326", "resolution": [0.000277777777778, 0.000277777777778]}


def test_landsat_product_has_common_names_flags_and_quality():
    coll = read_product_file(PRODUCTS / "landsat-8-c1-l1tp-gdalcubes-sample.odc.yaml")
    assert resolve_bands(coll, ["red", "nir08", "swir16"]) == {"red": "B4", "nir08": "B5", "swir16": "B6"}
    bqa = coll["item_assets"]["BQA"]
    assert "data-mask" in bqa["roles"]
    fields = {bf["name"]: bf for bf in bqa["classification:bitfields"]}
    assert fields["cloud_shadow_confidence"]["offset"] == 7 and fields["cloud_shadow_confidence"]["length"] == 2
    assert coll["stacube:quality"]["preset"] == "landsat-c1-bqa"
    assert coll["item_assets"]["B4"]["raster:bands"][0]["scale"] == 2e-5


def test_odc_aliases_resolve():
    coll = read_product_file(PRODUCTS / "sentinel-2-l1c-eolearn-sample.odc.yaml")
    assert band_map(coll)["red_edge_2"] == "B06"
    clm = coll["item_assets"]["CLM"]["classification:classes"]
    assert {c["value"] for c in clm if c.get("nodata")} == {255}


def test_stac_collection_file_with_quality_preset():
    coll = read_product_file(PRODUCTS / "landsat-8-l2-worldcereal-sample.json")
    assert coll["stacube:quality"]["kind"] == "binary" and coll["stacube:quality"]["clear"][0]["values"] == [1]
    assert "data-mask" in coll["item_assets"]["MASK"]["roles"]


@pytest.mark.parametrize("text, message", [
    ("name: x\nmeasurements: [", "malformed YAML"),
    ("name: x\nmetadata_type: eo\n", "measurements"),
    ("name: 'bad id'\nmetadata_type: eo\nmeasurements:\n  - {name: a, dtype: uint8}\n", "product name"),
    ("name: x\nmetadata_type: eo\nmeasurements:\n  - {name: a, dtype: uint99}\n", "unknown dtype"),
    ("- just\n- a list\n", "mapping"),
    ("foo: bar\n", "neither a STAC Collection"),
    ("name: x\nmeasurements:\n  - {name: a, dtype: uint8}\nquality: {asset: zzz, preset: fmask}\n", "not one of its assets"),
])
def test_malformed_product_files_give_one_line(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message) as info:
        read_product_file(path)
    assert "\n" not in str(info.value)


def test_invalid_stac_collection(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"type": "Collection", "id": "x"}))
    with pytest.raises(InvalidInput, match="invalid STAC Collection"):
        read_product_file(path)


def test_flags_definition_bits_to_classification():
    coll = odc_to_collection({
        "name": "fm", "metadata_type": "eo3",
        "measurements": [{"name": "fmask", "dtype": "uint8", "nodata": 0, "units": "1",
                          "flags_definition": {"fmask": {"bits": [0, 1, 2, 3, 4, 5, 6, 7],
                                                         "values": {"0": "nodata", "1": "valid", "2": "cloud"}}}}],
    })
    classes = coll["item_assets"]["fmask"]["classification:classes"]
    assert [c["value"] for c in classes] == [0, 1, 2]
