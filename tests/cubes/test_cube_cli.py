"""The cube, timeseries and plot commands, run as a user would."""

import csv
import io
import json

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from conftest import PRIVATE, S2_DATES, SLOVENIA_BBOX
from stacube_testing import run_cli_each

BBOX = ",".join(map(str, SLOVENIA_BBOX))


@pytest.fixture(scope="module")
def env(private_s2, cube_settings):
    return {"STACUBE_OUTPUT": cube_settings.output}


def png(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_create_open_list_show_delete(cli, env, tmp_path, cube_settings):
    r = cli("cube", "create", "t-cli", "-c", PRIVATE, "--datetime", S2_DATES, f"--bbox={BBOX}",
            "--bands", "red,nir", "--index", "NDVI", "--workers", "1", env=env)
    assert r.returncode == 0, r.stderr
    assert "cube t-cli: observations" in r.stdout and "computed" in r.stdout
    out = tmp_path / "region.nc"
    plot = tmp_path / "ts.png"
    # the cube is filled: the four commands only read it, each in a process of its own
    opened, shown, series, plotted = run_cli_each([
        ("cube", "open", "t-cli", f"--bbox={BBOX}", "--variables", "NDVI,quality", "-o", str(out), "--json"),
        ("cube", "show", "t-cli", "--json"),
        ("timeseries", "--cube", "t-cli", "--lon", "14.5581", "--lat", "45.8702", "--index", "NDVI"),
        ("plot", "timeseries", "--cube", "t-cli", "--lon", "14.5581", "--lat", "45.8702", "--index", "NDVI",
         "--bands", "red,nir", "-o", str(plot)),
    ], env=env)
    assert opened.returncode == 0, opened.stderr
    doc = json.loads(opened.stdout)
    assert doc["fill"]["computed"] == 0 and doc["fill"]["reused"] >= 1 and doc["sizes"]["time"] == 5
    with xr.open_dataset(out) as ds:
        assert set(ds.data_vars) == {"NDVI", "quality"} and ds.sizes["time"] == 5
        assert np.isfinite(ds.NDVI.values).sum() == 3 * 100 * 101
    shown = json.loads(shown.stdout)
    assert shown["units"]["done"] >= 1 and shown["grid"] == "native"
    assert shown["variables"] == ["red", "nir", "NDVI", "quality"]
    rows = list(csv.DictReader(io.StringIO(series.stdout)))
    assert [row["status"] for row in rows] == ["clear", "cloud", "cloud", "clear", "clear"]
    assert plotted.returncode == 0, plotted.stderr
    pixels = png(plot)
    assert pixels.shape[0] > 600 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    store = shown["uri"]
    r = cli("cube", "delete", "t-cli", env=env)
    assert r.returncode == 0 and "deleted" in r.stdout
    from pathlib import Path

    from stacube.catalog.pgstac import Catalog

    assert not Path(store).exists() and "t-cli" not in Catalog(cube_settings).collection_ids()


def test_plot_composite_of_a_job_and_of_an_item(cli, env, tmp_path, cube_settings):
    from stacube.jobs.runner import run_composite
    from stacube.jobs.spec import build_spec

    spec = build_spec(collections=[PRIVATE], bbox=BBOX, datetime=S2_DATES, method="median",
                      bands=["red", "green", "blue", "nir"], indices=["NDVI"], output=str(tmp_path / "jobs"))
    report = run_composite(spec, cube_settings, workers=1)
    job_png = tmp_path / "job.png"
    r = cli("plot", "composite", report["job_id"], "-o", str(job_png), env=env)
    assert r.returncode == 0, r.stderr
    assert f"job {report['job_id']}" in r.stdout
    item_png = tmp_path / "item.png"
    r = cli("plot", "composite", f"{PRIVATE}/S2_L1C_20150711T100008", "-o", str(item_png), env=env)
    assert r.returncode == 0, r.stderr
    for path in (job_png, item_png):
        pixels = png(path)
        assert pixels.shape[1] > 1000  # two panels
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # an image, not a blank canvas


@pytest.mark.parametrize("args,message", [
    (("cube", "create", "t-x", "-c", PRIVATE, "--datetime", S2_DATES, "--grid", "mars"), "unknown grid"),
    (("timeseries", "--cube", "nope", "--lon", "1", "--lat", "1"), "unknown cube"),
    (("plot", "timeseries", "-c", PRIVATE, "--lon", "1", "--lat", "1", "-o", "x.jpg"), "PNG"),
    (("plot", "composite", "no-such-thing", "-o", "x.png"), "neither a job nor an item"),
])
def test_bad_input_prints_one_line_and_fails(cli, env, args, message):
    r = cli(*args, env=env)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
