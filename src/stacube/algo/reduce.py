"""Order statistics and means over the clear observations of each pixel: median, percentiles,
mean, from one sort of each pixel's time series (Batcher sorting network) in row blocks.

Pure numpy over ``(time, y, x)`` stacks; see :func:`reduce_stack`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from stacube.algo.blocks import run_blocks, valid_mask


def _work_dtype(stack: np.ndarray) -> tuple[np.dtype, float | int]:
    """Dtype and sentinel used while sorting: the sentinel sorts after every value.

    Integer stacks keep their dtype when their largest value is below the dtype's maximum
    (the maximum becomes the sentinel); otherwise they are widened.
    """
    dtype = stack.dtype
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64), np.inf
    if dtype.kind in "ui" and dtype.itemsize <= 4:
        top = np.iinfo(dtype).max
        if stack.size and stack.max() < top:
            return dtype, top
        wide = np.dtype(np.int64)
        return wide, np.iinfo(wide).max
    return np.dtype(np.float64), np.nan


@lru_cache(maxsize=None)
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(i, j)`` (``i < j``) of Batcher's odd-even merge sort for ``n`` inputs.

    Built for the next power of two and pruned to the first ``n`` inputs (the missing inputs
    act as +infinity, so comparators touching them are no-ops). Source: K. E. Batcher, "Sorting
    networks and their applications", AFIPS Spring Joint Computer Conference 1968.
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


def network_sort(block: np.ndarray) -> np.ndarray:
    """Sort a ``(t, pixels)`` block along its first axis in place with a sorting network.

    Each comparator is one vectorised ``minimum``/``maximum`` over all pixels: no transpose, and
    SIMD-friendly for small ``t`` (tens of dates), where it beats ``numpy.sort`` per pixel.
    """
    low = np.empty_like(block[0])
    for a, b in sorting_network(block.shape[0]):
        np.minimum(block[a], block[b], out=low)
        np.maximum(block[a], block[b], out=block[b])
        block[a] = low
    return block


def reduce_stack(
    bands: Mapping[str, np.ndarray],
    clear: np.ndarray,
    *,
    method: str,
    q: float = 50.0,
    nodata: Mapping[str, float | int | None] | None = None,
    block_pixels: int = 16384,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Median, percentile or mean over the clear observations of each pixel, for several bands.

    Values equal to a band's ``nodata`` (and NaN) are not observations. The image is processed
    in blocks of about ``block_pixels`` pixels, kept as ``(time, pixels)``. For the median and
    percentiles, values that are not clear observations get a sentinel that sorts last (the
    dtype's maximum, or +inf), the block is sorted with :func:`network_sort`, and the order
    statistics around rank ``(n - 1) * q / 100`` of the first ``n`` values are interpolated
    linearly, as ``numpy.percentile`` (``linear`` method) does; the median is ``q = 50``.

    Args:
        method: ``median``, ``percentile`` (with ``q`` in 0..100) or ``mean``.

    Returns:
        ``{band: float32 (y, x)}``, NaN where a pixel has no clear observation.

    Raises:
        ValueError: ``q`` outside 0..100.
    """
    if method == "median":
        q = 50.0
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    nodata = dict(nodata or {})
    t, ny, nx = clear.shape
    out = {name: np.empty((ny, nx), dtype=np.float32) for name in bands}
    work = {name: _work_dtype(stack) for name, stack in bands.items()}
    rows = max(1, block_pixels // max(nx, 1))

    def run(r0: int, r1: int) -> None:
        clear_block = clear[:, r0:r1].reshape(t, -1)
        shared_n = None
        for name, stack in bands.items():
            dtype, sentinel = work[name]
            block = stack[:, r0:r1].reshape(t, -1).astype(dtype, copy=True)
            ok = valid_mask(block, clear_block, nodata.get(name))
            if ok is clear_block:
                if shared_n is None:
                    shared_n = np.count_nonzero(clear_block, axis=0)
                n = shared_n
            else:
                n = np.count_nonzero(ok, axis=0)
            if method in ("median", "percentile"):
                np.copyto(block, sentinel, where=~ok)
                network_sort(block)
                last = np.maximum(n - 1, 0)
                rank = last * (q / 100.0)
                lo = np.minimum(np.floor(rank).astype(np.intp), last)
                hi = np.minimum(lo + 1, last)
                frac = rank - lo
                a = np.take_along_axis(block, lo[None], axis=0)[0].astype(np.float64)
                b = np.take_along_axis(block, hi[None], axis=0)[0].astype(np.float64)
                with np.errstate(invalid="ignore"):
                    # numpy's lerp: exact at both ends, monotonic in frac
                    value = np.where(frac >= 0.5, b - (b - a) * (1.0 - frac), a + (b - a) * frac)
                value = value.astype(np.float32)
            else:
                np.copyto(block, 0, where=~ok)
                total = block.sum(axis=0, dtype=np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    value = (total / np.maximum(n, 1)).astype(np.float32)
            value[n == 0] = np.nan
            out[name][r0:r1] = value.reshape(r1 - r0, nx)

    run_blocks(run, ny, rows, threads)
    return out


def median(stack: np.ndarray, clear: np.ndarray, *, nodata=None, **kw) -> np.ndarray:
    """Median of one band over its clear observations (see :func:`reduce_stack`)."""
    return reduce_stack({"v": stack}, clear, method="median", nodata={"v": nodata}, **kw)["v"]


def mean(stack: np.ndarray, clear: np.ndarray, *, nodata=None, **kw) -> np.ndarray:
    """Mean of one band over its clear observations (see :func:`reduce_stack`)."""
    return reduce_stack({"v": stack}, clear, method="mean", nodata={"v": nodata}, **kw)["v"]
