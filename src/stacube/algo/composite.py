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

More methods live in :mod:`stacube.algo.methods` and are dispatched from :func:`composite`:
percentiles ``pNN``, ``geomedian`` (Roberts et al. 2017, through geomad), ``medoid`` (Flood
2013) and ``max-ndvi``; all use clear observations only.

Selection keeps the input dtype (integer outputs carry the band's nodata, float outputs NaN);
median and mean return float32. Work arrays are bounded by one block of pixels at a time, so
peak memory stays close to the input stack.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stacube.algo import methods
from stacube.algo.blocks import PROVENANCE_NODATA, day_of_year, run_blocks, task_size
from stacube.algo.reduce import compiled, flat, mean, median, reduce_stack
from stacube.core.methods import MULTIBAND_SELECTION, SELECTION, STATISTICAL, percentile_of

#: Pixels of one block of the selection loops (its masks are read slice by slice).
SELECTION_BLOCK = 1 << 15

__all__ = ["PROVENANCE_NODATA", "choose", "composite", "count_stack", "mean", "median", "select_stack",
           "selection_order"]


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
    _, ny, nx = observed.shape
    chosen = np.empty(ny * nx, dtype=np.int16)
    compiled().choose(flat(observed), flat(clear), np.asarray(order, dtype=np.intp), fallback, chosen,
                      0, ny * nx, ny * nx)
    return chosen.reshape(ny, nx)


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
    nodata = dict(nodata or {})
    shape = observed.shape
    if clear.shape != shape:
        raise ValueError("observed and clear must have the same shape")
    out: dict[str, np.ndarray] = {}
    if method in SELECTION:
        for name, stack in bands.items():
            if stack.shape != shape:
                raise ValueError(f"band {name} has shape {stack.shape}, expected {shape}")
        out.update(select_stack(bands, observed, clear, method=method, times=times, clear_ratio=clear_ratio,
                                nodata=nodata, threads=threads))
    elif method in STATISTICAL:
        for name, stack in bands.items():
            if stack.shape != shape:
                raise ValueError(f"band {name} has shape {stack.shape}, expected {shape}")
        out.update(reduce_stack(bands, clear, method=method, nodata=nodata, threads=threads))
    elif method in MULTIBAND_SELECTION or method == "geomedian" or percentile_of(method) is not None:
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
            out.update(methods.percentiles(bands, clear, q=percentile_of(method), nodata=nodata,
                                           threads=threads))
    else:
        raise ValueError(f"unknown method {method!r}")
    out.update(count_stack(observed, clear, threads=threads))
    return out


def select_stack(
    bands: Mapping[str, np.ndarray],
    observed: np.ndarray,
    clear: np.ndarray,
    *,
    method: str,
    times: np.ndarray,
    clear_ratio: np.ndarray | None = None,
    nodata: Mapping[str, float | int | None] | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Selection composites (``most-recent``, ``least-recent``, ``best-pixel``): per pixel the
    slice of :func:`choose`, every band gathered at it, and ``provenance``.

    Masks are read slice by slice in the order of :func:`selection_order` and the reading
    stops for a block of pixels once each has its slice (compiled loops, pixel blocks on
    ``threads`` threads).

    Returns:
        ``{band: (y, x)}`` in the band's dtype (``nodata``, else 0, where nothing is chosen;
        NaN for floats) and ``provenance`` (int16 day of year, -1 where none).
    """
    nodata = dict(nodata or {})
    jit = compiled()
    _, ny, nx = observed.shape
    order = selection_order(method, times, clear_ratio).astype(np.intp)
    ok, seen = flat(clear), flat(observed)
    chosen = np.empty(ny * nx, dtype=np.int16)
    block = SELECTION_BLOCK
    share = task_size(ny * nx, block, threads)  # each call walks its share block by block
    gathers = []
    for name, stack in bands.items():
        result = np.empty(ny * nx, dtype=stack.dtype)
        fill = np.nan if stack.dtype.kind == "f" else nodata.get(name, 0)
        gathers.append((flat(stack), result.dtype.type(fill), result))
    provenance = np.append(day_of_year(times), np.int16(PROVENANCE_NODATA)).astype(np.int16)
    doy = np.empty(ny * nx, dtype=np.int16)  # chosen -1 -> the last entry

    def task(p0: int, p1: int) -> None:  # one pass per share: its choices stay in the cache
        jit.choose(seen, ok, order, method == "best-pixel", chosen, p0, p1, block)
        for values, fill, result in gathers:
            jit.gather(values, chosen, fill, result, p0, p1)
        jit.take(provenance, chosen, doy, p0, p1)

    run_blocks(task, ny * nx, share, threads)
    out = {name: result.reshape(ny, nx) for name, (_, _, result) in zip(bands, gathers)}
    out["provenance"] = doy.reshape(ny, nx)
    return out


def count_stack(observed: np.ndarray, clear: np.ndarray, *, threads: int | None = None) -> dict[str, np.ndarray]:
    """``clear_count`` and ``valid_count``: uint16 ``(y, x)`` numbers of clear and observed slices
    (one compiled pass over both masks, pixel blocks on ``threads`` threads)."""
    _, ny, nx = observed.shape
    jit = compiled()
    valid_count = np.empty(ny * nx, dtype=np.uint16)
    clear_count = np.empty(ny * nx, dtype=np.uint16)
    seen, ok = flat(observed), flat(clear)
    block = SELECTION_BLOCK
    run_blocks(lambda p0, p1: jit.count(seen, ok, valid_count, clear_count, p0, p1, block),
               ny * nx, task_size(ny * nx, block, threads), threads)
    return {"clear_count": clear_count.reshape(ny, nx), "valid_count": valid_count.reshape(ny, nx)}
