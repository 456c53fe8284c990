"""Shared test helpers: paths of the sample data and a way to run the CLI."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
PRODUCTS = ROOT / "data" / "products"
#: the shared test data beside the repository (``STACUBE_SHARED_DATA`` overrides: a clone elsewhere,
#: or a path that does not exist to check that every test runs, or skips, without it)
SHARED = Path(os.environ.get("STACUBE_SHARED_DATA") or ROOT.parent / "shared" / "data")
STACUBE = str(Path(sys.executable).parent / "stacube")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_site(root: Path, modules: dict[str, str], entry_points: dict[str, str],
                 distribution: str = "stacube-test-processes") -> Path:
    """Lay out a distribution of registered processes in ``root`` as pip would: the modules
    (``{file name: source}``) and a ``.dist-info`` whose entry points (group
    ``stacube.processes``, ``{name: "module"}`` or ``"module:execute"``) register them. Put
    ``root`` on ``sys.path`` / ``PYTHONPATH`` to see them; returns ``root``."""
    import textwrap

    for name, source in modules.items():
        (root / name).write_text(textwrap.dedent(source))
    info = root / f"{distribution.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[stacube.processes]\n{lines}")
    return root


def run_cli(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the ``stacube`` command as a user would."""
    return subprocess.run([STACUBE, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, input=input, timeout=600)


def run_cli_each(commands: list[tuple[str, ...]], env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Run independent ``stacube`` commands (no one reads what another writes), each in a process
    of its own as :func:`run_cli` does, several at a time; their results in the given order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(commands), os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda args: run_cli(*args, env=env), commands))


def has_shared_data() -> bool:
    return (SHARED / "stac").exists()


def copy_stack(name: str, dest: Path) -> Path:
    """A private copy of a sample stack (tests that modify files)."""
    target = dest / name
    shutil.copytree(SAMPLES / name, target)
    return target


def register_pointing_at(catalog, collection: str, hrefs: dict[str, str], *,
                         source: str = "sentinel-2-l1c-eolearn-sample",
                         item_id: str = "S2_L1C_20150711T100008") -> list[dict]:
    """Register (through the library, which stores what it is given) one copy of ``source``'s
    item per entry of ``hrefs``, id ``evil-<name>``, every asset pointing at the href; the
    collection is a copy of ``source`` made first when it does not exist."""

    if collection not in catalog.collection_ids():
        doc = copy.deepcopy(catalog.get_collection(source))
        doc["id"] = collection
        catalog.upsert_collection(doc)
    template = catalog.get_item(source, item_id)
    items = []
    for name, href in hrefs.items():
        item = copy.deepcopy(template)
        item.update(id=f"evil-{name}", collection=collection, links=[])
        for asset in item["assets"].values():
            asset["href"] = href
        items.append(item)
    catalog.load_items(items)
    return items


def workspace_of_jobs(settings, name: str, max_jobs: int):
    """Create workspace ``name`` (if missing) with at most ``max_jobs`` running jobs; its AccessStore."""
    from stacube.access.workspaces import AccessStore
    from stacube.errors import Conflict

    store = AccessStore(settings)
    try:
        store.create_workspace(name)
    except Conflict:
        pass
    store.set_workspace(name, max_jobs=max_jobs)
    return store


def rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def copy_collection(catalog, new_id: str, source: str = "sentinel-2-l1c-eolearn-sample") -> None:
    """Register a copy of a collection (default: the Slovenia one, 5 items) and its items as ``new_id``."""
    doc = copy.deepcopy(catalog.get_collection(source))
    doc["id"] = new_id
    doc["title"] = f"access test copy {new_id}"
    catalog.upsert_collection(doc)
    items = []
    for item in catalog.search({"collections": [source]}):
        item = copy.deepcopy(catalog.get_item(source, item["id"]))
        item["collection"] = new_id
        item["links"] = []
        items.append(item)
    catalog.load_items(items)


def register_samples(catalog) -> None:
    """Register the sample products and stacks (``data/products``, ``data/samples``) in ``catalog``."""
    from stacube.catalog.register import add_datasets, add_product

    for path in sorted(PRODUCTS.iterdir()):
        add_product(catalog, path)
    add_datasets(catalog, sorted(SAMPLES.iterdir()))
