"""Creating cubes over HTTP and the builder's cube routes under access control: the same gate as
the other cube routes (an unreadable source or cube answers exactly what a missing one does)."""

from __future__ import annotations

import time

import pytest

from access_testing import COLLECTIONS, PRINCIPALS, PRIVATE, READABLE, same_as_missing

BODY = {"datetime": "2015-07-01/2015-09-30", "bbox": [14.5514, 45.8659, 14.5642, 45.875], "bands": ["red"],
        "chunk": 64, "tile_size": 128}
OWNED = "acc-cube-owned"


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_sources_must_be_readable(client, world, principal):
    headers = world.headers[principal]
    for c in COLLECTIONS:
        body = {**BODY, "name": "acc-cube-preview", "collections": [c]}
        r = client.post("/cubes/ingestion-config", json=body, headers=headers)
        if c in READABLE[principal]:
            assert r.status_code == 200, (principal, c, r.text[:300])
        else:
            assert r.status_code == 404, (principal, c, r.text[:300])
            same_as_missing(client, r, "POST", "/cubes/ingestion-config", c, headers, json=body)
            created = client.post("/cubes/", json=body, headers=headers)
            assert created.status_code == 404, (principal, c, created.text[:300])


@pytest.fixture(scope="module")
def owned_cube(client, world):
    """A cube the owner (workspace alpha) created from its private collection."""
    from stacube.cubes.records import CubeRecords

    world.extra_collections.add(OWNED)
    r = client.post("/cubes/", json={**BODY, "name": OWNED, "collections": [PRIVATE]}, headers=world.headers["owner"])
    assert r.status_code == 201, r.text
    yield OWNED
    CubeRecords(world.settings).delete(OWNED)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_the_new_cube_belongs_to_the_owners_workspace(client, world, owned_cube, principal):
    headers = world.headers[principal]
    readable = principal in ("owner", "owner_jwt", "admin", "admin_jwt")
    for route in ("", "/filled", "/ingestion-config"):
        r = client.get(f"/cubes/{owned_cube}{route}", headers=headers)
        assert r.status_code == (200 if readable else 404), (principal, route, r.text[:200])
        if not readable:
            missing = client.get(f"/cubes/acc-missing{route}", headers=headers)
            assert r.json()["description"].replace(owned_cube, "acc-missing") == missing.json()["description"]


def test_anonymous_creation_follows_the_anonymous_jobs_setting(world, private_settings_client):
    r = private_settings_client.post("/cubes/", json={**BODY, "name": "acc-cube-anon", "collections": ["acc-public"]})
    assert r.status_code == 401 and "anonymous" in r.json()["description"]


@pytest.fixture
def private_settings_client(world):
    """The application with anonymous jobs off."""
    from fastapi.testclient import TestClient

    from stacube_services.app import create_app

    settings = world.settings.model_copy(update={"anonymous_jobs": False})
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_a_fill_now_job_belongs_to_the_owners_workspace(client, world):
    """The fill of a cube created with ``fill: now`` is a job of the creator's workspace: listed and
    shown to it (and admins), answered 404 to anyone else, as other jobs are."""
    from stacube.cubes.records import CubeRecords

    name = "acc-cube-now"
    world.extra_collections.add(name)
    owner = world.headers["owner"]
    r = client.post("/cubes/", json={**BODY, "name": name, "collections": [PRIVATE], "fill": "now"}, headers=owner)
    assert r.status_code == 201, r.text
    job_id = r.json()["job"]["id"]
    try:
        for principal in PRINCIPALS:
            headers = world.headers[principal]
            listed = {j["id"]: j for j in client.get("/jobs?limit=500", headers=headers).json()["jobs"]}
            got = client.get(f"/jobs/{job_id}", headers=headers)
            if principal in ("owner", "owner_jwt", "admin", "admin_jwt"):
                assert listed[job_id]["kind"] == "cube" and listed[job_id]["cube"] == name, principal
                assert got.status_code == 200 and got.json()["kind"] == "cube", principal
            else:
                assert job_id not in listed, principal
                assert got.status_code == 404, principal
                assert client.post(f"/jobs/{job_id}/cancel", headers=headers).status_code == 404, principal
    finally:
        client.post(f"/jobs/{job_id}/cancel", headers=owner)
        deadline = time.monotonic() + 120  # the fill stops at its next unit
        while time.monotonic() < deadline and client.get(f"/cubes/{name}", headers=owner).json()["fill"]["running"]:
            time.sleep(0.5)
        CubeRecords(world.settings).delete(name)
