"""The command line as a user runs it: output, progress, and one-line errors."""

import json

import pytest

from stacube_testing import PRODUCTS, SAMPLES

NY = ["--collection", "landsat-8-c1-l1tp-gdalcubes-sample", "--bbox=-76.2,39.3,-71.95,42.8",
      "--datetime", "2018-01-01/2018-12-31"]


def one_line_error(result, *fragments):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for f in fragments:
        assert f in lines[0], lines[0]


def test_product_list_and_dataset_search_print_tables(cli, samples):
    out = cli("product", "list")
    assert out.returncode == 0 and "landsat-8-c1-l1tp-gdalcubes-sample" in out.stdout and "BQA" in out.stdout
    listing = json.loads(cli("product", "list", "--json").stdout)
    assert any(r["id"] == "sentinel-2-l1c-eolearn-sample" and r["items"] == 5 for r in listing)
    out = cli("dataset", "search", "-c", "sentinel-2-l1c-eolearn-sample", "--datetime", "2015-08-01/2015-09-30")
    assert out.returncode == 0 and "S2_L1C_20150830T100547" in out.stdout and "S2_L1C_20150711" not in out.stdout
    out = cli("dataset", "search", "-c", "landsat-8-c1-l1tp-gdalcubes-sample", "--filter", "eo:cloud_cover < 3", "--json")
    feats = json.loads(out.stdout)["features"]
    assert feats and all(f["properties"]["eo:cloud_cover"] < 3 for f in feats)


def test_product_and_dataset_add_from_the_command_line(cli, samples):
    out = cli("product", "add", str(PRODUCTS / "sentinel-2-l1c-eolearn-sample.odc.yaml"))
    assert out.returncode == 0 and "quality CLM" in out.stdout
    out = cli("dataset", "add", str(SAMPLES / "s2-l1c-slovenia-eolearn"))
    assert out.returncode == 0 and "registered 5 items" in out.stdout


def test_composite_command_with_json_report(cli, samples, tmp_path):
    out = cli("composite", *NY, "--method", "best-pixel", "--max-cloud", "20", "--bands", "red,nir",
              "--index", "NDVI", "--output", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["status"] == "completed" and report["variables"][:3] == ["red", "nir", "NDVI"]
    assert any(not s["used"] for s in report["scenes"])


def test_composite_command_prints_a_summary_and_progress(cli, samples, tmp_path):
    out = cli("composite", "--collection", "sentinel-2-l1c-eolearn-sample", "--bbox", "14.5514,45.8659,14.5642,45.8750",
              "--datetime", "2015-07-01/2015-09-30", "--method", "median", "--index", "NDVI", "--output", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "5 scenes used" in out.stdout and "pixels x scenes / s" in out.stdout
    assert "compositing tiles" in out.stderr  # the progress bar


@pytest.mark.parametrize("args, fragments", [
    (["composite", "--collection", "nope", "--bbox", "0,0,1,1", "--datetime", "2018/2019", "--method", "median"],
     ["unknown collection 'nope'"]),
    (["composite", *NY[:2], "--bbox", "10,10,11,11", "--datetime", "2018", "--method", "median"], ["no scene"]),
    (["composite", *NY[:2], "--bbox", "1,2,0,3", "--datetime", "2018", "--method", "median"], ["min must be less than max"]),
    (["composite", *NY[:2], "--bbox", "1,2,3", "--datetime", "2018", "--method", "median"], ["expected 4 numbers"]),
    (["composite", *NY[:3], "--datetime", "2018-12-31/2018-01-01", "--method", "median"], ["END is before START"]),
    (["composite", *NY[:3], "--datetime", "", "--method", "median"], ["datetime is empty"]),
    (["composite", *NY, "--method", "modal"], ["unknown method 'modal'"]),
    (["composite", *NY, "--method", "median", "--index", "FOO"], ["unknown index 'FOO'"]),
    (["composite", *NY, "--method", "median", "--crs", "EPSG:99999"], ["unknown CRS"]),
    (["composite", *NY, "--method", "median", "--max-cloud", "0.001"], ["no scene passes the cloud filter"]),
    (["composite", *NY, "--method", "median", "--bands", "red,purple"], ["no band 'purple'"]),
    (["composite", *NY, "--method", "median", "--mask-asset", "BQA"], ["go together"]),
    (["composite", *NY, "--method", "median", "--output", "ftp://x/y"], ["unsupported scheme"]),
    (["composite", *NY], ["--method"]),
    (["dataset", "add", "/nonexistent/path"], ["no such file"]),
    (["product", "show", "nope"], ["unknown collection 'nope'"]),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(cli, samples, args, fragments):
    one_line_error(cli(*args), *fragments)


def test_malformed_product_yaml_and_item_json(cli, samples, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmeasurements: [\n")
    one_line_error(cli("product", "add", str(bad)), "malformed YAML")
    item = tmp_path / "item.json"
    item.write_text('{"type": "Feature", "id": "x", "collection": "sentinel-2-l1c-eolearn-sample", "properties": {}}')
    one_line_error(cli("dataset", "add", str(item)), "item 'x'", "datetime")
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    one_line_error(cli("dataset", "add", str(broken)), "malformed JSON")


def test_unreadable_asset_is_one_line(cli, samples, tmp_path):
    import json as _json

    doc = samples.get_item("sentinel-2-l1c-eolearn-sample", "S2_L1C_20150711T100008")
    doc = _json.loads(_json.dumps(doc))
    doc["id"] = "missing-file-item"
    for asset in doc["assets"].values():
        asset["href"] = str(tmp_path / "gone.tif")
    path = tmp_path / "i.json"
    path.write_text(_json.dumps(doc))
    assert cli("dataset", "add", str(path)).returncode == 0
    try:
        out = cli("composite", "--collection", "sentinel-2-l1c-eolearn-sample", "--bbox", "14.5514,45.8659,14.5642,45.8750",
                  "--datetime", "2015-07-11/2015-07-11", "--method", "median", "--output", str(tmp_path / "o"))
        one_line_error(out, "cannot read")
    finally:
        samples.delete_items("sentinel-2-l1c-eolearn-sample", ["missing-file-item"])


def test_indices_listing(cli):
    out = cli("composite", "--list-indices")
    assert out.returncode == 0 and "(N-R)/(N+R)" in out.stdout
