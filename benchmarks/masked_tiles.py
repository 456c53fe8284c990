"""Latency of cloud-masked mosaic tiles against the plain titiler-pgstac mosaic tile of the same
collection, tile and bands, through a running ``stacube up`` server (same run).

Cases (real sample data, RGB PNG tiles, 256 px):

* Sentinel-2 L1C Slovenia, tile WebMercatorQuad/14/8854/5837, all 5 dates: the most recent scene
  is clear, so both mosaics read one scene (the masked one also reads its CLM mask);
* the same up to 2015-08-25: the two most recent scenes are fully cloudy; the plain mosaic shows
  the first (clouds), the masked one reads past both to the clear 2015-07-11 scene;
* Landsat 8 New York, tile WebMercatorQuad/8/75/95 (several scenes, partly cloudy, BQA bit
  field): the masked mosaic keeps reading until every pixel is clear (or items run out).

Requests alternate between plain and masked (after a warm-up), so machine noise hits both; p50
and p95 in milliseconds, and the masked / plain ratio of each.

Run: ``.venv/bin/python benchmarks/masked_tiles.py [--requests 40]``
"""

from __future__ import annotations

import argparse
import time

import httpx

from common import ROOT, benchmark_settings, machine, percentile, served

S2 = "sentinel-2-l1c-eolearn-sample"
L8 = "landsat-8-c1-l1tp-gdalcubes-sample"
CASES = {
    "S2 Slovenia 14/8854/5837, latest scene clear": (
        f"/collections/{S2}", "WebMercatorQuad/14/8854/5837", "assets=B04&assets=B03&assets=B02&rescale=0,3000"),
    "S2 Slovenia, to 2015-08-25 (2 cloudy on top)": (
        f"/collections/{S2}", "WebMercatorQuad/14/8854/5837",
        "assets=B04&assets=B03&assets=B02&rescale=0,3000&datetime=2015-07-01T00:00:00Z/2015-08-25T00:00:00Z"),
    "L8 New York 8/75/95, BQA bit field": (
        f"/collections/{L8}", "WebMercatorQuad/8/75/95", "assets=B4&assets=B3&assets=B2&rescale=5000,20000"),
}


def prepare(settings) -> None:
    from stacube.catalog.register import add_datasets, add_product
    from stacube.catalog.pgstac import Catalog

    catalog = Catalog(settings)
    for name in (S2, L8):
        add_product(catalog, ROOT / "data" / "products" / f"{name}.odc.yaml")
    add_datasets(catalog, [ROOT / "data" / "samples" / "s2-l1c-slovenia-eolearn",
                           ROOT / "data" / "samples" / "landsat8-c1-l1tp-newyork-gdalcubes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with benchmark_settings("masked_tiles") as settings:
        prepare(settings)
        used: dict[str, str] = {}
        with served(settings) as (root, _), httpx.Client(timeout=60) as client:
            base = f"{root}/raster"
            urls = {}
            for name, (prefix, tile, query) in CASES.items():
                urls[(name, "plain")] = f"{base}{prefix}/tiles/{tile}.png?{query}"
                urls[(name, "masked")] = f"{base}{prefix}/masked/tiles/{tile}.png?{query}"
            for key, url in urls.items():  # warm-up (search registration, caches)
                for _ in range(3):
                    r = client.get(url)
                    assert r.status_code == 200, (url, r.status_code, r.text[:200])
                if key[1] == "masked":
                    used[key[0]] = r.headers.get("x-assets", "")
            times: dict[tuple, list[float]] = {k: [] for k in urls}
            for _ in range(args.requests):
                for key, url in urls.items():
                    t0 = time.perf_counter()
                    r = client.get(url)
                    times[key].append(time.perf_counter() - t0)
                    assert r.status_code == 200 and len(r.content) > 100
    print(f"machine: {machine()}; {args.requests} requests per URL, plain and masked alternating")
    for name in CASES:
        plain, masked = times[(name, "plain")], times[(name, "masked")]
        p50p, p95p = percentile(plain, 50) * 1e3, percentile(plain, 95) * 1e3
        p50m, p95m = percentile(masked, 50) * 1e3, percentile(masked, 95) * 1e3
        items = used[name].split(",") if used[name] else []
        print(f"{name}: plain mosaic p50 {p50p:6.1f} ms p95 {p95p:6.1f} ms | masked mosaic p50 {p50m:6.1f} ms "
              f"p95 {p95m:6.1f} ms | masked / plain p50 {p50m / p50p:4.2f}x p95 {p95m / p95p:4.2f}x "
              f"| masked used {len(items)} item(s)")


if __name__ == "__main__":
    main()
