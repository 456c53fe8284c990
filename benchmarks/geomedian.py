"""Geometric median through stacube against a direct call of the library it uses (geomad).

Stack: 20 dates x 6 bands x 512 x 512 float32 reflectance with a Landsat C1 BQA-like quality
band (generated, blobby clouds over ~30 %), decoded with the ``landsat-c1-bqa`` rule.

* direct: ``geomad.nangeomedian_pcm`` on the array it wants, ``(y, x, band, time)`` float32 with
  NaN where not clear, built beforehand (not timed): the library's own cost;
* direct + input: the same, timing the building of that array too (what a caller pays);
* stacube: ``stacube.algo.composite.composite(..., method="geomedian")`` from stacube's layout
  (``{band: (time, y, x)}`` and the ``observed``/``clear`` masks) to ``{band: (y, x)}`` plus the
  clear/valid counts, exactly what a compositing job's tile does.

Same parameters on both sides (eps 1e-6, maxiters 1000, all cores: geomad's OpenMP threads for
the direct call, stacube's row blocks for stacube); the runs alternate so machine noise hits
both; the ratio is printed on the medians and minima of ``--repeat`` runs and as the median of
back-to-back pairs, and on CPU time (all threads of the process: what the work costs, whatever
else the machine runs). Target: stacube / direct <= 1.2x. The results are checked equal.

Run: ``.venv/bin/python benchmarks/geomedian.py [--size 512 --dates 20 --bands 6 --repeat 5]``
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import numpy as np

from common import machine, synthetic_stack

from stacube.catalog.quality import preset
from stacube.algo import methods
from stacube.algo.composite import composite


def main() -> None:
    from geomad import nangeomedian_pcm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dates", type=int, default=20)
    parser.add_argument("--bands", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    threads = os.cpu_count() or 1

    data, quality = synthetic_stack(args.dates, args.bands, args.size, seed=7)
    names = ["blue", "green", "red", "nir", "swir16", "swir22", "b7", "b8"][:args.bands]
    bands = {n: (data[:, i].astype(np.float32) * np.float32(1e-4)) for i, n in enumerate(names)}
    del data
    observed, clear = preset("landsat-c1-bqa", "BQA").decode(quality)
    times = np.array([np.datetime64("2020-01-01") + np.timedelta64(16 * i, "D") for i in range(args.dates)],
                     dtype="datetime64[ns]")

    def build_input() -> np.ndarray:
        x = np.stack([np.where(clear, bands[n], np.float32(np.nan)) for n in names], axis=0)
        return np.ascontiguousarray(x.transpose(2, 3, 0, 1))  # (y, x, band, time)

    prepared = build_input()

    def direct():
        return nangeomedian_pcm(prepared, eps=methods.GEOMEDIAN_EPS, maxiters=methods.GEOMEDIAN_MAXITERS,
                                num_threads=threads)

    def direct_with_input():
        return nangeomedian_pcm(build_input(), eps=methods.GEOMEDIAN_EPS, maxiters=methods.GEOMEDIAN_MAXITERS,
                                num_threads=threads)

    def ours():
        return composite(bands, observed, clear, method="geomedian", times=times, threads=threads)

    runs = {"direct": direct, "direct + input": direct_with_input, "stacube": ours}
    timings: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    results = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            results[name] = fn()
            timings[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    same = all(np.array_equal(results["stacube"][n], results["direct"][:, :, j], equal_nan=True)
               for j, n in enumerate(names))
    med = {k: statistics.median(v) for k, v in timings.items()}
    clear_share = clear.mean()
    print(f"machine: {machine()}; geomad {getattr(__import__('geomad'), '__version__', '?')}, "
          f"{threads} OpenMP threads")
    print(f"stack: {args.dates} dates x {args.bands} bands x {args.size}x{args.size} float32, "
          f"{100 * clear_share:.0f}% clear observations; {args.repeat} runs each, alternating")
    for name in runs:
        spread = f"min {min(timings[name]):.2f} s, max {max(timings[name]):.2f} s"
        print(f"geomedian {name:<15} wall median {med[name]:7.3f} s ({spread}); "
              f"CPU median {statistics.median(cpu[name]):7.3f} s")
    pairs = statistics.median(s / d for s, d in zip(timings["stacube"], timings["direct"]))
    print(f"geomedian overhead: stacube / direct call = {med['stacube'] / med['direct']:.3f}x on medians, "
          f"{min(timings['stacube']) / min(timings['direct']):.3f}x on minima, {pairs:.3f}x median of "
          f"back-to-back pairs (target <= 1.2x); stacube / (direct + building its input) = "
          f"{med['stacube'] / med['direct + input']:.3f}x; same result: {same}")
    cpu_ratio = statistics.median(cpu["stacube"]) / statistics.median(cpu["direct"])
    print(f"geomedian CPU time (all threads, insensitive to other processes on the machine): "
          f"stacube / direct call = {cpu_ratio:.3f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
