"""Local assets are read in the request's thread, remote ones keep rio-tiler's thread pools
(stacube_services.local_reads), with the same pixels either way. Real COGs: the Landsat 8 New
York sample shipped in data/samples."""

from __future__ import annotations

import threading
from pathlib import Path

import attr
import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds
from rio_tiler.constants import WGS84_CRS
from rio_tiler.mosaic.backend import BaseBackend

from stacube_services.access.raster import gated_readers
from stacube_services.local_reads import LocalItemsInThread, local_item

SCENES = Path(__file__).resolve().parents[2] / "data" / "samples" / "landsat8-c1-l1tp-newyork-gdalcubes"
RGB = ["B4", "B3", "B2"]
Z7 = (37, 47, 7)  # a tile every scene of the sample meets


class Gate:
    """A read gate allowing everything, recording the thread of every asset opened."""

    def __init__(self):
        self.threads: list[int] = []

    def check(self, href, collection=None):
        self.threads.append(threading.get_ident())
        return href


def item(folder: Path, **extra_assets) -> dict:
    with rasterio.open(folder / "B4.tif") as src:
        bbox = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    assets = {band: {"href": str(folder / f"{band}.tif")} for band in RGB}
    return {"id": folder.name, "collection": "landsat", "bbox": list(bbox), "assets": {**assets, **extra_assets}}


def items() -> list[dict]:
    return [item(f) for f in sorted(SCENES.iterdir()) if f.is_dir()]


@attr.s
class ListBackend(BaseBackend):
    """A mosaic of the item dicts in ``input`` (every item for every tile)."""

    def __attrs_post_init__(self):
        self.bounds, self.crs, self.minzoom, self.maxzoom = (-180, -85, 180, 85), WGS84_CRS, 0, 24

    def assets_for_tile(self, x, y, z, **kwargs):
        return self.input

    def assets_for_point(self, lng, lat, coord_crs=None, **kwargs):
        return self.input

    def assets_for_bbox(self, xmin, ymin, xmax, ymax, coord_crs=None, **kwargs):
        return self.input

    def asset_name(self, asset):
        return asset["id"]


class LocalListBackend(LocalItemsInThread, ListBackend):
    pass


def test_local_item_looks_at_the_assets_read_and_their_alternates():
    item = {"assets": {"a": {"href": "/data/a.tif"}, "b": {"href": "file:///data/b.tif"},
                       "thumb": {"href": "https://host/t.png"},
                       "c": {"href": "/data/c.tif", "alternate": {"s3": {"href": "s3://bucket/c.tif"}}}}}
    assert local_item(item, ["a", "b"]) and local_item(item, [{"name": "a"}])
    assert not local_item(item)  # every asset: the thumbnail is remote
    assert not local_item(item, ["a", "c"])  # an alternate href may be what is opened
    assert not local_item({"assets": {"a": {"href": "/vsicurl/https://host/a.tif"}}})


@pytest.fixture()
def elsewhere():
    """A copy of one sample COG at a GDAL ``/vsimem/`` path: readable, but not a local file."""
    from rasterio.io import MemoryFile

    with MemoryFile((SCENES / sorted(p.name for p in SCENES.iterdir() if p.is_dir())[0] / "B2.tif").read_bytes(),
                    ext=".tif") as memory:
        yield memory.name


def test_item_of_local_files_read_in_the_calling_thread(elsewhere):
    gate = Gate()
    _, reader = gated_readers(lambda: gate)
    scene = items()[0]
    scene["assets"]["thumbnail"] = {"href": "https://example.com/t.png"}  # not read: no matter
    with reader(scene) as src:
        local = src.tile(*Z7, assets=RGB)
    assert len(gate.threads) == 3 and set(gate.threads) == {threading.get_ident()}

    pooled = Gate()  # one asset read is not a local file: rio-tiler's threads for the item
    _, reader = gated_readers(lambda: pooled)
    with reader({**scene, "assets": {**scene["assets"], "B2": {"href": elsewhere}}}) as src:
        remote = src.tile(*Z7, assets=RGB)
    assert len(pooled.threads) == 3 and threading.get_ident() not in pooled.threads
    np.testing.assert_array_equal(local.array, remote.array)
    assert local.array.count() > 0


def test_threads_given_by_the_caller_win():
    gate = Gate()
    _, reader = gated_readers(lambda: gate)
    with reader(items()[0]) as src:
        src.tile(*Z7, assets=RGB, threads=3)
    assert threading.get_ident() not in gate.threads


@pytest.mark.parametrize("tile", [Z7, (74, 95, 8)])
def test_mosaic_of_local_items_read_in_the_calling_thread_same_pixels(tile):
    local_gate, pooled_gate = Gate(), Gate()
    scenes = items()
    assert len(scenes) >= 10
    local = LocalListBackend(scenes, reader=gated_readers(lambda: local_gate)[1])
    pooled = ListBackend(scenes, reader=gated_readers(lambda: pooled_gate)[1])
    # titiler-pgstac's factory always passes MOSAIC_CONCURRENCY's value
    image, used = local.tile(*tile, assets=RGB, threads=10)
    expected, expected_used = pooled.tile(*tile, assets=RGB, threads=10)
    assert set(local_gate.threads) == {threading.get_ident()}
    assert threading.get_ident() not in pooled_gate.threads
    np.testing.assert_array_equal(image.array.data, expected.array.data)
    np.testing.assert_array_equal(image.array.mask, expected.array.mask)
    assert used == expected_used[:len(used)] and len(used) >= 1


def test_mosaic_with_a_remote_item_keeps_the_pool(elsewhere):
    gate = Gate()
    scenes = items()[:3]
    scenes[-1] = {**scenes[-1], "assets": {**scenes[-1]["assets"], "B2": {"href": elsewhere}}}
    LocalListBackend(scenes, reader=gated_readers(lambda: gate)[1]).tile(*Z7, assets=RGB, threads=10)
    assert threading.get_ident() not in gate.threads


def test_mosaic_crops_and_points_of_local_items_read_in_the_calling_thread():
    local_gate, pooled_gate = Gate(), Gate()
    scenes = items()[:6]
    local = LocalListBackend(scenes, reader=gated_readers(lambda: local_gate)[1])
    pooled = ListBackend(scenes, reader=gated_readers(lambda: pooled_gate)[1])
    bbox = (-75.0, 40.8, -74.0, 41.5)
    image, _ = local.part(bbox, assets=RGB, threads=10, max_size=128)
    expected, _ = pooled.part(bbox, assets=RGB, threads=10, max_size=128)
    np.testing.assert_array_equal(image.array.data, expected.array.data)
    np.testing.assert_array_equal(image.array.mask, expected.array.mask)
    assert image.array.count() > 0
    values = local.point(-74.5, 41.2, assets=RGB, threads=10)
    expected_values = pooled.point(-74.5, 41.2, assets=RGB, threads=10)
    assert [(n, p.data.tolist()) for n, p in values] == [(n, p.data.tolist()) for n, p in expected_values]
    assert len(values) >= 1
    assert set(local_gate.threads) == {threading.get_ident()}
    assert threading.get_ident() not in pooled_gate.threads
