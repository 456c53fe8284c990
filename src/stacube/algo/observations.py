"""Masked observations per time step: scenes of one step (a solar day) merged per pixel, with
a quality flag (no observation / not clear / clear).

Pure numpy, no I/O: Zarr cubes of observations and time series from the items use it.
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
