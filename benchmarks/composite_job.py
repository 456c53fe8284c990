"""Whole job: ``stacube composite`` run as a process against the plain script a user writes
instead (rasterio + xarray with bottleneck + rio-cogeo, ``plain_composite.py``), on a long real
stack.

Stack: the 68-date Sentinel-2 NDVI + s2cloudless CLM stack of ``../shared/data`` (real data,
100 x 101 px), tiled ``--tile`` x ``--tile`` times (default 30: 3000 x 3030 px COGs, a job of nine
1024 px tiles; 10 gives one tile of 1000 x 1010 px, where start-up dominates) into COGs generated
here, in a temporary folder, from the real rasters. It is registered in a throwaway database; then each
repetition runs, interleaved, ``stacube composite`` (median and best-pixel, the native grid of
the stack) and the plain script on the same COGs, each as a new process, and checks that both
give identical pixels on the same grid.

Target: stacube >= 1.5x faster than the plain script (whole process, wall time).

Run: ``.venv/bin/python benchmarks/composite_job.py [--repeat 3 --tile 30]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, benchmark_settings, machine

#: The real data (``STACUBE_SHARED_DATA`` overrides where ``../shared/data`` is).
SHARED = Path(os.environ.get("STACUBE_SHARED_DATA", ROOT.parent / "shared" / "data"))
SOURCE = SHARED / "stacks" / "s2-ndvi-clm-slovenia-eolearn"
COLLECTION = "ndvi-clm-tiled"


def tiled_stack(folder: Path, reps: int) -> tuple[Path, list[float]]:
    """COGs of the real stack tiled ``reps`` x ``reps`` times, a manifest and a collection
    document; returns the manifest path and the stack's bounds (EPSG:32633)."""
    import rasterio
    from rasterio.transform import Affine

    manifest = json.loads((SOURCE / "manifest.json").read_text())
    items = []
    for entry in manifest["items"]:
        assets = {}
        for key in ("NDVI", "CLM"):
            asset = entry["assets"][key]
            with rasterio.open(SOURCE / asset["file"]) as src:
                array = np.tile(src.read(1), (reps, reps))
                profile = src.profile
                transform = src.transform
            path = folder / entry["item_id"] / f"{key}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            profile.update(driver="COG", width=array.shape[1], height=array.shape[0], compress="deflate",
                           blocksize=256)
            for k in ("blockxsize", "blockysize", "tiled", "interleave"):
                profile.pop(k, None)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(array, 1)
            assets[key] = {**asset, "file": f"{entry['item_id']}/{key}.tif", "width": array.shape[1],
                           "height": array.shape[0]}
        items.append({**entry, "collection": COLLECTION, "assets": assets})
    ny, nx = 101 * reps, 100 * reps
    (folder / "manifest.json").write_text(json.dumps({**manifest, "collection": COLLECTION, "items": items}))
    a = Affine(*list(transform)[:6])
    bounds = [a.c, a.f + a.e * ny, a.c + a.a * nx, a.f]
    return folder / "manifest.json", bounds


def collection_doc() -> dict:
    from stacube.catalog.products import attach_quality
    from stacube.catalog.quality import preset

    doc = {
        "type": "Collection", "stac_version": "1.1.0", "id": COLLECTION, "license": "other", "links": [],
        "description": "Sentinel-2 NDVI + s2cloudless CLM (eo-learn sample, 68 dates), tiled up",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "item_assets": {
            "NDVI": {"roles": ["data"], "eo:bands": [{"name": "NDVI", "common_name": "ndvi"}],
                     "raster:bands": [{"data_type": "float32"}]},
            "CLM": {"roles": ["data-mask", "cloud"], "raster:bands": [{"data_type": "uint8", "nodata": 255}]},
        },
        "stacube:storage": {"crs": "EPSG:32633"},
    }
    attach_quality(doc, preset("binary-cloud", "CLM"))
    return doc


def read(path: Path):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1), src.transform


def same_pixels(ours: Path, plain: Path) -> bool:
    """The plain output's pixels equal stacube's at the same map positions; stacube's pixels
    outside the stack (if its grid is larger) are NaN."""
    a, ta = read(ours)
    b, tb = read(plain)
    if (ta.a, ta.e) != (tb.a, tb.e):
        return False
    dx, dy = (tb.c - ta.c) / ta.a, (tb.f - ta.f) / ta.e
    if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
        return False
    dx, dy = round(dx), round(dy)
    window = a[dy:dy + b.shape[0], dx:dx + b.shape[1]]
    if window.shape != b.shape or not np.array_equal(window, b, equal_nan=True):
        return False
    outside = a.copy()
    outside[dy:dy + b.shape[0], dx:dx + b.shape[1]] = np.nan
    return bool(np.isnan(outside).all())


#: ``stacube`` as a process that also prints, on stderr, the seconds from its spawning to its
#: first read of a file (imports, settings, catalog search, planning: the start-up). The clock
#: starts in the parent just before the spawn (``SPAWNED``), not at the process's creation time
#: as ``psutil`` reports it: Linux gives the boot time in whole seconds, so that creation time
#: is early by the fraction of a second the machine booted at (0.18 s on one boot here).
TRACED = """
import os, sys, time
import stacube.algo.load as load
read = load.read_assets
def traced(*args, **kwargs):
    if not getattr(traced, "seen", False):
        traced.seen = True
        print(f"first read after {time.time() - float(os.environ['SPAWNED']):.3f} s", file=sys.stderr)
    return read(*args, **kwargs)
load.read_assets = traced
sys.argv = ["stacube", *sys.argv[1:]]
from stacube.cli.main import run
run()
"""


def run(cmd: list[str], env: dict) -> tuple[float, float | None]:
    """Wall time of a command, and its start-up (see :data:`TRACED`) when it reports one."""
    t0 = time.perf_counter()
    env = {**env, "SPAWNED": repr(time.time())}
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"{' '.join(cmd[:3])}... failed:\n{done.stdout}\n{done.stderr}")
    startup = [float(line.split()[3]) for line in done.stderr.splitlines() if line.startswith("first read after")]
    return elapsed, (startup[0] if startup else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tile", type=int, default=30, help="copies of the 100 x 101 px stack per side")
    args = parser.parse_args()
    if not SOURCE.exists():
        print(f"skipped: {SOURCE} is not there (the real stacks of ../shared/data)")
        return

    # stacube's own modules as an installed package has them: compiled once (an editable checkout
    # run with PYTHONDONTWRITEBYTECODE would compile ~70 modules in every process, ~0.3 s)
    import compileall

    compileall.compile_dir(ROOT / "src", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="stacube-job-"))
    try:
        manifest, bounds = tiled_stack(work / "stack", args.tile)
        (work / "collection.json").write_text(json.dumps(collection_doc()))
        with benchmark_settings("composite_job") as settings:
            env = {**os.environ, "STACUBE_DB_NAME": settings.db_name, "STACUBE_DB_PORT": str(settings.db_port),
                   "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
            stacube = [sys.executable, "-m", "stacube.cli.main"]
            run([*stacube, "product", "add", str(work / "collection.json")], env)
            run([*stacube, "dataset", "add", str(manifest.parent)], env)
            bbox = ",".join(f"{v + s:.3f}" for v, s in zip(bounds, (1, 1, -1, -1)))
            times: dict[tuple[str, str], list[float]] = {}
            same: dict[str, bool] = {}
            startups: list[float] = []
            for rep in range(args.repeat + 1):  # the first round warms caches (files, compiled code)
                for method in ("median", "best-pixel"):
                    out = work / f"out-{method}"
                    ours = [sys.executable, "-c", TRACED, "composite", "-c", COLLECTION, "--bbox", bbox, "--bbox-crs", "EPSG:32633",
                            "--datetime", "2015-01-01/2018-01-01", "--method", method, "--bands", "NDVI",
                            "--output", f"file://{out}"]
                    plain = [sys.executable, str(ROOT / "benchmarks" / "plain_composite.py"), str(manifest),
                             "--method", method, "-o", str(work / f"plain-{method}.tif")]
                    sides = [("stacube", ours), ("plain", plain)]
                    for side, cmd in (sides if rep % 2 else sides[::-1]):
                        elapsed, first_read = run(cmd, env)
                        if rep:
                            times.setdefault((method, side), []).append(elapsed)
                            if first_read is not None:
                                startups.append(first_read)
                    if rep == 0:
                        cog = next(out.glob("*/*/NDVI.tif"))
                        same[method] = same_pixels(cog, work / f"plain-{method}.tif")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {machine()}")
    print(f"stack: 68 dates x {101 * args.tile} x {100 * args.tile} px NDVI float32 + CLM uint8 "
          f"(real data tiled {args.tile}x{args.tile}), {args.repeat} interleaved repetitions after one warm-up")
    for method in ("median", "best-pixel"):
        ours, plain = times[(method, "stacube")], times[(method, "plain")]
        print(f"{method:<11} stacube min {min(ours):6.2f} s median {statistics.median(ours):6.2f} s   "
              f"plain script min {min(plain):6.2f} s median {statistics.median(plain):6.2f} s   "
              f"speed-up {min(plain) / min(ours):4.2f}x (min) {statistics.median(plain) / statistics.median(ours):4.2f}x "
              f"(median) (target >= 1.5x)  identical pixels: {same[method]}")
    if startups:  # (tiles run in worker processes with STACUBE_EXECUTOR=processes: not traced there)
        print(f"start-up of stacube composite (process start to first read): min {min(startups):.2f} s, "
              f"median {statistics.median(startups):.2f} s (target <= 1.0 s)")


if __name__ == "__main__":
    main()
