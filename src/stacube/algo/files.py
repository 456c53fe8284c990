"""Raster files opened once per job, not once per tile.

Opening a GeoTIFF with rasterio costs about 1 ms of CPU, most of it holding the GIL: GDAL builds
the file's CRS from its GeoTIFF keys through PROJ, and rasterio exports and parses it again. A job
of several tiles reads every file that meets a tile, so a file that spans nine tiles was opened
nine times (1,224 opens instead of 136 for 68 dates of two 3000 x 3030 px COGs cut into
1024 px tiles). While :func:`reuse_open_files` is active, :func:`open_raster` hands out a
handle already open on the same href when one is idle, and keeps it for the next read.

A handle is used by one thread at a time (GDAL datasets are not safe for concurrent reads);
two threads reading the same file at once get two handles. Idle handles are bounded (least
recently used closed first), and every handle is closed when the last user of the pool ends,
so files written after a job (a re-run's outputs under the same href) are never read through
an old handle.

An open handle keeps the blocks GDAL decoded for it in GDAL's block cache (5 % of the memory by
default). A job reads each window once, so the first activation in a process sets
``GDAL_CACHEMAX`` to :data:`BLOCK_CACHE_MB` unless it is set already (GDAL reads it once, on its
cache's first use): with the default, the cache grew the job's memory by 1.5 GB and made it
slower (allocating and evicting blocks), 3000 x 3030 px, 68 dates, 9 tiles.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from stacube.core.shared import ProcessShared

#: Idle handles kept at most (file descriptors stay well under the usual limit of 1,024).
CAPACITY = 256
#: GDAL's block cache, in MB, for a process whose files stay open (see above).
BLOCK_CACHE_MB = 64


class OpenFiles:
    """Idle rasterio datasets by href, least recently used first; thread-safe."""

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self._idle: OrderedDict[tuple[str, int], object] = OrderedDict()
        self._serial = 0
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def open(self, href: str) -> Iterator[object]:
        """An open dataset of ``href`` for this thread alone until the block ends; back to the
        pool after, unless the block raised (the handle is closed then).

        Raises:
            rasterio.errors.RasterioIOError: the file cannot be opened.
        """
        import rasterio

        handle = self._take(href)
        if handle is None:
            handle = rasterio.open(href)
        try:
            yield handle
        except BaseException:
            handle.close()
            raise
        self._give_back(href, handle)

    def _take(self, href: str):
        with self._lock:
            for key in self._idle:
                if key[0] == href:
                    return self._idle.pop(key)
        return None

    def _give_back(self, href: str, handle) -> None:
        evicted = []
        with self._lock:
            if self._closed:
                evicted.append(handle)
            else:
                self._serial += 1
                self._idle[(href, self._serial)] = handle
                while len(self._idle) > self.capacity:
                    evicted.append(self._idle.popitem(last=False)[1])
        for h in evicted:
            h.close()

    def close(self) -> None:
        """Close every idle handle; handles in use are closed when given back."""
        with self._lock:
            self._closed = True
            handles = list(self._idle.values())
            self._idle.clear()
        for h in handles:
            h.close()


_pool: ProcessShared[OpenFiles] = ProcessShared(OpenFiles.close)


@contextmanager
def reuse_open_files(capacity: int = CAPACITY) -> Iterator[OpenFiles]:
    """While the block runs (in any thread of the process), :func:`open_raster` reuses handles;
    nested or concurrent blocks share one pool, closed when the last one ends."""
    os.environ.setdefault("GDAL_CACHEMAX", str(BLOCK_CACHE_MB))
    with _pool.use(lambda: OpenFiles(capacity)) as pool:
        yield pool


@contextmanager
def open_raster(href: str) -> Iterator[object]:
    """A rasterio dataset of ``href``: from the pool of :func:`reuse_open_files` when one is
    active, else opened and closed around the block.

    Raises:
        rasterio.errors.RasterioIOError: the file cannot be opened.
    """
    pool = _pool.current
    if pool is None:
        import rasterio

        with rasterio.open(href) as src:
            yield src
        return
    with pool.open(href) as src:
        yield src
