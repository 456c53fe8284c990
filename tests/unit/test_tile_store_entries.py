"""The tile store's entries on a folder and on S3 (moto's server on loopback): written whole,
read back with their headers, missing ones None, names only from hash keys, failures one
StorageError line."""

from __future__ import annotations

import boto3
import pytest

from stacube.errors import InvalidInput, StorageError
from stacube.settings import Settings
from stacube.storage.tiles import LocalTileStore, S3TileStore, open_tile_store

KEY = "0123456789abcdef0123456789abcdef"
HEADERS = [(b"content-type", b"image/png"), (b"x-assets", b"[\"a\xe9\"]")]
BODY = b"\x89PNG\r\n\x1a\n\nbody with a newline\n"


def roundtrip(store) -> None:
    assert store.get(KEY, 7) is None
    store.put(KEY, 7, HEADERS, BODY)
    assert store.get(KEY, 7) == (HEADERS, BODY)
    assert store.get(KEY, 8) is None  # the zoom is part of the name
    store.put(KEY, 7, HEADERS[:1], b"second")
    assert store.get(KEY, 7) == (HEADERS[:1], b"second")


def test_local_entries(tmp_path):
    store = open_tile_store(f"file://{tmp_path}/tiles", Settings())
    assert isinstance(store, LocalTileStore)
    roundtrip(store)
    assert [p.relative_to(tmp_path / "tiles").as_posix() for p in (tmp_path / "tiles").rglob("*") if p.is_file()] \
        == [f"7/01/{KEY}"]  # no temporary file left


@pytest.mark.parametrize("key", ["../../etc/passwd", "0123/../../x", "ABCDEF0123456789ABCD", "", "a" * 65])
def test_names_come_only_from_hash_keys(tmp_path, key):
    store = LocalTileStore(tmp_path)
    with pytest.raises(ValueError):
        store.put(key, 1, [], b"x")
    with pytest.raises(ValueError):
        store.get(key, 1)
    with pytest.raises(ValueError):
        store.get(KEY, -1)


def test_failures_are_storage_errors(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot write the tile store"):
        LocalTileStore(tmp_path / "file").put(KEY, 3, [], b"x")
    store = LocalTileStore(tmp_path / "tiles")
    store.put(KEY, 3, [], b"x")
    next((tmp_path / "tiles").rglob(KEY)).write_bytes(b"\xff\xfe not json\nbody")
    with pytest.raises(StorageError, match="not an entry"):
        store.get(KEY, 3)
    for uri in ("ftp://host/tiles", "s3:///tiles"):
        with pytest.raises(InvalidInput, match="tile store"):
            open_tile_store(uri, Settings())
    assert open_tile_store(None, Settings()) is None and open_tile_store("", Settings()) is None


def test_a_local_store_leaves_its_disk_room(tmp_path, monkeypatch):
    """Entries grow with every new low-zoom tile; the disk may hold the catalog database."""
    import shutil

    from stacube.storage import tiles

    store = LocalTileStore(tmp_path / "tiles")
    store.put(KEY, 2, [], b"first")
    total = 100 * 2**30
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(total, total - 2**30, 4 * 2**30))
    with pytest.raises(StorageError, match="less than 5.0 GiB would be left free"):
        store.put(KEY, 2, [], b"second")
    assert store.get(KEY, 2) == ([], b"first")  # nothing half-written
    monkeypatch.setattr(tiles, "MIN_FREE_SHARE", 0.0)
    store.put(KEY, 2, [], b"second")
    assert store.get(KEY, 2) == ([], b"second")


def test_s3_entries(s3_server):
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="tile-store-entries")
    settings = Settings(s3_endpoint=s3_server)
    store = open_tile_store("s3://tile-store-entries/raster/cache", settings)
    assert isinstance(store, S3TileStore)
    roundtrip(store)
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket="tile-store-entries")["Contents"]]
    assert keys == [f"raster/cache/7/01/{KEY}"]
    with pytest.raises(StorageError, match="cannot read the tile store s3://missing-bucket"):
        open_tile_store("s3://missing-bucket", settings).get(KEY, 1)
