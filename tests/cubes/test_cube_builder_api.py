"""Creating cubes over HTTP (``POST /cubes/``), their ODC ingestion configurations, the filled
parts as GeoJSON and tiles that fill what they show (``fill=true``)."""

import time

import pytest
import yaml
from fastapi.testclient import TestClient

from conftest import PRIVATE, S2_DATES, SLOVENIA_BBOX, register_private
from stacube_testing import ROOT, workspace_of_jobs

TILE = "14/8854/5837"  # covers the Slovenia stack
BODY = {"name": "t-built", "collections": [PRIVATE], "datetime": S2_DATES, "bbox": list(SLOVENIA_BBOX),
        "bands": ["red", "nir"], "indices": ["NDVI"], "chunk": 64, "time_chunk": 4, "tile_size": 128}


@pytest.fixture(scope="module")
def client(private_s2, cube_settings):
    from stacube_services.app import create_app

    from stacube.cubes.records import CubeRecords

    for name in ("t-built", "t-built-now", "t-built-odc", "t-built-stop", "t-built-held", "t-built-broken",
                 "t-built-after"):
        try:
            CubeRecords(cube_settings).delete(name)
        except Exception:
            pass
    # anonymous callers submit here whether or not other tests of the session made workspaces
    # (anonymous jobs are on by default only while access control is off)
    with TestClient(create_app(cube_settings.model_copy(update={"anonymous_jobs": True, "max_jobs": 1000})),
                    raise_server_exceptions=False) as c:
        yield c


def test_create_on_demand_then_a_tile_fills_what_it_shows(client):
    r = client.post("/cubes/", json=BODY)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["name"] == "t-built" and doc["variables"] == ["red", "nir", "NDVI", "quality"]
    assert doc["chunks"] == [4, 64, 64] and doc["fill"]["mode"] == "on_demand" and doc["fill"]["done"] == 0
    assert client.get("/cubes/t-built/filled").json()["features"] == []
    # without fill the tile is transparent and nothing is computed
    plain = client.get(f"/cubes/t-built/tiles/WebMercatorQuad/{TILE}.png?time_index=0")
    assert plain.status_code == 200 and "x-cube-fill" not in plain.headers
    filled = client.get(f"/cubes/t-built/tiles/WebMercatorQuad/{TILE}.png?time_index=0&fill=true")
    assert filled.status_code == 200 and int(filled.headers["x-cube-fill"]) >= 1
    assert len(filled.content) > len(plain.content)
    regions = client.get("/cubes/t-built/filled")
    assert regions.status_code == 200 and regions.headers["content-type"] == "application/geo+json"
    features = regions.json()["features"]
    assert features and {f["properties"]["state"] for f in features} == {"done"}
    assert all(f["properties"]["time_block"] == 0 for f in features)
    west, south, east, north = SLOVENIA_BBOX
    lons = [p[0] for f in features for p in f["geometry"]["coordinates"][0]]
    assert min(lons) < east and max(lons) > west
    state = client.get("/cubes/t-built").json()["fill"]
    assert state["done"] == len(features) < state["units"]
    # a second request computes nothing
    again = client.get(f"/cubes/t-built/tiles/WebMercatorQuad/{TILE}.png?time_index=0&fill=true")
    assert again.headers["x-cube-fill"] == "0" and again.content == filled.content
    # a coarse tile over many units renders what is there and computes nothing
    coarse = client.get("/cubes/t-built/tiles/WebMercatorQuad/8/138/91.png?time_index=0&fill=true")
    assert coarse.status_code in (200, 404)


def wait_for_job(client, job_id: str, seconds: float = 240) -> dict:
    """The job once it is no longer queued or running (or at the deadline)."""
    deadline = time.monotonic() + seconds
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_fill_now_runs_in_the_background_as_a_cube_job(client):
    r = client.post("/cubes/", json={**BODY, "name": "t-built-now", "fill": "now"})
    assert r.status_code == 201, r.text
    submitted = r.json()["job"]
    assert submitted["kind"] == "cube" and submitted["held"] is False
    assert submitted["href"].endswith(f"/jobs/{submitted['id']}")
    listed = {j["id"]: j for j in client.get("/jobs").json()["jobs"]}
    assert listed[submitted["id"]]["kind"] == "cube" and listed[submitted["id"]]["cube"] == "t-built-now"
    job = wait_for_job(client, submitted["id"])
    assert job["state"] == "completed", job
    state = client.get("/cubes/t-built-now").json()["fill"]
    assert state["done"] == state["units"] and state["failed"] == 0
    progress = job["progress"]
    assert progress["stage"] == "fill" and progress["tiles_done"] == progress["tiles_total"] == state["units"]
    assert job["parameters"] == {"cube": "t-built-now"} and job["error"] is None
    assert job["report"]["fill"]["units"] == state["units"] and "summary" not in job
    assert {"rel": "cube", "href": "http://testserver/cubes/t-built-now", "type": "application/json"} in job["links"]
    assert len(client.get("/cubes/t-built-now/filled").json()["features"]) == state["units"]
    # an ended cube job cannot be cancelled any more (its state stays)
    assert client.post(f"/jobs/{job['id']}/cancel").json()["state"] == "completed"


def test_a_held_cube_job_runs_through_the_job_runner(client, cube_settings, capsys):
    """What the jobs API's launcher does with a cube job it releases (``stacube job run``)."""
    from stacube.cli.composite import print_summary
    from stacube.cubes.fill import fill_state, load_definition
    from stacube.jobs.cube_fill import submit_fill
    from stacube.jobs.runner import run_job

    job, created = submit_fill(cube_settings, "t-built", job_id="cube-run-t-built")
    assert created and job["state"] == "queued" and job["kind"] == "cube"
    ticks = []
    report = run_job(cube_settings, job["id"], workers=1, restart=False, progress=lambda *a: ticks.append(a))
    assert report["status"] == "completed" and report["cube"] == "t-built"
    assert ticks and ticks[-1][0] == "fill" and ticks[-1][1] == ticks[-1][2]
    print_summary(report)  # what `stacube job show` / `job resume` print
    assert "cube t-built:" in capsys.readouterr().out
    done = client.get(f"/jobs/{job['id']}").json()
    state = fill_state(cube_settings, load_definition(cube_settings, "t-built"))
    assert done["state"] == "completed" and state["done"] == state["units"]
    assert done["progress"]["tiles_done"] == done["progress"]["tiles_total"] == state["units"]


def test_a_fill_stops_between_units_when_cancelled(client, cube_settings):
    from stacube.cubes.fill import all_units, fill_state, fill_units, load_definition
    from stacube.jobs.cube_fill import run_fill, submit_fill
    from stacube.jobs.stages import JobCancelled
    from stacube.jobs.state import JobStore

    r = client.post("/cubes/", json={**BODY, "name": "t-built-stop"})
    assert r.status_code == 201, r.text
    definition = load_definition(cube_settings, "t-built-stop")
    assert len(all_units(definition)) > 1
    with pytest.raises(JobCancelled, match="after 1 of"):
        fill_units(cube_settings, definition, all_units(definition), workers=1, cancelled=lambda: True)
    state = fill_state(cube_settings, definition)
    assert state["done"] == 1 and state["running"] == 0 and state["failed"] == 0
    # a job cancelled before its fill starts computes nothing and stays cancelled
    job, _ = submit_fill(cube_settings, "t-built-stop", job_id="cube-stop-t-built")
    assert client.post(f"/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
    with pytest.raises(JobCancelled):
        run_fill(cube_settings, job["id"], workers=1)
    assert JobStore(cube_settings).state(job["id"]) == "cancelled"
    assert fill_state(cube_settings, definition)["done"] == 1


SLOTS = "cube-slots"


@pytest.fixture
def slots_workspace(cube_settings):
    """A workspace that may run one job at a time, and an API key of it (revoked afterwards).
    Its own workspace, so jobs other tests of the session left queued take none of its slots."""
    store = workspace_of_jobs(cube_settings, SLOTS, max_jobs=1)
    created = store.create_key(SLOTS, label="cube slot tests")
    yield created.key
    store.revoke_key(created.id)


@pytest.fixture
def one_job_client(cube_settings, slots_workspace):
    """The application as the one-job workspace sees it."""
    from stacube_services.app import create_app

    with TestClient(create_app(cube_settings), headers={"X-API-Key": slots_workspace},
                    raise_server_exceptions=False) as c:
        yield c


def test_a_cube_fill_takes_a_job_slot(one_job_client, cube_settings):
    from stacube.jobs.state import JobStore

    store = JobStore(cube_settings)
    # a compositing job of the workspace holds its only slot (recorded, never launched)
    store.submit("slot-holder", {"collections": [PRIVATE]}, workspace=SLOTS)
    try:
        r = one_job_client.post("/cubes/", json={**BODY, "name": "t-built-held", "fill": "now"})
        assert r.status_code == 201, r.text
        job = r.json()["job"]
        assert job["held"] is True and job["state"] == "queued"
        got = one_job_client.get(f"/jobs/{job['id']}").json()
        assert got["held"] is True and got["state"] == "queued" and got["kind"] == "cube"
        assert one_job_client.post(f"/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
    finally:
        store.cancel("slot-holder")


def test_a_failing_fill_ends_failed_with_the_reason_and_frees_the_slot(one_job_client, samples, cube_settings,
                                                                       tmp_path):
    from pathlib import Path

    stack = register_private(samples, tmp_path, "cube-test-s2-broken")
    # the sources go away after they were registered: the cube is defined from the catalog, its fill fails
    assert [p.unlink() or p for p in Path(stack).rglob("*.tif")]
    r = one_job_client.post("/cubes/", json={**BODY, "name": "t-built-broken", "collections": ["cube-test-s2-broken"],
                                             "fill": "now"})
    assert r.status_code == 201, r.text
    job = wait_for_job(one_job_client, r.json()["job"]["id"])
    assert job["state"] == "failed" and "cannot read" in job["error"], job
    assert job["finished"] and job["progress"]["tiles_done"] < job["progress"]["tiles_total"]
    # the slot is free: the next fill of the workspace starts at once
    r = one_job_client.post("/cubes/", json={**BODY, "name": "t-built-after", "fill": "now"})
    assert r.status_code == 201 and r.json()["job"]["held"] is False, r.text
    assert wait_for_job(one_job_client, r.json()["job"]["id"])["state"] == "completed"


def test_ingestion_config_preview_export_and_create_from_it(client):
    preview = client.post("/cubes/ingestion-config", json=BODY)
    assert preview.status_code == 200 and preview.headers["content-type"].startswith("application/yaml")
    doc = yaml.safe_load(preview.text)
    assert doc["source_type"] == PRIVATE and doc["output_type"] == "t-built"
    assert [m["name"] for m in doc["measurements"]] == ["red", "nir"]
    assert doc["storage"]["chunking"] == {"x": 64, "y": 64, "time": 4} and doc["stacube"]["indices"] == ["NDVI"]
    exported = client.get("/cubes/t-built/ingestion-config")
    assert exported.status_code == 200 and yaml.safe_load(exported.text)["measurements"] == doc["measurements"]
    # the YAML back: the same cube under another name, with int16 bands
    for m in doc["measurements"]:
        m["dtype"], m["nodata"] = "int16", -999
    r = client.post("/cubes/", json={"config": yaml.safe_dump(doc), "name": "t-built-odc"})
    assert r.status_code == 201, r.text
    made = client.get("/cubes/t-built-odc/ingestion-config").text
    assert [(m["dtype"], m["nodata"]) for m in yaml.safe_load(made)["measurements"]] == [("int16", -999)] * 2


def test_the_sample_ingestion_configuration_over_http(client, samples):
    text = (ROOT / "tests" / "data" / "odc" / "landsat8_ny_conus_albers_int16.yaml").read_text()
    r = client.post("/cubes/ingestion-config", json={"config": text, "datetime": "2018-03-01/2018-06-30"})
    assert r.status_code == 200, r.text
    assert yaml.safe_load(r.text)["measurements"][0]["dtype"] == "int16"


@pytest.mark.parametrize("url,body,status,reason", [
    ("/cubes/", {**BODY, "name": "Bad Name"}, 400, "name"),
    ("/cubes/", {**BODY, "output": "file:///etc"}, 400, "cannot be set over HTTP"),
    ("/cubes/", {**BODY, "fill": "later"}, 400, "on_demand or now"),
    ("/cubes/", {**BODY, "collections": ["nope"]}, 404, "unknown collection"),
    ("/cubes/", {**BODY, "name": "t-built"}, 409, "exists"),
    ("/cubes/", {**BODY, "name": PRIVATE}, 409, "exists"),
    ("/cubes/", {**BODY, "dtypes": {"red": "int16"}}, 400, "whole nodata"),
    ("/cubes/", {**BODY, "chunk": 100}, 400, "tile-size"),
    ("/cubes/", {**BODY, "bogus": 1}, 400, "bogus"),
    ("/cubes/", {**BODY, "name": "t-huge", "bbox": [13, 45, 16, 47]}, 400, "limit over HTTP"),
    ("/cubes/", {**BODY, "name": "t-many", "bbox": [14.0, 45.5, 14.8, 46.2], "fill": "now"}, 400, "fill units"),
    ("/cubes/", {"config": "a: [", "datetime": S2_DATES}, 400, "not YAML"),
    ("/cubes/", {"config": {"source_type": PRIVATE, "fuse_data": "copy"}}, 400, "fuse_data"),
    ("/cubes/ingestion-config", {**BODY, "datetime": "2015-07-01/.."}, 400, "both ends"),
    ("/cubes/ingestion-config", ["not", "an", "object"], 422, "valid dictionary"),
    ("/cubes/nope/filled", None, 404, "unknown cube"),
    ("/cubes/nope/ingestion-config", None, 404, "unknown cube"),
    ("/cubes/t-built/filled?limit=0", None, 422, "greater than or equal to 1"),
    ("/cubes/t-built/tiles/WebMercatorQuad/14/8854/5837.png?fill=maybe", None, 422, "valid boolean"),
])
def test_bad_requests_answer_4xx_json(client, url, body, status, reason):
    r = client.get(url) if body is None else client.post(url, json=body)
    assert r.status_code == status, r.text
    payload = r.json()
    text = payload.get("description") or str(payload.get("detail"))
    assert reason in text, text
