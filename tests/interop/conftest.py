"""Interoperability: the clients users already have, against ``stacube up``.

One server for the module's tests, over a catalog database of its own holding the sample
products and stacks, and a public catalogue's collection registered from its JSON *without*
``item_assets`` (Earth Search Sentinel-2 L2A, ``tests/data/stac``), as a hand-written or STAC
1.0 collection comes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "conformance"))  # live_server, run_stac_api_validator

from interop_testing import PUBLIC_DATA  # noqa: E402
from live_server import LiveServer, drop_database, sample_database  # noqa: E402

DATABASE = "stacube_interop"


@pytest.fixture(scope="session")
def interop_server(database, tmp_path_factory):
    """``stacube up`` over the samples and the public collection; ``.settings`` its catalog."""
    from stacube.catalog.pgstac import Catalog
    from stacube.catalog.register import add_datasets, add_product

    settings = sample_database(DATABASE)
    catalog = Catalog(settings)
    add_product(catalog, PUBLIC_DATA / "earth-search-sentinel-2-c1-l2a.collection.json")
    add_datasets(catalog, [PUBLIC_DATA / "earth-search-sentinel-2-c1-l2a.ndjson"])
    folder = tmp_path_factory.mktemp("interop")
    server = LiveServer({"STACUBE_DB_NAME": DATABASE, "STACUBE_OUTPUT": (folder / "outputs").as_uri()},
                        folder / "server.log")
    server.start()
    server.settings = settings
    yield server
    server.stop()
    drop_database(DATABASE)


@pytest.fixture(scope="session")
def stac_url(interop_server) -> str:
    return f"{interop_server.base}/stac/"


@pytest.fixture(scope="session")
def public_items() -> list[dict]:
    import json

    path = PUBLIC_DATA / "earth-search-sentinel-2-c1-l2a.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
