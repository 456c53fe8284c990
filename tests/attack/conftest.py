"""The served instance the attack suite runs against, and its world.

``stacube up`` (uvicorn, a process of its own) over the session catalog with transactions on and
an admin key set (so access control is on), with two workspaces:

| collection | workspace | what |
|---|---|---|
| ``atk-alpha`` | a-alpha, private | the attacker's own collection (copy of the Slovenia stack) |
| ``atk-beta`` | a-beta, private | the victim's collection; its B04 copy lies under the output root, a server-wide prefix |
| ``atk-public`` | a-beta, public | a public collection of the victim |
| ``atk-legacy`` | none (registered by an operator) | items whose hrefs point at a loopback port, a file outside every prefix, the database cluster, a file that is no raster |
| ``atk-nobands`` | none | one item whose only asset says nothing of its bands |

Callers: ``anonymous``, ``alpha`` and ``beta`` (member keys), ``admin`` (``STACUBE_API_KEY``).
"""

from __future__ import annotations

import copy
import shutil
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stacube_testing import ROOT, SAMPLES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "conformance"))  # live_server

from live_server import LiveServer  # noqa: E402

S2 = "sentinel-2-l1c-eolearn-sample"
ITEM = "S2_L1C_20150711T100008"
TILE = "WebMercatorQuad/14/8854/5837"
POINT = "14.558,45.87"
ALPHA, BETA = "a-alpha", "a-beta"
MINE, VICTIM, PUBLIC, LEGACY, NO_BANDS = "atk-alpha", "atk-beta", "atk-public", "atk-legacy", "atk-nobands"
ADMIN_KEY = "attack-admin-key-0123456789"
MiB = 1024 * 1024


class Listener:
    """A TCP port on loopback that counts the connections made to it (an SSRF target)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@dataclass
class World:
    server: LiveServer
    settings: object
    headers: dict[str, dict[str, str]]
    listener: Listener
    hrefs: dict[str, str]
    victim_href: str
    outputs: Path
    extra: set[str] = field(default_factory=set)

    def url(self, path: str) -> str:
        return self.server.base + path


def _copy(catalog, source: str, new_id: str, href=None) -> list[dict]:
    doc = copy.deepcopy(catalog.get_collection(source))
    doc["id"] = new_id
    catalog.upsert_collection(doc)
    items = []
    for item in catalog.search({"collections": [source]}):
        item = copy.deepcopy(catalog.get_item(source, item["id"]))
        item.update(collection=new_id, links=[])
        if href is not None:
            for key, asset in item["assets"].items():
                asset["href"] = href(key, asset["href"])
        items.append(item)
    catalog.load_items(items)
    return items


def _drop(settings) -> None:
    from stacube.db.connection import connect

    with connect(settings, autocommit=True) as conn:
        for (cid,) in conn.execute("SELECT id FROM pgstac.collections WHERE id LIKE 'atk-%%'").fetchall():
            conn.execute("SELECT pgstac.delete_collection(%s)", (cid,))
        conn.execute("DELETE FROM stacube.collection_access WHERE collection LIKE 'atk-%%'")
        conn.execute("DELETE FROM stacube.collection_prefixes WHERE collection LIKE 'atk-%%'")
        conn.execute("DELETE FROM stacube.held_jobs WHERE label LIKE 'a-%%' OR label IS NULL")
        conn.execute("DELETE FROM stacube.jobs WHERE parameters::text LIKE '%%atk-%%'")
        conn.execute("DELETE FROM stacube.cubes WHERE name LIKE 'atk-%%'")
        conn.execute("DELETE FROM pgstac.searches WHERE search::text LIKE '%%atk-%%'")
        conn.execute("DELETE FROM stacube.api_keys WHERE workspace LIKE 'a-%%' OR label = 'attack'")
        conn.execute("DELETE FROM stacube.workspaces WHERE name LIKE 'a-%%'")


@pytest.fixture(scope="package")
def world(samples, settings, tmp_path_factory):
    from stacube.access.workspaces import AccessStore
    from stacube.settings import Settings

    _drop(settings)
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
    _copy(samples, S2, MINE)
    _copy(samples, S2, VICTIM, href=lambda key, h: str(victim_dir / "B04.tif") if key == "B04" else h)
    _copy(samples, S2, PUBLIC)
    legacy = copy.deepcopy(samples.get_collection(S2))
    legacy["id"] = LEGACY
    samples.upsert_collection(legacy)
    template = samples.get_item(S2, ITEM)
    items = []
    for name, href in hrefs.items():
        item = copy.deepcopy(template)
        item.update(id=f"evil-{name}", collection=LEGACY, links=[])
        for asset in item["assets"].values():
            asset["href"] = href
        items.append(item)
    samples.load_items(items)  # an operator registered them: the library stores what it is given
    samples.upsert_collection({
        "type": "Collection", "stac_version": "1.1.0", "id": NO_BANDS, "description": "no band metadata",
        "license": "other", "links": [],
        "extent": {"spatial": {"bbox": [[14.5, 45.8, 14.6, 45.9]]}, "temporal": {"interval": [[None, None]]}}})
    bare = copy.deepcopy(template)
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
    _drop(settings)


@pytest.fixture(scope="package")
def http():
    import requests

    with requests.Session() as session:
        yield session


def server_rss(server) -> int:
    """Resident memory of the server process and its children, in bytes."""
    import psutil

    proc = psutil.Process(server.proc.pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            if "uvicorn" in " ".join(child.cmdline()) or child.name().startswith("python"):
                if "job" not in child.cmdline():
                    total += child.memory_info().rss
        except psutil.Error:
            continue
    return total


@pytest.fixture(scope="package")
def baseline(world, http):
    """The server's resident memory after a warm-up (every API answered once)."""
    for path in ("/stac/", f"/stac/collections/{S2}/items?limit=2",
                 f"/raster/collections/{S2}/tiles/{TILE}.png?assets=B04",
                 f"/raster/collections/{S2}/items/{ITEM}/info?assets=B04", "/cubes/", "/jobs/"):
        http.get(world.url(path), headers=world.headers["admin"], timeout=60)
    return server_rss(world.server)


def catalog_state(settings) -> tuple:
    """What no attack may change: the catalog's collections and items, access rows, keys,
    workspaces and job count (registered searches are left out: mosaics register them)."""
    from stacube.db.connection import connect

    with connect(settings) as conn:
        return conn.execute(
            "SELECT (SELECT md5(coalesce(string_agg(id || content::text, ',' ORDER BY id), '')) FROM pgstac.collections),"
            " (SELECT count(*) FROM pgstac.items),"
            " (SELECT md5(coalesce(string_agg(id || content::text, ',' ORDER BY id), '')) FROM pgstac.items"
            "  WHERE collection LIKE 'atk-%%'),"
            " (SELECT md5(coalesce(string_agg(collection || workspace || visibility, ',' ORDER BY collection), ''))"
            "  FROM stacube.collection_access),"
            " (SELECT count(*) FROM stacube.api_keys), (SELECT count(*) FROM stacube.workspaces),"
            " (SELECT count(*) FROM stacube.collection_prefixes),"
            " (SELECT count(*) FROM stacube.jobs WHERE parameters::text LIKE '%%atk-%%')").fetchone()


@pytest.fixture(scope="package")
def state(world):
    return lambda: catalog_state(world.settings)

