"""Row-block helpers of the compositing kernels: run a function over row blocks on threads,
validity of observations, gathering the chosen slice, days of year, the
mean's sum dtype.

Pure numpy; the kernels of :mod:`stacube.algo.composite`, :mod:`stacube.algo.reduce` and
:mod:`stacube.algo.methods` share them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: ``provenance`` where no observation was chosen.
PROVENANCE_NODATA = -1
#: Pixels the compiled loops sort side by side (a multiple of the widest SIMD register in 16-bit
#: lanes); blocks of pixels are multiples of it.
LANES = 64


def sum_dtype(dtype: np.dtype, t: int) -> np.dtype:
    """The dtype the mean kernel sums ``t`` values of ``dtype`` in: uint32 / int32 for 8 and 16-bit
    integers while ``t`` values cannot overflow it (exact), else float64."""
    if dtype.kind in "ui" and dtype.itemsize <= 2:
        acc = np.dtype(np.uint32 if dtype.kind == "u" else np.int32)
        if t * max(abs(int(np.iinfo(dtype).min)), int(np.iinfo(dtype).max)) <= np.iinfo(acc).max:
            return acc
    return np.dtype(np.float64)


def gather(stack: np.ndarray, chosen: np.ndarray, fill) -> np.ndarray:
    """``stack[chosen[y, x], y, x]``, ``fill`` where ``chosen`` is -1."""
    index = np.maximum(chosen, 0).astype(np.intp)[None]
    out = np.take_along_axis(stack, index, axis=0)[0]
    out[chosen < 0] = fill
    return out


def _blocks(ny: int, block_rows: int) -> list[tuple[int, int]]:
    return [(r0, min(ny, r0 + block_rows)) for r0 in range(0, ny, block_rows)]


def run_blocks(func, ny: int, block_rows: int, threads: int | None) -> None:
    """Run ``func(r0, r1)`` over blocks of ``block_rows`` rows (or pixels) of ``ny``, on threads
    (numpy and the compiled loops release the GIL)."""
    blocks = _blocks(ny, block_rows)
    workers = threads if threads is not None else min(len(blocks), os.cpu_count() or 1)
    if workers <= 1 or len(blocks) == 1:
        for b in blocks:
            func(*b)
        return
    # numpy releases the GIL in sort, copy and ufunc loops: row blocks run in parallel.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda b: func(*b), blocks))


def task_size(n: int, block: int, threads: int | None, per_thread: int = 4) -> int:
    """Pixels of one task of :func:`run_blocks` over ``n`` pixels: about ``per_thread`` tasks per
    thread (enough to even out blocks of unequal cost), a multiple of ``block``. A compiled loop
    that walks its own ``block``-sized blocks then runs a thread's share in a few calls: no
    hand-over between threads (and no GIL to take back) for every block."""
    workers = threads if threads is not None else (os.cpu_count() or 1)
    tasks = max(1, workers * per_thread)
    return max(block, -(-n // tasks // block) * block) if workers > 1 else max(n, 1)


def valid_mask(cols: np.ndarray, clear_cols: np.ndarray, nodata) -> np.ndarray:
    """``clear_cols`` and finite and not ``nodata`` (``clear_cols`` itself when nothing changes)."""
    ok = clear_cols
    if cols.dtype.kind == "f":
        ok = ok & np.isfinite(cols)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        ok = ok & (cols != nodata)
    return ok


def day_of_year(times: np.ndarray) -> np.ndarray:
    """Day of year (1..366) of each ``datetime64``, int16."""
    days = np.asarray(times).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    return ((days - years).astype(np.int64) + 1).astype(np.int16)
