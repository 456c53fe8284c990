"""Compositing kernels against what a skilled user writes instead, and against the machine's
memory bandwidth.

Stack: ``--dates`` (20 and 68) dates x 4 bands x 2048 x 2048 uint16 with a Landsat C1 BQA-like
quality band (generated, blobby clouds over ~30 %, decoded once into ``observed``/``clear``).
Methods: median, mean, p25 (percentile) and best-pixel. Every method is timed through
``stacube.algo.composite.composite`` (what jobs run: it also counts clear and valid slices)
with the default threads (one per core) and with one thread, against two baselines, each
repetition interleaved (stacube, baselines, stacube 1 thread...):

* ``xarray``: ``DataArray.where(clear)`` then ``.median("time")`` / ``.mean("time")`` (bottleneck;
  numbagg off), ``.quantile(0.25, "time")``, and best-pixel as ranked ``where`` + ``bfill``
  (bottleneck ``push``) + ``isel(time=0)``, with the observed fallback;
* ``numpy``: in the input's integer dtype, row blocks on one thread per core: non-clear values
  set to the dtype's maximum, ``np.sort(axis=0)``, ``np.take_along_axis`` at the order statistics
  (linear interpolation as ``numpy.percentile``); the mean as a masked sum; best-pixel as
  ``argmax`` of the ranked masks and ``take_along_axis``.

Every output is compared with stacube's (identical values required). Figures: min and median
wall time, speed-ups, 2-thread over 1-thread ratio (with the CPU seconds of both: equal CPU
time means the threads add no work, so on idle cores the ratio is the thread count), peak resident memory of the stacube call
over the input stack (bands + quality), and the time over a bandwidth floor: (bytes read +
bytes written) / copy bandwidth measured in the same run (``np.copyto`` of a 512 MiB buffer, one
thread; the copy on one thread per core is printed too, as the gain the memory allows threads).

Targets: >= 2x both baselines; 2 threads >= 1.7x one thread; peak memory <= 1.5x the input;
<= 10x the bandwidth floor.

Run: ``.venv/bin/python benchmarks/composite_kernels.py [--dates 20,68 --size 2048 --repeat 3]``
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from common import machine, synthetic_stack

from stacube.algo.composite import composite, selection_order
from stacube.catalog.quality import preset

METHODS = ("median", "mean", "p25", "best-pixel")
THREADS = os.cpu_count() or 1


# -- baselines --------------------------------------------------------------------------------
def xarray_baseline(bands: dict, observed: np.ndarray, clear: np.ndarray, method: str, order: np.ndarray) -> dict:
    import xarray as xr

    out = {}
    with xr.set_options(use_bottleneck=True, use_numbagg=False):
        ok = xr.DataArray(clear, dims=("time", "y", "x"))
        seen = xr.DataArray(observed, dims=("time", "y", "x"))
        for name, stack in bands.items():
            data = xr.DataArray(stack, dims=("time", "y", "x"))
            valid = data != 0
            if method == "median":
                value = data.where(ok & valid).median("time")
            elif method == "mean":
                value = data.where(ok & valid).mean("time")
            elif method == "p25":
                value = data.where(ok & valid).quantile(0.25, "time").drop_vars("quantile")
            else:
                ranked = data.isel(time=order)
                first_clear = ranked.where(ok.isel(time=order)).bfill("time").isel(time=0)
                first_seen = ranked.where(seen.isel(time=order)).bfill("time").isel(time=0)
                out[name] = first_clear.fillna(first_seen).fillna(0).astype(stack.dtype).values
                continue
            out[name] = value.values.astype(np.float32)
    return out


def numpy_baseline(bands: dict, observed: np.ndarray, clear: np.ndarray, method: str, order: np.ndarray,
                   rows: int = 64) -> dict:
    _, ny, nx = clear.shape
    out = {name: np.empty((ny, nx), dtype=np.float32 if method != "best-pixel" else s.dtype)
           for name, s in bands.items()}

    def block(r0: int) -> None:
        r1 = min(ny, r0 + rows)
        if method == "best-pixel":
            ranked_clear, ranked_seen = clear[order, r0:r1], observed[order, r0:r1]
            first = np.where(ranked_clear.any(axis=0), ranked_clear.argmax(axis=0), ranked_seen.argmax(axis=0))
            has = ranked_seen.any(axis=0) | ranked_clear.any(axis=0)
            chosen = order[first]
            for name, s in bands.items():
                value = np.take_along_axis(s[:, r0:r1], chosen[None], axis=0)[0]
                out[name][r0:r1] = np.where(has, value, 0)
            return
        for name, s in bands.items():
            values = s[:, r0:r1]
            ok = clear[:, r0:r1] & (values != 0)
            n = ok.sum(axis=0)
            if method == "mean":
                total = np.where(ok, values, 0).sum(axis=0, dtype=np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[name][r0:r1] = np.where(n > 0, total / n, np.nan)
                continue
            q = 0.5 if method == "median" else 0.25
            a = np.where(ok, values, np.iinfo(s.dtype).max)
            a.sort(axis=0)
            last = np.maximum(n - 1, 0)
            rank = last * q
            lo = np.floor(rank).astype(np.intp)
            hi = np.minimum(lo + 1, last)
            frac = rank - lo
            va = np.take_along_axis(a, lo[None], axis=0)[0].astype(np.float64)
            vb = np.take_along_axis(a, hi[None], axis=0)[0].astype(np.float64)
            value = np.where(frac >= 0.5, vb - (vb - va) * (1 - frac), va + (vb - va) * frac)
            out[name][r0:r1] = np.where(n > 0, value, np.nan)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(block, range(0, ny, rows)))
    return out


# -- measuring --------------------------------------------------------------------------------
def copy_bandwidth(size: int = 512 << 20, repeat: int = 5, threads: int = 1) -> float:
    """Bytes read + written per second by ``np.copyto`` of a buffer already in memory, split in
    ``threads`` equal parts copied at once (numpy releases the GIL while it copies)."""
    src = np.ones(size, dtype=np.uint8)
    dst = np.zeros_like(src)
    part = size // threads
    with ThreadPoolExecutor(threads) as pool:
        def copy():
            list(pool.map(lambda i: np.copyto(dst[i * part:(i + 1) * part], src[i * part:(i + 1) * part]),
                          range(threads)))

        best = min(_time(copy) for _ in range(repeat))
    return 2 * part * threads / best


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rss_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss(fn) -> int:
    """Peak resident bytes above the resident size before ``fn`` (the kernel's own buffers
    included, which tracemalloc does not see); Linux ``clear_refs`` resets the peak."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return -1
    before = _rss_status("VmRSS:")
    fn()
    return _rss_status("VmHWM:") - before


def same(a: dict, b: dict) -> bool:
    """``b`` equals ``a`` (on ``b``'s rows when it covers part of them)."""
    return all(np.array_equal(a[k][:b[k].shape[0]], b[k], equal_nan=True) for k in b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", default="20,68")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    bandwidth = copy_bandwidth()
    both = copy_bandwidth(threads=THREADS)
    print(f"machine: {machine()}; copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write) on one thread, "
          f"{both / 1e9:.1f} GB/s on {THREADS} ({both / bandwidth:.2f}x: what the memory allows threads to gain)")
    rule = preset("landsat-c1-bqa", "BQA")
    for dates in (int(d) for d in args.dates.split(",")):
        data, quality = synthetic_stack(dates, args.bands, args.size)
        bands = {f"b{i}": np.ascontiguousarray(data[:, i]) for i in range(args.bands)}
        del data
        observed, clear = rule.decode(quality)
        input_bytes = sum(b.nbytes for b in bands.values()) + quality.nbytes
        del quality
        times = np.datetime64("2020-01-01", "ns") + np.arange(dates) * np.timedelta64(16, "D")
        ratio = clear.mean(axis=(1, 2))
        order = selection_order("best-pixel", times, ratio)
        npix = args.size * args.size
        print(f"\nstack: {dates} dates x {args.bands} bands x {args.size}x{args.size} uint16 + quality "
              f"({input_bytes / 2**20:.0f} MiB)")
        for method in args.methods.split(","):
            def ours(threads=None, method=method):
                return composite(bands, observed, clear, method=method, times=times, clear_ratio=ratio,
                                 nodata={k: 0 for k in bands}, threads=threads)

            # xarray's quantile (numpy.nanquantile, no bottleneck path) takes minutes on the whole
            # stack: it is timed on 1/16 of the rows and its time scaled by 16
            part = args.size // 16 if method == "p25" else args.size
            sub = {k: v[:, :part] for k, v in bands.items()}
            sides = {
                "stacube": ours,
                "stacube 1 thread": lambda: ours(1),
                "xarray": lambda method=method, sub=sub, part=part: xarray_baseline(
                    sub, observed[:, :part], clear[:, :part], method, order),
                "numpy": lambda method=method: numpy_baseline(bands, observed, clear, method, order),
            }
            results = {}
            timings: dict[str, list[float]] = {k: [] for k in sides}
            cpu: dict[str, list[float]] = {k: [] for k in sides}
            ours()  # compiled code loaded
            for rep in range(args.repeat):
                names = list(sides) if rep % 2 == 0 else list(sides)[::-1]
                for name in names:
                    gc.collect()
                    t0, c0 = time.perf_counter(), time.process_time()
                    results[name] = sides[name]()
                    timings[name].append((time.perf_counter() - t0) * (args.size / part if name == "xarray" else 1))
                    cpu[name].append(time.process_time() - c0)
            peak = peak_rss(ours)
            mine = {k: results["stacube"][k] for k in bands}
            out_item = 4 if method != "best-pixel" else 2
            moved = (sum(b.nbytes for b in bands.values()) + 2 * clear.nbytes      # bands, both masks
                     + npix * (args.bands * out_item + 2 * 2 + (2 if method == "best-pixel" else 0)))
            floor = moved / bandwidth
            best = {k: min(v) for k, v in timings.items()}
            mid = {k: statistics.median(v) for k, v in timings.items()}
            print(f"  {method:<10} stacube {best['stacube']:6.3f} s (median {mid['stacube']:6.3f}), "
                  f"1 thread {best['stacube 1 thread']:6.3f} s -> threads {best['stacube 1 thread'] / best['stacube']:4.2f}x "
                  f"(CPU s {min(cpu['stacube']):.3f} vs {min(cpu['stacube 1 thread']):.3f} on 1 thread); "
                  f"floor {floor:5.3f} s -> {best['stacube'] / floor:5.1f}x floor; "
                  f"peak {1 + peak / input_bytes:4.2f}x input")
            for base in ("xarray", "numpy"):
                print(f"  {'':<10} vs {base:<6} {best[base]:7.3f} s (median {mid[base]:7.3f}): "
                      f"{best[base] / best['stacube']:5.1f}x (min) {mid[base] / mid['stacube']:5.1f}x (median), "
                      f"1 thread {best[base] / best['stacube 1 thread']:5.1f}x; identical: {same(mine, results[base])}")
            del results
        del bands, observed, clear
        gc.collect()


if __name__ == "__main__":
    main()
