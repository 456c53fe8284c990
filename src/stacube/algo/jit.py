"""Compiled loops of the compositing kernels (numba, ``nogil``), over ``(time, pixels)`` arrays.

Imported on first use by :mod:`stacube.algo.reduce` and :mod:`stacube.algo.composite` (the
compiled code is cached on disk, see :func:`stacube.algo.reduce.jit_loops`), unless the loops
were compiled ahead of time (:mod:`stacube.algo.aot`: the same code, no numba). Every function
works on the pixel range ``p0:p1`` of C-contiguous ``(t, npix)`` arrays and writes only its
own part of the outputs, so row blocks run on several threads at once.

Order statistics sort each pixel's series with a comparator network applied to ``LANES``
pixels side by side: one comparator is a ``min``/``max`` over a contiguous run of ``LANES``
values, which the compiler turns into SIMD instructions; the ``(t, LANES)`` chunk stays in the
first-level cache while it is sorted. Values that are not observations become a sentinel (the
dtype's largest value, or +inf), which sorts after every observation; the count of observations
is kept per pixel, so an observation equal to the sentinel is still counted and its order
statistics stay right.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stacube.algo.blocks import LANES


@njit(nogil=True, cache=True)
def _load(stack, clear, nodata, use_nodata, sentinel, buf, cnt, b0, b1):
    """Copy pixels ``b0:b1`` into ``buf`` (``(chunks, t, LANES)``), the sentinel where a value is
    not a clear, finite, not-``nodata`` observation; ``cnt`` gets the count per pixel.

    Counting compares with the sentinel (two simple loops the compiler vectorises); a block
    where an observation equals the sentinel is counted again exactly.
    """
    t = stack.shape[0]
    chunks = (b1 - b0 + LANES - 1) // LANES
    cnt[:chunks * LANES] = 0
    hits = 0
    for k in range(t):
        for c in range(chunks):
            row = buf[c, k]
            base = b0 + c * LANES
            width = min(LANES, b1 - base)
            src = stack[k, base:base + width]
            mask = clear[k, base:base + width]
            for j in range(width):
                v = src[j]
                ok = mask[j] & ((v - v) == 0) & ((not use_nodata) | (v != nodata))
                row[j] = v if ok else sentinel
                hits += ok & (v == sentinel)
            for j in range(width, LANES):
                row[j] = sentinel
            counted = cnt[c * LANES:(c + 1) * LANES]
            for j in range(LANES):
                counted[j] += row[j] != sentinel
    if hits:
        cnt[:chunks * LANES] = 0
        for k in range(t):
            for i in range(b1 - b0):
                v = stack[k, b0 + i]
                cnt[i] += clear[k, b0 + i] & ((v - v) == 0) & ((not use_nodata) | (v != nodata))
    return chunks


@njit(nogil=True, cache=True)
def _sort_chunks(buf, chunks, pairs):
    """Apply the comparators ``pairs`` (``(n, 2)``, ``i < j``) to every chunk of ``buf``."""
    for c in range(chunks):
        chunk = buf[c]
        for q in range(pairs.shape[0]):
            lo = chunk[pairs[q, 0]]
            hi = chunk[pairs[q, 1]]
            for j in range(LANES):
                x = lo[j]
                y = hi[j]
                lo[j] = min(x, y)
                hi[j] = max(x, y)


@njit(nogil=True, cache=True)
def order_statistic(stack, clear, nodata, use_nodata, sentinel, pairs, q, out, p0, p1, block):
    """Per pixel of ``p0:p1``, the ``q``-th percentile (0..100) of its observations, float32 in
    ``out`` (NaN where there is none): rank ``(n - 1) * q / 100`` among the ``n`` sorted values,
    linear between neighbours as ``numpy.percentile`` (its ``lerp``, computed in float64)."""
    t = stack.shape[0]
    chunks_max = (block + LANES - 1) // LANES
    buf = np.empty((chunks_max, t, LANES), dtype=stack.dtype)
    cnt = np.empty(chunks_max * LANES, dtype=np.int32)
    share = q / 100.0
    median = q == 50.0
    for b0 in range(p0, p1, block):
        b1 = min(p1, b0 + block)
        chunks = _load(stack, clear, nodata, use_nodata, sentinel, buf, cnt, b0, b1)
        _sort_chunks(buf, chunks, pairs)
        for c in range(chunks):
            chunk = buf[c]
            base = b0 + c * LANES
            width = min(LANES, b1 - base)
            if median:
                for j in range(width):
                    n = cnt[c * LANES + j]
                    value = (np.float64(chunk[max(n - 1, 0) >> 1, j]) + np.float64(chunk[n >> 1, j])) * 0.5
                    out[base + j] = value if n else np.nan
                continue
            for j in range(width):
                n = cnt[c * LANES + j]
                last = max(n - 1, 0)
                rank = last * share
                lo = min(int(rank), last)
                hi = min(lo + 1, last)
                frac = rank - lo
                a = np.float64(chunk[lo, j])
                b = np.float64(chunk[hi, j])
                value = b - (b - a) * (1.0 - frac) if frac >= 0.5 else a + (b - a) * frac
                out[base + j] = value if n else np.nan


@njit(nogil=True, cache=True)
def mean(stack, clear, nodata, use_nodata, total, out, p0, p1, block):
    """Per pixel of ``p0:p1``, the mean of its observations, float32 in ``out`` (NaN where there
    is none); ``total`` (``block`` values) is the work buffer of the sums, in the dtype they are
    kept in: float64, or for 8/16-bit integers an integer type wide enough for the whole series
    (exact, like float64 sums of integers, and ~1.4x faster: 16 lanes a SIMD add instead of 8).
    Sums and counts are one loop over contiguous slices, which the compiler vectorises."""
    t = stack.shape[0]
    zero = total.dtype.type(0)
    count = np.empty(block, dtype=np.int32)
    for b0 in range(p0, p1, block):
        b1 = min(p1, b0 + block)
        m = b1 - b0
        tot = total[:m]
        cnt = count[:m]
        tot[:] = zero
        cnt[:] = 0
        for k in range(t):
            src = stack[k, b0:b1]
            mask = clear[k, b0:b1]
            for i in range(m):
                v = src[i]
                ok = mask[i] & ((v - v) == 0) & ((not use_nodata) | (v != nodata))
                tot[i] += total.dtype.type(v) if ok else zero
                cnt[i] += ok
        for i in range(m):
            out[b0 + i] = np.float64(tot[i]) / cnt[i] if cnt[i] else np.nan


@njit(nogil=True, cache=True)
def _first_in_order(mask, order, chosen, b0, b1, left):
    """``chosen[p]`` = the first slice of ``order`` where ``mask`` holds, for pixels of
    ``b0:b1`` still at -1; returns how many are still at -1. Stops when none is left."""
    for i in range(order.shape[0]):
        if left == 0:
            break
        k = order[i]
        row = mask[k, b0:b1]
        pick = chosen[b0:b1]
        taken = 0
        for p in range(b1 - b0):
            c = pick[p]
            take = (c < 0) & row[p]
            pick[p] = k if take else c
            taken += take
        left -= taken
    return left


@njit(nogil=True, cache=True)
def choose(observed, clear, order, fallback, chosen, p0, p1, block):
    """Per pixel of ``p0:p1``, the first clear slice in ``order``; with ``fallback`` the first
    observed one where none is clear; -1 where nothing qualifies (``chosen``: int16)."""
    for b0 in range(p0, p1, block):
        b1 = min(p1, b0 + block)
        chosen[b0:b1] = -1
        left = _first_in_order(clear, order, chosen, b0, b1, b1 - b0)
        if fallback and left:
            _first_in_order(observed, order, chosen, b0, b1, left)


@njit(nogil=True, cache=True)
def gather(stack, chosen, fill, out, p0, p1):
    """``out[p] = stack[chosen[p], p]``, ``fill`` where ``chosen[p]`` is -1, for ``p0:p1``."""
    for p in range(p0, p1):
        c = chosen[p]
        out[p] = stack[c, p] if c >= 0 else fill


@njit(nogil=True, cache=True)
def take(table, index, out, p0, p1):
    """``out[p] = table[index[p]]`` for ``p0:p1``; an index of -1 takes the last entry."""
    for p in range(p0, p1):
        out[p] = table[index[p]]


@njit(nogil=True, cache=True)
def count(observed, clear, valid_count, clear_count, p0, p1, block):
    """Per pixel of ``p0:p1``, the number of observed and of clear slices (``uint16``), both from
    one pass over the ``(t, npix)`` masks in ``block``-pixel blocks (the counts stay in cache)."""
    t = observed.shape[0]
    for b0 in range(p0, p1, block):
        b1 = min(p1, b0 + block)
        seen = valid_count[b0:b1]
        ok = clear_count[b0:b1]
        seen[:] = 0
        ok[:] = 0
        for k in range(t):
            o = observed[k, b0:b1]
            c = clear[k, b0:b1]
            for i in range(b1 - b0):
                seen[i] += o[i]
                ok[i] += c[i]


@njit(nogil=True, cache=True)
def decode(mask, table, low, reference, use_reference, observed, clear, p0, p1):
    """Quality decoding through a lookup table, for pixels ``p0:p1`` of ``(t, npix)`` arrays:
    ``observed = table[mask] & 1`` (and ``reference`` finite, when ``use_reference``),
    ``clear = observed & (table[mask] & 2)``; ``table`` is indexed by ``mask - low`` where
    ``low`` is the smallest value of the mask's dtype (the table covers the whole dtype).

    Per slice, the table lookups (a gather, one value at a time) fill a small buffer first; the
    masks are then computed from it in a loop the compiler vectorises (2-3x faster than both in
    one loop: 1.2-1.5 ns against 3.3-5.1 ns a pixel, 68 x 1024² uint8 codes).
    """
    t = mask.shape[0]
    codes = np.empty(p1 - p0, dtype=np.uint8)
    for k in range(t):
        m = mask[k, p0:p1]
        seen = observed[k, p0:p1]
        ok = clear[k, p0:p1]
        for p in range(p1 - p0):
            codes[p] = table[np.int64(m[p]) - low]
        if use_reference:
            r = reference[k, p0:p1]
            for p in range(p1 - p0):
                v = r[p]
                finite = (v - v) == 0
                seen[p] = finite & ((codes[p] & 1) != 0)
                ok[p] = finite & ((codes[p] & 3) == 3)
        else:
            for p in range(p1 - p0):
                seen[p] = (codes[p] & 1) != 0
                ok[p] = (codes[p] & 3) == 3

