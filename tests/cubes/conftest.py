"""Fixtures of the cube tests: a private copy of the Slovenia stack (so tests may delete its
files) registered as its own collection."""

from __future__ import annotations

import json

import pytest

from stacube_testing import PRODUCTS, copy_stack

PRIVATE = "cube-test-s2-l1c"
SLOVENIA_BBOX = (14.5514, 45.8659, 14.5642, 45.8750)
S2_DATES = "2015-07-01/2015-09-30"


def register_private(catalog, root, name: str):
    """Register a copy of the Slovenia stack under ``root`` as collection ``name``; returns the
    copy's folder."""
    from stacube.access.prefixes import registered_roots
    from stacube.access.workspaces import AccessStore
    from stacube.catalog.register import add_datasets, add_product

    stack = copy_stack("s2-l1c-slovenia-eolearn", root)
    product = root / "product.yaml"
    product.write_text((PRODUCTS / "sentinel-2-l1c-eolearn-sample.odc.yaml").read_text()
                       .replace("name: sentinel-2-l1c-eolearn-sample", f"name: {name}"))
    manifest = json.loads((stack / "manifest.json").read_text())
    manifest["collection"] = name
    for item in manifest["items"]:
        item["collection"] = name
    (stack / "manifest.json").write_text(json.dumps(manifest))
    add_product(catalog, product)
    items: list[dict] = []
    add_datasets(catalog, [stack], on_item=items.append)
    # as `stacube dataset add` does: the registered folder becomes a read prefix of the collection
    for cid, roots in registered_roots([stack], items).items():
        AccessStore(catalog.settings).add_collection_prefixes(cid, roots)
    return stack


@pytest.fixture(scope="session")
def private_s2(samples, tmp_path_factory):
    """``(catalog, stack folder)`` of a private Sentinel-2 collection (5 dates, 100 x 101 px)."""
    return samples, register_private(samples, tmp_path_factory.mktemp("cube-src"), PRIVATE)


@pytest.fixture(scope="session")
def cube_settings(settings, tmp_path_factory):
    """Settings whose outputs (and so cubes) go to a temporary directory."""
    return settings.model_copy(update={"output": str(tmp_path_factory.mktemp("cube-out"))})
