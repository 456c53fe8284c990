"""API keys and OIDC tokens: what is accepted, what answers 401, and paging tokens."""

from __future__ import annotations

import pytest

from access_testing import ALPHA, BETA_PRIVATE, ITEM, PRIVATE, PUBLIC, S2, rsa_key

URL = f"/stac/collections/{PRIVATE}"


def test_keys_are_stored_hashed_and_shown_once(world):
    from stacube.access.workspaces import AccessStore, hash_key
    from stacube.db.connection import connect

    key = world.keys["owner"]
    assert key.startswith("stk_") and len(key) >= 40
    with connect(world.settings) as conn:
        stored = conn.execute("SELECT key_hash FROM stacube.api_keys WHERE id = %s",
                              (world.key_ids["owner"],)).fetchone()[0]
        dump = str(conn.execute("SELECT * FROM stacube.api_keys").fetchall())
    assert stored == hash_key(key) and key not in dump
    assert {r["id"] for r in AccessStore(world.settings).keys()} >= set(world.key_ids.values())


@pytest.mark.parametrize("claims, expected", [
    ({"stacube_workspace": ALPHA}, 200),
    ({"stacube_roles": ["admin"]}, 200),
    ({"stacube_roles": "reader admin"}, 200),
    ({}, 404),                                   # valid, no workspace: anonymous rights
    ({"stacube_workspace": "t-gamma"}, 404),
    ({"stacube_workspace": "t-nobody"}, 401),         # a workspace that was never created
    ({"stacube_workspace": ALPHA, "aud": "another-api"}, 401),
    ({"stacube_workspace": ALPHA, "iss": "https://evil.test"}, 401),
    ({"stacube_workspace": ALPHA, "exp": 1}, 401),    # expired long ago
])
def test_oidc_tokens(client, world, claims, expected):
    token = world.token(claims)
    r = client.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == expected, r.text
    if expected == 401:
        assert r.headers["www-authenticate"].startswith("Bearer") and r.json()["description"]


def test_forged_tokens_answer_401(client, world):
    """Wrong key, unknown key id, alg none, a tampered payload, HMAC signed with the public key,
    garbage, a damaged signature."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    claims = {"stacube_workspace": ALPHA}
    good = world.token(claims)
    header, payload, signature = good.split(".")
    admin_payload = _b64({"stacube_workspace": ALPHA, "stacube_roles": ["admin"], "exp": 4102444800,
                          "iss": "https://issuer.stacube.test", "aud": "stacube-test"})
    public_pem = world.signer.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    forged = [
        world.token(claims, key=rsa_key()),                                   # right kid, wrong key
        world.token(claims, kid="rotated-away"),                              # unknown key
        f"{_b64({'alg': 'none', 'kid': 'test-key', 'typ': 'JWT'})}.{payload}.",  # unsigned
        f"{header}.{admin_payload}.{signature}",                              # tampered payload
        _hs256(public_pem, payload),                                          # alg confusion
        "a.b.c",
        good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),  # damaged signature
    ]
    assert client.get(URL, headers={"Authorization": f"Bearer {good}"}).status_code == 200
    for token in forged:
        r = client.get(URL, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (token[:40], r.text)


def _b64(doc: dict) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def _hs256(secret: bytes, payload: str) -> str:
    import base64
    import hashlib
    import hmac

    header = _b64({"alg": "HS256", "kid": "test-key", "typ": "JWT"})
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


@pytest.mark.parametrize("headers", [
    {"X-API-Key": "stk_not-a-key"},
    {"Authorization": "Bearer stk_not-a-key"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer"},
])
def test_bad_keys_answer_401_everywhere(client, headers):
    for url in ("/stac/collections", f"/raster/collections/{PUBLIC}/info", "/jobs", "/cubes/"):
        r = client.get(url, headers=headers)
        assert r.status_code == 401, (url, headers, r.text[:200])
        assert r.json()["code"] == "Unauthorized"


def test_two_different_credentials_answer_401(client, world):
    r = client.get(URL, headers={"X-API-Key": world.keys["owner"], "Authorization": f"Bearer {world.keys['other']}"})
    assert r.status_code == 401
    same = client.get(URL, headers={"X-API-Key": world.keys["owner"], "Authorization": f"Bearer {world.keys['owner']}"})
    assert same.status_code == 200


def test_revoked_keys_stop_working_at_once(client, world):
    from stacube.access.workspaces import AccessStore

    store = AccessStore(world.settings)
    created = store.create_key(ALPHA, label="access-tests")
    headers = {"X-API-Key": created.key}
    assert client.get(URL, headers=headers).status_code == 200
    store.revoke_key(created.id)
    assert client.get(URL, headers=headers).status_code == 401
    assert client.get(f"/raster/collections/{PRIVATE}/info", headers=headers).status_code == 401


def test_tokens_work_against_a_jwks_url_and_the_key_set_is_cached(world, tmp_path):
    """A JWKS served over HTTP is fetched once per process, and again when a token names a key
    the cached set lacks (rotation)."""
    import http.server
    import json
    import threading

    import jwt

    from stacube.access import oidc
    from stacube.access.oidc import OidcValidator

    new_key = rsa_key()
    jwks = json.loads(world.jwks_path.read_text())
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            body = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        validator = OidcValidator(url, "https://issuer.stacube.test", "stacube-test")
        for _ in range(3):
            assert validator.principal(world.token({"stacube_workspace": ALPHA})).workspace == ALPHA
        assert len(hits) == 1
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(new_key.public_key()))
        jwks["keys"].append({**jwk, "kid": "rotated-in"})
        oidc._CACHE[url] = (oidc._CACHE[url][0] - oidc.JWKS_MIN_REFRESH - 1, oidc._CACHE[url][1])
        assert validator.principal(world.token({"stacube_roles": "admin"}, key=new_key, kid="rotated-in")).is_admin
        assert len(hits) == 2
    finally:
        server.shutdown()
        oidc._CACHE.pop(url, None)


def test_paging_tokens_never_reach_hidden_collections(client, world):
    """Every page of a cross-collection search is narrowed again; a token that points into a
    hidden collection fails exactly like a token of an item that does not exist."""
    seen = set()
    url = "/stac/search?limit=4"
    for _ in range(100):
        page = client.get(url).json()
        seen |= {f["collection"] for f in page["features"]}
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            break
        url = nxt[0].replace("http://testserver", "")
    assert PUBLIC in seen and S2 in seen
    assert not seen & {PRIVATE, BETA_PRIVATE, "acc-shared"}

    def token(collection, item):
        return f"next:{collection.encode().hex()}:{item.encode().hex()}"

    hidden = client.get(f"/stac/search?token={token(PRIVATE, ITEM)}&limit=2")
    absent = client.get(f"/stac/search?token={token(PRIVATE, 'no-such-item')}&limit=2")
    assert hidden.status_code == absent.status_code == 400
    assert hidden.json()["code"] == absent.json()["code"]
    assert hidden.text.replace(ITEM.encode().hex(), "X") == absent.text.replace("no-such-item".encode().hex(), "X")
    post = client.post("/stac/search", json={"token": token(PRIVATE, ITEM), "limit": 2})
    assert post.status_code == 400
    # the owner pages through the private collection with the same token
    mine = client.get(f"/stac/search?token={token(PRIVATE, ITEM)}&collections={PRIVATE}&limit=2",
                      headers=world.headers["owner"])
    assert mine.status_code == 200 and {f["collection"] for f in mine.json()["features"]} <= {PRIVATE}
    # a token taken from the owner's pages does not open the collection to others
    page = client.get(f"/stac/search?collections={PRIVATE}&limit=2", headers=world.headers["owner"]).json()
    nxt = next(link["href"] for link in page["links"] if link["rel"] == "next").replace("http://testserver", "")
    assert client.get(nxt, headers=world.headers["owner"]).json()["features"]
    for who in ("anonymous", "other"):
        r = client.get(nxt, headers=world.headers[who])
        assert r.status_code == 400 or not r.json()["features"], who
