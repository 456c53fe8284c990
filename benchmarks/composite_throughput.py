"""Compositing throughput and memory: stacube's kernels against a cube-builder-style baseline.

Stack: 20 dates x 4 bands x 2048 x 2048 uint16 + a Landsat C1 BQA-like quality band (generated,
blobby clouds over ~30 %). Both sides start from the same arrays and the same quality decoding
rule and produce the same composites (checked).

Baseline, written the way cube-builder's ``blend`` (``cube_builder/utils/processing.py``) does it:
band by band and block by block, scenes in rank order with the quality band decoded per scene,
a ``numpy.ma`` stack reduced with ``np.ma.median``, and for best pixel a stack filled first with
any valid observation and then overridden with the clear pixels not done yet.

Targets: stacube >= 5x the baseline's throughput (pixels x scenes / s) for median and best-pixel;
peak memory of the stacube call <= 2x the input stack.

Run: ``.venv/bin/python benchmarks/composite_throughput.py [--size 2048]``
"""

from __future__ import annotations

import argparse

import numpy as np

from common import machine, peak_memory, synthetic_stack, timed

from stacube.catalog.quality import preset
from stacube.algo.composite import composite, selection_order


def baseline_blend(stack: np.ndarray, quality: np.ndarray, rule, order, method: str, block: int = 512):
    """One band composited the way cube-builder's ``blend`` does it: block by block, scenes in
    rank order, the quality band decoded per scene, a ``numpy.ma`` stack for the median, and
    the best-pixel stack filled first with any valid observation, then overridden with clear
    pixels not yet done. (cube-builder finds the positions to fill with ``ravel_multi_index`` and
    ``intersect1d``, which is 50x slower still; boolean masks are used here to keep the baseline
    honest.)"""
    t, ny, nx = stack.shape
    nodata = 0
    best = np.full((ny, nx), nodata, dtype=stack.dtype)
    med = np.full((ny, nx), np.nan, dtype=np.float32)
    for r0 in range(0, ny, block):
        for c0 in range(0, nx, block):
            win = (slice(r0, min(ny, r0 + block)), slice(c0, min(nx, c0 + block)))
            h, w = win[0].stop - r0, win[1].stop - c0
            stack_ma = np.ma.zeros((t, h, w), dtype=stack.dtype)
            notdone = np.ones((h, w), dtype=bool)
            for k in order:
                raster = stack[k][win]
                observed, clear = rule.decode(quality[k][win])
                bmask = ~clear | (raster == nodata)
                stack_ma[k] = np.ma.masked_where(bmask, raster)
                if method == "best-pixel":
                    target = best[win]
                    fill = np.where((target == nodata) & observed & (raster != nodata))
                    target[fill] = raster[fill]
                    todo = np.where(notdone & ~bmask)
                    target[todo] = raster[todo]
                    notdone &= bmask
            if method == "median":
                value = np.ma.median(stack_ma, axis=0)
                med[win] = np.ma.filled(value.astype(np.float32), np.nan)
    return best if method == "best-pixel" else med


def baseline(bands: dict, quality: np.ndarray, rule, order, method: str) -> dict:
    return {name: baseline_blend(stack, quality, rule, order, method) for name, stack in bands.items()}


def stacube_composite(bands: dict, quality: np.ndarray, rule, method: str, times, ratio) -> dict:
    observed, clear = rule.decode(quality)
    return composite(bands, observed, clear, method=method, times=times, clear_ratio=ratio,
                     nodata={k: 0 for k in bands})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--dates", type=int, default=20)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data, quality = synthetic_stack(args.dates, args.bands, args.size)
    bands = {f"b{i}": np.ascontiguousarray(data[:, i]) for i in range(args.bands)}
    del data
    rule = preset("landsat-c1-bqa", "BQA")
    times = np.array([np.datetime64("2020-01-01") + np.timedelta64(16 * i, "D") for i in range(args.dates)],
                     dtype="datetime64[ns]")
    _, clear = rule.decode(quality)
    ratio = clear.mean(axis=(1, 2))
    order = selection_order("best-pixel", times, ratio)
    input_bytes = sum(b.nbytes for b in bands.values()) + quality.nbytes
    work = args.size * args.size * args.dates
    print(f"machine: {machine()}")
    print(f"stack: {args.dates} dates x {args.bands} bands x {args.size}x{args.size} uint16 + quality "
          f"({input_bytes / 2**20:.0f} MiB)")

    for method in ("median", "best-pixel"):
        t_ours, ours = timed(stacube_composite, bands, quality, rule, method, times, ratio, repeat=args.repeat)
        t_base, base = timed(baseline, bands, quality, rule, order, method, repeat=max(1, args.repeat - 2))
        if method == "median":
            same = all(np.allclose(ours[k], base[k], equal_nan=True) for k in bands)
        else:
            same = all(np.array_equal(ours[k], base[k]) for k in bands)
        peak, _ = peak_memory(stacube_composite, bands, quality, rule, method, times, ratio)
        thr_ours, thr_base = work / t_ours, work / t_base
        print(f"{method:<11} stacube {t_ours:7.2f} s ({thr_ours / 1e6:7.1f} M px x scenes/s)  "
              f"baseline {t_base:7.2f} s ({thr_base / 1e6:6.1f} M)  speed-up {t_base / t_ours:5.1f}x "
              f"(target >= 5x)  peak memory {(input_bytes + peak) / input_bytes:4.2f}x input "
              f"(target <= 2x)  same result: {same}")


if __name__ == "__main__":
    main()
