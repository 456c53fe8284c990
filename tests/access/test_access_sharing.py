"""The caller and the sharing of collections over HTTP (``/stac/access``,
``/stac/collections/{id}/access``): what each principal is told, and the owner's sharing controls
with the rules of ``stacube product share``."""

from __future__ import annotations

import pytest

from access_testing import ALPHA, BETA, GAMMA, LEGACY, PRIVATE, PUBLIC, READABLE, SHARED, copy_collection

SHARE = "acc-sharing"


@pytest.fixture(scope="module")
def sharable(world, samples):
    """A private collection of t-alpha that these tests share and unshare."""
    from stacube.access.workspaces import AccessStore

    AccessStore(world.settings).set_access(SHARE, workspace=ALPHA)
    copy_collection(samples, SHARE)
    world.extra_collections.add(SHARE)
    return SHARE


@pytest.mark.parametrize("who", ["anonymous", "owner", "owner_jwt", "shared", "other", "admin"])
def test_caller_and_rows(client, world, who):
    r = client.get("/stac/access", headers=world.headers[who])
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    kind = {"anonymous": "anonymous", "admin": "admin"}.get(who, "member")
    assert doc["principal"]["kind"] == kind
    assert doc["principal"]["workspace"] == {"owner": ALPHA, "owner_jwt": ALPHA, "shared": BETA,
                                             "other": GAMMA}.get(who)
    rows = {r["collection"]: r for r in doc["collections"]}
    # every readable collection with a row, none other (LEGACY has no row: public)
    assert set(rows) & (READABLE["admin"] - {LEGACY}) == READABLE[who] - {LEGACY}
    assert LEGACY not in rows
    if who == "owner":
        assert rows[SHARED] == {"collection": SHARED, "workspace": ALPHA, "visibility": "shared",
                                "manage": True, "shared_with": [BETA]}
        assert rows[PRIVATE]["visibility"] == "private"
    if who == "shared":  # a reader: told the owner and visibility, not whom else it is shared with
        assert rows[SHARED] == {"collection": SHARED, "workspace": ALPHA, "visibility": "shared", "manage": False}
    if who == "anonymous":
        assert rows[PUBLIC]["manage"] is False and "shared_with" not in rows[PUBLIC]


def test_one_collection(client, world):
    r = client.get(f"/stac/collections/{SHARED}/access", headers=world.headers["owner"])
    assert r.status_code == 200 and r.json()["shared_with"] == [BETA]
    r = client.get(f"/stac/collections/{LEGACY}/access")
    assert r.json() == {"collection": LEGACY, "workspace": None, "visibility": "public", "manage": False}
    # unreadable: the answer for a collection that does not exist
    hidden = client.get(f"/stac/collections/{PRIVATE}/access", headers=world.headers["other"])
    missing = client.get("/stac/collections/acc-missing/access", headers=world.headers["other"])
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["description"].replace(PRIVATE, "x") == missing.json()["description"].replace("acc-missing", "x")


def test_only_the_owner_changes_access(client, world, sharable):
    url = f"/stac/collections/{sharable}/access"
    body = {"share_with": [GAMMA]}
    r = client.patch(url, json=body)
    assert r.status_code == 401 and r.json()["code"] == "Unauthorized"
    r = client.patch(url, json=body, headers=world.headers["other"])  # cannot read it: as if missing
    assert r.status_code == 404
    r = client.patch(f"/stac/collections/{SHARED}/access", json=body, headers=world.headers["shared"])
    assert r.status_code == 403 and r.json()["code"] == "Forbidden", r.text
    r = client.patch(url, json={"workspace": BETA}, headers=world.headers["owner"])
    assert r.status_code == 403, r.text  # handing over is for admins
    assert client.get(f"/stac/collections/{sharable}", headers=world.headers["other"]).status_code == 404


@pytest.mark.parametrize("body, status", [
    ([], 400), ({}, 400), ({"visibility": "secret"}, 400), ({"share_with": "no spaces allowed"}, 400),
    ({"share_with": [1]}, 400), ({"colour": "red"}, 400), ({"visibility": 3}, 400),
    ({"share_with": ["t-nobody"]}, 404),
])
def test_bad_changes_are_4xx(client, world, sharable, body, status):
    r = client.patch(f"/stac/collections/{sharable}/access", json=body, headers=world.headers["owner"])
    assert r.status_code == status, r.text
    assert r.json()["description"]
    r = client.patch(f"/stac/collections/{sharable}/access", content=b"{not json",
                     headers={**world.headers["owner"], "Content-Type": "application/json"})
    assert r.status_code == 400


def test_share_and_stop_sharing(client, world, sharable):
    url = f"/stac/collections/{sharable}/access"
    other = world.headers["other"]
    try:
        r = client.patch(url, json={"share_with": [GAMMA]}, headers=world.headers["owner"])
        assert r.status_code == 200, r.text
        assert r.json() == {"collection": sharable, "workspace": ALPHA, "visibility": "shared",
                            "manage": True, "shared_with": [GAMMA]}
        assert client.get(f"/stac/collections/{sharable}", headers=other).status_code == 200
        listed = client.get("/stac/collections", params={"limit": 100}, headers=other).json()["collections"]
        assert sharable in {c["id"] for c in listed}
        r = client.patch(url, json={"unshare": [GAMMA]}, headers=world.headers["owner_jwt"])
        assert r.status_code == 200 and r.json()["shared_with"] == []
        assert client.get(f"/stac/collections/{sharable}", headers=other).status_code == 404
        r = client.patch(url, json={"visibility": "public"}, headers=world.headers["owner"])
        assert r.json()["visibility"] == "public"
        assert client.get(f"/stac/collections/{sharable}").status_code == 200
    finally:
        r = client.patch(url, json={"visibility": "private"}, headers=world.headers["admin"])
        assert r.status_code == 200
    assert client.get(f"/stac/collections/{sharable}").status_code == 404


def test_answers_vary_with_credentials(client, world):
    r = client.get("/stac/collections", headers=world.headers["owner"])
    assert {"authorization", "x-api-key"} <= {v.strip().lower() for v in r.headers["vary"].split(",")}
