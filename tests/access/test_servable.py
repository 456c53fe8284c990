"""Registered means servable: folders ``stacube dataset add`` registers become read prefixes of
their collection (the raster API reads them at once, no setting needed), symbolic links to
folders are followed, ``STACUBE_READ_PREFIXES`` adds to the defaults, refusals name the setting
and the prefix that would allow the href, and registering hrefs the servers cannot read warns."""

from __future__ import annotations

import json
import shutil

import pytest

from access_testing import ITEM, TILE
from stacube_testing import PRODUCTS, SAMPLES, run_cli

COLLECTION = "acc-own-scenes"
SCENES = ["S2_L1C_20150711T100008", "S2_L1C_20150731T100009"]


@pytest.fixture(scope="module")
def own_scenes(samples, world, tmp_path_factory):
    """Two scene folders of COGs outside every default prefix, one reached through a symbolic
    link, registered with the CLI as a user would."""
    root = tmp_path_factory.mktemp("own")
    scenes, elsewhere = root / "scenes", root / "elsewhere"
    scenes.mkdir()
    elsewhere.mkdir()
    for name, parent in zip(SCENES, (scenes, elsewhere)):
        (parent / name).mkdir()
        for band in ("B02", "B03", "B04", "B08", "CLM"):
            shutil.copy(SAMPLES / "s2-l1c-slovenia-eolearn" / name / f"{band}.tif", parent / name / f"{band}.tif")
    (scenes / "more").symlink_to(elsewhere)  # a link to a folder: entered like a folder
    product = root / "product.yaml"
    product.write_text((PRODUCTS / "sentinel-2-l1c-eolearn-sample.odc.yaml").read_text()
                       .replace("name: sentinel-2-l1c-eolearn-sample", f"name: {COLLECTION}"))
    world.extra_collections.add(COLLECTION)
    assert run_cli("product", "add", str(product)).returncode == 0
    result = run_cli("dataset", "add", "-c", COLLECTION, "--datetime", "2015-07-11", str(scenes))
    assert result.returncode == 0, result.stderr
    return {"root": root, "scenes": scenes, "elsewhere": elsewhere, "result": result}


def test_registered_folders_become_read_prefixes_of_their_collection(own_scenes, world):
    from stacube.access.workspaces import AccessStore

    result = own_scenes["result"]
    assert "registered 2 items" in result.stdout
    assert "warning" not in result.stderr  # every href is servable: nothing to warn about
    roots = AccessStore(world.settings).collection_prefixes(COLLECTION)[COLLECTION]
    assert set(roots) == {str(own_scenes["scenes"].resolve()), str(own_scenes["elsewhere"].resolve())}


def test_the_raster_api_serves_them_at_once(own_scenes, world):
    """No STACUBE_READ_PREFIXES: a raster app of the default settings reads both scenes (the one
    behind the link too), while the same COG registered elsewhere without a root is refused."""
    from fastapi.testclient import TestClient

    from stacube.settings import Settings
    from stacube_services.raster import create_raster_app

    with TestClient(create_raster_app(Settings()), raise_server_exceptions=False) as c:
        for scene in SCENES:
            r = c.get(f"/collections/{COLLECTION}/items/{scene}/tiles/{TILE}.png?assets=B04")
            assert r.status_code == 200, r.text[:300]


def test_a_refusal_names_the_setting_and_the_prefix_that_would_allow_the_href(samples, world, tmp_path):
    import copy

    from fastapi.testclient import TestClient

    from stacube.settings import Settings
    from stacube_services.raster import create_raster_app

    outside = tmp_path / "not-registered"
    outside.mkdir()
    shutil.copy(SAMPLES / "s2-l1c-slovenia-eolearn" / ITEM / "B04.tif", outside / "B04.tif")
    item = copy.deepcopy(samples.get_item(COLLECTION, SCENES[0]))
    item.update(id="unregistered-root", links=[])
    item["assets"]["B04"]["href"] = str(outside / "B04.tif")
    samples.load_items([item])
    url = f"/collections/{COLLECTION}/items/unregistered-root/info?assets=B04"
    with TestClient(create_raster_app(Settings()), raise_server_exceptions=False) as c:
        r = c.get(url)
        assert r.status_code == 403
        assert r.json()["description"] == (f"asset href {str(outside / 'B04.tif')!r} is not under an allowed prefix: "
                                           f"add {str(outside)!r} to STACUBE_READ_PREFIXES to allow it")
    # the setting adds to the defaults: the suggested prefix opens it, the samples stay readable
    with TestClient(create_raster_app(Settings(read_prefixes=str(outside))), raise_server_exceptions=False) as c:
        assert c.get(url).status_code == 200
        assert c.get(f"/collections/{COLLECTION}/items/{SCENES[0]}/info?assets=B04").status_code == 200


def test_registering_hrefs_no_server_reads_warns_once(samples, world, tmp_path, cli):
    doc = samples.get_item(COLLECTION, SCENES[0])
    doc.update(id="remote-scene", links=[])
    for asset in doc["assets"].values():
        asset["href"] = "https://scenes.example.org/s2/" + asset["href"].rsplit("/", 1)[-1]
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(doc))
    result = cli("dataset", "add", str(path))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: the raster API will refuse 5 asset href(s)")
    assert "add https://scenes.example.org to STACUBE_READ_PREFIXES" in lines[0]


def test_messages_never_repeat_a_path(world, tmp_path, cli):
    scene = tmp_path / "LE70350322008118EDC00"
    scene.mkdir()
    (scene / "B3.tif").write_bytes(b"not a GeoTIFF")
    result = cli("dataset", "add", "-c", COLLECTION, "--datetime", "2008-04-27", str(tmp_path))
    assert result.returncode != 0
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert line.count(str(scene)) <= 1 and line.count(str(tmp_path)) <= 1, line
