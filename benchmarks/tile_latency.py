"""Tile latency of the raster API: a composite tile and an NDVI tile against a plain
titiler-pgstac RGB mosaic tile of the same collection, through a running ``stacube up`` server.

Data: the Sentinel-2 L1C sample stack (5 dates) and a median composite of it made by stacube.
Requests alternate between the three kinds (after a warm-up) so machine noise hits them alike;
p50 and p95 are printed with their ratio to the plain mosaic tile.

Run: ``.venv/bin/python benchmarks/tile_latency.py [--requests 60]``
"""

from __future__ import annotations

import argparse
import time

import httpx

from common import ROOT, benchmark_settings, machine, percentile, served

S2 = "sentinel-2-l1c-eolearn-sample"
TILE = "WebMercatorQuad/14/8854/5837"


def prepare(settings) -> dict:
    from stacube.catalog.register import add_datasets, add_product
    from stacube.catalog.pgstac import Catalog
    from stacube.jobs.runner import run_composite
    from stacube.jobs.spec import build_spec

    catalog = Catalog(settings)
    add_product(catalog, ROOT / "data" / "products" / f"{S2}.odc.yaml")
    add_datasets(catalog, [ROOT / "data" / "samples" / "s2-l1c-slovenia-eolearn"])
    spec = build_spec(collections=[S2], bbox="14.5514,45.8659,14.5642,45.8750", datetime="2015-07-01/2015-09-30",
                      method="median", bands=["red", "green", "blue"], indices=["NDVI"])
    return run_composite(spec, settings, workers=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    with benchmark_settings("tiles") as settings:
        report = prepare(settings)
        with served(settings) as (root, _), httpx.Client(timeout=60) as client:
            base = f"{root}/raster"
            urls = {
                "plain RGB mosaic (titiler-pgstac)":
                    f"{base}/collections/{S2}/tiles/{TILE}.png?assets=B04&assets=B03&assets=B02&rescale=0,3000",
                "NDVI mosaic (index=NDVI)": f"{base}/collections/{S2}/tiles/{TILE}.png?index=NDVI",
                "composite item tile (RGB)":
                    f"{base}/collections/{report['collection']}/items/{report['items'][0]}/tiles/{TILE}.png"
                    "?assets=red&assets=green&assets=blue&rescale=0,0.3",
            }
            for url in urls.values():  # warm-up
                for _ in range(3):
                    assert client.get(url).status_code == 200, url
            times: dict[str, list[float]] = {k: [] for k in urls}
            for _ in range(args.requests):
                for name, url in urls.items():
                    t0 = time.perf_counter()
                    r = client.get(url)
                    times[name].append(time.perf_counter() - t0)
                    assert r.status_code == 200 and len(r.content) > 100
    print(f"machine: {machine()}")
    ref = percentile(times["plain RGB mosaic (titiler-pgstac)"], 50)
    for name, values in times.items():
        p50, p95 = percentile(values, 50) * 1e3, percentile(values, 95) * 1e3
        print(f"{name:<36} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   p50 / plain mosaic {p50 / 1e3 / ref:5.2f}x")


if __name__ == "__main__":
    main()
