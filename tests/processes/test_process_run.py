"""User processes on the job engine: a module from a temporary folder run through the CLI
in-process, on a process pool and on Dask; a halo makes a focal operation exact across tiles;
a failing tile leaves the others written; a killed run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from stacube.cli.main import app
from stacube.jobs.process_config import read_config
from stacube.jobs.runner import run_job, submit
from stacube.jobs.state import JobStore
from stacube_testing import ROOT, STACUBE

runner = CliRunner()


def read(href: str) -> np.ndarray:
    with rasterio.open(href) as src:
        return src.read(1)


def run_cli(*args: str) -> dict:
    """``stacube process run ... --json`` in this process; the report."""
    result = runner.invoke(app, ["process", "run", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def focal(report: dict) -> np.ndarray:
    label = report["steps"][0]["label"]
    return read(report["outputs"]["cogs"][label]["focal"])


@pytest.fixture(scope="module")
def untiled(samples, tmp_path_factory, write_process, write_config):
    """The focal mean computed in one tile (the whole area, halo 2): what tiled runs must give."""
    folder = tmp_path_factory.mktemp("untiled")
    write_process(folder)
    config = write_config(folder, parameters={"radius": 2}, halo=2, output_collection="focal-untiled")
    report = run_cli(str(config), "--workers", "1")
    assert report["grid"]["tiles"] == 1
    return report


def test_validate_checks_without_running(samples, project, write_config):
    config = write_config(project, parameters={"radius": 2}, halo=2, tile_size=32)
    result = runner.invoke(app, ["process", "validate", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "ok: process focal" in result.output and "halo 2 px" in result.output
    assert not list((project / "out").rglob("*.tif"))  # nothing written
    spec, process = read_config(config)
    assert JobStore(samples.settings).list(limit=500) is not None
    assert not [j for j in JobStore(samples.settings).list(limit=500) if j["id"] == spec.job_id()]


def test_a_user_process_runs_in_process_with_its_outputs_registered(samples, untiled):
    report = untiled
    assert report["status"] == "completed" and report["failed_tiles"] == 0
    proc = report["process"]
    assert proc["name"] == "focal" and len(proc["version"]) == 12 and proc["parameters"] == {"radius": 2}
    assert proc["outputs"] == {"focal": {"dtype": "float32", "nodata": None},
                               "clear": {"dtype": "uint16", "nodata": 65535}}
    values = focal(report)
    assert values.shape == tuple(report["grid"]["shape"]) and np.isfinite(values).all()
    item = samples.get_item("focal-untiled", report["items"][0])
    props = item["properties"]
    assert props["processing:version"] == proc["version"]
    assert props["processing:software"]["focal"] == proc["version"]
    assert props["processing:expression"]["expression"] == {"process": "focal", "version": proc["version"],
                                                            "parameters": {"radius": 2}}
    assert set(item["assets"]) >= {"focal", "clear", "zarr", "report"}
    assert item["assets"]["clear"]["raster:bands"][0] == {"data_type": "uint16", "nodata": 65535}
    import xarray as xr

    cube = xr.open_zarr(report["outputs"]["zarr"])
    assert np.allclose(cube["focal"].values[0], values, equal_nan=True)


def test_a_halo_makes_tiles_equal_the_untiled_result_on_a_process_pool(samples, project, untiled, write_config):
    config = write_config(project, parameters={"radius": 2}, halo=2, tile_size=32, output_collection="focal-pool")
    report = run_cli(str(config), "--workers", "2")
    assert report["grid"]["tiles"] > 4
    assert np.array_equal(focal(report), focal(untiled))
    # without the halo the tiles' edges differ: the halo is what makes them right
    bare = write_config(project, name="bare.yaml", parameters={"radius": 2}, tile_size=48,
                        output_collection="focal-bare")
    assert not np.array_equal(focal(run_cli(str(bare), "--workers", "1")), focal(untiled))


def test_dask_runs_the_process(samples, project, untiled, write_config):
    from distributed import LocalCluster

    spec, _ = read_config(write_config(project, parameters={"radius": 2}, halo=2, tile_size=48,
                                       output_collection="focal-dask"))
    # workers in threads: cheap to start; the process pool above covers workers in other processes
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        job, _ = submit(spec, samples.settings)
        report = run_job(samples.settings, job["id"], dask=cluster.scheduler_address)
    assert np.array_equal(focal(report), focal(untiled))


def test_a_failing_tile_is_reported_and_the_others_are_written(samples, project, untiled, write_config):
    x0, res = untiled["grid"]["transform"][2], untiled["grid"]["transform"][0]
    fail_x = x0 + 5.5 * res  # inside the first column of 32 px tiles only
    config = write_config(project, parameters={"radius": 2, "fail_x": fail_x}, halo=2, tile_size=32,
                          output_collection="focal-failing")
    result = runner.invoke(app, ["process", "run", str(config), "--workers", "1", "--json"])
    assert result.exit_code != 0
    report = json.loads(result.stdout)
    assert report["status"] == "partial"
    rows = (report["grid"]["shape"][0] + 31) // 32
    assert report["failed_tiles"] == rows
    err = report["errors"][0]
    assert err["error"] == f"ValueError: no NDVI at x={fail_x}"
    assert "focal.py" in err["traceback"] and "raise ValueError" in err["traceback"]
    assert {e["tile"] for e in report["errors"]} == {f"{i}_0" for i in range(rows)}
    values, expected = focal(report), focal(untiled)
    assert np.isnan(values[:, :32]).all()  # the failed tiles are nodata
    assert np.array_equal(values[:, 32:], expected[:, 32:])  # the others are written
    job = JobStore(samples.settings).get(report["job_id"], full=False)
    assert job["state"] == "completed"
    item = samples.get_item("focal-failing", report["items"][0])
    assert item["properties"]["stacube:failed_tiles"] == rows


BROKEN = """
def execute(cube, divisor=0):
    return {"ratio": cube.red.mean("time").values / divisor if divisor else 1 // divisor}
"""


@pytest.mark.parametrize("declared", [True, False], ids=["declared-outputs", "probed-outputs"])
def test_a_process_failing_everywhere_fails_the_job_and_leaves_nothing(samples, tmp_path, write_process,
                                                                        write_config, declared):
    write_process(tmp_path, BROKEN, "broken.py")
    config = write_config(tmp_path, process="broken.py", tile_size=32, output_collection=f"broken-{declared}",
                          **({"outputs": ["ratio"]} if declared else {}))
    spec, _ = read_config(config)
    result = runner.invoke(app, ["process", "run", str(config), "--workers", "1"])
    assert result.exit_code != 0
    job = JobStore(samples.settings).get(spec.job_id())
    assert job["state"] == "failed"
    if declared:
        assert job["error"].startswith("the process failed on every tile (")
    else:
        assert job["error"].startswith("the process failed where its outputs are probed")
    assert job["error"].endswith("ZeroDivisionError: integer division or modulo by zero")
    assert f"broken-{declared}" not in samples.collection_ids()
    assert not list((tmp_path / "out").rglob("*.tif")) and not list((tmp_path / "out").rglob("*.zarr"))


def test_a_killed_run_resumes_without_redoing_finished_tiles(samples, project, untiled, write_config):
    config = write_config(project, parameters={"radius": 2, "sleep": 0.25}, halo=2, tile_size=32,
                          output_collection="focal-resumed")
    spec, _ = read_config(config)
    store = JobStore(samples.settings)
    proc = subprocess.Popen([STACUBE, "process", "run", str(config), "--workers", "1"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        import time

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                job = store.get(spec.job_id(), full=False)
            except Exception:
                job = None
            if job and job["stage"] == "composite" and 2 <= job["tiles_done"] < job["tiles_total"] - 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the run did not get half way")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = store.get(spec.job_id(), full=False)
    assert killed["state"] == "running" and 0 < killed["tiles_done"] < killed["tiles_total"]
    assert "focal-resumed" not in samples.collection_ids()
    report = run_cli(str(config), "--workers", "1")  # the same configuration again resumes it
    assert report["job_id"] == spec.job_id() and report["status"] == "completed"
    attempts = _attempts(store, spec.job_id())
    assert all(n == 1 for n in attempts.values())  # no tile ran twice
    assert np.array_equal(focal(report), focal(untiled))


def _attempts(store, job_id):
    import psycopg

    with psycopg.connect(store.settings.dsn()) as conn:
        return dict(conn.execute("SELECT tile, attempts FROM stacube.job_tiles WHERE job_id=%s AND "
                                 "stage='composite'", (job_id,)).fetchall())


def test_the_readme_example_runs_as_written(samples, tmp_path):
    """The module and the configuration of README's "Your own process", written as they are."""
    import re

    text = (ROOT / "README.md").read_text().split("### Your own process", 1)[1]
    module = re.search(r"```python\n# focal_ndvi.py\n(.*?)```", text, re.S).group(1)
    config = re.search(r"```yaml\n(process: focal_ndvi.py.*?)```", text, re.S).group(1)
    (tmp_path / "focal_ndvi.py").write_text(module)
    (tmp_path / "job.yaml").write_text(config)
    report = run_cli(str(tmp_path / "job.yaml"), "--workers", "1")
    assert report["status"] == "completed" and report["process"]["halo"] == 2
    assert report["outputs"]["report"].startswith(str(tmp_path / "out"))
    ndvi = read(report["outputs"]["cogs"][report["steps"][0]["label"]]["ndvi"])
    assert np.isfinite(ndvi).all() and 0 < np.nanmean(ndvi) < 1


def test_with_a_period_the_process_runs_once_per_period(samples, project, untiled, write_config):
    config = write_config(project, parameters={"radius": 2}, halo=2, period="P1M", tile_size=32,
                          output_collection="focal-monthly")
    report = run_cli(str(config), "--workers", "1")
    steps = report["steps"]
    assert len(steps) > 1 and len(report["items"]) == len(steps)
    per_period = [read(report["outputs"]["cogs"][s["label"]]["clear"]).astype(int) for s in steps]
    for counts, step in zip(per_period, steps):  # each period counts only its own scenes
        assert counts.max() <= len(step["items"])
    total = read(untiled["outputs"]["cogs"][untiled["steps"][0]["label"]]["clear"]).astype(int)
    assert np.array_equal(sum(per_period), total)  # the periods split the observations


def test_a_job_is_not_finished_with_code_that_changed_under_it(samples, project, write_config):
    from stacube.errors import InvalidInput

    spec, _ = read_config(write_config(project, tile_size=64, output_collection="focal-changed"))
    job, _ = submit(spec, samples.settings)
    (project / "focal.py").write_text((project / "focal.py").read_text() + "\nSOMETHING = 1\n")
    with pytest.raises(InvalidInput, match="changed since the job was submitted"):
        run_job(samples.settings, job["id"], workers=1)
    assert JobStore(samples.settings).get(job["id"], full=False)["state"] == "failed"


MAX_NDVI = """
def execute(cube):
    return {"ndvi": ((cube.nir - cube.red) / (cube.nir + cube.red)).max("time"), "n": cube.clear.sum("time")}
"""


def test_serve_previews_tiles_computed_on_demand(samples, tmp_path, write_process, write_config):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from stacube_services.process_preview import create_preview_app

    write_process(tmp_path, MAX_NDVI, "max_ndvi.py")
    spec, _ = read_config(write_config(tmp_path, process="max_ndvi.py", halo=1))
    client = TestClient(create_preview_app(samples.settings, spec))
    page = client.get("/")
    assert page.status_code == 200 and "tiles/{z}/{x}/{y}.png" in page.text
    r = client.get("/tiles/14/8854/5837.png", params={"output": "ndvi", "rescale": "0,1"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (256, 256)
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    assert 0.1 < (alpha > 0).mean() < 0.9  # the scenes cover part of the tile: NaN elsewhere
    assert len(np.unique(np.asarray(image.convert("RGB"))[alpha > 0], axis=0)) > 10
    assert client.get("/tiles/14/8854/5837.png", params={"output": "nope"}).status_code == 400
    assert client.get("/tiles/3/0/0.png").status_code == 404  # no scene there
    assert client.get("/tiles/2/9/0.png").status_code == 400  # outside the matrix set


def test_the_preview_page_does_not_echo_markup(samples, project, write_config):
    from fastapi.testclient import TestClient

    from stacube_services.process_preview import create_preview_app

    spec, _ = read_config(write_config(project, outputs=["focal", "clear"]))
    client = TestClient(create_preview_app(samples.settings, spec))
    page = client.get("/", params={"output": "</script><script>alert(1)</script>"}).text
    assert "</script><script>alert" not in page
