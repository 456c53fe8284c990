"""Order statistics and means over the clear observations of each pixel: median, percentiles,
mean, from one sort of each pixel's time series (Batcher sorting network) in pixel blocks.

numpy arrays in and out, over ``(time, y, x)`` stacks; the loops are compiled
(:mod:`stacube.algo.jit`). See :func:`reduce_stack`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import tempfile
import threading
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from stacube.algo import aot
from stacube.algo.blocks import LANES, run_blocks, sum_dtype, task_size


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


@lru_cache(maxsize=None)
def comparators(n: int, top: int | None = None) -> np.ndarray:
    """The comparators of :func:`sorting_network` ``(n)`` that place the ``top + 1`` smallest
    values in order (all of them by default), as an int32 ``(k, 2)`` array.

    A comparator is kept when one of its outputs is needed by a later kept comparator or is a
    wanted position; the median of up to ``n`` values needs about 90 % of the full network.
    """
    need = set(range(n if top is None else min(n, top + 1)))
    kept = []
    for a, b in reversed(sorting_network(n)):
        if a in need or b in need:
            kept.append((a, b))
            need.update((a, b))
    return np.array(kept[::-1], dtype=np.int32).reshape(-1, 2)


_JIT = None
_NUMBA = None
_LOAD_LOCK = threading.RLock()  # tiles on threads: numba's set-up once per process


def compiled():
    """The compiled loops, loaded on first use: those compiled ahead of time for the current
    source and CPU (:mod:`stacube.algo.aot`, no numba in the process) when built, else
    :func:`jit_loops`. Both have the functions of :mod:`stacube.algo.jit` and ``LANES``."""
    global _JIT
    if _JIT is not None:
        return _JIT
    with _LOAD_LOCK:
        if _JIT is None:
            _JIT = aot.load(jit_loops) or jit_loops()
        return _JIT


def jit_loops():
    """:mod:`stacube.algo.jit`, imported (numba's set-up, ~0.35 s) on first use.

    numba caches the machine code next to the module, or, where that folder is read-only (a
    Lambda image), under ``$NUMBA_CACHE_DIR`` (default: a ``stacube-numba`` folder in the
    temporary directory).
    """
    global _NUMBA
    if _NUMBA is not None:
        return _NUMBA
    with _LOAD_LOCK:
        if _NUMBA is not None:  # loaded by another thread meanwhile
            return _NUMBA
        here = os.path.dirname(os.path.abspath(__file__))
        cache = os.path.join(here, "__pycache__")
        if "NUMBA_CACHE_DIR" not in os.environ and not os.access(cache if os.path.isdir(cache) else here, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "stacube-numba")
        from stacube.algo import jit  # lazy: numba's import only when a loop runs through it

        _load_numba_array_registry()
        _NUMBA = jit
        return _NUMBA


class _NoScipyLinalg:
    """A meta path finder that makes ``import scipy.linalg`` fail in one thread only."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name, path=None, target=None):
        if name == "scipy.linalg" and threading.get_ident() == self.thread:
            raise ImportError("scipy.linalg is not imported for numba's BLAS probe")
        return None


def _load_numba_array_registry() -> None:
    """Import ``numba.np.arraymath`` (which numba imports on its first compilation or cache
    load) without its BLAS probe.

    That module imports ``scipy.linalg`` (0.1-0.2 s of CPU, a third of numba's set-up) only to
    set ``_HAVE_BLAS``, which decides whether ``np.correlate``/``np.convolve`` in compiled code
    call BLAS (numba/np/arraymath.py, ``_check_blas``); the loops here use neither. The import
    of ``scipy.linalg`` fails for this thread only while the module loads, then ``_HAVE_BLAS``
    is set to what the probe would have found (scipy installed), so compiled code elsewhere in
    the process behaves as numba intends (``np.dot`` imports ``scipy.linalg`` itself when
    first compiled).
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    finder = _NoScipyLinalg()
    sys.meta_path.insert(0, finder)
    try:
        from numba.np import arraymath
    finally:
        sys.meta_path.remove(finder)
    if not arraymath._HAVE_BLAS and importlib.util.find_spec("scipy") is not None:
        arraymath._HAVE_BLAS = True


#: Bytes of one block of work values (``t`` values per pixel): it stays in the second-level
#: cache of one core while it is filled, sorted and read.
BLOCK_BYTES = 256 << 10


def flat(stack: np.ndarray) -> np.ndarray:
    """``(t, y, x)`` as a C-contiguous ``(t, y * x)`` array (a view when the stack is one)."""
    return np.ascontiguousarray(stack).reshape(stack.shape[0], -1)


def block_pixels(t: int, itemsize: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Pixels per block: ``block_bytes`` of ``t`` values each, a multiple of the SIMD lanes."""
    lanes = LANES
    return max(lanes, block_bytes // max(1, t * itemsize) // lanes * lanes)


def kernel_input(stack: np.ndarray, nodata) -> tuple[np.ndarray, object, bool, object]:
    """``(values, nodata, use_nodata, sentinel)`` for the compiled loops: the flattened stack
    (float16 widened to float32), ``nodata`` in its dtype (unused when None, NaN or not
    representable), and the value that sorts after every observation."""
    values = flat(stack if stack.dtype != np.float16 else stack.astype(np.float32))
    dtype = values.dtype
    if dtype.kind == "f":
        use = nodata is not None and not np.isnan(nodata)
        return values, dtype.type(nodata if use else 0), use, dtype.type(np.inf)
    if dtype.kind not in "uib":
        raise ValueError(f"cannot composite values of dtype {dtype}")
    info = np.iinfo(dtype)
    use = (nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata))
           and float(nodata).is_integer() and info.min <= nodata <= info.max)
    return values, dtype.type(nodata if use else 0), use, dtype.type(info.max)


def reduce_stack(
    bands: Mapping[str, np.ndarray],
    clear: np.ndarray,
    *,
    method: str,
    q: float = 50.0,
    nodata: Mapping[str, float | int | None] | None = None,
    block_bytes: int = BLOCK_BYTES,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Median, percentile or mean over the clear observations of each pixel, for several bands.

    Values equal to a band's ``nodata`` (and NaN, +-inf) are not observations. The image is
    processed in blocks of ``block_bytes`` of values, on ``threads`` threads (the compiled
    loops run without the GIL). For the median and percentiles, values that are not clear
    observations get a sentinel that sorts last (the dtype's maximum, or +inf), each pixel's
    series is sorted with the comparators of :func:`comparators` (``LANES`` pixels at once), and
    the order statistics around rank ``(n - 1) * q / 100`` of the first ``n`` values are
    interpolated linearly, as ``numpy.percentile`` (``linear`` method) does; the median is
    ``q = 50`` (the mean of the two middle values for an even ``n``, as ``numpy.median``).
    Integer stacks are sorted in their own dtype.

    Args:
        bands: ``{name: (t, y, x)}`` arrays, integer or float.
        clear: bool ``(t, y, x)``.
        method: ``median``, ``percentile`` (with ``q`` in 0..100) or ``mean``.
        threads: threads (default: one per core).

    Returns:
        ``{band: float32 (y, x)}``, NaN where a pixel has no clear observation.

    Raises:
        ValueError: ``q`` outside 0..100, or a stack that is neither integer nor float.
    """
    if method == "median":
        q = 50.0
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    if method not in ("median", "percentile", "mean"):
        raise ValueError(f"not a reduction: {method}")
    nodata = dict(nodata or {})
    jit = compiled()
    t, ny, nx = clear.shape
    ok = flat(clear)
    if not bands:
        return {}
    results = {name: np.empty(ny * nx, dtype=np.float32) for name in bands}
    if t == 0:
        for result in results.values():
            result[:] = np.nan
        return {name: result.reshape(ny, nx) for name, result in results.items()}
    pairs = comparators(t, min(t - 1, math.floor((t - 1) * q / 100.0) + 1)) if method != "mean" else None

    def band(stack: np.ndarray, band_nodata, result: np.ndarray):
        """The compiled call of one band over pixels ``p0:p1``."""
        values, nd, use, sentinel = kernel_input(stack, band_nodata)
        block = block_pixels(t, values.dtype.itemsize, block_bytes)
        if method == "mean":
            acc = sum_dtype(values.dtype, t)
            return lambda p0, p1: jit.mean(values, ok, nd, use, np.empty(block, dtype=acc), result, p0, p1, block)
        return lambda p0, p1: jit.order_statistic(values, ok, nd, use, sentinel, pairs, q, result, p0, p1, block)

    calls = [band(stack, nodata.get(name), results[name]) for name, stack in bands.items()]

    def task(p0: int, p1: int) -> None:
        for call in calls:
            call(p0, p1)

    # one dispatch for every band: each task works through several blocks of each band with one
    # work buffer (few allocations, few calls), and the threads wait for each other once
    block = block_pixels(t, max(np.dtype(s.dtype).itemsize for s in bands.values()), block_bytes)
    run_blocks(task, ny * nx, task_size(ny * nx, block, threads, per_thread=8), threads)
    return {name: result.reshape(ny, nx) for name, result in results.items()}


def median(stack: np.ndarray, clear: np.ndarray, *, nodata=None, **kw) -> np.ndarray:
    """Median of one band over its clear observations (see :func:`reduce_stack`)."""
    return reduce_stack({"v": stack}, clear, method="median", nodata={"v": nodata}, **kw)["v"]


def mean(stack: np.ndarray, clear: np.ndarray, *, nodata=None, **kw) -> np.ndarray:
    """Mean of one band over its clear observations (see :func:`reduce_stack`)."""
    return reduce_stack({"v": stack}, clear, method="mean", nodata={"v": nodata}, **kw)["v"]
