"""Shared names and helpers of the access-control tests: three workspaces, their keys and tokens, and copies of the
Slovenia collection with every kind of access.

| collection | workspace | visibility |
|---|---|---|
| ``acc-private`` | t-alpha | private |
| ``acc-shared`` | t-alpha | shared with t-beta |
| ``acc-public`` | t-alpha | public |
| ``acc-beta`` | t-beta | private |
| ``sentinel-2-l1c-eolearn-sample`` | none (no access row: public) | |

Principals: anonymous, ``owner`` (t-alpha, API key), ``owner_jwt`` (t-alpha, OIDC token),
``shared`` (t-beta, API key as a bearer token), ``other`` (t-gamma), ``admin`` (admin API key of
the catalog), ``admin_jwt`` (token with the admin role). The rows are removed at the end, so
the other test packages see the catalog as it was.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field

from stacube_testing import copy_collection, rsa_key  # noqa: F401 - the access tests import them from here

S2 = "sentinel-2-l1c-eolearn-sample"
ITEM = "S2_L1C_20150711T100008"
TILE = "WebMercatorQuad/14/8854/5837"
POINT = "14.558,45.87"
ALPHA, BETA, GAMMA = "t-alpha", "t-beta", "t-gamma"
PRIVATE, SHARED, PUBLIC, BETA_PRIVATE, LEGACY = "acc-private", "acc-shared", "acc-public", "acc-beta", S2
MISSING = "acc-missing"
COLLECTIONS = (PRIVATE, SHARED, PUBLIC, BETA_PRIVATE, LEGACY)
ISSUER, AUDIENCE = "https://issuer.stacube.test", "stacube-test"
SETTINGS_ADMIN_KEY = "settings-admin-key-0123456789"

READABLE = {
    "anonymous": {PUBLIC, LEGACY},
    "owner": {PRIVATE, SHARED, PUBLIC, LEGACY},
    "owner_jwt": {PRIVATE, SHARED, PUBLIC, LEGACY},
    "shared": {SHARED, PUBLIC, LEGACY, BETA_PRIVATE},
    "other": {PUBLIC, LEGACY},
    "admin": set(COLLECTIONS),
    "admin_jwt": set(COLLECTIONS),
}
WRITABLE = {
    "anonymous": set(),
    "owner": {PRIVATE, SHARED, PUBLIC},
    "owner_jwt": {PRIVATE, SHARED, PUBLIC},
    "shared": {BETA_PRIVATE},
    "other": set(),
    "admin": set(COLLECTIONS),
    "admin_jwt": set(COLLECTIONS),
}
PRINCIPALS = tuple(READABLE)


@dataclass
class World:
    settings: object
    headers: dict[str, dict[str, str]]
    keys: dict[str, str]
    key_ids: dict[str, str]
    signer: object
    jwks_path: object
    extra_collections: set[str] = field(default_factory=set)

    def token(self, claims: dict | None = None, *, key=None, kid: str = "test-key", alg: str = "RS256",
              expires_in: float = 600, **extra) -> str:
        """A JWT for the test issuer and audience (``claims`` override the defaults)."""
        import jwt

        now = int(time.time())
        doc = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + expires_in}
        doc.update(claims or {})
        doc.update(extra)
        return jwt.encode(doc, key if key is not None else self.signer, algorithm=alg, headers={"kid": kid})


def drop_everything(settings, collections) -> None:
    from stacube.db.connection import connect

    with connect(settings, autocommit=True) as conn:
        for cid in collections:
            if conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (cid,)).fetchone():
                conn.execute("SELECT pgstac.delete_collection(%s)", (cid,))
        conn.execute("DELETE FROM stacube.collection_access WHERE workspace LIKE 't-%%' OR collection LIKE 'acc-%%'")
        conn.execute("DELETE FROM stacube.jobs WHERE workspace LIKE 't-%%' OR parameters::text LIKE '%%acc-%%'")
        conn.execute("DELETE FROM pgstac.searches WHERE search::text LIKE '%%acc-%%'")
        conn.execute("DELETE FROM stacube.api_keys WHERE workspace LIKE 't-%%' OR label = 'access-tests'")
        conn.execute("DELETE FROM stacube.workspaces WHERE name LIKE 't-%%'")


def same_as_missing(client, response, method: str, url: str, name: str, headers: dict, **kwargs) -> None:
    """Assert ``response`` (for collection ``name``) is exactly the answer for a collection that
    does not exist: same status, same body with the ids swapped."""
    if "json" in kwargs:
        kwargs = {**kwargs, "json": json.loads(json.dumps(kwargs["json"]).replace(name, MISSING))}
    other = client.request(method, url.replace(name, MISSING), headers=headers, **kwargs)
    assert response.status_code == other.status_code, (url, response.status_code, other.status_code)
    assert response.text.replace(name, MISSING) == other.text, (url, response.text, other.text)


def items_of(catalog) -> list[dict]:
    """The Slovenia items, oldest first."""
    items = [copy.deepcopy(catalog.get_item(S2, i["id"])) for i in catalog.search({"collections": [S2]})]
    return sorted(items, key=lambda item: item["properties"]["datetime"])


def growing_collection(world, samples, settings, collection: str):
    """A private collection of t-alpha holding the oldest Slovenia scene; returns a function
    adding the next one (the newest left: first in a mosaic)."""
    from stacube.access.workspaces import AccessStore

    AccessStore(settings).set_access(collection, workspace=ALPHA)
    world.extra_collections.add(collection)
    doc = copy.deepcopy(samples.get_collection(S2))
    doc["id"] = collection
    samples.upsert_collection(doc)
    items = items_of(samples)
    for item in items:
        item["collection"] = collection
        item["links"] = []
    samples.load_items(items[:1])
    remaining = items[1:]

    def add_next() -> None:
        samples.load_items([remaining.pop()])

    return add_next
