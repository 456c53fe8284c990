"""Fan-out: one compositing job of 64 tiles run with 1 and with 2 local workers.

A generated stack (10 dates x 4 bands + BQA quality, COGs on disk) is registered as a throwaway
collection; the job (median, 64 tiles of 256x256 px) runs in-process with one worker, then with two
(``STACUBE_EXECUTOR``: worker threads by default, ``processes`` for worker processes, which run
the same tile function the queue workers use). Each setting runs ``--repeat`` times
(alternating); the ratio of median wall times shows how tiles scale. Target: >= 1.7x on 2 cores
(set when a tile ran on one core; a tile now uses every core itself: see README).

Run: ``.venv/bin/python benchmarks/fanout.py [--size 2048 --tile 256]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import benchmark_settings, machine, register_synthetic, synthetic_stack, write_cog_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--dates", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from stacube.catalog.pgstac import Catalog
    from stacube.jobs.runner import run_composite
    from stacube.jobs.spec import build_spec

    folder = Path(tempfile.mkdtemp(prefix="stacube-fanout-"))
    data, quality = synthetic_stack(args.dates, 4, args.size)
    entries = write_cog_stack(folder / "cogs", data, quality, band_names=("B02", "B03", "B04", "B08"))
    del data, quality
    origin, res = (500000.0, 5000000.0), 10.0  # the grid write_cog_stack uses
    bbox = [origin[0] + 1, origin[1] - args.size * res + 1, origin[0] + args.size * res - 1, origin[1] - 1]
    with benchmark_settings("fanout") as settings:
        register_synthetic(Catalog(settings), "fanout-stack", folder / "cogs", entries, crs="EPSG:32633")
        times: dict[int, list[float]] = {1: [], 2: []}
        stage_times: dict[tuple[int, str], list[float]] = {}
        tiles = None
        for rep in range(args.repeat):
            for workers in ((1, 2) if rep % 2 == 0 else (2, 1)):
                spec = build_spec(collections=["fanout-stack"], bbox=bbox, bbox_crs="EPSG:32633", datetime="2020-01-01/2020-12-31",
                                  method="median", bands=["red", "green", "blue", "nir"], tile_size=args.tile,
                                  output=str(folder / f"out-{workers}"), output_collection=f"fanout-{workers}-{rep}")
                marks: dict[str, list[float]] = {}
                t0 = time.perf_counter()

                def progress(stage, done, total, marks=marks, t0=t0):
                    now = time.perf_counter() - t0
                    marks.setdefault(stage, [now, now])[1] = now

                report = run_composite(spec, settings, workers=workers, progress=progress)
                times[workers].append(time.perf_counter() - t0)
                for stage, (start, end) in marks.items():
                    stage_times.setdefault((workers, stage), []).append(end - start)
                tiles = report["grid"]["tiles"]
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"machine: {machine()}")
    print(f"job: {tiles} tiles of {args.tile}x{args.tile} px, {args.dates} dates x 4 bands, median")
    print(f"1 worker  {one:7.2f} s")
    print(f"2 workers {two:7.2f} s")
    print(f"speed-up with 2 workers: {one / two:4.2f}x (target >= 1.7x)")
    print("per stage (median s, 1 worker / 2 workers; the 2-worker scenes stage includes starting the pool):")
    for stage in ("scenes", "composite", "cogs"):
        a = statistics.median(stage_times.get((1, stage), [float("nan")]))
        b = statistics.median(stage_times.get((2, stage), [float("nan")]))
        print(f"  {stage:<10} {a:6.2f} s / {b:6.2f} s  = {a / b:4.2f}x")


if __name__ == "__main__":
    main()
