"""Fixtures of the attack suite: the served instance (``stacube up`` under uvicorn) over the
session catalog, its world (:mod:`attack_world`), its warmed-up memory and the catalog state."""

from __future__ import annotations

import copy
import shutil

import pytest

from attack_world import (
    ADMIN_KEY,
    ALPHA,
    BETA,
    ITEM,
    LEGACY,
    MINE,
    NO_BANDS,
    PUBLIC,
    S2,
    TILE,
    VICTIM,
    Listener,
    LiveServer,
    World,
    catalog_state,
    copy_collection,
    drop_everything,
    server_rss,
)
from stacube_testing import ROOT, SAMPLES, register_pointing_at


@pytest.fixture(scope="module")
def world(samples, settings, tmp_path_factory):
    from stacube.access.workspaces import AccessStore
    from stacube.settings import Settings

    drop_everything(settings)
    store = AccessStore(settings)
    for workspace in (ALPHA, BETA):
        store.create_workspace(workspace)
    store.set_access(MINE, workspace=ALPHA)
    store.set_access(VICTIM, workspace=BETA)
    store.set_access(PUBLIC, workspace=BETA, visibility="public")
    keys = {name: store.create_key(ws, label="attack").key for name, ws in (("alpha", ALPHA), ("beta", BETA))}

    folder = tmp_path_factory.mktemp("attack")
    outputs = folder / "outputs"
    outputs.mkdir()
    # the victim's private copy of a band, under the output root: a server-wide read prefix
    victim_dir = outputs / "beta-private"
    victim_dir.mkdir()
    b04 = SAMPLES / "s2-l1c-slovenia-eolearn" / ITEM / "B04.tif"
    shutil.copy(b04, victim_dir / "B04.tif")
    outside = folder / "outside"
    outside.mkdir()
    shutil.copy(b04, outside / "B04.tif")
    listener = Listener()
    pg_version = str((settings.data_dir / "pg").absolute() / "PG_VERSION")
    hrefs = {
        "loopback": f"http://127.0.0.1:{listener.port}/x.tif",
        "outside": str(outside / "B04.tif"),
        "database": pg_version,
        "not-raster": str(ROOT / "data" / "README.md"),
    }
    copy_collection(samples, S2, MINE)
    copy_collection(samples, S2, VICTIM, href=lambda key, h: str(victim_dir / "B04.tif") if key == "B04" else h)
    copy_collection(samples, S2, PUBLIC)
    register_pointing_at(samples, LEGACY, hrefs)  # an operator registered them: the library stores them
    samples.upsert_collection({
        "type": "Collection", "stac_version": "1.1.0", "id": NO_BANDS, "description": "no band metadata",
        "license": "other", "links": [],
        "extent": {"spatial": {"bbox": [[14.5, 45.8, 14.6, 45.9]]}, "temporal": {"interval": [[None, None]]}}})
    bare = copy.deepcopy(samples.get_item(S2, ITEM))
    bare.update(id="bare", collection=NO_BANDS, links=[], assets={"data": {"href": str(b04), "type": "image/tiff"}})
    samples.load_items([bare])

    env = {"STACUBE_API_KEY": ADMIN_KEY, "STACUBE_TRANSACTIONS": "true", "STACUBE_OUTPUT": outputs.as_uri(),
           "STACUBE_ANONYMOUS_SEARCHES": "20", "STACUBE_MAX_JOBS": "1"}
    server = LiveServer(env, folder / "server.log")
    server.start()
    headers = {"anonymous": {}, "alpha": {"X-API-Key": keys["alpha"]}, "beta": {"X-API-Key": keys["beta"]},
               "admin": {"X-API-Key": ADMIN_KEY}}
    app_settings = Settings(**{k.removeprefix("STACUBE_").lower(): v for k, v in env.items()})
    world = World(server, app_settings, headers, listener, hrefs, str(victim_dir / "B04.tif"), outputs)
    yield world
    server.stop()
    listener.close()
    drop_everything(settings)


@pytest.fixture(scope="module")
def http():
    import requests

    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def baseline(world, http):
    """The server's resident memory after a warm-up (every API answered once)."""
    for path in ("/stac/", f"/stac/collections/{S2}/items?limit=2",
                 f"/raster/collections/{S2}/tiles/{TILE}.png?assets=B04",
                 f"/raster/collections/{S2}/items/{ITEM}/info?assets=B04", "/cubes/", "/jobs/"):
        http.get(world.url(path), headers=world.headers["admin"], timeout=60)
    return server_rss(world.server)


@pytest.fixture(scope="module")
def state(world):
    return lambda: catalog_state(world.settings)

