"""The raster API reads only under the configured prefixes: hrefs elsewhere answer 403 with a
reason and are never opened; ``url=`` parameters do nothing; ingest refuses ``..`` escapes."""

from __future__ import annotations

import copy
import json
import os
import shutil

import pytest

from access_testing import ITEM, POINT, PRIVATE, PUBLIC, S2, TILE
from stacube_testing import ROOT, SAMPLES, register_pointing_at

SSRF = "acc-ssrf"
B04 = SAMPLES / "s2-l1c-slovenia-eolearn" / ITEM / "B04.tif"


@pytest.fixture(scope="module")
def evil(samples, world, tmp_path_factory):
    """Items whose assets point outside the allowed prefixes; ``outside`` is a valid COG in a
    directory no prefix covers, ``link`` a symbolic link to it inside the data directory."""
    outside_dir = tmp_path_factory.mktemp("outside")
    outside = outside_dir / "B04.tif"
    shutil.copy(B04, outside)
    link = world.settings.data_dir.absolute() / "acc-link.tif"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    hrefs = {
        "file-url": "file:///etc/passwd",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "plain-path": "/etc/passwd",
        "vsicurl": "/vsicurl/http://127.0.0.1:9/x.tif",
        "outside": str(outside),
        "escape": f"{ROOT / 'data'}/../../../../../../../{outside.relative_to('/')}",
        "link": str(link),
        "foreign-s3": "s3://someone-elses-bucket/scene/B04.tif",
        "userinfo": f"https://{ROOT.name}@169.254.169.254/x.tif",
    }
    world.extra_collections.add(SSRF)
    register_pointing_at(samples, SSRF, hrefs)  # the library registers what it is given, unchecked
    yield {"hrefs": hrefs, "outside": outside, "outside_dir": outside_dir}
    link.unlink(missing_ok=True)


@pytest.fixture
def opened(monkeypatch):
    """Every path rasterio opens in this process (rio-tiler opens through it)."""
    import rasterio

    paths: list[str] = []
    real = rasterio.open

    def spy(fp, *args, **kwargs):
        paths.append(str(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", spy)
    return paths


def evil_urls(name: str) -> list[str]:
    item = f"/raster/collections/{SSRF}/items/evil-{name}"
    return [
        f"{item}/tiles/{TILE}.png?assets=B04",
        f"{item}/point/{POINT}?assets=B04",
        f"{item}/statistics?assets=B04",
        f"{item}/info?assets=B04",
        f"{item}/preview.png?assets=B04&max_size=64",
        f"/raster/collections/{SSRF}/tiles/{TILE}.png?assets=B04&ids=evil-{name}",
        f"/raster/collections/{SSRF}/point/{POINT}?assets=B04&ids=evil-{name}",
        f"/raster/collections/{SSRF}/masked/tiles/{TILE}.png?assets=B04&ids=evil-{name}",
        f"{item}/tiles/{TILE}.png?index=NDVI",
    ]


def test_hrefs_outside_the_prefixes_are_refused_and_never_opened(client, evil, opened):
    for name, href in evil["hrefs"].items():
        for url in evil_urls(name):
            r = client.get(url)
            assert r.status_code == 403, (name, url, r.status_code, r.text[:200])
            assert "not under an allowed prefix" in r.json()["description"], (url, r.text)
    assert not any(str(evil["outside"]) in p or "passwd" in p or "169.254" in p or "acc-link" in p
                   for p in opened), opened
    # the guard is what stopped them: the same server still reads allowed assets
    ok = client.get(f"/raster/collections/{PUBLIC}/items/{ITEM}/tiles/{TILE}.png?assets=B04")
    assert ok.status_code == 200 and any(p.endswith("B04.tif") for p in opened)


def test_the_outside_cog_is_readable_once_its_directory_is_allowed(samples, world, evil, opened):
    """The positive control: with the directory among the prefixes the same tile renders."""
    from fastapi.testclient import TestClient

    from stacube.settings import Settings
    from stacube_services.raster import create_raster_app

    settings = Settings(read_prefixes=f"{evil['outside_dir']},{ROOT / 'data'}")
    with TestClient(create_raster_app(settings), raise_server_exceptions=False) as c:
        r = c.get(f"/collections/{SSRF}/items/evil-outside/tiles/{TILE}.png?assets=B04")
        assert r.status_code == 200, r.text[:200]
        assert any(p == str(evil["outside"]) for p in opened)
        assert c.get(f"/collections/{SSRF}/items/evil-plain-path/info?assets=B04").status_code == 403


def test_url_parameters_do_nothing(client):
    for url in ("/raster/cog/info?url=file:///etc/passwd", "/raster/external/info?url=file:///etc/passwd",
                "/raster/stac/info?url=http://169.254.169.254/", "/raster/mosaicjson/info?url=/etc/passwd",
                f"/raster/cog/tiles/{TILE}.png?url=http://169.254.169.254/"):
        assert client.get(url).status_code == 404, url
    plain = client.get(f"/raster/collections/{PUBLIC}/tiles/{TILE}.png?assets=B04")
    with_url = client.get(f"/raster/collections/{PUBLIC}/tiles/{TILE}.png?assets=B04&url=file:///etc/passwd")
    assert plain.status_code == with_url.status_code == 200 and plain.content == with_url.content


@pytest.mark.parametrize("href, allowed", [
    (str(B04), True),
    (B04.as_uri(), True),
    (f"{ROOT / 'data'}/../../etc/passwd", False),
    ("/etc/passwd", False),
    ("file:///etc/passwd", False),
    ("file://otherhost/etc/passwd", False),
    ("relative/B04.tif", False),
    ("/vsizip//etc/x.zip/a.tif", False),
    ("/vsicurl/http://169.254.169.254/", False),
    ("NETCDF:/etc/passwd:x", False),
    ("vrt:///etc/passwd", False),
    ("http://169.254.169.254/latest/meta-data/", False),
    ("s3://data-bucket/scenes/x.tif", True),
    ("/vsis3/data-bucket/scenes/x.tif", True),
    ("s3://data-bucket/other/x.tif", False),
    ("s3://data-bucket/scenes/../other/x.tif", False),
    ("s3://data-bucket-2/scenes/x.tif", False),
    ("https://tiles.example.org/cogs/a.tif", True),
    ("https://tiles.example.org:443/cogs/a.tif?sig=1", True),
    ("/vsicurl/https://tiles.example.org/cogs/a.tif", True),
    ("https://tiles.example.org/cogs/../secret.tif", False),
    ("https://tiles.example.org/cogs/%2e%2e/secret.tif", False),
    ("https://tiles.example.org/cogsX/a.tif", False),
    ("https://tiles.example.org:8443/cogs/a.tif", False),
    ("http://tiles.example.org/cogs/a.tif", False),
    ("https://tiles.example.org@169.254.169.254/cogs/a.tif", False),
    ("https://user:pw@tiles.example.org/cogs/a.tif", False),
    (" /etc/passwd", False),
    (f"{B04}\n", False),
])
def test_read_prefixes(href, allowed):
    from stacube.access.prefixes import ReadPrefixes

    prefixes = ReadPrefixes([str(ROOT / "data"), "s3://data-bucket/scenes", "https://tiles.example.org/cogs"])
    assert prefixes.allows(href) is allowed


def test_default_prefixes_cover_the_data_outputs_and_samples(world):
    from stacube.access.prefixes import ReadPrefixes
    from stacube.settings import Settings

    prefixes = ReadPrefixes.from_settings(world.settings)
    assert prefixes.allows(str(B04))
    assert prefixes.allows(str(world.settings.data_dir.absolute() / "data" / "job" / "x.tif"))
    assert not prefixes.allows("/etc/passwd")
    assert ReadPrefixes.from_settings(Settings(data_bucket="scenes-bucket")).allows("s3://scenes-bucket/ingest/a.tif")
    assert ReadPrefixes.from_settings(Settings(output="s3://out/outputs")).allows("s3://out/outputs/j/a.tif")
    assert not ReadPrefixes.from_settings(Settings(output="s3://out/outputs")).allows("s3://out/tmp/j/a.tif")


def test_members_cannot_register_foreign_hrefs_through_transactions(client, world):
    template = client.get(f"/stac/collections/{S2}/items/{ITEM}").json()
    item = copy.deepcopy(template)
    item.update(id="tx-href", collection=PRIVATE, links=[])
    item["assets"]["B04"]["href"] = "file:///etc/passwd"
    owner, admin = world.headers["owner"], world.headers["admin"]
    r = client.post(f"/stac/collections/{PRIVATE}/items", json=item, headers=owner)
    assert r.status_code == 400 and "not under an allowed prefix" in r.json()["description"]
    patch = [{"op": "replace", "path": "/assets/B04/href", "value": "http://169.254.169.254/"}]
    r = client.patch(f"/stac/collections/{PRIVATE}/items/{ITEM}", json=patch,
                     headers={**owner, "content-type": "application/json-patch+json"})
    assert r.status_code == 400, r.text
    bulk = {"items": {"tx-href": item}, "method": "insert"}
    r = client.post(f"/stac/collections/{PRIVATE}/bulk_items", json=bulk, headers=owner)
    assert r.status_code == 400, r.text
    # an admin is trusted like the CLI; the raster API still refuses to read it
    assert client.post(f"/stac/collections/{PRIVATE}/items", json=item, headers=admin).status_code == 201
    try:
        r = client.get(f"/raster/collections/{PRIVATE}/items/tx-href/point/{POINT}?assets=B04", headers=owner)
        assert r.status_code == 403
    finally:
        client.delete(f"/stac/collections/{PRIVATE}/items/tx-href", headers=admin)


def test_ingest_refuses_relative_hrefs_that_leave_their_folder(samples, tmp_path, cli):
    from stacube.catalog.items import check_item
    from stacube.errors import InvalidInput

    doc = copy.deepcopy(samples.get_item(S2, ITEM))
    doc.update(id="escape", links=[])
    for asset in doc["assets"].values():
        asset["href"] = "../../../../etc/passwd"
    with pytest.raises(InvalidInput, match="leaves the directory"):
        check_item(copy.deepcopy(doc), collections={S2}, base=tmp_path)
    inside = copy.deepcopy(doc)
    for asset in inside["assets"].values():
        asset["href"] = "./a/../B04.tif"
    assert check_item(inside, collections={S2}, base=tmp_path)["assets"]["B04"]["href"] == str(tmp_path / "B04.tif")
    path = tmp_path / "item.json"
    path.write_text(json.dumps(doc))
    result = cli("dataset", "add", str(path))
    assert result.returncode != 0
    assert "leaves the directory" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "escape" not in {i["id"] for i in samples.search({"collections": [S2], "ids": ["escape"]})}


def test_no_file_outside_was_touched(evil):
    """The outside COG is intact and still a symlink target (nothing wrote or moved it)."""
    assert evil["outside"].stat().st_size == B04.stat().st_size
    assert os.path.realpath(evil["hrefs"]["link"]) == str(evil["outside"])


# -- the STAC API's asset route: the same gate on the file it serves -------------------------------
LOCAL_EVIL = ("file-url", "plain-path", "outside", "escape", "link")


def test_the_asset_route_serves_nothing_outside_the_prefixes(client, evil):
    """Local hrefs outside the prefixes answer the gate's 403; hrefs of other kinds are not files
    of the server (404). Items as served point at the route, their stored href an alternate."""
    for name, href in evil["hrefs"].items():
        url = f"/stac/collections/{SSRF}/items/evil-{name}/assets/B04"
        for method in ("GET", "HEAD"):
            r = client.request(method, url, headers={"Range": "bytes=0-99"})
            assert r.status_code == (403 if name in LOCAL_EVIL else 404), (name, method, r.status_code)
            if method == "GET":
                assert r.json()["code"] in ("AssetNotAllowed", "NotFound"), r.text
                assert "passwd" not in r.text or "not under an allowed prefix" in r.text
        served = client.get(f"/stac/collections/{SSRF}/items/evil-{name}").json()["assets"]["B04"]
        if name in LOCAL_EVIL:
            assert served["href"].endswith(url) and served["alternate"]["local"]["href"] == href
        else:
            assert served["href"] == href and "alternate" not in served


@pytest.fixture(scope="module")
def folder_asset(samples, world, evil):
    """An item whose asset is a folder under the output root holding a COG, a symbolic link to
    the outside COG and a subfolder."""
    folder = world.settings.data_dir.absolute() / "data" / "acc-folder" / "store.zarr"
    shutil.rmtree(folder.parent, ignore_errors=True)
    (folder / "sub").mkdir(parents=True)
    shutil.copy(B04, folder / "sub" / "B04.tif")
    (folder / "out.tif").symlink_to(evil["outside"])
    (folder.parent / "beside.tif").write_bytes(b"beside the folder")
    register_pointing_at(samples, SSRF, {"folder": str(folder)})
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.mark.parametrize("path, status", [
    ("sub/B04.tif", 200),
    ("sub/./B04.tif", 200),
    ("sub", 404),                       # a folder is not a file
    ("", 404),                          # nor is the asset's own folder
    ("out.tif", 404),                   # a symbolic link leaving the folder
    ("%2e%2e/beside.tif", 404),         # leaving the folder, however it is spelt
    ("sub/..%2F..%2Fbeside.tif", 404),
    ("..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", 404),
    ("%2Fetc%2Fpasswd", 404),
    ("missing.tif", 404),
])
def test_files_of_a_folder_asset(client, folder_asset, path, status):
    r = client.get(f"/stac/collections/{SSRF}/items/evil-folder/assets/B04/{path}")
    assert r.status_code == status, (path, r.status_code, r.text[:200])
    if status == 200:
        assert r.content == B04.read_bytes()
    else:
        assert r.json()["description"], r.text
        assert b"beside the folder" not in r.content
