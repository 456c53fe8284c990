"""Views of a job's outputs (``/jobs/{id}/preview.png``, ``/jobs/{id}/region.nc``): the region is
the COGs' values over the bbox as NetCDF, bounded in size, behind the jobs' own gate (another
workspace's job is unknown to its callers)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from access_testing import ALPHA, PRIVATE

SLOVENIA = {"bbox": [14.5514, 45.8659, 14.5642, 45.875], "datetime": "2015-07-01/2015-09-30",
            "method": "median", "bands": ["red", "nir"]}
INNER = [14.554, 45.868, 14.560, 45.872]


@pytest.fixture(scope="module")
def done(world):
    """A completed job of workspace t-alpha over its private collection."""
    from stacube.access.jobs import output_claim, scoped_job_id
    from stacube.jobs.runner import run_job, submit
    from stacube.jobs.spec import build_spec

    out = "acc-outputs-median-t-alpha"
    world.extra_collections.add(out)
    spec = build_spec(**SLOVENIA, collections=[PRIVATE], output_collection=out)
    job, _ = submit(spec, world.settings, job_id=scoped_job_id(spec.job_id(), ALPHA), workspace=ALPHA)
    report = run_job(world.settings, job["id"], workers=1, on_register=output_claim(world.settings))
    return job["id"], report


def test_region_as_netcdf_holds_the_cog_values(client, world, done):
    import rasterio
    import rioxarray  # noqa: F401 (.rio)
    import xarray as xr

    job_id, report = done
    r = client.get(f"/jobs/{job_id}/region.nc", params={"bbox": ",".join(map(str, INNER)), "variables": "nir"},
                   headers=world.headers["owner"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-netcdf"
    assert "attachment" in r.headers["content-disposition"]
    ds = xr.open_dataset(io.BytesIO(r.content), decode_coords="all")
    assert ds.rio.crs is not None
    assert list(ds.data_vars) == ["nir"] and ds.sizes["time"] == len(report["steps"])
    assert 0 < ds.sizes["y"] * ds.sizes["x"] < np.prod(report["grid"]["shape"])
    label = report["steps"][0]["label"]
    with rasterio.open(report["outputs"]["cogs"][label]["nir"]) as src:
        rows, cols = rasterio.transform.rowcol(src.transform, *np.meshgrid(ds.x.values, ds.y.values))
        cog = src.read(1)[np.asarray(rows), np.asarray(cols)].reshape(ds.nir.shape[1:])
    assert np.isfinite(ds.nir.values[0]).any()
    np.testing.assert_array_equal(ds.nir.values[0], cog)


@pytest.mark.parametrize("params, status, words", [
    ({"bbox": "1,2,3"}, 400, "expected 4 numbers"),
    ({"bbox": "14.56,45.87,14.55,45.86"}, 400, "min must not exceed max"),
    ({"bbox": "0,0,1,1"}, 422, "does not meet"),
    ({"bbox": ",".join(map(str, INNER)), "variables": "blue"}, 400, "expected one of"),
    ({"bbox": ",".join(map(str, INNER)), "bbox_crs": "EPSG:999999"}, 400, "unknown CRS"),
])
def test_invalid_regions_are_refused(client, world, done, params, status, words):
    r = client.get(f"/jobs/{done[0]}/region.nc", params=params, headers=world.headers["owner"])
    assert r.status_code == status, r.text
    assert words in r.json()["description"]


def test_a_region_above_the_limits_is_refused(world, done):
    from fastapi.testclient import TestClient

    from stacube_services.app import create_app

    small = world.settings.model_copy(update={"max_part_size": 16})
    with TestClient(create_app(small), raise_server_exceptions=False) as c:
        r = c.get(f"/jobs/{done[0]}/region.nc", params={"bbox": ",".join(map(str, SLOVENIA["bbox"]))},
                  headers=world.headers["owner"])
    assert r.status_code == 400 and "exceeds the limits" in r.json()["description"], r.text


def test_outputs_of_another_workspace_are_unknown(client, world, done):
    bbox = ",".join(map(str, INNER))
    for who in ("anonymous", "other", "shared"):
        for url in (f"/jobs/{done[0]}/region.nc?bbox={bbox}", f"/jobs/{done[0]}/preview.png"):
            r = client.get(url, headers=world.headers[who])
            assert r.status_code == 404 and r.json()["description"] == f"unknown job {done[0]!r}", (who, url)
    assert client.get(f"/jobs/{done[0]}/region.nc?bbox={bbox}", headers=world.headers["admin"]).status_code == 200


def test_filled_preview_paints_nodata_magenta(client, world, done):
    import rasterio
    from PIL import Image

    job_id, report = done
    label = report["steps"][0]["label"]
    r = client.get(f"/jobs/{job_id}/preview.png", params={"period": label, "variable": "red", "max_size": 64},
                   headers=world.headers["owner"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    png = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    with rasterio.open(report["outputs"]["cogs"][label]["red"]) as src:
        assert max(png.shape[:2]) == 64 and png.shape[1] / png.shape[0] == pytest.approx(src.width / src.height, rel=0.1)
    magenta = (png == (255, 0, 255)).all(axis=-1)
    assert not magenta.all() and png[~magenta].std() > 1
    bad = client.get(f"/jobs/{job_id}/preview.png", params={"variable": "nope"}, headers=world.headers["owner"])
    assert bad.status_code == 400 and "expected one of" in bad.json()["description"]
