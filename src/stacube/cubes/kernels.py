"""Pure numpy kernels of the cube: masked observations per time step, pyramid reductions.

No xarray, no I/O: each takes and returns arrays, so it can be tested on a few pixels and run
on any block of a cube.
"""

from __future__ import annotations

import numpy as np

NO_OBSERVATION, NOT_CLEAR, CLEAR = 0, 1, 2


def merge_observations(bands: dict[str, np.ndarray], observed: np.ndarray, clear: np.ndarray,
                       step_of_slice: np.ndarray, n_steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Masked observations per time step from slices (scenes), several slices per step allowed.

    Per pixel and step the value comes from the first slice (in slice order) that is clear
    there; values of pixels with no clear slice are NaN. The quality flag is
    :data:`CLEAR` (2) where a slice is clear, :data:`NOT_CLEAR` (1) where a slice observed the
    pixel but none is clear (cloud, shadow...), :data:`NO_OBSERVATION` (0) elsewhere.

    Args:
        bands: ``{name: float32 (s, y, x)}`` physical values of ``s`` slices.
        observed, clear: bool ``(s, y, x)``.
        step_of_slice: int ``(s,)``: the step (``0 .. n_steps-1``) of each slice; ``-1`` drops it.
        n_steps: number of output steps.

    Returns:
        ``({name: float32 (n_steps, y, x)}, quality uint8 (n_steps, y, x))``.
    """
    s, ny, nx = observed.shape
    out = {name: np.full((n_steps, ny, nx), np.nan, dtype=np.float32) for name in bands}
    quality = np.zeros((n_steps, ny, nx), dtype=np.uint8)
    step_of_slice = np.asarray(step_of_slice)
    for k in range(s):
        step = int(step_of_slice[k])
        if step < 0:
            continue
        q = quality[step]
        take = clear[k] & (q != CLEAR)
        for name, stack in bands.items():
            out[name][step][take] = stack[k][take]
        q[take] = CLEAR
        q[observed[k] & (q == NO_OBSERVATION)] = NOT_CLEAR
    return out, quality


def _pad_even(a: np.ndarray, fill) -> np.ndarray:
    t, ny, nx = a.shape
    if ny % 2 == 0 and nx % 2 == 0:
        return a
    padded = np.full((t, ny + ny % 2, nx + nx % 2), fill, dtype=a.dtype)
    padded[:, :ny, :nx] = a
    return padded


def downsample_mean(a: np.ndarray) -> np.ndarray:
    """2x2 mean ignoring NaN, ``(t, y, x)`` float -> ``(t, ceil(y/2), ceil(x/2))`` float32; NaN
    where all four are NaN."""
    p = _pad_even(a.astype(np.float32, copy=False), np.nan)
    t, ny, nx = p.shape
    blocks = p.reshape(t, ny // 2, 2, nx // 2, 2)
    valid = np.isfinite(blocks)
    total = np.where(valid, blocks, 0).sum(axis=(2, 4), dtype=np.float64)
    count = valid.sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total / count).astype(np.float32)
    out[count == 0] = np.nan
    return out


def downsample_max(a: np.ndarray) -> np.ndarray:
    """2x2 maximum of an integer ``(t, y, x)`` array (the quality flag: clear if any is clear)."""
    p = _pad_even(a, np.iinfo(a.dtype).min)
    t, ny, nx = p.shape
    return p.reshape(t, ny // 2, 2, nx // 2, 2).max(axis=(2, 4))


def downsample_nearest(a: np.ndarray) -> np.ndarray:
    """Every other pixel (the top-left one of each 2x2 block), for codes and counts."""
    return np.ascontiguousarray(a[:, ::2, ::2])
