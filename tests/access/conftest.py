"""Fixtures of the access-control tests (the world of :mod:`access_testing`)."""

from __future__ import annotations

import json

import pytest

from access_testing import (
    ALPHA,
    AUDIENCE,
    BETA,
    BETA_PRIVATE,
    GAMMA,
    ISSUER,
    PRIVATE,
    PUBLIC,
    SETTINGS_ADMIN_KEY,
    SHARED,
    World,
    copy_collection,
    drop_everything,
    rsa_key,
)


@pytest.fixture(scope="package")
def world(samples, settings, tmp_path_factory):
    """The workspaces, keys, tokens and collections of the table above."""
    import jwt

    from stacube.access.oidc import clear_cache
    from stacube.access.workspaces import AccessStore
    from stacube.settings import Settings

    drop_everything(settings, [PRIVATE, SHARED, PUBLIC, BETA_PRIVATE])
    store = AccessStore(settings)
    for workspace in (ALPHA, BETA, GAMMA):
        store.create_workspace(workspace)
    # the access rows first: a private collection is never public, not even for a moment
    store.set_access(PRIVATE, workspace=ALPHA)
    store.set_access(SHARED, workspace=ALPHA, share_with=[BETA])
    store.set_access(PUBLIC, workspace=ALPHA, visibility="public")
    store.set_access(BETA_PRIVATE, workspace=BETA)
    for cid in (PRIVATE, SHARED, PUBLIC, BETA_PRIVATE):
        copy_collection(samples, cid)
    keys, key_ids = {}, {}
    for name, workspace, admin in (("owner", ALPHA, False), ("shared", BETA, False), ("other", GAMMA, False),
                              ("admin", None, True)):
        created = store.create_key(workspace, admin=admin, label="access-tests")
        keys[name], key_ids[name] = created.key, created.id

    signer = rsa_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signer.public_key()))
    jwk.update(kid="test-key", use="sig", alg="RS256")
    jwks_path = tmp_path_factory.mktemp("oidc") / "jwks.json"
    jwks_path.write_text(json.dumps({"keys": [jwk]}))
    clear_cache()
    # anonymous jobs allowed explicitly (with keys they are off by default: see tests/attack)
    app_settings = Settings(api_key=SETTINGS_ADMIN_KEY, transactions=True, oidc_jwks=str(jwks_path),
                            oidc_issuer=ISSUER, oidc_audience=AUDIENCE, anonymous_jobs=True)
    w = World(app_settings, {}, keys, key_ids, signer, jwks_path)
    w.headers = {
        "anonymous": {},
        "owner": {"X-API-Key": keys["owner"]},
        "owner_jwt": {"Authorization": f"Bearer {w.token({'stacube_workspace': ALPHA})}"},
        "shared": {"Authorization": f"Bearer {keys['shared']}"},
        "other": {"X-API-Key": keys["other"]},
        "admin": {"X-API-Key": keys["admin"]},
        "admin_jwt": {"Authorization": f"Bearer {w.token({'stacube_roles': ['admin']})}"},
    }
    yield w
    drop_everything(settings, [PRIVATE, SHARED, PUBLIC, BETA_PRIVATE, *w.extra_collections])
    clear_cache()


@pytest.fixture(scope="package")
def client(world):
    """The combined application of ``stacube up`` with transactions and OIDC on."""
    from fastapi.testclient import TestClient

    from stacube_services.app import create_app

    with TestClient(create_app(world.settings), raise_server_exceptions=False) as c:
        yield c
