"""A store of rendered tiles shared by every raster API process: a folder or an S3 prefix.

The raster API's tile cache (``stacube_services.tile_cache``) keeps rendered tiles in the memory
of each process; with ``STACUBE_TILE_STORE`` set, the tiles of zoom levels up to
``STACUBE_TILE_STORE_MAX_ZOOM`` (the low zooms, where a mosaic tile reads every scene it meets)
are also written here, and a process that has not rendered a tile yet reads it from here
(another process, another function instance, a server since restarted, or
``stacube tiles seed`` rendered it).

Entries are named by the tile cache's key (a hash of the tile's path, query, ``Accept`` and the
catalog version of its collections: no name comes from the request, and a new item changes
the key, so an entry is never stale, only unused): ``<root>/<z>/<key[:2]>/<key>``. An entry is
one JSON line of the answer's headers, then the body. Entries of old catalog versions stay until
removed: on S3 the bucket's lifecycle rule expires them (the CDK stack's, 30 days by default);
a local folder may be deleted at any time (the tiles are rendered again).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from stacube.errors import StorageError
from stacube.settings import Settings
from stacube.storage.objects import location, s3_client, storage_error

#: S3 requests of the store are on a tile request's path: fail fast (the tile is rendered then)
S3_RETRIES = {"retries": {"mode": "standard", "max_attempts": 2}, "connect_timeout": 2, "read_timeout": 5}
#: a local store stops writing when its disk would have less than this left (bytes, and share
#: of the disk): its entries grow with every new low-zoom tile rendered, and the disk may hold
#: the catalog database
MIN_FREE_BYTES = 1 << 30
MIN_FREE_SHARE = 0.05
#: a key of the tile cache: hex digits of a hash (nothing else reaches a file name)
KEY = re.compile(r"^[0-9a-f]{16,64}$")

Headers = list[tuple[bytes, bytes]]


def encode_entry(headers: Headers, body: bytes) -> bytes:
    """One JSON line of ``headers`` (latin-1 text), then ``body``."""
    line = json.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers], separators=(",", ":"))
    return line.encode("latin-1") + b"\n" + body


def decode_entry(data: bytes) -> tuple[Headers, bytes]:
    """The headers and body of an entry written by :func:`encode_entry`.

    Raises:
        StorageError: not an entry (no header line, or one that is not a list of name/value pairs).
    """
    line, sep, body = data.partition(b"\n")
    try:
        pairs = json.loads(line.decode("latin-1")) if sep else None
        headers = [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in pairs]
    except (ValueError, TypeError) as exc:
        raise StorageError("a stored tile is not an entry of the tile store") from exc
    return headers, body


class TileStore:
    """Rendered tiles by key and zoom level (see the module docstring)."""

    #: where the entries are (a path or ``s3://bucket/prefix``)
    root: str

    def get(self, key: str, z: int) -> tuple[Headers, bytes] | None:
        """The entry of ``key``, or None when there is none.

        Raises:
            StorageError: the store cannot be read (not: the entry is missing).
        """
        data = self._read(self.name(key, z))
        return None if data is None else decode_entry(data)

    def put(self, key: str, z: int, headers: Headers, body: bytes) -> None:
        """Keep an entry (a concurrent put of the same key leaves one whole entry).

        Raises:
            StorageError: the store cannot be written.
        """
        self._write(self.name(key, z), encode_entry(headers, body))

    @staticmethod
    def name(key: str, z: int) -> str:
        """The entry's name under the root: ``<z>/<key[:2]>/<key>``.

        Raises:
            ValueError: ``key`` is not hex digits of a hash, or ``z`` is negative.
        """
        if not KEY.match(key) or z < 0:
            raise ValueError(f"not a tile key: {key!r} (zoom {z})")
        return f"{int(z)}/{key[:2]}/{key}"

    def _read(self, name: str) -> bytes | None:
        raise NotImplementedError

    def _write(self, name: str, data: bytes) -> None:
        raise NotImplementedError


class LocalTileStore(TileStore):
    """Entries in a folder (written to a temporary file, then renamed: readers see whole
    entries); no entry is written that would leave its disk with less than
    :data:`MIN_FREE_BYTES` or :data:`MIN_FREE_SHARE` of it free."""

    def __init__(self, root: Path):
        self.path = Path(root)
        self.root = str(self.path)

    def _read(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read the tile store {self.root}: {exc.strerror or exc}") from exc

    def _write(self, name: str, data: bytes) -> None:
        target = self.path / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            usage = shutil.disk_usage(target.parent)
            if usage.free - len(data) < max(MIN_FREE_BYTES, usage.total * MIN_FREE_SHARE):
                raise StorageError(f"cannot write the tile store {self.root}: less than "
                                   f"{max(MIN_FREE_BYTES, usage.total * MIN_FREE_SHARE) / 2**30:.1f} GiB "
                                   "would be left free on its disk")
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"cannot write the tile store {self.root}: {exc.strerror or exc}") from exc


class S3TileStore(TileStore):
    """Entries under ``s3://bucket/prefix`` (``STACUBE_S3_ENDPOINT`` for S3-compatible servers)."""

    def __init__(self, bucket: str, prefix: str, settings: Settings):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.settings = settings
        self._client = None

    @property
    def client(self):
        if self._client is None:  # boto3 clients are thread-safe: one per store
            self._client = s3_client(self.settings, S3_RETRIES)
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _read(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return None
            raise _failure(exc, "read", self.root) from exc

    def _write(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
        except Exception as exc:
            raise _failure(exc, "write", self.root) from exc


def _failure(exc: Exception, what: str, root: str) -> Exception:
    failure = storage_error(exc)
    if failure is None:
        return exc
    return StorageError(f"cannot {what} the tile store {root}: {failure.message}")


def open_tile_store(uri: str | None, settings: Settings) -> TileStore | None:
    """The store at ``uri`` (a path, ``file://`` or ``s3://bucket/prefix``); None when unset.

    Raises:
        InvalidInput: an unsupported scheme or an ``s3://`` without a bucket.
    """
    if not uri:
        return None
    where = location(uri, f"tile store {uri!r}")
    return LocalTileStore(where) if isinstance(where, Path) else S3TileStore(*where, settings)
