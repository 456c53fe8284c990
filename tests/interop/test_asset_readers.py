"""Readers of STAC assets on items fetched from ``stacube up``: odc-stac, stackstac, rasterio
``/vsicurl/``.

Metadata is read as each client expects it: stackstac builds its array from ``proj:epsg``,
which items stacube writes carry beside ``proj:code`` (its test skips when stackstac is not
installed). Pixels are read over
HTTP: local assets are served as URLs of the STAC API's asset route, with range requests.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest
from pystac_client import Client

from stacube.db.connection import connect

from interop_testing import S2

@pytest.fixture(scope="module")
def search(stac_url):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Client.open(stac_url).search(collections=[S2], sortby="datetime")


@pytest.fixture(scope="module")
def items(search):
    return list(search.items())


@pytest.fixture(scope="module")
def item_dicts(search):
    """The items as served (pystac's migration to projection v2 drops ``proj:epsg``, which is
    all stackstac reads: its users pass the documents)."""
    return list(search.items_as_dicts())


def test_items_carry_the_projection_every_client_reads(item_dicts):
    """``proj:epsg`` (projection v1: stackstac, older clients) beside ``proj:code`` (v2), the same
    CRS, on every raster asset, with the grid (``proj:shape``, ``proj:transform``)."""
    for item in item_dicts:
        for asset in item["assets"].values():
            assert asset["proj:epsg"] == 32633 and asset["proj:code"] == "EPSG:32633"
            assert asset["proj:shape"] == [101, 100] and len(asset["proj:transform"]) == 6


def test_stackstac_reads_the_pixels_odc_stac_and_rasterio_read(item_dicts, items):
    """stackstac builds its array from the served documents alone (``proj:epsg``, ``proj:shape``,
    ``proj:transform``) and reads the assets over HTTP: the grid of the items, the values odc-stac
    loads and rasterio reads from the stored files, scene by scene."""
    stackstac = pytest.importorskip(
        "stackstac", reason="stackstac is not installed (it requires pandas < 3: see constraints.txt)")
    import odc.stac
    import rasterio

    # snap_bounds=False: the items' own grid (snapping the bounds to multiples of the resolution
    # adds a row and a column here, the grid's origin not being such a multiple)
    stack = stackstac.stack(item_dicts, assets=["B04"], chunksize=256, rescale=False, snap_bounds=False,
                            fill_value=np.float64("nan")).compute()
    assert stack.shape == (5, 1, 101, 100) and int(stack.epsg) == 32633
    assert list(stack.id.values) == [item.id for item in items]  # sorted by date, as searched
    loaded = odc.stac.load(items, bands=["B04"], chunks=None).B04
    assert np.array_equal(stack.values[:, 0], loaded.values.astype("float64"))
    for values, item in zip(stack.values[:, 0], items):
        with rasterio.open(item.assets["B04"].extra_fields["alternate"]["local"]["href"]) as src:
            assert np.array_equal(values, src.read(1).astype("float64"))
    assert np.isfinite(stack.values).all() and np.nanmax(stack.values) > 0


def test_odc_stac_loads_api_items(items):
    import odc.stac

    ds = odc.stac.load(items, bands=["B04"], chunks=None)
    assert ds.B04.shape == (5, 101, 100) and int(ds.B04.max()) > 0


@pytest.fixture(scope="module")
def derived(interop_server, stac_url):
    """A composite of the Slovenia stack registered in the served catalog (a derived collection,
    its outputs under the server's output root); the items as pystac-client fetches them."""
    from stacube.jobs.runner import run_composite
    from stacube.jobs.spec import build_spec
    from stacube.settings import Settings

    output = interop_server.env["STACUBE_OUTPUT"]
    settings = Settings(db_name=interop_server.settings.db_name, output=output)
    spec = build_spec(collections=[S2], bbox="14.5514,45.8659,14.5642,45.8750", datetime="2015-07-01/2015-09-30",
                      method="median", bands=["red"], indices=["NDVI"], output=output)
    report = run_composite(spec, settings, workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(Client.open(stac_url).search(collections=[report["collection"]]).items())


def test_odc_stac_loads_items_of_a_derived_collection(derived):
    import odc.stac

    assert derived and derived[0].assets["NDVI"].href.startswith("http")
    ds = odc.stac.load(derived, bands=["NDVI"], chunks=None)
    assert ds.NDVI.shape[0] == len(derived) and np.isfinite(ds.NDVI.values).mean() > 0.5


def test_files_of_a_served_zarr_asset(derived):
    """A folder asset (the job's Zarr cube) serves the files below its URL."""
    from pathlib import Path

    import httpx

    zarr = derived[0].assets["zarr"]
    folder = Path(zarr.extra_fields["alternate"]["local"]["href"].removeprefix("file://"))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert files and zarr.href.startswith("http")
    for path in (files[0], files[-1]):
        r = httpx.get(f"{zarr.href}/{path.relative_to(folder)}")
        assert r.status_code == 200 and r.content == path.read_bytes(), path
    assert httpx.get(f"{zarr.href}/..%2F..%2F{folder.parent.name}").status_code == 404


def test_rasterio_vsicurl_opens_a_served_asset(items):
    import rasterio

    href = items[0].assets["B04"].get_absolute_href()
    assert href.startswith("http")
    with rasterio.open(f"/vsicurl/{href}") as ds:
        assert ds.read(1).max() > 0


def test_gdal_reads_served_assets_with_range_requests(items):
    """GDAL (in a process of its own, libcurl's trace on) asks for byte ranges and gets 206
    answers; the pixels are those of the stored file (the ``local`` alternate)."""
    import subprocess
    import sys

    asset = items[0].assets["B04"]
    script = ("import sys, rasterio, numpy\n"
              "with rasterio.open('/vsicurl/' + sys.argv[1]) as a, rasterio.open(sys.argv[2]) as b:\n"
              "    assert (a.profile['width'], a.profile['crs']) == (b.profile['width'], b.profile['crs'])\n"
              "    assert numpy.array_equal(a.read(1, window=((0, 64), (0, 64))), b.read(1, window=((0, 64), (0, 64))))\n")
    env = {**os.environ, "CPL_CURL_VERBOSE": "YES", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    run = subprocess.run([sys.executable, "-c", script, asset.href, asset.extra_fields["alternate"]["local"]["href"]],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.search(r"^> GET .*/assets/B04 HTTP", run.stderr, re.M), run.stderr[-2000:]
    assert re.search(r"^Range: bytes=0-\d+", run.stderr, re.M | re.I), run.stderr[-2000:]
    assert re.search(r"^< HTTP/1.1 206", run.stderr, re.M), run.stderr[-2000:]
    assert re.search(r"^< content-range: bytes 0-\d+/\d+", run.stderr, re.M | re.I), run.stderr[-2000:]


def test_assets_of_a_private_collection_are_not_served_to_others(interop_server, items):
    """The asset route follows the item's access: a private workspace's asset answers 404 (as a
    missing collection) to anonymous callers and other workspaces, 200 to its own."""
    import httpx

    from stacube.access.workspaces import AccessStore

    store = AccessStore(interop_server.settings)
    for workspace in ("interop-owner", "interop-other"):
        store.create_workspace(workspace)
    keys = {w: {"X-API-Key": store.create_key(w, label="interop").key} for w in ("interop-owner", "interop-other")}
    url = items[0].assets["B04"].href
    try:
        assert httpx.head(url).status_code == 200  # public before
        store.set_access(S2, workspace="interop-owner")  # the access rows are read per request
        for headers in ({}, keys["interop-other"]):
            r = httpx.get(url, headers={**headers, "Range": "bytes=0-99"})
            assert r.status_code == 404 and r.json()["description"] == f"Collection {S2} does not exist."
        r = httpx.get(url, headers={**keys["interop-owner"], "Range": "bytes=0-99"})
        assert r.status_code == 206 and len(r.content) == 100
    finally:
        with connect(interop_server.settings, autocommit=True) as conn:
            conn.execute("DELETE FROM stacube.collection_access WHERE collection = %s", (S2,))
            conn.execute("DELETE FROM stacube.api_keys WHERE label = 'interop'")
            conn.execute("DELETE FROM stacube.workspaces WHERE name LIKE 'interop-%%'")
