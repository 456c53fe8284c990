"""2x2 reductions for pyramid levels: mean ignoring NaN, maximum, nearest.

Pure numpy over ``(t, y, x)`` arrays; odd edges are padded with a value that does not count.
"""

from __future__ import annotations

import numpy as np


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
