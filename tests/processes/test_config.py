"""Process configurations and modules, checked without a catalog: what a user gets wrong gets
one line naming it."""

from __future__ import annotations

import pytest
import yaml

from stacube.errors import InvalidInput, NotFound
from stacube.jobs.process_config import read_config


def write(folder, doc):
    path = folder / "job.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_the_minimal_form_resolves_paths_against_its_folder(tmp_path, write_process):
    sub = tmp_path / "procs"
    sub.mkdir()
    write_process(sub)
    config = write(tmp_path, """
process: procs/focal.py
inputs:
  collections: [sentinel-2-l1c-eolearn-sample]
  bands: [red, nir]
area: {bbox: [14.5514, 45.8659, 14.5642, 45.8750], crs: EPSG:4326}
time: 2015-07-01/2015-09-30
output: out/
parameters: {}
""")
    spec, process = read_config(config)
    assert spec.process == str(sub / "focal.py") and spec.process_name == "focal"
    assert spec.output == str(tmp_path / "out")
    assert spec.version == process.version and len(spec.version) == 12
    assert spec.bbox == (14.5514, 45.8659, 14.5642, 45.875) and spec.halo == 0 and spec.outputs is None
    # the same file gives the same job; changed code is another job
    assert read_config(config)[0].job_id() == spec.job_id()
    (sub / "focal.py").write_text((sub / "focal.py").read_text() + "\n# changed\n")
    assert read_config(config)[0].job_id() != spec.job_id()


def test_optional_keys_and_a_geojson_area(tmp_path, write_process, write_config):
    write_process(tmp_path)
    polygon = {"type": "Polygon", "coordinates": [[[14.56, 45.87], [14.57, 45.87], [14.57, 45.88],
                                                   [14.56, 45.87]]]}
    config = write_config(tmp_path, area={"type": "Feature", "properties": {}, "geometry": polygon},
                          period="P1M", halo=3, outputs={"focal": None, "clear": {"dtype": "uint16", "nodata": 0}},
                          inputs={"collections": ["c"], "bands": ["red", "nir"], "max_cloud": 40,
                                  "mask": {"asset": "CLM", "clear": [0]}, "mask_cleanup": "1,2"},
                          output="s3://bucket/prefix", tile_size=64)
    spec, _ = read_config(config)
    assert spec.bbox == (14.56, 45.87, 14.57, 45.88) and spec.period == "P1M" and spec.halo == 3
    assert spec.outputs["clear"].nodata == 0 and spec.outputs["focal"].dtype == "float32"
    assert spec.mask_asset == "CLM" and spec.clear == [0] and spec.mask_cleanup == (1, 2)
    assert spec.output == "s3://bucket/prefix" and spec.max_cloud == 40


@pytest.mark.parametrize("change, error, fragment", [
    ({"colour": "red"}, InvalidInput, "colour: Extra inputs are not permitted"),
    ({"inputs": {"collections": []}}, InvalidInput, "inputs.collections"),
    ({"process": "missing.py"}, NotFound, "no process module at"),
    ({"process": "no-such-registered-process"}, NotFound, "no registered process"),
    ({"area": {"bbox": [1, 2, 0, 3]}}, InvalidInput, "min must be less than max"),
    ({"area": {"bbox": [1, 2, 3, 4], "srs": "x"}}, InvalidInput, "area: unknown key 'srs'"),
    ({"time": "2015-09-30/2015-07-01"}, InvalidInput, "END is before START"),
    ({"parameters": {"radius": 1, "colour": 2}}, InvalidInput, "unexpected keyword argument 'colour'"),
    ({"outputs": {"m": {"dtype": "uint8"}}}, InvalidInput, "needs a nodata value"),
    ({"outputs": {"m": {"dtype": "complex64"}}}, InvalidInput, "outputs are int8"),
    ({"halo": 1000}, InvalidInput, "halo"),
])
def test_mistakes_are_named(project, write_config, change, error, fragment):
    with pytest.raises(error, match=fragment):
        read_config(write_config(project, **change))


@pytest.mark.parametrize("source, fragment", [
    ("def run(cube):\n    pass\n", "defines no execute"),
    ("import no_such_module_at_all\n", "does not import: ModuleNotFoundError"),
    ("def execute():\n    pass\n", "execute must take the cube"),
])
def test_bad_modules_are_named(tmp_path, write_process, write_config, source, fragment):
    write_process(tmp_path, source, "bad.py")
    with pytest.raises(InvalidInput, match=fragment):
        read_config(write_config(tmp_path, process="bad.py"))


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(InvalidInput, match="not valid YAML"):
        read_config(write(tmp_path, "process: [unclosed"))
    with pytest.raises(InvalidInput, match="expected a mapping"):
        read_config(write(tmp_path, "- a list"))
    with pytest.raises(NotFound, match="no configuration file"):
        read_config(tmp_path / "nope.yaml")
