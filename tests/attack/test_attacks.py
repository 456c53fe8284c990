"""The attack suite (``attacks.py`` lists the single-request attacks): each answers 4xx with a
reason within 2 s, changes nothing, and the server's memory stays within 512 MiB of its
warmed-up size. The attacks that take several steps are the tests below the list's."""

from __future__ import annotations

import time
from http.client import HTTPConnection

import pytest

from attacks import ATTACKS, nested_not
from attack_world import LEGACY, MiB, MINE, PUBLIC, S2, server_rss
from stacube_testing import register_pointing_at

BOUND = 512 * MiB
SECONDS = 2.0


class Raw:
    """An answer read with ``http.client`` (requests would correct a false Content-Length)."""

    def __init__(self, response):
        self.status_code = response.status
        self.text = response.read().decode("utf-8", "replace")

    def json(self):
        import json

        return json.loads(self.text)


def send(http, world, request: dict, who: str):
    request = dict(request)
    method, path = request.pop("method"), request.pop("path")
    headers = {**world.headers[who], **request.pop("headers", {})}
    started = time.monotonic()
    if request.pop("raw", False):
        conn = HTTPConnection("127.0.0.1", world.server.port, timeout=60)
        try:
            conn.request(method, path, body=request.get("data"), headers=headers)
            response = Raw(conn.getresponse())
        finally:
            conn.close()
    else:
        response = http.request(method, world.url(path), headers=headers, timeout=60, **request)
    return response, time.monotonic() - started


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack(attack, world, http, state, baseline):
    before = state()
    response, seconds = send(http, world, attack.request(world), attack.who)
    assert response.status_code in attack.status, (response.status_code, response.text[:300])
    if attack.reason:
        body = response.json()
        assert attack.reason in (body.get("description") or str(body.get("detail", ""))), body
    assert seconds < SECONDS, f"answered in {seconds:.1f} s"
    if not attack.changes:
        assert state() == before, "the attack changed the catalog"
    assert server_rss(world.server) - baseline < BOUND
    assert world.listener.connections == 0, "the server connected to the loopback target"


def test_no_attack_made_a_server_error_or_grew_the_memory(world, baseline):
    log = world.server.log_text()
    assert "Exception in ASGI application" not in log and "HTTP 500" not in log, log[-2000:]
    grown = server_rss(world.server) - baseline
    print(f"server memory: {baseline / MiB:.0f} MiB warmed up, {grown / MiB:+.0f} MiB after every attack")
    assert grown < BOUND


def wait_job(http, world, job_id: str, who: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = http.get(world.url(f"/jobs/{job_id}"), headers=world.headers[who], timeout=30).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end: {job}")


def test_a_job_over_items_pointing_at_a_loopback_port_fails_without_connecting(world, http):
    body = {"collections": [LEGACY], "bbox": [14.5514, 45.8659, 14.5642, 45.8750],
            "datetime": "2015-07-01/2015-09-30", "method": "median", "bands": ["red"]}
    r = http.post(world.url("/jobs"), json=body, headers=world.headers["alpha"], timeout=30)
    assert r.status_code == 202, r.text
    job = wait_job(http, world, r.json()["id"], "alpha")
    assert job["state"] == "failed" and "not under an allowed prefix" in job["error"], job
    assert world.listener.connections == 0


def test_anonymous_time_series_never_uses_a_private_workspace_cube(world, http, samples):
    """``find_cube`` chooses on the caller's behalf: a public collection's time series must not
    read (or fill) a cube of a workspace the caller cannot read."""
    from stacube.access.workspaces import AccessStore
    from stacube.cubes.build import create_cube
    from stacube.cubes.records import CubeRecords
    from stacube.cubes.spec import build_cube_spec

    name = "atk-private-cube"
    spec = build_cube_spec(name=name, collections=[PUBLIC], datetime="2015-07-01/2015-09-30", bands=["red"])
    AccessStore(world.settings).set_access(name, workspace="a-beta")  # private before it exists
    create_cube(spec, world.settings, fill=False, replace=True)
    units = CubeRecords(world.settings).states(name, [(0, 0, 0)])
    url = f"/cubes/timeseries?collection={PUBLIC}&lon=14.558&lat=45.87&bands=red"
    anonymous = http.get(world.url(url), timeout=60)
    assert anonymous.status_code == 200 and anonymous.json()["source"] == "items", anonymous.text[:300]
    assert CubeRecords(world.settings).states(name, [(0, 0, 0)]) == units  # nothing filled
    owner = http.get(world.url(url), headers=world.headers["beta"], timeout=120)
    assert owner.status_code == 200 and owner.json()["source"] == "cube", owner.text[:300]


def test_files_of_an_admins_and_a_private_job_stay_hidden(world, http):
    """``/files`` authorises the normalised path: ``..`` and ``%2e%2e`` cannot climb from a
    public folder into a private job's; an admin's job without a workspace is not listed to
    anonymous callers."""
    body = {"collections": [S2], "bbox": [14.5514, 45.8659, 14.5642, 45.8750],
            "datetime": "2015-07-01/2015-07-15", "method": "median", "bands": ["red"]}
    admin = http.post(world.url("/jobs"), json={**body, "output_collection": "atk-admin-out"},
                      headers=world.headers["admin"], timeout=30).json()
    mine = http.post(world.url("/jobs"), json={**body, "collections": [MINE]},
                     headers=world.headers["alpha"], timeout=30).json()
    for job in (admin, mine):
        assert wait_job(http, world, job["id"], "admin")["state"] == "completed"
    listed = {j["id"] for j in http.get(world.url("/jobs?limit=500"), timeout=30).json()["jobs"]}
    assert admin["id"] not in listed and mine["id"] not in listed
    assert http.get(world.url(f"/jobs/{admin['id']}"), timeout=30).status_code == 404
    report = f"{mine['id']}/report.json"
    assert http.get(world.url(f"/files/{report}"), headers=world.headers["alpha"], timeout=30).status_code == 200
    missing = http.get(world.url("/files/no-such-job/report.json"), timeout=30)
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound" and missing.json()["description"]
    for path in (f"/files/cubes/{PUBLIC}/../../{report}", f"/files/cubes/{PUBLIC}/%2e%2e/%2e%2e/{report}",
                 f"/files/{admin['id']}/../{report}", f"/files/./{report}", f"/files//{report}"):
        r = http.get(world.url(path), timeout=30)
        assert r.status_code == 404, (path, r.status_code)
        assert r.json() == missing.json()  # the answer to a missing file: nothing tells it is there


def test_anonymous_search_registrations_are_bounded(world, http, settings):
    """Each distinct anonymous registration is a row of ``pgstac.searches``: the least recently
    used beyond ``STACUBE_ANONYMOUS_SEARCHES`` (20 here) are dropped."""
    from stacube.db.connection import connect

    for i in range(60):
        r = http.post(world.url("/raster/searches/register"),
                      json={"collections": [S2], "filter": {"op": "=", "args": [{"property": "id"}, f"atk-{i}"]},
                            "filter-lang": "cql2-json"}, timeout=30)
        assert r.status_code == 200, r.text
    with connect(settings) as conn:
        kept = conn.execute("SELECT count(*) FROM pgstac.searches WHERE metadata->>'stacube:anonymous' = 'true'"
                            ).fetchone()[0]
    assert 0 < kept <= 20
    latest = r.json()["id"]
    assert http.get(world.url(f"/raster/searches/{latest}/info"), timeout=30).status_code == 200


def test_page_sizes_are_capped(world, http):
    r = http.get(world.url("/stac/search?limit=100000"), timeout=60)
    assert r.status_code == 200 and len(r.json()["features"]) <= 1000
    assert http.get(world.url("/raster/searches/?limit=100000"), timeout=30).status_code in (400, 422)
    assert http.get(world.url("/jobs?limit=100000"), headers=world.headers["alpha"], timeout=30).status_code in (400, 422)


def test_a_workspace_runs_at_most_max_jobs_at_once(world):
    """With ``max_jobs`` 1, a second job of the workspace is held (queued, not launched) until the
    first ends; other workspaces are not held back."""
    from fastapi.testclient import TestClient

    from stacube.jobs.state import JobStore
    from stacube_services.jobs import create_jobs_app

    launched = []

    class Recorder:
        def launch(self, job_id):
            launched.append(job_id)

    body = {"collections": [MINE], "bbox": [14.5514, 45.8659, 14.5642, 45.8750], "method": "median",
            "bands": ["red"]}
    with TestClient(create_jobs_app(world.settings, launcher=Recorder(), mount=""),
                    raise_server_exceptions=False) as c:
        first = c.post("/", json={**body, "datetime": "2015-07-01/2015-07-20"}, headers=world.headers["alpha"]).json()
        second = c.post("/", json={**body, "datetime": "2015-07-01/2015-07-21"}, headers=world.headers["alpha"]).json()
        other = c.post("/", json={**body, "collections": [PUBLIC], "datetime": "2015-07-01/2015-07-20"},
                       headers=world.headers["beta"]).json()
        assert (first["held"], second["held"], other["held"]) == (False, True, False)
        assert launched == [first["id"], other["id"]] and second["state"] == "queued"
        JobStore(world.settings).update(first["id"], state="completed")
        # released at the next request (here, or by the served instance's dispatcher: it shares the catalog)
        assert c.get(f"/{second['id']}", headers=world.headers["alpha"]).json()["held"] is False
        for job in (first, second, other):
            JobStore(world.settings).cancel(job["id"])


def test_the_read_gate_answers_alike_whether_a_file_exists_or_not(world, http, samples):
    """Refusals name the href as sent and the prefix its text suggests: nothing says whether the
    file is there."""
    from stacube.access.gate import ReadGate

    gate = ReadGate.from_settings(world.settings)
    for present, absent in (("/etc/passwd", "/etc/no-such-file"),
                            (world.hrefs["database"], world.hrefs["database"] + "-not-there")):
        a, b = gate.refusal(present), gate.refusal(absent)
        assert a.replace(present, "X") == b.replace(absent, "X"), (a, b)
    register_pointing_at(samples, LEGACY, {"present": "/etc/passwd", "absent": "/etc/no-such-file"})
    answers = [http.get(world.url(f"/raster/collections/{LEGACY}/items/evil-{n}/info?assets=B04"), timeout=30)
               for n in ("present", "absent")]
    assert [r.status_code for r in answers] == [403, 403]
    assert answers[0].text.replace("passwd", "X") == answers[1].text.replace("no-such-file", "X")


def test_es256_token_against_an_rsa_key_set(tmp_path):
    """A JWT signed with ES256 while the key set holds an RSA key with that id: 401, not 500."""
    import json

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from stacube.access.errors import Unauthorized
    from stacube.access.oidc import OidcValidator, clear_cache

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update(kid="k1")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    clear_cache()
    token = jwt.encode({"exp": int(time.time()) + 60}, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                       headers={"kid": "k1"})
    with pytest.raises(Unauthorized, match="does not fit"):
        OidcValidator(str(path)).principal(token)
    clear_cache()


@pytest.mark.parametrize("depth, allowed", [(3, True), (4, False)])
def test_the_not_bound_is_the_documented_one(world, http, depth, allowed):
    r = http.get(world.url(f"/stac/search?filter={nested_not(depth)}&filter-lang=cql2-text&limit=1"), timeout=30)
    assert (r.status_code == 200) is allowed, r.text[:300]
