"""Cubes from Open Data Cube ingestion configurations, and back (``stacube cube create --config``,
``stacube cube export-config``), against the Landsat 8 sample collection."""

import copy
import json
import math

import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor)
import pytest
import xarray as xr
import yaml
from stacube_testing import ROOT, run_cli_each

CONFIG = ROOT / "tests" / "data" / "odc" / "landsat8_ny_conus_albers.yaml"
DATES = "2018-03-01/2018-06-30"
#: ingestion_bounds of the configuration expanded to whole 192 km tiles, as ODC does.
TILE_BOUNDS = {"left": 1536000, "bottom": 1920000, "right": 1920000, "top": 2304000}


def odc_doc() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def env(samples, cube_settings):
    return {"STACUBE_OUTPUT": cube_settings.output}


@pytest.fixture(scope="module")
def created(samples, cube_settings, tmp_path_factory):
    """The configuration, its location moved to a temporary folder, created with the CLI."""
    from stacube_testing import run_cli

    folder = tmp_path_factory.mktemp("odc")
    doc = odc_doc()
    doc["location"] = str(folder / "tiles")
    path = folder / "ingest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = run_cli("cube", "create", "--config", str(path), "--datetime", DATES, "--workers", "1", "--json",
                env={"STACUBE_OUTPUT": cube_settings.output})
    assert r.returncode == 0, r.stderr
    return doc, json.loads(r.stdout), folder


def test_configuration_maps_onto_the_cube(created, cube_settings):
    doc, cube, _ = created
    assert cube["name"] == "ls8_ny_conus_albers" and cube["collections"] == ["landsat-8-c1-l1tp-gdalcubes-sample"]
    assert cube["grid"] == "epsg:5070/3000" and cube["crs"] == "EPSG:5070" and cube["resolution"] == 3000
    # 2 x 2 tiles of 64 px (192 km / 3 km); six solar days of scenes over the area in the range
    assert cube["shape"] == [6, 128, 128] and cube["tile_size"] == 64 and cube["chunks"] == [4, 32, 32]
    assert cube["variables"] == ["blue", "red", "nir", "quality"]
    assert cube["resampling"] == {"red": "bilinear", "nir": "average"}
    assert cube["uri"] == f"{doc['location']}/ls8_ny_conus_albers"
    assert cube["fill"]["computed"] == cube["fill"]["units"] == 2 * 2 * 2
    with xr.open_zarr(f"{cube['uri']}/0.zarr") as ds:
        assert ds.odc.geobox.crs.epsg == 5070
        x0, y0 = float(ds.x[0]), float(ds.y[0])
        assert (x0, y0) == (TILE_BOUNDS["left"] + 1500, TILE_BOUNDS["top"] - 1500)
        assert ds.attrs["title"] == doc["global_attributes"]["title"] and ds.attrs["Conventions"] == "CF-1.8"
        red = ds.red.values
        assert red.dtype == np.float32 and np.isfinite(red).sum() > 10000
        assert np.nanmax(red) < 1.5 and np.nanmin(red) > -0.2  # TOA reflectance, not DN
    from stacube.catalog.pgstac import Catalog

    assert Catalog(cube_settings).get_collection("ls8_ny_conus_albers")["description"] == doc["description"]


def test_resampling_method_is_honoured(created, cube_settings):
    """The same cube with every band read nearest-neighbour: bilinear red and averaged nir differ
    from it (the sample's ~3.01 km UTM pixels are warped to 3 km Albers ones), blue does not."""
    from stacube.cubes.build import create_cube
    from stacube.cubes.ingestion import spec_from_ingestion_config

    doc, cube, _ = created
    nearest = copy.deepcopy(doc)
    for m in nearest["measurements"]:
        m["resampling_method"] = "nearest"
    spec = spec_from_ingestion_config(nearest, name="ls8-nearest", datetime=DATES)
    assert spec.resampling == {}
    made = create_cube(spec, cube_settings, workers=1, replace=True)
    with xr.open_zarr(f"{cube['uri']}/0.zarr") as a, xr.open_zarr(made.definition.level_uri(0)) as b:
        np.testing.assert_array_equal(a.blue.values, b.blue.values)
        for band in ("red", "nir"):
            x, y = a[band].values, b[band].values
            both = np.isfinite(x) & np.isfinite(y)
            assert both.sum() > 10000
            assert not np.array_equal(x[both], y[both])
            assert abs(float(np.median(x[both] - y[both]))) < 0.01


def test_export_writes_the_configuration_back(created, cli, env, tmp_path):
    doc = created[0]
    r = cli("cube", "export-config", "ls8_ny_conus_albers", env=env)
    assert r.returncode == 0, r.stderr
    out = yaml.safe_load(r.stdout)
    for key in ("source_type", "output_type", "description", "location", "global_attributes"):
        assert out[key] == doc[key], key
    assert out["file_path_template"] == "ls8_ny_conus_albers/0.zarr"
    assert out["ingestion_bounds"] == TILE_BOUNDS
    storage = dict(doc["storage"], driver="zarr")
    assert out["storage"] == storage
    for mine, theirs in zip(out["measurements"], doc["measurements"], strict=True):
        assert math.isnan(mine.pop("nodata")) and math.isnan(theirs["nodata"])
        assert mine == {k: theirs[k] for k in ("name", "dtype", "resampling_method", "src_varname")}
    assert out["stacube"] == {"datetime": DATES}

    # round trip: the exported configuration makes the same cube, whose export is the same document
    path = tmp_path / "exported.yaml"
    assert cli("cube", "export-config", "ls8_ny_conus_albers", "-o", str(path), env=env).returncode == 0
    r = cli("cube", "create", "ls8-again", "--config", str(path), "--no-fill", env=env)
    assert r.returncode == 0, r.stderr
    again = yaml.safe_load(cli("cube", "export-config", "ls8-again", env=env).stdout)
    assert again["output_type"] == "ls8-again" and again["file_path_template"] == "ls8-again/0.zarr"
    for key in ("output_type", "file_path_template", "measurements"):
        again.pop(key), out.pop(key)
    assert again == out
    first = json.loads(cli("cube", "show", "ls8_ny_conus_albers", "--json", env=env).stdout)
    second = json.loads(cli("cube", "show", "ls8-again", "--json", env=env).stdout)
    for key in ("grid", "crs", "resolution", "shape", "chunks", "tile_size", "variables", "bbox", "time"):
        assert first[key] == second[key], key
    assert cli("cube", "delete", "ls8-again", env=env).returncode == 0


def _set(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    if value is DELETE:
        del doc[last]
    else:
        doc[last] = value


DELETE = object()


@pytest.mark.parametrize("path, value, message", [
    ("measurements.0.dtype", "int16", "measurements[0].nodata: a int16 band needs a whole nodata value"),
    ("measurements.0.dtype", "float64", "measurements[0].dtype: 'float64'; use one of float32, int8"),
    ("measurements.1.nodata", -999, "measurements[1].nodata: nodata -999; a float32 band's nodata is nan"),
    ("measurements.2.resampling_method", "gauss", "measurements[2].resampling_method: 'gauss'"),
    ("measurements.0.flags_definition", {}, "measurements[0].flags_definition: a cube has no equivalent"),
    ("storage.driver", "s3aio", "storage.driver: 's3aio': a cube is stored as Zarr"),
    ("storage.crs", "+proj=aea +lat_1=29.5 +lat_2=45.5 +lon_0=-96 +datum=NAD27", "storage.crs:"),
    ("storage.resolution", {"x": 3000, "y": -2000}, "storage.resolution: x 3000 and y -2000 differ"),
    ("storage.resolution", {"x": 3000, "y": 3000}, "storage.resolution: x must be positive and y negative"),
    ("storage.resolution", {"latitude": -3000, "longitude": 3000}, "storage.resolution.latitude: use x and y"),
    ("storage.tile_size", {"x": 100000, "y": 100000}, "storage.tile_size: 100000 is not a whole number"),
    ("storage.tile_size", {"x": 144000, "y": 144000}, "storage.tile_size: 48 px: use a multiple of"),
    ("storage.chunking", {"x": 32, "y": 64, "time": 4}, "storage.chunking: x 32 and y 64"),
    ("storage.dimension_order", ["time", "x", "y"], "storage.dimension_order:"),
    ("storage.origin", {"x": 0}, "storage.origin: y missing"),
    ("storage.tile_size", {"x": 192000, "y": 192000, "time": 1}, "storage.tile_size.time: use x and y"),
    ("fuse_data", "copy", "fuse_data: a cube has no equivalent"),
    ("output_type", "LS8 NBAR", "output_type: 'LS8 NBAR'"),
    ("ingestion_bounds", DELETE, "ingestion_bounds: missing: pass --bbox"),
    ("storage", DELETE, "storage: missing"),
])
def test_what_cannot_be_mapped_is_refused(path, value, message):
    from stacube.cubes.ingestion import spec_from_ingestion_config
    from stacube.errors import InvalidInput

    doc = odc_doc()
    _set(doc, path, value)
    with pytest.raises(InvalidInput) as err:
        spec_from_ingestion_config(doc, datetime=DATES)
    assert str(err.value).startswith(message), str(err.value)


def test_grid_origin_and_geographic_storage():
    from stacube.core.grids import parse_grid
    from stacube.cubes.ingestion import spec_from_ingestion_config

    doc = odc_doc()
    doc["storage"]["origin"] = {"x": 1000, "y": -500.5}
    spec = spec_from_ingestion_config(doc, datetime=DATES)
    assert spec.grid == "epsg:5070/3000@1000,-500.5"
    assert parse_grid(spec.grid).anchor == (1000.0, -500.5)
    geo = odc_doc()
    geo["storage"].update(crs="EPSG:4326", resolution={"longitude": 0.025, "latitude": -0.025},
                          tile_size={"longitude": 1.6, "latitude": 1.6},
                          chunking={"longitude": 32, "latitude": 32, "time": 4},
                          dimension_order=["time", "latitude", "longitude"])
    geo.pop("ingestion_bounds")
    spec = spec_from_ingestion_config(geo, datetime=DATES, bbox="-74.5,40,-73.5,41")
    assert spec.grid == "epsg:4326/0.025" and spec.tile_size == 64 and spec.bbox_crs == "EPSG:4326"


def test_cli_refusals_are_one_line(samples, env, tmp_path):
    odc_example = odc_doc()
    odc_example["measurements"][1]["dtype"] = "int16"  # with the float32 sample's nodata: nan
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(odc_example))
    cases = [
        (["--config", str(path), "--datetime", DATES], "measurements[1].nodata: a int16 band needs a whole nodata"),
        (["--config", str(CONFIG)], "--datetime: required"),
        (["--config", str(CONFIG), "--datetime", DATES, "--bands", "red"],
         "--bands: the ingestion configuration sets this (measurements)"),
        (["--config", str(tmp_path / "missing.yaml"), "--datetime", DATES], "--config"),
        (["--datetime", DATES], "NAME: required (or give --config)"),
    ]
    bad_source = odc_doc()
    bad_source["measurements"][1]["src_varname"] = "B5"
    (tmp_path / "source.yaml").write_text(yaml.safe_dump(bad_source))
    cases.append((["--config", str(tmp_path / "source.yaml"), "--datetime", DATES],
                  ("measurements[1].src_varname: 'B5' is asset B5 of landsat-8-c1-l1tp-gdalcubes-sample "
                   "but name 'red' is asset B4")))
    unknown = odc_doc()
    unknown["source_type"] = "no-such-product"
    (tmp_path / "unknown.yaml").write_text(yaml.safe_dump(unknown))
    cases.append((["--config", str(tmp_path / "unknown.yaml"), "--datetime", DATES],
                  "source_type: no collection 'no-such-product'"))
    plain = ["x", "-c", "landsat-8-c1-l1tp-gdalcubes-sample", "--datetime", DATES]
    cases += [
        ([*plain, "--bands", "red", "--resampling", "gauss"], "resampling: red: unknown resampling method 'gauss'"),
        ([*plain, "--resampling", "bilinear"], "--resampling: name the bands (--bands) or use BAND=METHOD"),
        ([*plain, "--bands", "red", "--resampling", "nir=average"], "--resampling names nir, which is not among the bands"),
    ]
    results = run_cli_each([("cube", "create", *args) for args, _ in cases], env=env)
    for (args, message), r in zip(cases, results, strict=True):
        assert r.returncode != 0, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], r.stderr


def test_compositing_jobs_share_the_configuration_grid(created, cube_settings, tmp_path):
    """A job on the cube's grid (``--grid epsg:5070/3000``) puts its pixel edges on the cube's."""
    import rasterio

    from stacube.jobs.runner import run_composite
    from stacube.jobs.spec import build_spec

    cube = created[1]
    spec = build_spec(collections=["landsat-8-c1-l1tp-gdalcubes-sample"], bbox="-74.3,40.5,-73.9,40.9",
                      datetime=DATES, method="median", bands=["red"], grid=cube["grid"],
                      output=str(tmp_path / "jobs"))
    report = run_composite(spec, cube_settings, workers=1)
    href = next(iter(report["outputs"]["cogs"].values()))["red"]
    with rasterio.open(href) as src:
        assert src.crs.to_epsg() == 5070 and src.transform.a == 3000
        assert src.transform.c % 3000 == 0 and src.transform.f % 3000 == 0


def test_resampling_option_without_a_configuration(samples, cli, env):
    r = cli("cube", "create", "ls8-resampled", "-c", "landsat-8-c1-l1tp-gdalcubes-sample", "--datetime", DATES,
            "--grid", "epsg:5070/3000", "--bbox=1700000,2100000,1850000,2250000", "--bbox-crs", "EPSG:5070",
            "--bands", "red,nir", "--resampling", "red=bilinear,nir=average", "--no-fill", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["resampling"] == {"red": "bilinear", "nir": "average"}
    shown = yaml.safe_load(cli("cube", "export-config", "ls8-resampled", env=env).stdout)
    assert [m["resampling_method"] for m in shown["measurements"]] == ["bilinear", "average"]
    assert shown["storage"]["tile_size"] == {"x": 1536000, "y": 1536000}  # the default 512 px tiles
    assert cli("cube", "delete", "ls8-resampled", env=env).returncode == 0
