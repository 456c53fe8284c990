"""Compositing kernels: pure numpy over ``(time, y, x)`` stacks, processed in row blocks.

Inputs are a stack per band plus two boolean stacks decoded from the quality band:
``observed`` (not fill, not nodata) and ``clear`` (observed and the quality rule says clear).

Methods (the Open Data Cube / Brazil Data Cube behaviours):

* ``most-recent`` / ``least-recent``: per pixel, the latest / earliest clear observation;
* ``best-pixel``: scenes ranked by their clear ratio over the area (highest first, ties broken by
  the more recent date); per pixel the first clear observation in rank order, else the first
  observation in rank order (cloudy or not), else nodata. This is cube-builder's ``blend``
  best-pixel stack (``cube_builder/utils/processing.py``), vectorised;
* ``median`` / ``mean``: over clear observations only; NaN where there are none. The median of
  an even count is the mean of the two middle values (as ``numpy.median``).

Extra outputs: ``provenance`` (day of year of the chosen observation, int16, -1 where none) for
the selection methods; ``clear_count`` and ``valid_count`` (uint16) for every method.

More methods live in :mod:`stacube.cube.methods` and are dispatched from :func:`composite`:
percentiles ``pNN``, ``geomedian`` (Roberts et al. 2017, through geomad), ``medoid`` (Flood
2013) and ``max-ndvi``; all use clear observations only.

Selection keeps the input dtype (integer outputs carry the band's nodata, float outputs NaN);
median and mean return float32. Work arrays are bounded by one block of pixels at a time, so
peak memory stays close to the input stack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SELECTION = ("most-recent", "least-recent", "best-pixel")
STATISTICAL = ("median", "mean")
#: Chosen per pixel by a criterion over several bands, clear observations only (no fallback).
MULTIBAND_SELECTION = ("max-ndvi", "medoid")
PROVENANCE_NODATA = -1


def selection_order(method: str, times: np.ndarray, clear_ratio: np.ndarray | None = None) -> np.ndarray:
    """The order in which slices are tried per pixel.

    Args:
        method: ``most-recent``, ``least-recent`` or ``best-pixel``.
        times: ``datetime64`` array, one per slice.
        clear_ratio: per-slice clear share of the area (best-pixel only).

    Returns:
        int64 array of slice indices, first tried first.
    """
    times = np.asarray(times).astype("datetime64[ns]").astype(np.int64)
    t = np.arange(len(times))
    if method == "most-recent":
        return np.lexsort((-t, -times))
    if method == "least-recent":
        return np.lexsort((t, times))
    if method == "best-pixel":
        if clear_ratio is None:
            raise ValueError("best-pixel needs the clear ratio of each slice")
        return np.lexsort((-t, -times, -np.asarray(clear_ratio, dtype=np.float64)))
    raise ValueError(f"not a selection method: {method}")


def choose(observed: np.ndarray, clear: np.ndarray, order: np.ndarray, *, fallback: bool) -> np.ndarray:
    """Per pixel, the slice chosen: the first clear one in ``order``; with ``fallback`` the first
    observed one where none is clear.

    Args:
        observed, clear: bool ``(t, y, x)``.
        order: slice indices, first tried first.
        fallback: best-pixel's rule for pixels with no clear observation.

    Returns:
        int16 ``(y, x)``: slice index, -1 where nothing qualifies.
    """
    chosen = np.full(observed.shape[1:], -1, dtype=np.int16)
    free = np.ones(observed.shape[1:], dtype=bool)
    passes = [clear, observed] if fallback else [clear]
    for stack in passes:
        for k in order:
            take = stack[k] & free
            chosen[take] = k
            free &= ~take
    return chosen


def gather(stack: np.ndarray, chosen: np.ndarray, fill) -> np.ndarray:
    """``stack[chosen[y, x], y, x]``, ``fill`` where ``chosen`` is -1."""
    index = np.maximum(chosen, 0).astype(np.intp)[None]
    out = np.take_along_axis(stack, index, axis=0)[0]
    out[chosen < 0] = fill
    return out


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


def _blocks(ny: int, block_rows: int) -> list[tuple[int, int]]:
    return [(r0, min(ny, r0 + block_rows)) for r0 in range(0, ny, block_rows)]


def run_blocks(func, ny: int, block_rows: int, threads: int | None) -> None:
    """Run ``func(r0, r1)`` over row blocks, on threads (numpy releases the GIL in its loops)."""
    blocks = _blocks(ny, block_rows)
    workers = threads if threads is not None else min(len(blocks), os.cpu_count() or 1)
    if workers <= 1 or len(blocks) == 1:
        for b in blocks:
            func(*b)
        return
    # numpy releases the GIL in sort, copy and ufunc loops: row blocks run in parallel.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda b: func(*b), blocks))


def valid_mask(cols: np.ndarray, clear_cols: np.ndarray, nodata) -> np.ndarray:
    """``clear_cols`` and finite and not ``nodata`` (``clear_cols`` itself when nothing changes)."""
    ok = clear_cols
    if cols.dtype.kind == "f":
        ok = ok & np.isfinite(cols)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        ok = ok & (cols != nodata)
    return ok


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


def day_of_year(times: np.ndarray) -> np.ndarray:
    """Day of year (1..366) of each ``datetime64``, int16."""
    days = np.asarray(times).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    return ((days - years).astype(np.int64) + 1).astype(np.int16)


def composite(
    bands: Mapping[str, np.ndarray],
    observed: np.ndarray,
    clear: np.ndarray,
    *,
    method: str,
    times: np.ndarray,
    clear_ratio: np.ndarray | None = None,
    nodata: Mapping[str, float | int | None] | None = None,
    threads: int | None = None,
    spectral: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Composite every band of a stack.

    Args:
        bands: ``{name: (t, y, x) array}``; any numeric dtype.
        observed, clear: bool ``(t, y, x)``.
        method: one of :data:`SELECTION`, :data:`STATISTICAL`, :data:`MULTIBAND_SELECTION`,
            ``geomedian`` or ``pNN`` (a percentile, ``p0``..``p100``).
        times: ``datetime64`` per slice (ordering and provenance).
        clear_ratio: per-slice clear share of the whole area (best-pixel ranking).
        nodata: per band nodata of integer inputs (the fill of selection outputs).
        threads: threads for median/mean row blocks (default: one per core).
        spectral: the reflectance bands ``medoid``, ``max-ndvi`` (``red``, ``nir``) and
            ``geomedian`` work in (default: ``bands``). A geomedian's layers that are not in
            ``spectral`` are spectral indices, computed from the median's bands.

    Returns:
        ``{band: (y, x)}`` plus ``provenance`` (selection methods), ``clear_count`` and
        ``valid_count``.

    Raises:
        ValueError: unknown method or shape mismatch.
    """
    from stacube.cube import methods

    nodata = dict(nodata or {})
    shape = observed.shape
    if clear.shape != shape:
        raise ValueError("observed and clear must have the same shape")
    out: dict[str, np.ndarray] = {}
    if method in SELECTION:
        order = selection_order(method, times, clear_ratio)
        doy = day_of_year(times)
        fills = {}
        for name, stack in bands.items():
            if stack.shape != shape:
                raise ValueError(f"band {name} has shape {stack.shape}, expected {shape}")
            fills[name] = np.nan if stack.dtype.kind == "f" else nodata.get(name, 0)
            out[name] = np.empty(shape[1:], dtype=stack.dtype)
        provenance = np.empty(shape[1:], dtype=np.int16)

        def run(r0: int, r1: int) -> None:
            chosen = choose(observed[:, r0:r1], clear[:, r0:r1], order, fallback=method == "best-pixel")
            for name, stack in bands.items():
                out[name][r0:r1] = gather(stack[:, r0:r1], chosen, fills[name])
            picked = chosen >= 0
            block = np.full(chosen.shape, PROVENANCE_NODATA, dtype=np.int16)
            block[picked] = doy[chosen[picked]]
            provenance[r0:r1] = block

        run_blocks(run, shape[1], max(1, 65536 // max(shape[2], 1)), threads)
        out["provenance"] = provenance
    elif method in STATISTICAL:
        for name, stack in bands.items():
            if stack.shape != shape:
                raise ValueError(f"band {name} has shape {stack.shape}, expected {shape}")
        out.update(reduce_stack(bands, clear, method=method, nodata=nodata, threads=threads))
    elif method in MULTIBAND_SELECTION or method == "geomedian" or methods.percentile_of(method) is not None:
        for name, stack in bands.items():
            if stack.shape != shape:
                raise ValueError(f"band {name} has shape {stack.shape}, expected {shape}")
        source = spectral if spectral is not None else bands
        if method == "max-ndvi":
            out.update(methods.select(bands, methods.max_ndvi_choice(source, clear, nodata), times, nodata))
        elif method == "medoid":
            chosen = methods.medoid_choice(source, clear, nodata=nodata, threads=threads)
            out.update(methods.select(bands, chosen, times, nodata))
        elif method == "geomedian":
            out.update(methods.geomedian_layers(bands, clear, spectral=spectral, nodata=nodata, threads=threads))
        else:
            out.update(methods.percentiles(bands, clear, q=methods.percentile_of(method), nodata=nodata,
                                           threads=threads))
    else:
        raise ValueError(f"unknown method {method!r}")
    out["clear_count"] = clear.sum(axis=0, dtype=np.uint16)
    out["valid_count"] = observed.sum(axis=0, dtype=np.uint16)
    return out
