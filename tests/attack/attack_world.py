"""The world of the attack suite: names, the loopback target, and what is measured.

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
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path


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


def copy_collection(catalog, source: str, new_id: str, href=None) -> list[dict]:
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


def drop_everything(settings) -> None:
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
