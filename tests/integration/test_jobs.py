"""Jobs: state in the catalog, the HTTP jobs API, cancellation, and resuming after a kill."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient

from stacube.jobs.executors import ProcessExecutor, ThreadExecutor, make_executor
from stacube.jobs.runner import run_job, submit
from stacube.jobs.spec import build_spec
from stacube.errors import NotFound, StacubeError
from stacube.jobs.state import JobStore
from stacube_testing import STACUBE, ROOT

NY = dict(collections=["landsat-8-c1-l1tp-gdalcubes-sample"], bbox="-76.2,39.3,-71.95,42.8",
          datetime="2018-01-01/2018-12-31", method="best-pixel", max_cloud=30, bands=["red", "nir"])
SLOVENIA = {"collections": ["sentinel-2-l1c-eolearn-sample"], "bbox": [14.5514, 45.8659, 14.5642, 45.875],
            "datetime": "2015-07-01/2015-09-30", "method": "median", "indices": ["NDVI"]}


def read(path):
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def reference(samples, tmp_path_factory):
    """The same composite computed in one tile, in-process: what resumed runs must reproduce."""
    from stacube.jobs.runner import run_composite

    spec = build_spec(**NY, output=str(tmp_path_factory.mktemp("ref")), output_collection="ny-reference")
    report = run_composite(spec, samples.settings, workers=1)
    label = report["steps"][0]["label"]
    return {v: read(p) for v, p in report["outputs"]["cogs"][label].items()}


def wait_for(predicate, timeout=120.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def same_outputs(report, reference):
    label = report["steps"][0]["label"]
    for var, expected in reference.items():
        got = read(report["outputs"]["cogs"][label][var])
        assert np.array_equal(got, expected, equal_nan=True), var


def test_killed_job_resumes_without_redoing_finished_tiles(samples, reference, tmp_path):
    spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-resumed", tile_size=32)
    store = JobStore(samples.settings)
    job_id = spec.job_id()
    args = ["composite", "--collection", NY["collections"][0], f"--bbox={NY['bbox']}", "--datetime", NY["datetime"],
            "--method", NY["method"], "--max-cloud", "30", "--bands", "red,nir", "--output", str(tmp_path),
            "--output-collection", "ny-resumed", "--tile-size", "32", "--workers", "1"]
    proc = subprocess.Popen([STACUBE, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy())
    try:
        def partly_done():
            try:
                job = store.get(job_id, full=False)
            except Exception:
                return False
            return job["stage"] == "composite" and 2 <= job["tiles_done"] < job["tiles_total"] - 2
        wait_for(partly_done)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = store.get(job_id, full=False)
    assert killed["state"] == "running" and 0 < killed["tiles_done"] < killed["tiles_total"]
    assert "ny-resumed" not in samples.collection_ids()  # nothing registered by the killed run
    finished_before = {t for t in store.pending_tiles(job_id, "scenes")} == set()
    assert finished_before
    done_tiles = set(_tiles(store, job_id, "composite", "done"))

    out = subprocess.run([STACUBE, "job", "resume", job_id, "--workers", "1", "--json"], cwd=ROOT,
                         capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["status"] == "completed"
    attempts = _attempts(store, job_id, "composite")
    assert all(attempts[t] == 1 for t in done_tiles)  # tiles finished before the kill were not redone
    assert all(n == 1 for n in attempts.values())
    same_outputs(report, reference)
    assert samples.item_counts()["ny-resumed"] == 1


def _tiles(store, job_id, stage, state):
    import psycopg

    with psycopg.connect(store.settings.dsn()) as conn:
        return [r[0] for r in conn.execute("SELECT tile FROM stacube.job_tiles WHERE job_id=%s AND stage=%s "
                                           "AND state=%s", (job_id, stage, state))]


def _attempts(store, job_id, stage):
    import psycopg

    with psycopg.connect(store.settings.dsn()) as conn:
        return dict(conn.execute("SELECT tile, attempts FROM stacube.job_tiles WHERE job_id=%s AND stage=%s",
                                 (job_id, stage)).fetchall())


def test_a_killed_worker_process_is_replaced_and_its_tiles_retried(samples, reference, tmp_path):
    spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-worker-killed", tile_size=32)
    job, _ = submit(spec, samples.settings)
    store = JobStore(samples.settings)
    executor = ProcessExecutor(2)
    killed = []

    def killer():
        def ready():
            j = store.get(job["id"], full=False)
            return j["stage"] == "composite" and j["tiles_done"] >= 2 and executor.pids
        wait_for(ready)
        pid = executor.pids[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        report = run_job(samples.settings, job["id"], executor=executor)
    finally:
        executor.close()
    thread.join(timeout=5)
    assert killed, "no worker was killed"
    assert report["status"] == "completed"
    same_outputs(report, reference)
    assert samples.item_counts()["ny-worker-killed"] == 1  # no duplicate items
    assert store.get(job["id"], full=False)["tiles_failed"] == 0


def test_tiles_on_threads_give_the_outputs_of_one_tile(samples, reference, tmp_path):
    """The local default: tiles side by side on threads of the job's process (a scene pass and
    a composite stage of several tiles), the same pixels as one tile in-process."""
    from stacube.settings import Settings

    assert Settings().executor == "threads"
    assert isinstance(make_executor(2), ThreadExecutor) and isinstance(make_executor(2, kind="processes"),
                                                                        ProcessExecutor)
    spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-threads", tile_size=32)
    job, _ = submit(spec, samples.settings)
    executor = ThreadExecutor(2)
    ran_on = set()
    original = executor.map_unordered

    def recording(fn, args):
        def tile(*a):
            ran_on.add(threading.current_thread().name)
            return fn(*a)
        return original(tile, args)

    executor.map_unordered = recording
    try:
        report = run_job(samples.settings, job["id"], executor=executor)
    finally:
        executor.close()
    assert report["status"] == "completed" and report["grid"]["tiles"] > 2
    assert len(ran_on) == 2 and all(name.startswith("stacube-tile") for name in ran_on), ran_on
    same_outputs(report, reference)
    assert JobStore(samples.settings).get(job["id"], full=False)["tiles_failed"] == 0


def test_tiles_reuse_the_stack_memory_of_earlier_tiles_and_give_the_same_pixels(samples, reference, tmp_path,
                                                                                  monkeypatch):
    """Each tile's stack memory serves the next tiles (every array pooled here, however small):
    a scene pass and a composite stage of many tiles on two threads reuse buffers, and the
    pixels equal those of one tile computed without reuse."""
    from stacube.algo import buffers
    from stacube.jobs import runner

    monkeypatch.setattr(buffers, "MIN_BYTES", 1)
    pools = []
    real = runner.reuse_buffers

    def recording():
        block = real()
        pools.append(block)
        return block

    monkeypatch.setattr(runner, "reuse_buffers", recording)
    spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-reused", tile_size=16)
    job, _ = submit(spec, samples.settings)
    executor = ThreadExecutor(2)
    reused = []
    real_empty = buffers.BufferPool.empty

    def counting_empty(self, shape, dtype):
        before = self.reused
        out = real_empty(self, shape, dtype)
        reused.append(self.reused > before)
        return out

    monkeypatch.setattr(buffers.BufferPool, "empty", counting_empty)
    try:
        report = run_job(samples.settings, job["id"], executor=executor)
    finally:
        executor.close()
    assert report["status"] == "completed" and report["grid"]["tiles"] > 8
    assert len(pools) == 2  # the scene pass and the composite stage
    assert sum(reused) > len(reused) // 2, (sum(reused), len(reused))
    same_outputs(report, reference)
    assert buffers._pool.current is None  # released when the stages ended


def test_a_job_opens_each_file_once_not_once_per_tile(samples, tmp_path, monkeypatch):
    """Files on the output grid (read with windowed reads) are opened once for the whole job:
    again only while every handle open on the file is in use (2 tiles at once, each reading on
    2 threads), not once per tile."""
    opened: dict[str, int] = {}
    real_open = rasterio.open

    def counting_open(fp, mode="r", *args, **kwargs):
        if mode == "r" and str(fp).startswith(str(ROOT / "data")):
            opened[str(fp)] = opened.get(str(fp), 0) + 1
        return real_open(fp, mode, *args, **kwargs)

    spec = build_spec(**SLOVENIA, output=str(tmp_path), output_collection="slovenia-tiled", tile_size=16)
    job, _ = submit(spec, samples.settings)
    monkeypatch.setattr(rasterio, "open", counting_open)
    executor = ThreadExecutor(2)
    try:
        report = run_job(samples.settings, job["id"], executor=executor)
    finally:
        executor.close()
    assert report["status"] == "completed" and report["grid"]["tiles"] > 4
    assert opened and max(opened.values()) <= 4, opened


def test_a_thread_executor_hands_back_a_failing_tile():
    executor = ThreadExecutor(2)

    def tile(n):
        if n == 3:
            raise ValueError("tile 3 broke")
        return n * 10

    try:
        outcomes = dict(executor.map_unordered(tile, [(n,) for n in range(6)]))
    finally:
        executor.close()
    assert {a: o for a, o in outcomes.items() if not isinstance(o, Exception)} == {
        (0,): 0, (1,): 10, (2,): 20, (4,): 40, (5,): 50}
    assert isinstance(outcomes[(3,)], ValueError) and str(outcomes[(3,)]) == "tile 3 broke"


def test_dask_executor(samples, reference, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-dask", tile_size=64)
        job, _ = submit(spec, samples.settings)
        report = run_job(samples.settings, job["id"], dask=cluster.scheduler_address)
    same_outputs(report, reference)


@pytest.fixture(scope="module")
def client(samples):
    from stacube.settings import Settings
    from stacube_services.app import create_app

    # other packages' API keys may be in the session catalog (access control on): this module
    # is about the jobs API, and lets anonymous callers submit
    # and takes no part in the per-workspace job slots (jobs other tests left queued count there)
    with TestClient(create_app(Settings(anonymous_jobs=True, max_jobs=1000)), raise_server_exceptions=False) as c:
        yield c


def test_jobs_api_submit_follow_and_download(client):
    r = client.post("/jobs", json=SLOVENIA)
    assert r.status_code in (200, 202), r.text
    job_id = r.json()["id"]
    job = wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["state"] not in ("queued", "running") and j,
                   step=0.5)
    assert job["state"] == "completed", job["error"]
    report = client.get(f"/jobs/{job_id}/report").json()
    assert report["job_id"] == job_id and len(report["scenes"]) == 5
    # scene and pixel counts, as the console's task page shows them
    summary, shape = job["summary"], report["grid"]["shape"]
    used = [s for s in report["scenes"] if s["used"] and s["clear_pixels"] > 0]
    assert summary["scenes"] == 5 and summary["scenes_used"] == len(used) >= 1
    assert summary["shape"] == shape and summary["pixels"] == shape[0] * shape[1] == report["throughput"]["pixels"]
    assert summary["clear_observations"] == sum(s["clear_pixels"] for s in used) > 0
    assert summary["periods"] == len(report["steps"])
    assert summary["cogs"] == sum(len(v) for v in job["downloads"]["cogs"].values())
    ndvi = job["downloads"]["cogs"][report["steps"][0]["label"]]["NDVI"]
    assert client.get(ndvi.replace("http://testserver", "")).status_code == 200
    assert client.get(job["downloads"]["zarr"].replace("http://testserver", "") + "/.zmetadata").status_code == 200
    assert any(j["id"] == job_id for j in client.get("/jobs").json()["jobs"])
    item = next(l["href"] for l in job["links"] if l["rel"] == "item")
    assert client.get(item.replace("http://testserver", "")).status_code == 200


@pytest.mark.parametrize("body, status, fragment", [
    ({**SLOVENIA, "method": "no-such-method"}, 400, "unknown method"),
    ({**SLOVENIA, "collections": ["nope"]}, 404, "unknown collection"),
    ({**SLOVENIA, "bbox": [1, 2, 0, 3]}, 400, "min must be less than max"),
    ({**SLOVENIA, "datetime": "2020-12-01/2020-01-01"}, 400, "END is before START"),
    ({**SLOVENIA, "output": "/etc"}, 400, "cannot be set over HTTP"),
    ({**SLOVENIA, "surprise": 1}, 400, "surprise"),
])
def test_jobs_api_rejects_bad_parameters(client, body, status, fragment):
    r = client.post("/jobs", json=body)
    assert r.status_code == status and fragment in r.json()["description"]


def test_jobs_api_unknown_job_and_report(client):
    assert client.get("/jobs/nope").status_code == 404
    assert client.post("/jobs/nope/cancel").status_code == 404


def test_cancelling_a_running_job(samples, tmp_path):
    store = JobStore(samples.settings)
    spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-cancelled", tile_size=16)
    job, _ = submit(spec, samples.settings)

    def cancel_soon():
        wait_for(lambda: store.get(job["id"], full=False)["tiles_done"] >= 2)
        store.cancel(job["id"])

    threading.Thread(target=cancel_soon, daemon=True).start()
    from stacube.jobs.stages import JobCancelled

    with pytest.raises(JobCancelled):
        run_job(samples.settings, job["id"], workers=1)
    assert store.get(job["id"], full=False)["state"] == "cancelled"
    assert "ny-cancelled" not in samples.collection_ids()
    assert not (tmp_path / job["id"]).exists()
    assert not (tmp_path / "tmp" / job["id"]).exists()


def _cancel_then(store, job_id, exc):
    """A step that sees its job cancelled, then fails (its staging vanished under it...)."""
    def step(*args, **kwargs):
        store.cancel(job_id)
        raise exc
    return step


@pytest.mark.parametrize("error", [RuntimeError("staging vanished"), StacubeError("the output store went away")],
                         ids=["unexpected", "stacube"])
def test_a_job_cancelled_while_a_step_runs_stays_cancelled_when_the_step_fails(samples, tmp_path, monkeypatch,
                                                                                 error):
    from stacube.jobs import tasks
    from stacube.jobs.stages import JobCancelled

    store = JobStore(samples.settings)
    spec = build_spec(**NY, output=str(tmp_path), output_collection=f"ny-cancel-{type(error).__name__.lower()}")
    job, _ = submit(spec, samples.settings)
    monkeypatch.setattr(tasks, "finalize", _cancel_then(store, job["id"], error))
    with pytest.raises(JobCancelled):
        run_job(samples.settings, job["id"], workers=1)
    ended = store.get(job["id"], full=False)
    assert (ended["state"], ended["error"]) == ("cancelled", "cancelled on request")
    assert not (tmp_path / "tmp" / job["id"]).exists()


def test_a_job_cancelled_while_it_is_planned_stays_cancelled(samples, tmp_path, monkeypatch):
    from stacube.jobs import tasks
    from stacube.jobs.stages import JobCancelled

    store = JobStore(samples.settings)
    spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-cancel-planning")
    job, _ = submit(spec, samples.settings)
    plan = tasks.make_plan

    def cancelled_while_planned(*args, **kwargs):
        store.cancel(job["id"])
        return plan(*args, **kwargs)

    monkeypatch.setattr(tasks, "make_plan", cancelled_while_planned)
    with pytest.raises(JobCancelled):
        run_job(samples.settings, job["id"], workers=1)
    assert store.get(job["id"], full=False)["state"] == "cancelled"
    assert "ny-cancel-planning" not in samples.collection_ids()
    assert not (tmp_path / "tmp" / job["id"]).exists()


def test_a_job_cancelled_after_its_commit_is_not_completed_nor_registered(samples, tmp_path):
    from stacube.jobs.stages import JobCancelled

    store = JobStore(samples.settings)
    spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-cancel-registering")
    job, _ = submit(spec, samples.settings)
    with pytest.raises(JobCancelled):
        run_job(samples.settings, job["id"], workers=1, on_register=lambda collection, j: store.cancel(j["id"]))
    ended = store.get(job["id"])
    assert ended["state"] == "cancelled" and ended["report"] is None
    assert "ny-cancel-registering" not in samples.collection_ids()


def test_ending_a_job_never_overwrites_an_ended_one(samples, tmp_path):
    from stacube.jobs import tasks

    store = JobStore(samples.settings)
    spec = build_spec(**NY, output=str(tmp_path), output_collection="ny-cancel-ended")
    job, _ = submit(spec, samples.settings)
    assert store.cancel(job["id"])["state"] == "cancelled"
    assert tasks.fail(samples.settings, job["id"], "too late") is False
    assert store.update(job["id"], state="completed", report={"late": True}) is False
    assert store.update(job["id"], state="running") is False
    assert store.cancel(job["id"])["error"] == "cancelled on request"
    ended = store.get(job["id"])
    assert (ended["state"], ended["error"], ended["report"]) == ("cancelled", "cancelled on request", None)
    with pytest.raises(NotFound):
        store.cancel("no-such-job")


TILE_PEAK = """
import json, sys, tracemalloc
from stacube.catalog.pgstac import Catalog
from stacube.jobs.plan import make_plan
from stacube.jobs.spec import build_spec
from stacube.algo.tile import compute_tile
from stacube.settings import Settings

for budget in sys.argv[2:]:
    settings = Settings(tile_memory=budget)
    plan = make_plan(build_spec(**json.loads(sys.argv[1])), Catalog(settings), "/nonexistent")
    used = {i: 0.5 for i in plan.items}
    steps = {i: 0 for i in plan.items}
    compute_tile(plan.inputs, plan.tiles[0, 0], used, steps, 1)  # warm imports and caches
    tracemalloc.start()
    compute_tile(plan.inputs, plan.tiles[0, 0], used, steps, 1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()  # the next budget's peak is its own
    print(json.dumps({"budget_setting": budget, "peak": peak, "budget": int(settings.tile_memory),
                      "tile": plan.tile_shape[0], "items": len(plan.items)}))
"""
BUDGETS = ["10MiB", "12MiB"]


@pytest.fixture(scope="module")
def peak_catalog(samples):
    """A database of its own holding the sample catalog."""
    sys.path.insert(0, str(ROOT / "tests" / "conformance"))
    from live_server import drop_database, sample_database

    sample_database("stacube_tile_peak")
    yield "stacube_tile_peak"
    drop_database("stacube_tile_peak")


@pytest.fixture(scope="module")
def tile_peaks(peak_catalog):
    """Each budget's tile edge and measured peak, from one process of its own (tracemalloc counts
    every thread's allocations); the budgets are measured in turn, each after a warm-up tile."""
    spec = {**NY, "method": "median", "max_cloud": None}
    # the default configuration over the sample catalog alone (not what earlier tests left in the
    # session's environment and catalog)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACUBE_", "GDAL_", "CPL_", "AWS_"))}
    env.update({k: os.environ[k] for k in ("STACUBE_DATA_DIR", "STACUBE_DB_PORT")}, STACUBE_DB_NAME=peak_catalog)
    proc = subprocess.run([sys.executable, "-c", TILE_PEAK, json.dumps(spec), *BUDGETS],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    return {m["budget_setting"]: m for m in lines}


@pytest.mark.parametrize("budget", BUDGETS)
def test_tile_memory_budget_sets_the_tile_size_and_bounds_its_peak(tile_peaks, budget):
    """The default tile edge follows STACUBE_TILE_MEMORY; a tile's measured peak stays within it."""
    measured = tile_peaks[budget]
    assert measured["peak"] <= measured["budget"], measured
    assert measured["tile"] < 132  # smaller than the whole grid: the budget, not the area, decided


def test_default_tile_for_40_dates_and_6_bands_fits_2_gib():
    from stacube.jobs.plan import tile_bytes_per_pixel, tile_edge

    edge = tile_edge(2 * 1024**3, dates=40, bands=6, variables=9, steps=1)
    assert edge >= 1024 and edge % 256 == 0
    assert edge * edge * tile_bytes_per_pixel(40, 6, 9, 1) <= 2 * 1024**3
