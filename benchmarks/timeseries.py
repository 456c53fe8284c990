"""Time-series request latency: from a Zarr cube against from the source items, over HTTP.

Stack: ``--dates`` dates x 4 bands x ``--size`` px at 10 m (generated uint16 COGs, DEFLATE,
512-px blocks, plus a Landsat C1 BQA-like quality band), registered as a throwaway collection in
a throwaway database; a masked-observations cube on its native grid, one 512 px tile of it
filled before timing. Requests go through the cubes API (``GET /cubes/{cube}/timeseries?lon=
&lat=&index=NDVI``, in-process ASGI client): ``source=cube`` reads the Zarr store,
``source=items`` searches the catalog and reads the COGs with odc-stac. Both answer every date
with NDVI, the clear/cloud flag and the valid share; the answers are checked equal. Random
points inside the filled tile, the two sources interleaved.

Run: ``.venv/bin/python benchmarks/timeseries.py [--dates 48] [--size 1024] [--requests 15]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import benchmark_settings, machine, percentile, register_synthetic

COLLECTION = "bench-ts-source"
CUBE = "bench-ts"
CRS = "EPSG:32633"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", type=int, default=48)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--requests", type=int, default=15)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from odc.geo.geom import BoundingBox

    import stacube
    from cube_read import ORIGIN, make_stack
    from stacube.catalog.pgstac import Catalog
    from stacube.cubes.build import create_cube
    from stacube.cubes.spec import build_cube_spec
    from stacube_services.cubes import create_cubes_app

    work = Path(tempfile.mkdtemp(prefix="stacube-bench-ts-"))
    try:
        with benchmark_settings("timeseries") as base:
            settings = base.model_copy(update={"output": str(work / "out")})
            t0 = time.perf_counter()
            entries = make_stack(work / "cogs", args.dates, args.size)
            register_synthetic(Catalog(settings), COLLECTION, work / "cogs", entries, crs=CRS)
            print(f"machine: {machine()}")
            print(f"stack: {args.dates} dates x 4 bands + BQA, {args.size}x{args.size} px @ 10 m "
                  f"({time.perf_counter() - t0:.1f} s to write)")
            half = 10.0 * args.size
            domain = (ORIGIN[0], ORIGIN[1] - half, ORIGIN[0] + half, ORIGIN[1])
            spec = build_cube_spec(name=CUBE, collections=[COLLECTION], datetime="2020-01-01/2020-12-31",
                                   bbox=domain, bbox_crs=CRS, bands=["red", "nir"])
            definition = create_cube(spec, settings, fill=False, replace=True).definition
            centre = (ORIGIN[0] + half / 2, ORIGIN[1] - half / 2)
            col, row = ~definition.geobox.affine * centre
            iy, ix = int(row) // definition.tile, int(col) // definition.tile
            tile = definition.unit_geobox(iy, ix)
            box = tile.extent.to_crs("EPSG:4326").boundingbox
            t0 = time.perf_counter()
            stacube.open_cube(CUBE, bbox=tuple(box), settings=settings, workers=1, load=False)
            print(f"cube: chunks {definition.chunks}; fill of one 512 px tile x {len(definition.steps)} dates "
                  f"took {time.perf_counter() - t0:.1f} s (once, not timed)")
            rng = np.random.default_rng(7)
            inner = tile.extent.boundingbox  # points on the stack and in the filled tile
            left, right = max(inner.left, domain[0]) + 20, min(inner.right, domain[2]) - 20
            bottom, top = max(inner.bottom, domain[1]) + 20, min(inner.top, domain[3]) - 20
            points = []
            for _ in range(args.requests):
                x = rng.uniform(left, right)
                y = rng.uniform(bottom, top)
                lon, lat, *_ = BoundingBox(x, y, x, y, crs=CRS).to_crs("EPSG:4326")
                points.append((lon, lat))
            client = TestClient(create_cubes_app(settings))
            url = f"/{CUBE}/timeseries?index=NDVI&lon={{lon}}&lat={{lat}}&source={{source}}"
            client.get(url.format(lon=points[0][0], lat=points[0][1], source="cube"))  # warm-up: imports
            client.get(url.format(lon=points[0][0], lat=points[0][1], source="items"))
            times: dict[str, list[float]] = {"cube": [], "items": []}
            for lon, lat in points:
                answers = {}
                for source in ("cube", "items"):
                    t0 = time.perf_counter()
                    r = client.get(url.format(lon=lon, lat=lat, source=source))
                    times[source].append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                    answers[source] = [(s["datetime"], s["status"], s["NDVI"]) for s in r.json()["series"]]
                for a, b in zip(answers["cube"], answers["items"]):
                    assert a[:2] == b[:2] and (a[2] is None) == (b[2] is None), (a, b)
                    assert a[2] is None or abs(a[2] - b[2]) < 1e-6, (a, b)
            cube50, items50 = percentile(times["cube"], 50), percentile(times["items"], 50)
            print(f"{len(points)} point requests, {len(answers['cube'])} dates each, NDVI + flags; answers identical")
            print(f"{'time-series request p50':<40} cube {cube50 * 1000:9.1f} ms   items (odc-stac) "
                  f"{items50 * 1000:9.1f} ms   ratio {items50 / cube50:6.1f}x")
            print(f"{'time-series request p90':<40} cube {percentile(times['cube'], 90) * 1000:9.1f} ms   "
                  f"items (odc-stac) {percentile(times['items'], 90) * 1000:9.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
