"""The application under conformance tests: ``stacube up`` with transactions enabled, on a copy
of the sample catalog (the tools create, replace and delete things) in the session's cluster."""

from __future__ import annotations

import pytest

from live_server import API_KEY, TRANSACTION_COLLECTION, LiveServer, drop_database, sample_database

DATABASE = "stacube_conformance"
FUZZ_DATABASE = "stacube_fuzz"


def _serve(name: str, tmp_path_factory):
    from stacube.catalog.pgstac import Catalog

    settings = sample_database(name)
    Catalog(settings).upsert_collection({
        "type": "Collection", "stac_version": "1.1.0", "id": TRANSACTION_COLLECTION,
        "description": "Items created and deleted by the Transaction extension checks.",
        "license": "other", "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
    })
    folder = tmp_path_factory.mktemp(name)
    server = LiveServer({"STACUBE_DB_NAME": name, "STACUBE_API_KEY": API_KEY,
                         "STACUBE_OUTPUT": (folder / "outputs").as_uri()}, folder / "server.log")
    server.start()
    server.settings = settings
    return server


@pytest.fixture(scope="session")
def conformance_server(database, tmp_path_factory):
    """The application for stac-api-validator; its catalog settings as ``.settings``."""
    server = _serve(DATABASE, tmp_path_factory)
    yield server
    server.stop()
    drop_database(DATABASE)


@pytest.fixture(scope="session")
def fuzz_server(database, tmp_path_factory):
    """The application for schemathesis (its own catalog: generated requests change it)."""
    server = _serve(FUZZ_DATABASE, tmp_path_factory)
    yield server
    server.stop()
    drop_database(FUZZ_DATABASE)
