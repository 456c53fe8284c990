"""Creating a job's empty staging cube on S3: stacube's ``create_cube`` against xarray's
``Dataset.to_zarr(compute=False)``, the way an xarray user lays out the same empty cube.

Both write the same layout (a ``spatial_ref`` grid mapping, ``x``/``y``/``time`` coordinates, the
variables' ``(time, y, x)`` arrays without data chunks, consolidated metadata, Zarr format 2)
through the same obstore S3 store to moto's server on loopback, behind a proxy that delays every
request by ``--latency`` ms (S3 answers a small request in ~10-30 ms; moto on loopback in ~1 ms,
which would hide the round trips). Interleaved repetitions; min and median of each, and the
ratio. Requests per cube are counted by the proxy.

    python benchmarks/staging_cube.py [--repeat 5] [--latency 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone

from common import ROOT, machine

sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "tests" / "faults"))
from local_events import start_moto_server  # noqa: E402
from s3_proxy import FaultyS3Proxy  # noqa: E402

BUCKET = "bench-staging"
BBOX = (465182.052, 5070158.211, 495174.844, 5100253.633)  # 3000 x 3011 px at 10 m, EPSG:32633


def stacube_cube(store, geobox, times, variables) -> None:
    from stacube.jobs.outputs import create_cube

    create_cube(store, geobox, variables, times, 1024, attrs={"title": "bench"}, zarr_format=2,
                dtypes={v: ("float32", float("nan")) for v in variables})


def xarray_cube(store, geobox, times, variables) -> None:
    """What an xarray user writes: a lazy dataset of the cube's shape, its metadata only."""
    import dask.array as da
    import numpy as np
    import xarray as xr
    from odc.geo.xr import xr_coords

    ny, nx = geobox.shape.y, geobox.shape.x
    coords = {"time": np.array([np.datetime64(t.replace(tzinfo=None), "s") for t in times]),
              **xr_coords(geobox, crs_coord_name="spatial_ref")}  # x, y and the CF grid mapping
    data = {v: (("time", "y", "x"), da.zeros((len(times), ny, nx), dtype="float32", chunks=(1, 512, 512)))
            for v in variables}
    ds = xr.Dataset(data, coords=coords, attrs={"title": "bench"})
    ds.to_zarr(store, mode="w", compute=False, consolidated=True, zarr_format=2,
               encoding={v: {"_FillValue": np.float32("nan")} for v in variables})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--latency", type=float, default=30.0, help="ms added to every S3 request")
    args = parser.parse_args()

    import boto3
    from odc.geo.geobox import GeoBox

    from stacube.settings import Settings
    from stacube.storage.objects import zarr_store_at

    moto, upstream = start_moto_server()
    proxy = FaultyS3Proxy(upstream, delay_rate=1.0, delay=args.latency / 1000).start()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                      STACUBE_S3_ENDPOINT=proxy.url)
    try:
        boto3.client("s3", endpoint_url=upstream, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        settings = Settings()
        geobox = GeoBox.from_bbox(BBOX, "EPSG:32633", resolution=10)
        times = [datetime(2016, m, 1, tzinfo=timezone.utc) for m in range(1, 13)]
        variables = ["NDVI", "red", "nir"]
        runs = {"stacube": (stacube_cube, []), "xarray": (xarray_cube, [])}
        requests: dict[str, int] = {}
        for i in range(args.repeat + 1):  # the first round warms the imports and connections
            for name, (fn, times_taken) in runs.items():
                store = zarr_store_at(f"s3://{BUCKET}/{name}-{i}/cube.zarr", settings)  # the staging store
                before = proxy.counts["requests"]
                t0 = time.perf_counter()
                fn(store, geobox, times, variables)
                if i:
                    times_taken.append(time.perf_counter() - t0)
                requests[name] = proxy.counts["requests"] - before
        print(f"machine: {machine()}; S3: moto on loopback + {args.latency:.0f} ms a request; "
              f"cube {len(times)} x {geobox.shape.y} x {geobox.shape.x} px, {len(variables)} variables")
        for name, (_, t) in runs.items():
            print(f"{name:8s} min {min(t):6.3f} s  median {statistics.median(t):6.3f} s  "
                  f"({requests[name]} requests a cube)")
        ours, base = runs["stacube"][1], runs["xarray"][1]
        print(f"speed-up {min(base) / min(ours):.2f}x (min) {statistics.median(base) / statistics.median(ours):.2f}x (median)")
    finally:
        moto.terminate()


if __name__ == "__main__":
    main()
