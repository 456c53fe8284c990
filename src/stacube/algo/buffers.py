"""Stack memory reused from one job tile to the next, instead of new pages for every tile.

A tile's stack is a few large arrays (68 dates of a 1024 px tile: 285 MB of float32 values,
71 MB of mask codes, 142 MB of observed/clear flags). numpy gets each from the C allocator,
which maps arrays this large afresh and unmaps them when freed, so every tile touches new
pages and the kernel zeroes and maps each one again: in a job of nine 1024 px tiles,
1.3 million page faults and 2.5-4.8 s of system time for 7-8 s of wall time (2-core KVM
guest). While :func:`reuse_buffers` is active (a job run), the loader takes its arrays with
:func:`empty`, and the compositing of a tile gives its stack back with :func:`give_back` once
no result refers to it; the next tile's arrays are views of those buffers.

Only memory the pool itself handed out is taken back (arrays odc-stac allocates, for files off
the output grid, are left to the allocator: the next tile would not reuse them), and only from
code that is known to be done with it: a buffer handed out again is overwritten. Free buffers
are bounded (:data:`MAX_FREE_BYTES`, largest dropped first) and all are released when the last
user of the pool ends.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from stacube.core.shared import ProcessShared

#: Bytes of free buffers kept at most (two tiles' stacks of the default 2 GiB tile budget).
MAX_FREE_BYTES = 4 << 30
#: Arrays smaller than this are left to the allocator (its own free lists serve them well).
MIN_BYTES = 8 << 20


class BufferPool:
    """Free byte buffers, thread-safe; :meth:`empty` hands out the smallest that fits."""

    def __init__(self, max_free_bytes: int = MAX_FREE_BYTES):
        self.max_free_bytes = max_free_bytes
        self._free: list[np.ndarray] = []
        self._made: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self.reused = 0  # arrays served from a free buffer (for tests and reports)

    def empty(self, shape, dtype) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``: a view of a free
        buffer when one is large enough, else a new array."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype=dtype)
        with self._lock:
            fits = [k for k, b in enumerate(self._free) if b.nbytes >= nbytes]
            if fits:  # (kept smallest first)
                buffer = self._free.pop(fits[0])
                self.reused += 1
                return buffer[:nbytes].view(dtype).reshape(shape)
            array = np.empty(shape, dtype=dtype)
            self._made[id(array)] = array
            return array

    def give_back(self, *arrays: np.ndarray | None, keep: tuple = ()) -> None:
        """Keep the memory of ``arrays`` (or of the arrays they are views of) for later calls
        of :meth:`empty` when this pool handed it out, except memory that an array of ``keep``
        still uses. The caller must hold the only other use of that memory."""
        for array in arrays:
            root = _root(array)
            if root is None or self._made.get(id(root)) is not root:
                continue
            if any(np.may_share_memory(root, k) for k in keep):
                continue
            buffer = root.reshape(-1).view(np.uint8)
            with self._lock:
                if any(np.may_share_memory(b, buffer) for b in self._free):
                    continue  # given back twice (two views of one buffer)
                self._free.append(buffer)
                self._free.sort(key=lambda b: b.nbytes)
                while sum(b.nbytes for b in self._free) > self.max_free_bytes:
                    self._free.pop()  # the largest

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


def _root(array) -> np.ndarray | None:
    """The array that owns the memory ``array`` views (None for anything but a numpy array)."""
    if not isinstance(array, np.ndarray):
        return None
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


_pool: ProcessShared[BufferPool] = ProcessShared(BufferPool.clear)


@contextmanager
def reuse_buffers() -> Iterator[BufferPool]:
    """While the block runs (in any thread of the process), :func:`empty` and
    :func:`give_back` use one pool; nested or concurrent blocks share it, and its buffers are
    released when the last one ends."""
    with _pool.use(BufferPool) as pool:
        yield pool


def empty(shape, dtype) -> np.ndarray:
    """``numpy.empty``, from the active pool's free buffers when :func:`reuse_buffers` is on."""
    pool = _pool.current
    return pool.empty(shape, dtype) if pool is not None else np.empty(shape, dtype=dtype)


def give_back(*arrays: np.ndarray | None, keep: tuple = ()) -> None:
    """Hand ``arrays`` to the active pool (nothing happens without one), except memory the
    arrays of ``keep`` use. The caller must be done with them and hold the only other use of
    their memory: it will be overwritten."""
    pool = _pool.current
    if pool is not None:
        pool.give_back(*arrays, keep=keep)
