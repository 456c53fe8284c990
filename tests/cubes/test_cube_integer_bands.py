"""Cubes with integer bands: an Open Data Cube ingestion configuration in the documentation's
style (``dtype: int16``, ``nodata: -999``, ``driver: NetCDF CF``) on the Landsat 8 sample.

The cube stores the source's DN with CF ``scale_factor`` / ``add_offset`` / ``_FillValue``;
readers decode physical values equal (within half a DN) to those of the same cube in float32.
"""

import copy
import json
import math

import numpy as np
import pytest
import xarray as xr
import yaml
from stacube_testing import ROOT, SAMPLES

CONFIG = ROOT / "tests" / "data" / "odc" / "landsat8_ny_conus_albers_int16.yaml"
DATES = "2018-03-01/2018-06-30"
SCALE, OFFSET = 2.0e-5, -0.1  # the collection's raster:bands scale and offset (uint16 DN -> TOA reflectance)
#: the largest value int16 DN hold at that scale: brighter pixels (uint16 DN above 32767) saturate
TOP = 32767 * SCALE + OFFSET


def close(x: np.ndarray, y: np.ndarray) -> bool:
    """``x`` (decoded int16) is ``y`` (float32) within half a DN, saturated above :data:`TOP`."""
    ok = ~np.isnan(y)
    return bool(np.abs(x[ok] - np.minimum(y[ok], TOP)).max() <= SCALE / 2 + 1e-6)

if not (SAMPLES / "landsat8-c1-l1tp-newyork-gdalcubes").exists():
    pytest.skip("the Landsat 8 sample stack (data/samples/landsat8-c1-l1tp-newyork-gdalcubes, copied from "
                "../shared/data) is absent", allow_module_level=True)


@pytest.fixture(scope="module")
def made(samples, cube_settings, tmp_path_factory):
    """The int16 configuration and its float32 twin, created with the CLI."""
    from stacube_testing import run_cli

    folder = tmp_path_factory.mktemp("odc-int")
    env = {"STACUBE_OUTPUT": cube_settings.output}
    doc = yaml.safe_load(CONFIG.read_text())
    doc["location"] = str(folder / "tiles")
    twin = copy.deepcopy(doc)
    twin["output_type"] = "ls8_ny_float_albers"
    for m in twin["measurements"]:
        m["dtype"], m["nodata"] = "float32", math.nan
    cubes = {}
    for d in (doc, twin):
        path = folder / f"{d['output_type']}.yaml"
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        r = run_cli("cube", "create", "--config", str(path), "--datetime", DATES, "--workers", "1", "--json",
                    "--levels", "2", "--replace", env=env)
        assert r.returncode == 0, r.stderr
        cubes[d["output_type"]] = json.loads(r.stdout)
    return doc, cubes, env, folder


def test_integer_bands_are_stored_as_cf_dn(made):
    doc, cubes, _, _ = made
    cube = cubes["ls8_ny_int16_albers"]
    assert cube["shape"] == [6, 128, 128] and cube["variables"] == ["blue", "red", "nir", "quality"]
    with xr.open_zarr(f"{cube['uri']}/0.zarr", mask_and_scale=False) as raw:
        red = raw.red
        assert red.dtype == np.int16 and red.attrs["_FillValue"] == -999
        assert red.attrs["scale_factor"] == pytest.approx(SCALE) and red.attrs["add_offset"] == pytest.approx(OFFSET)
        values = red.values
        assert (values == -999).any() and (values != -999).sum() > 10000
        assert values[values != -999].min() > 0  # uint16 DN of TOA reflectance fit in int16 here
    with xr.open_zarr(f"{cube['uri']}/0.zarr") as ds:  # CF decoding: physical values, NaN at nodata
        assert ds.red.dtype.kind == "f" and np.isnan(ds.red.values).any()
        assert 0.0 < float(ds.red.mean()) < 1.0


def test_open_cube_and_tiles_read_physical_values(made, cube_settings):
    import stacube

    ds = stacube.open_cube("ls8_ny_int16_albers", settings=cube_settings, fill=False)
    twin = stacube.open_cube("ls8_ny_float_albers", settings=cube_settings, fill=False)
    assert ds.red.dtype == np.float32
    assert np.array_equal(np.isnan(twin.red.values), np.isnan(ds.red.values))
    assert close(ds.red.values, twin.red.values)
    assert (twin.red.values > TOP).any() and np.nanmax(ds.red.values) == pytest.approx(TOP, abs=1e-6)


def test_decoded_values_match_the_float_cube(made):
    _, cubes, _, _ = made
    with xr.open_zarr(f"{cubes['ls8_ny_int16_albers']['uri']}/0.zarr") as a, \
            xr.open_zarr(f"{cubes['ls8_ny_float_albers']['uri']}/0.zarr") as b:
        for band in ("blue", "red", "nir"):
            x, y = a[band].values, b[band].values
            assert np.array_equal(np.isnan(x), np.isnan(y)), band  # nodata exactly where NaN
            assert close(x, y), band  # rounding to whole DN
    # level 1 is the NaN-ignoring 2 x 2 mean of level 0's decoded values, rounded to whole DN
    from stacube.algo.downsample import downsample_mean

    with xr.open_zarr(f"{cubes['ls8_ny_int16_albers']['uri']}/0.zarr") as a0, \
            xr.open_zarr(f"{cubes['ls8_ny_int16_albers']['uri']}/1.zarr") as a1:
        expected = downsample_mean(a0.red.values.astype(np.float32))
        got = a1.red.values
        ok = ~np.isnan(expected)
        assert ok.sum() > 1000 and np.array_equal(ok, ~np.isnan(got))
        assert np.abs(got[ok] - expected[ok]).max() <= SCALE / 2 + 1e-6


def test_export_writes_the_integer_measurements_back(made, cli):
    doc, _, env, folder = made
    r = cli("cube", "export-config", "ls8_ny_int16_albers", env=env)
    assert r.returncode == 0, r.stderr
    out = yaml.safe_load(r.stdout)
    assert [(m["name"], m["dtype"], m["nodata"]) for m in out["measurements"]] == \
        [(m["name"], "int16", -999) for m in doc["measurements"]]
    path = folder / "again.yaml"
    path.write_text(r.stdout)
    r = cli("cube", "create", "ls8-int-again", "--config", str(path), "--no-fill", "--replace", env=env)
    assert r.returncode == 0, r.stderr
    again = yaml.safe_load(cli("cube", "export-config", "ls8-int-again", env=env).stdout)
    assert again["measurements"] == out["measurements"] and again["storage"] == out["storage"]


@pytest.mark.parametrize(("change", "message"), [
    ({"dtype": "int64"}, "measurements[0].dtype: 'int64'; use one of float32"),
    ({"dtype": "int16", "nodata": None}, "measurements[0].nodata: missing: a int16 measurement needs a nodata"),
    ({"dtype": "uint8", "nodata": -999}, "outside the uint8 range 0..255"),
    ({"dtype": "int16", "nodata": 1.5}, "needs a whole nodata value"),
    ({"dtype": "float32", "nodata": -999}, "a float32 band's nodata is nan"),
])
def test_bad_integer_measurements_are_refused(change, message):
    from stacube.cubes.ingestion import spec_from_ingestion_config
    from stacube.errors import InvalidInput

    doc = yaml.safe_load(CONFIG.read_text())
    doc["measurements"][0].update(change)
    if change.get("nodata", 0) is None:
        del doc["measurements"][0]["nodata"]
    with pytest.raises(InvalidInput) as err:
        spec_from_ingestion_config(doc, datetime=DATES)
    assert message in str(err.value)


def test_encoding_kernels_round_trip():
    from stacube.cubes.arrays import decode_values, encode_values

    enc = {"dtype": "int16", "nodata": -999, "scale_factor": SCALE, "add_offset": OFFSET}
    values = np.array([np.nan, 0.0, 0.12345, 0.9, -5.0], dtype=np.float32)
    dn = encode_values(values, enc)
    assert dn.dtype == np.int16 and dn[0] == -999
    assert dn[1] == 5000 and dn[2] == round((float(values[2]) - OFFSET) / SCALE)
    assert dn[3] == 32767 and dn[4] == -32768  # clipped to the dtype's range
    back = decode_values(dn, enc)
    assert np.isnan(back[0]) and abs(back[2] - values[2]) <= SCALE / 2 + 1e-7
