"""Compositing kernels beyond selection, median and mean: percentiles, the geometric median,
the medoid and max-NDVI. Pure numpy over ``(time, y, x)`` stacks, processed in row blocks;
:func:`stacube.algo.composite.composite` dispatches to them.

Inputs follow :mod:`stacube.algo.composite`: one stack per band (any numeric dtype; NaN and the
band's ``nodata`` are not observations) and the boolean ``clear`` stack decoded from the quality
band. Every method here uses clear observations only: a pixel with none gets NaN (statistical
methods) or ``-1`` as its chosen slice (selection methods), never a cloudy value.

Sources:

* percentiles - ``numpy.percentile``'s default (``linear``, Hyndman & Fan 1996 definition 7):
  rank ``(n - 1) * q / 100`` among the ``n`` sorted clear values, linear between neighbours;
* geometric median - Roberts, Mueller & McIntyre (2017), *High-dimensional pixel composites from
  Earth observation time series*, IEEE TGRS 55(11) 6254-6264, computed by
  ``geomad.nangeomedian_pcm`` (Geoscience Australia's maintained Cython implementation of the
  paper's modified Weiszfeld iteration; the function odc-algo's ``xr_geomedian`` calls);
* medoid - Flood (2013), *Seasonal composite Landsat TM/ETM+ images using the medoid (a
  multi-dimensional median)*, Remote Sensing 5(12) 6481-6500: the observation minimising the sum
  of Euclidean distances (band space) to the other observations;
* max-NDVI - the maximum-value composite of Holben (1986), *Characteristics of maximum-value
  composite images from temporal AVHRR data*, IJRS 7(11) 1417-1434, with NDVI from spyndex
  (:mod:`stacube.core.indices`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import numpy as np

from stacube.algo.blocks import PROVENANCE_NODATA, day_of_year, gather, run_blocks, valid_mask
from stacube.algo.reduce import reduce_stack
from stacube.core.indices import get_index

#: Geometric median convergence: stop when an iteration moves the estimate less than this
#: (physical units; odc-algo's ``xr_geomedian`` default), or after this many iterations.
GEOMEDIAN_EPS = 1e-6
GEOMEDIAN_MAXITERS = 1000


def _check(bands: Mapping[str, np.ndarray], clear: np.ndarray) -> None:
    if not bands:
        raise ValueError("no band to composite")
    for name, stack in bands.items():
        if stack.shape != clear.shape:
            raise ValueError(f"band {name} has shape {stack.shape}, expected {clear.shape}")


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """float32 when it holds the values exactly (float32, 8/16-bit ints), else float64."""
    if dtype == np.float32 or (dtype.kind in "ui" and dtype.itemsize <= 2):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


# -- percentiles ------------------------------------------------------------------------------
def percentiles(
    bands: Mapping[str, np.ndarray],
    clear: np.ndarray,
    *,
    q: float,
    nodata: Mapping[str, float | int | None] | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """The ``q``-th percentile of each pixel's clear observations, per band.

    Computed by :func:`stacube.algo.reduce.reduce_stack` (sorting-network order statistics,
    interpolated linearly as ``numpy.percentile(values, q)`` over the ``n`` clear values).

    Args:
        bands: ``{name: (t, y, x)}`` arrays, any numeric dtype.
        clear: bool ``(t, y, x)``.
        q: percentile in ``[0, 100]``.
        nodata: per band value that is not an observation.

    Returns:
        ``{band: float32 (y, x)}``; NaN where a pixel has no clear observation.

    Raises:
        ValueError: ``q`` outside 0..100 or shape mismatch.
    """
    _check(bands, clear)
    return reduce_stack(bands, clear, method="percentile", q=q, nodata=nodata, threads=threads)


# -- geometric median -------------------------------------------------------------------------
def geomedian_input(bands: Mapping[str, np.ndarray], clear: np.ndarray, r0: int, r1: int,
                    nodata: Mapping[str, float | int | None] | None = None,
                    work: dict | None = None) -> np.ndarray:
    """Rows ``r0:r1`` as geomad's input: C-contiguous float32 ``(y, x, band, time)``, NaN in every
    band of an observation that is not clear or has a missing band.

    Built band by band in the stack's own ``(time, pixels)`` layout (multiplied by a 1/NaN
    factor: one pass), then one transposed copy per band into the output. ``work`` (a dict the
    caller keeps per thread) holds the buffers between calls, so blocks reuse memory that is
    already mapped instead of page-faulting fresh allocations.
    """
    nodata = dict(nodata or {})
    names = list(bands)
    t, nx = clear.shape[0], clear.shape[2]
    n = (r1 - r0) * nx
    blocks = [bands[name][:, r0:r1].reshape(t, n) for name in names]
    ok = clear[:, r0:r1].reshape(t, n).copy()
    for name, block in zip(names, blocks):
        if block.dtype.kind == "f":
            ok &= np.isfinite(block)
        value = nodata.get(name)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            ok &= block != value
    factor = np.where(ok, np.float32(1.0), np.float32(np.nan))
    work = {} if work is None else work
    size = n * len(names) * t
    if work.get("x") is None or work["x"].size < size:
        work["x"] = np.empty(size, dtype=np.float32)
        work["scratch"] = np.empty(t * n, dtype=np.float32)
    x = work["x"][:size].reshape(n, len(names), t)
    scratch = work["scratch"][:t * n].reshape(t, n)
    for j, block in enumerate(blocks):
        np.multiply(block, factor, out=scratch, casting="unsafe")
        x[:, j, :] = scratch.T
    return x.reshape(r1 - r0, nx, len(names), t)


def geomedian(
    bands: Mapping[str, np.ndarray],
    clear: np.ndarray,
    *,
    nodata: Mapping[str, float | int | None] | None = None,
    eps: float = GEOMEDIAN_EPS,
    maxiters: int = GEOMEDIAN_MAXITERS,
    block_pixels: int = 1 << 19,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Geometric median of each pixel's clear observations in band space (Roberts et al. 2017).

    The point minimising the sum of Euclidean distances to the clear observations (all bands at
    once, so the result is a spectrally consistent "median" that need not be an observation).
    Computed by ``geomad.nangeomedian_pcm`` on float32 ``(y, x, band, time)`` row blocks of about
    ``block_pixels`` values (cache-sized), ``threads`` blocks at a time, each block built and
    reduced by one thread (geomad runs without the GIL). geomad restarts its iteration from the
    per-band mean at the start of every row, so the result equals a single call on the whole
    image.

    Args:
        bands: ``{name: (t, y, x)}`` arrays (physical values, e.g. reflectance), any dtype.
        clear: bool ``(t, y, x)``.
        nodata: per band value that is not an observation.
        eps: convergence tolerance in the bands' units.
        maxiters: iteration cap.
        threads: blocks reduced at once (default: one per core).

    Returns:
        ``{band: float32 (y, x)}``; NaN where a pixel has no clear observation. With one band it
        is that band's median (for an odd number of observations).

    Raises:
        ValueError: shape mismatch.
    """
    from geomad import nangeomedian_pcm

    _check(bands, clear)
    t, ny, nx = clear.shape
    names = list(bands)
    out = {name: np.empty((ny, nx), dtype=np.float32) for name in names}
    rows = max(1, block_pixels // max(1, nx * len(names) * t))
    local = threading.local()

    def run(r0: int, r1: int) -> None:
        if not hasattr(local, "work"):
            local.work = {}
        x = geomedian_input(bands, clear, r0, r1, nodata, local.work)
        with np.errstate(invalid="ignore", divide="ignore"):
            result = nangeomedian_pcm(x, eps=eps, maxiters=maxiters, num_threads=1)
        for j, name in enumerate(names):
            out[name][r0:r1] = result[:, :, j]

    run_blocks(run, ny, rows, threads if threads is not None else (os.cpu_count() or 1))
    return out


def geomedian_layers(
    layers: Mapping[str, np.ndarray],
    clear: np.ndarray,
    *,
    spectral: Mapping[str, np.ndarray] | None = None,
    nodata: Mapping[str, float | int | None] | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Geometric median of ``spectral`` (default: ``layers``), returned for every name of
    ``layers``: a spectral band directly, a spectral index (name of
    :func:`stacube.core.indices.get_index`) computed from the median's bands, as DEA does.

    Raises:
        ValueError: an index needs a band that ``spectral`` lacks.
    """
    source = spectral if spectral is not None else layers
    median = geomedian(source, clear, nodata=nodata, threads=threads)
    out = {}
    for name in layers:
        if name in median:
            out[name] = median[name]
            continue
        index = get_index(name)
        missing = [c for c in index.bands.values() if c not in median]
        if missing:
            raise ValueError(f"{name} of a geomedian needs bands {', '.join(missing)}")
        out[name] = index.compute({c: median[c] for c in index.bands.values()})
    return out


# -- selection by a per-pixel criterion ------------------------------------------------------
def medoid_choice(
    bands: Mapping[str, np.ndarray],
    clear: np.ndarray,
    *,
    nodata: Mapping[str, float | int | None] | None = None,
    block_rows: int = 16,
    threads: int | None = None,
) -> np.ndarray:
    """Per pixel, the clear observation with the least sum of Euclidean distances (over all
    ``bands``) to the other clear observations (Flood 2013).

    Work is ``O(t**2 * bands)`` per pixel: each pair of observations is measured once and its
    distance added to both.

    Returns:
        int16 ``(y, x)``: chosen slice, -1 where no observation is clear (an observation with a
        missing band is not a candidate). Ties: the earlier slice.
    """
    _check(bands, clear)
    nodata = dict(nodata or {})
    t, ny, nx = clear.shape
    names = list(bands)
    chosen = np.empty((ny, nx), dtype=np.int16)

    def run(r0: int, r1: int) -> None:
        ok = clear[:, r0:r1].reshape(t, -1).copy()
        for name in names:
            ok &= valid_mask(bands[name][:, r0:r1].reshape(t, -1), ok, nodata.get(name))
        x = np.empty((t, ok.shape[1], len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            np.copyto(x[:, :, j], bands[name][:, r0:r1].reshape(t, -1), casting="unsafe")
        x[~ok] = 0.0
        cost = np.zeros(ok.shape, dtype=np.float64)
        for i in range(t - 1):
            diff = x[i + 1:] - x[i]
            dist = np.sqrt(np.einsum("tpb,tpb->tp", diff, diff))
            dist *= ok[i + 1:] & ok[i]
            cost[i] += dist.sum(axis=0)
            cost[i + 1:] += dist
        cost[~ok] = np.inf
        pick = np.argmin(cost, axis=0).astype(np.int16)
        pick[~ok.any(axis=0)] = -1
        chosen[r0:r1] = pick.reshape(r1 - r0, nx)

    run_blocks(run, ny, block_rows, threads)
    return chosen


def max_choice(values: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Per pixel, the clear slice with the largest finite value of ``values`` (float ``(t, y,
    x)``); -1 where none. Ties: the earlier slice."""
    usable = clear & np.isfinite(values)
    pick = np.argmax(np.where(usable, values, -np.inf), axis=0).astype(np.int16)
    pick[~usable.any(axis=0)] = -1
    return pick


def ndvi_stack(spectral: Mapping[str, np.ndarray],
               nodata: Mapping[str, float | int | None] | None = None) -> np.ndarray:
    """NDVI of every slice from the ``red`` and ``nir`` stacks (spyndex formula), float32 with
    NaN where either band is missing.

    Raises:
        ValueError: ``red`` or ``nir`` is not in ``spectral``.
    """
    index = get_index("NDVI")
    nodata = dict(nodata or {})
    arrays = {}
    for common in index.bands.values():
        if common not in spectral:
            raise ValueError(f"max-ndvi needs the {common} band")
        values = np.asarray(spectral[common])
        ok = valid_mask(values, np.ones(values.shape, dtype=bool), nodata.get(common))
        arrays[common] = np.where(ok, values.astype(np.float32), np.float32(np.nan))
    return index.compute(arrays)


def max_ndvi_choice(spectral: Mapping[str, np.ndarray], clear: np.ndarray,
                    nodata: Mapping[str, float | int | None] | None = None) -> np.ndarray:
    """Per pixel, the clear slice with the largest NDVI (see :func:`max_choice`)."""
    return max_choice(ndvi_stack(spectral, nodata), clear)


def select(layers: Mapping[str, np.ndarray], chosen: np.ndarray, times: np.ndarray,
           nodata: Mapping[str, float | int | None] | None = None) -> dict[str, np.ndarray]:
    """Every layer at the chosen slice, plus ``provenance`` (day of year, -1 where none).

    Integer layers keep their dtype and get their ``nodata`` (else 0) where nothing is chosen;
    float layers get NaN.
    """
    nodata = dict(nodata or {})
    out = {}
    for name, stack in layers.items():
        if stack.shape[1:] != chosen.shape:
            raise ValueError(f"band {name} has shape {stack.shape}, expected (t, {chosen.shape})")
        fill = np.nan if stack.dtype.kind == "f" else nodata.get(name, 0)
        out[name] = gather(stack, chosen, fill)
    provenance = np.full(chosen.shape, PROVENANCE_NODATA, dtype=np.int16)
    picked = chosen >= 0
    provenance[picked] = day_of_year(times)[chosen[picked]]
    out["provenance"] = provenance
    return out
