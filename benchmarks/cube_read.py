"""Region read, 1 km2, all dates: from a Zarr cube against the same read from the source COGs.

Stack: ``--dates`` dates x 4 bands x ``--size`` px at 10 m (uint16 COGs written with rio-cogeo,
DEFLATE, 512-px blocks) plus a Landsat C1 BQA-like quality band with blobby clouds over ~30 %,
registered as a throwaway collection in a throwaway database. Both sides go through the
catalog and return the same masked observations (float32 reflectance of clear pixels, NaN
elsewhere, plus the quality flag) for a 100 x 100 px (1 km2) window, every date; the results
are checked equal.

* cube: ``stacube.open_cube(name, bbox=..., variables=...)`` on a cube created with
  ``--grid native`` (the fill of the window's units happens once, before timing; every timed
  call still checks the fill bookkeeping in the catalog database);
* baseline: catalog search + ``stacube.algo.load.load_stack`` (odc-stac reading the COGs onto
  the same 100 x 100 px GeoBox, the quality rule applied) + the per-day merge a cube applies.

Target: the cube read at least 20x faster. Run:
``.venv/bin/python benchmarks/cube_read.py [--dates 48] [--size 1024] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import benchmark_settings, machine, register_synthetic, synthetic_stack, write_cog_stack

COLLECTION = "bench-cube-source"
CUBE = "bench-cube"
BANDS = ["blue", "green", "red", "nir"]
CRS = "EPSG:32633"
ORIGIN = (500000.0, 5000000.0)


def make_stack(folder: Path, dates: int, size: int) -> list[dict]:
    data, quality = synthetic_stack(dates, 4, size, seed=1)
    return write_cog_stack(folder, data, quality, crs=CRS, origin=ORIGIN, resolution=10.0)


def region_bbox(size: int) -> tuple[float, float, float, float]:
    """A 1 km x 1 km square (100 x 100 px) off the tile boundaries, in the stack's CRS."""
    x0 = ORIGIN[0] + 10.0 * (size // 2 - 37)
    y1 = ORIGIN[1] - 10.0 * (size // 2 - 61)
    return (x0, y1 - 1000.0, x0 + 1000.0, y1)


def baseline_read(settings, definition, bbox, crs):
    """Catalog search + odc-stac load of the window + the cube's per-day merge."""
    from odc.geo.geom import BoundingBox

    from stacube.catalog.pgstac import Catalog
    from stacube.algo.load import load_stack
    from stacube.cubes.fill import window_for
    from stacube.algo.observations import merge_observations

    catalog = Catalog(settings)
    rows, cols = window_for(definition, bbox, crs)
    geobox = definition.geobox[rows, cols]
    lonlat = list(BoundingBox(*bbox, crs=crs).to_crs("EPSG:4326"))
    items = list(catalog.search({"collections": [COLLECTION], "bbox": lonlat}))
    stack = load_stack(definition.make_sources(items), geobox, BANDS)
    step_of = definition.step_of_item()
    steps = np.array([step_of[i] for i in stack.item_ids])
    bands, quality = merge_observations(stack.bands, stack.observed, stack.clear, steps, len(definition.steps))
    return bands, quality


def cube_read(settings, bbox, crs):
    import stacube

    ds = stacube.open_cube(CUBE, bbox=bbox, bbox_crs=crs, variables=[*BANDS, "quality"], settings=settings)
    return {b: ds[b].values for b in BANDS}, ds["quality"].values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", type=int, default=48)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from stacube.catalog.pgstac import Catalog
    from stacube.cubes.build import create_cube
    from stacube.cubes.spec import build_cube_spec

    work = Path(tempfile.mkdtemp(prefix="stacube-bench-cube-"))
    try:
        with benchmark_settings("cube_read") as base:
            settings = base.model_copy(update={"output": str(work / "out")})
            t0 = time.perf_counter()
            entries = make_stack(work / "cogs", args.dates, args.size)
            register_synthetic(Catalog(settings), COLLECTION, work / "cogs", entries, crs=CRS)
            print(f"machine: {machine()}")
            print(f"stack: {args.dates} dates x 4 bands + BQA, {args.size}x{args.size} px @ 10 m, "
                  f"{len(entries) * 5} COGs written in {time.perf_counter() - t0:.1f} s")
            bbox = region_bbox(args.size)
            half = 10.0 * args.size
            domain = (ORIGIN[0], ORIGIN[1] - half, ORIGIN[0] + half, ORIGIN[1])
            spec = build_cube_spec(name=CUBE, collections=[COLLECTION], grid="native", datetime="2020-01-01/2020-12-31",
                                   bbox=domain, bbox_crs=CRS, bands=BANDS)
            created = create_cube(spec, settings, fill=False, replace=True)
            definition = created.definition
            t0 = time.perf_counter()
            import stacube

            first = stacube.open_cube(CUBE, bbox=bbox, bbox_crs=CRS, variables=[*BANDS, "quality"],
                                      settings=settings, workers=1)
            print(f"cube: grid {definition.grid.name}, chunks {definition.chunks}, fill of the window's "
                  f"{first.attrs['stacube:units_computed']} unit(s) (512 px x {definition.chunks[0]} dates) "
                  f"took {time.perf_counter() - t0:.2f} s (once)")
            cube_times, base_times = [], []
            for _ in range(args.repeat):  # interleaved, so both see the same machine state
                t0 = time.perf_counter()
                cb, cq = cube_read(settings, bbox, CRS)
                cube_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                bb, bq = baseline_read(settings, definition, bbox, CRS)
                base_times.append(time.perf_counter() - t0)
            for b in BANDS:
                assert np.array_equal(cb[b], bb[b], equal_nan=True), f"band {b} differs"
            assert np.array_equal(cq, bq), "quality differs"
            shape = cq.shape
            ours, theirs = statistics.median(cube_times), statistics.median(base_times)
            print(f"region: {shape[2]}x{shape[1]} px (1 km2) x {shape[0]} dates x {len(BANDS)} bands + quality; "
                  f"results identical")
            print(f"{'region read, 1 km2, all dates':<40} cube {ours * 1000:9.1f} ms   "
                  f"odc-stac from COGs {theirs * 1000:9.1f} ms   ratio {theirs / ours:6.1f}x  "
                  f"(median of {args.repeat}; target >= 20x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
