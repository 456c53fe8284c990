"""Per-tile overhead of a user process against the built-in median, on the same tiles.

The process is ``execute(cube)`` returning ``stacube.algo.xr.median(cube[bands], cube.clear)``:
the same compiled median as the built-in method, so the difference is what the process path
adds per tile (building the ``cube`` Dataset with its masked bands and coordinates, the xarray
wrapper, checking and casting the result). Both sides run in this process, tile after tile,
interleaved, after one warm-up round; reading the files is part of both (the same reads).
The outputs are checked to be identical. A second figure leaves the reads out (each tile's
stack read once beforehand): the built-in kernel call against the process path on the same
stack, so the overhead shows without the noise of reading files on a shared machine.

Stacks: the sample stacks of ``data/`` (Landsat 8 over New York, 23 dates; Sentinel-2 over
Slovenia, 5 dates), registered in a throwaway database.

Target: process / built-in <= 1.2 (per tile, wall time).

Run: ``.venv/bin/python benchmarks/process_overhead.py [--repeat 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import ROOT, benchmark_settings, machine

CASES = [
    ("landsat-8-c1-l1tp-gdalcubes-sample", "-74.5,40.5,-73.5,41.5", "2018-01-01/2018-12-31", 16),
    ("sentinel-2-l1c-eolearn-sample", "14.5514,45.8659,14.5642,45.875", "2015-07-01/2015-09-30", 32),
]
BANDS = ["red", "nir"]


def execute(cube):
    from stacube.algo import xr as cx

    return cx.median(cube[BANDS], cube.clear)[BANDS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from stacube.algo.composite import composite
    from stacube.algo.process import Output, cast_output, process_tile, run_execute, stack_dataset
    from stacube.algo.tile import composite_tile, load_tile
    from stacube.catalog.pgstac import Catalog
    from stacube.catalog.register import add_datasets, add_product
    from stacube.jobs.plan import make_plan
    from stacube.jobs.spec import build_spec
    from stacube.jobs.tasks import select_scenes

    print(f"machine: {machine()}")
    with benchmark_settings("process_overhead") as settings:
        catalog = Catalog(settings)
        for path in sorted((ROOT / "data" / "products").iterdir()):
            add_product(catalog, path)
        add_datasets(catalog, sorted((ROOT / "data" / "samples").iterdir()))
        for collection, bbox, when, tile in CASES:
            spec = build_spec(collections=[collection], bbox=bbox, datetime=when, method="median", bands=BANDS,
                              tile_size=tile)
            plan = make_plan(spec, catalog, "/tmp/unused")
            sel = select_scenes(plan, None, None)
            used, index, steps = sel["used"], sel["period_index"], len(sel["steps"])
            outputs = {b: Output("float32") for b in BANDS}
            tiles = [plan.tiles[t] for t in plan.tile_indices()]

            def builtin():
                return [composite_tile(plan.inputs, gb, used, index, steps, pool=1)[0] for gb in tiles]

            def process():
                return [process_tile(plan.inputs, gb, execute, {}, outputs, set(used), index, steps, pool=1).arrays
                        for gb in tiles]

            times = {"built-in": [], "process": []}
            same = True
            for rep in range(args.repeat + 1):
                sides = [("built-in", builtin), ("process", process)]
                results = {}
                for name, fn in (sides if rep % 2 else sides[::-1]):
                    t0 = time.perf_counter()
                    results[name] = fn()
                    if rep:
                        times[name].append((time.perf_counter() - t0) / len(tiles))
                if rep == 0:
                    same = all(np.array_equal(a[b], p[b], equal_nan=True)
                               for a, p in zip(results["built-in"], results["process"]) for b in BANDS)
            stacks = [load_tile(plan.inputs, gb, plan.inputs.load_bands, set(used), pool=1) for gb in tiles]

            def kernel():
                return [composite({b: s.bands[b] for b in BANDS}, s.observed, s.clear, method="median",
                                  times=s.times)
                        for s in stacks]

            def path():
                return [{b: cast_output(v, outputs[b]) for b, v in
                         run_execute(execute, stack_dataset(s, gb), {}).items()} for s, gb in zip(stacks, tiles)]

            def cube():
                return [stack_dataset(s, gb) for s, gb in zip(stacks, tiles)]

            compute = {"kernel": [], "path": [], "cube": []}
            for rep in range(args.repeat + 1):
                order = (("kernel", kernel), ("path", path), ("cube", cube))
                for name, fn in order if rep % 2 else order[::-1]:
                    t0 = time.perf_counter()
                    fn()
                    if rep:
                        compute[name].append((time.perf_counter() - t0) / len(tiles))
            ours, base = min(times["process"]), min(times["built-in"])
            print(f"{collection}: {len(tiles)} tiles of {tile} px, {len(used)} scenes; per tile: process "
                  f"min {ours * 1000:7.1f} ms median {statistics.median(times['process']) * 1000:7.1f} ms, "
                  f"built-in median min {base * 1000:7.1f} ms "
                  f"median {statistics.median(times['built-in']) * 1000:7.1f} ms; "
                  f"ratio {ours / base:4.2f}x (target <= 1.2x); identical pixels: {same}")
            k, p = min(compute["kernel"]), min(compute["path"])
            print(f"  without the reads, per tile: process path min {p * 1000:6.2f} ms, built-in kernel min "
                  f"{k * 1000:6.2f} ms: {1000 * (p - k):5.2f} ms added per tile, of which building the cube Dataset "
                  f"{1000 * min(compute['cube']):5.2f} ms (the rest: the xarray wrapper the process calls)")


if __name__ == "__main__":
    main()
