"""Jobs: inputs must be readable, outputs go into the caller's workspace, callers see their own jobs;
job outputs (``/files``) follow their collection."""

from __future__ import annotations

import pytest

from stacube_testing import workspace_of_jobs

from access_testing import ALPHA, BETA_PRIVATE, COLLECTIONS, LEGACY, PRINCIPALS, PRIVATE, PUBLIC, READABLE, SHARED

SLOVENIA = {"bbox": [14.5514, 45.8659, 14.5642, 45.875], "datetime": "2015-07-01/2015-09-30",
            "method": "median", "bands": ["red"]}


@pytest.fixture(scope="module")
def jobs(world):
    """A jobs API whose launcher records the jobs instead of running them."""
    from fastapi.testclient import TestClient

    from stacube_services.jobs import create_jobs_app

    class Recorder:
        launched: list[str] = []

        def launch(self, job_id):
            self.launched.append(job_id)

    with TestClient(create_jobs_app(world.settings, launcher=Recorder(), mount=""),
                    raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_inputs_must_be_readable(jobs, world, principal):
    headers = world.headers[principal]
    for c in COLLECTIONS:
        body = {**SLOVENIA, "collections": [c], "output_collection": f"acc-out-{principal}-{c}".replace("_", "-")}
        r = jobs.post("/", json=body, headers=headers)
        if c in READABLE[principal]:
            assert r.status_code in (200, 202), (principal, c, r.text[:200])
        else:
            assert r.status_code == 404 and r.json()["description"] == f"unknown collection {c!r}", (principal, c)
            missing = jobs.post("/", json={**body, "collections": ["acc-missing"]}, headers=headers)
            assert missing.status_code == 404


@pytest.mark.parametrize("principal, output, status", [
    ("owner", BETA_PRIVATE, 409),      # another cube's collection, hidden
    ("owner", PRIVATE, 202),           # its own cube's
    ("shared", SHARED, 409),           # shared with it, not its own
    ("other", PUBLIC, 409),            # public, another cube's
    ("owner", LEGACY, 409),            # no owner: not a member's
    ("anonymous", LEGACY, 409),        # a source collection: never a job's output
    ("anonymous", PUBLIC, 409),        # a cube's collection
    ("anonymous", "acc-anon-new", 202),
    ("admin", LEGACY, 202),
])
def test_outputs_go_into_the_callers_cube(jobs, world, principal, output, status):
    body = {**SLOVENIA, "collections": [LEGACY], "output_collection": output}
    r = jobs.post("/", json=body, headers=world.headers[principal])
    assert r.status_code in ((200, 202) if status == 202 else (status,)), r.text
    if status == 409:
        assert "not available" in r.json()["description"]


def test_jobs_are_seen_by_their_cube_only(jobs, world):
    owner, other, admin = world.headers["owner"], world.headers["other"], world.headers["admin"]
    body = {**SLOVENIA, "collections": [PUBLIC]}
    mine = jobs.post("/", json=body, headers=owner).json()
    theirs = jobs.post("/", json=body, headers=other).json()
    anon = jobs.post("/", json=body).json()
    assert len({mine["id"], theirs["id"], anon["id"]}) == 3  # same parameters, one job per cube
    assert mine["parameters"]["output_collection"] == f"{PUBLIC}-median-{ALPHA}"
    for headers, own in ((owner, mine), (other, theirs), ({}, anon)):
        listed = {j["id"] for j in jobs.get("/?limit=500", headers=headers).json()["jobs"]}
        assert own["id"] in listed and not ({mine["id"], theirs["id"], anon["id"]} - {own["id"]}) & listed
        assert jobs.get(f"/{own['id']}", headers=headers).status_code == 200
    for headers in ({}, other):
        assert jobs.get(f"/{mine['id']}", headers=headers).status_code == 404
        assert jobs.get(f"/{mine['id']}/report", headers=headers).status_code == 404
        assert jobs.post(f"/{mine['id']}/cancel", headers=headers).status_code == 404
    assert {mine["id"], theirs["id"], anon["id"]} <= {j["id"] for j in jobs.get("/?limit=500", headers=admin).json()["jobs"]}
    assert jobs.post(f"/{mine['id']}/cancel", headers=owner).json()["state"] == "cancelled"


def test_a_members_job_output_is_private_to_its_workspace(client, world):
    """Run a small job of cube t-alpha over its private collection: the derived collection is
    claimed for t-alpha (private), its items, tiles and files are hidden from everyone else."""
    from stacube.access.jobs import output_claim, scoped_job_id
    from stacube.access.workspaces import AccessStore
    from stacube.jobs.runner import run_job, submit
    from stacube.jobs.spec import build_spec

    out = "acc-private-median-t-alpha"
    world.extra_collections.add(out)
    spec = build_spec(**SLOVENIA, collections=[PRIVATE], output_collection=out)
    job, _ = submit(spec, world.settings, job_id=scoped_job_id(spec.job_id(), ALPHA), workspace=ALPHA)
    assert job["workspace"] == ALPHA
    report = run_job(world.settings, job["id"], workers=1, on_register=output_claim(world.settings))
    row = AccessStore(world.settings).get(out)
    assert (row.workspace, row.visibility) == (ALPHA, "private")
    owner = world.headers["owner"]
    item = report["items"][0]
    label = report["steps"][0]["label"]
    assert client.get(f"/stac/collections/{out}/items/{item}", headers=owner).status_code == 200
    cog = f"/files/{job['id']}/{label}/red.tif"
    assert client.get(cog, headers=owner).status_code == 200
    assert client.get(f"/files/{job['id']}/report.json", headers=owner).status_code == 200
    for who in ("anonymous", "other", "shared"):
        h = world.headers[who]
        assert client.get(f"/stac/collections/{out}/items/{item}", headers=h).status_code == 404, who
        assert client.get(f"/raster/collections/{out}/items/{item}/info?assets=red", headers=h).status_code == 404
        assert client.get(cog, headers=h).status_code == 404, who
        assert client.get(f"/files/{job['id']}/report.json", headers=h).status_code == 404, who
        assert client.get("/files/tmp/", headers=h).status_code == 404
    assert client.get(cog, headers=world.headers["admin"]).status_code == 200
    # sharing the output opens it to that cube, files included
    AccessStore(world.settings).set_access(out, share_with=["t-beta"])
    assert client.get(cog, headers=world.headers["shared"]).status_code == 200
    assert client.get(cog, headers=world.headers["other"]).status_code == 404


def test_a_stuck_job_takes_no_slot_of_its_workspace(settings):
    """A job whose process died stays ``running``; once it made no progress for ``job_max_age``
    (the rule by which a resubmission starts it afresh) it no longer takes its workspace's slot."""
    from stacube.access.jobs import JobSlots
    from stacube.jobs.state import JobStore

    workspace, dead, waiting = "t-stuck-slots", "stuck-slots-dead", "stuck-slots-waiting"
    workspace_of_jobs(settings, workspace, max_jobs=1)
    aged = settings.model_copy(update={"job_max_age": 3600})
    slots, jobs = JobSlots(aged), JobStore(settings)
    try:
        jobs.submit(dead, {"n": 1}, workspace=workspace)
        assert jobs.update(dead, state="running")
        jobs.submit(waiting, {"n": 2}, workspace=workspace)
        assert slots.admit(waiting, workspace) is False  # the running job holds the one slot
        jobs.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET updated = now() - interval '59 minutes' WHERE id = %s", (dead,)))
        assert slots.releasable() == [] and slots.is_held(waiting)  # quiet for less than job_max_age
        jobs.run(lambda conn: conn.execute(
            "UPDATE stacube.jobs SET updated = now() - interval '61 minutes' WHERE id = %s", (dead,)))
        assert slots.releasable() == [waiting] and not slots.is_held(waiting)
        _, restarted = jobs.submit(dead, {"n": 1}, workspace=workspace, stale_after=aged.job_max_age)
        assert restarted  # the same rule: submitted again, it starts afresh (and takes a slot again)
        assert slots.admit("stuck-slots-third", workspace) is False
    finally:
        for job_id in (dead, waiting):
            jobs.cancel(job_id)
        jobs.run(lambda conn: conn.execute("DELETE FROM stacube.held_jobs WHERE job_id LIKE 'stuck-slots-%%'"))
